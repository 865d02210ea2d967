/**
 * The streamfutures producer of the benchmark (`deno task bench`, scripts/bench.ts): the client
 * side of our system, run as a process of its own like the peers' producers
 * (scripts/peers/*.mjs), under Deno or, from the npm build (npm/tests/bench/_client.js), under
 * Node.
 *
 *   deno run -A tests/bench/_client.ts throughput --url U --app A [--jobs 20000] [--warmup 2000]
 *     [--task-ms 0] [--payload 0] [--chunksize 1] [--gate]
 *   deno run -A tests/bench/_client.ts latency --url U --app A [--samples 2000] [--warmup 200]
 *   deno run -A --v8-flags=--expose-gc tests/bench/_client.ts fill --url U --app A [--jobs 100000]
 *   node [--expose-gc] npm/tests/bench/_client.js <role> ...
 *
 * Prints one JSON line of results on stdout (the last line); logs go to stderr.
 *
 * - throughput: warms up with `--warmup` tasks, says "ready" on stderr, waits for a line on stdin
 *   with `--gate` (so the driver can reset Redis' statistics), then times one
 *   `pool.map(tasks.noop | tasks.sleep, ...)` (with `--payload N`: the no-op called with a string of
 *   N characters; with `--echo` too, `echo`, which returns it, so that a result of that size comes
 *   back; with `--chunksize N`, in chunks of N calls) of `--jobs` tasks from the call until every future
 *   has its result (each one checked). Result: `{ seconds, jobs, cpuMicros }` (`cpuMicros`: this
 *   process's CPU time over the timed part).
 * - latency: `--warmup` then `--samples` sequential `await pool.submit(tasks.noop, [])`. Result:
 *   `{ p50Ms, p99Ms, meanMs, maxMs, samples }` (nearest-rank percentiles).
 * - fill: with no worker running (`requireWorkers: false`), `pool.map` of `--jobs` no-op tasks;
 *   waits until all of them are in the queue's stream and its heap has stopped falling (the last
 *   SUBMIT replies handled), says "filled" on stderr (the driver then
 *   reads Redis' used_memory and starts a worker), waits for a line on stdin, then waits for every
 *   result and shuts the pool down. Result: `{ jobs, rssBefore, rssAfter, heapBefore, heapAfter }`
 *   — RSS and V8 heap (bytes, after a GC when `gc` is exposed) of this process
 *   before `map` and while it holds the futures of every pending task.
 *
 * Every wait has a deadline (`--timeout-ms`, default 120000): past it the process exits 1.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { StreamFuturePool } from "../../mod.ts";
import type { StreamFuture } from "../../mod.ts";
import * as tasks from "../../examples/tasks.ts";
import { connect } from "../../lib/_redis.ts";

const TASKS: URL = new URL("../../examples/tasks.ts", import.meta.url);

const { positionals, values } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  strict: true,
  options: {
    url: { type: "string", default: "redis://127.0.0.1:6379" },
    app: { type: "string", default: "bench" },
    jobs: { type: "string", default: "20000" },
    warmup: { type: "string", default: "0" },
    "task-ms": { type: "string", default: "0" },
    payload: { type: "string", default: "0" },
    chunksize: { type: "string", default: "1" },
    samples: { type: "string", default: "2000" },
    gate: { type: "boolean", default: false },
    echo: { type: "boolean", default: false },
    "timeout-ms": { type: "string", default: "120000" },
  },
});

type IntOption =
  | "jobs"
  | "warmup"
  | "task-ms"
  | "payload"
  | "chunksize"
  | "samples"
  | "timeout-ms";

/** A non-negative integer option. */
function int(name: IntOption): number {
  const text = values[name] ?? "";
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new TypeError(`--${name} must be a non-negative integer, got ${JSON.stringify(text)}`);
  }
  return n;
}

const role = positionals[0] ?? "?";
const timeoutMs = int("timeout-ms");
/** `map`'s chunksize (1: every call is a task of its own). */
const chunksize = Math.max(1, int("chunksize"));
const log = (...args: unknown[]) => console.error(`[streamfutures ${role}]`, ...args);

/** Rejects after `ms` with a clear message unless `promise` settles first. */
async function deadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Says `text` on stderr and waits for a line on stdin (the driver's "go"). */
async function gate(text: string, always = false): Promise<void> {
  console.error(text);
  if (!values.gate && !always) return;
  await deadline(
    new Promise<void>((resolve, reject) => {
      process.stdin.once("data", () => resolve());
      process.stdin.once("end", () => reject(new Error("stdin closed before the go line")));
    }),
    timeoutMs,
    "the go line",
  );
  process.stdin.pause();
}

function newPool(requireWorkers = true): StreamFuturePool {
  return new StreamFuturePool({
    url: values.url,
    app: values.app,
    tasks: TASKS,
    requireWorkers,
  });
}

/** Checks that every future of a run resolved with `expected`. */
function check(results: readonly unknown[], expected: unknown, what: string): void {
  for (let i = 0; i < results.length; i++) {
    if (results[i] !== expected) {
      throw new Error(`${what}: task ${i} returned ${JSON.stringify(results[i])}`);
    }
  }
}

/** `map`s `n` tasks and waits for every result; the `map` call is inside the timed part. */
async function mapRun(
  pool: StreamFuturePool,
  n: number,
  taskMs: number,
  payload: number,
  what: string,
) {
  let futures: StreamFuture<unknown>[];
  if (taskMs > 0) {
    const argsList = new Array<[number]>(n);
    for (let i = 0; i < n; i++) argsList[i] = [taskMs];
    futures = pool.map(tasks.sleep, argsList, { chunksize });
  } else if (payload > 0) {
    // The no-op task called with one string argument of `--payload` characters (it ignores it).
    const text = "x".repeat(payload);
    const argsList = new Array<[string]>(n);
    for (let i = 0; i < n; i++) argsList[i] = [text];
    futures = pool.map(values.echo ? "echo" : "noop", argsList, { chunksize });
    if (values.echo) {
      const results = await deadline(Promise.all(futures), timeoutMs, `${what} (${n} tasks)`);
      const wrong = results.findIndex((r) => r !== text);
      if (wrong !== -1) throw new Error(`${what}: task ${wrong} returned something else`);
      return;
    }
  } else {
    const argsList = new Array<[]>(n);
    for (let i = 0; i < n; i++) argsList[i] = [];
    futures = pool.map(tasks.noop, argsList, { chunksize });
  }
  const results = await deadline(Promise.all(futures), timeoutMs, `${what} (${n} tasks)`);
  check(results, taskMs > 0 ? taskMs : null, what);
}

async function throughput(): Promise<unknown> {
  const jobs = int("jobs");
  const warmup = int("warmup");
  const taskMs = int("task-ms");
  const payload = int("payload");
  const pool = newPool();
  try {
    await deadline(pool.ready(), timeoutMs, "pool ready");
    if (warmup > 0) await mapRun(pool, warmup, taskMs, payload, "warm-up");
    await gate("ready");
    const cpu = process.cpuUsage();
    const start = performance.now();
    await mapRun(pool, jobs, taskMs, payload, "throughput run");
    const seconds = (performance.now() - start) / 1000;
    const used = process.cpuUsage(cpu);
    return { seconds, jobs, cpuMicros: used.user + used.system };
  } finally {
    await deadline(pool.shutdown(), timeoutMs, "pool shutdown");
  }
}

async function latency(): Promise<unknown> {
  const samples = Math.max(1, int("samples"));
  const warmup = int("warmup");
  const pool = newPool();
  const times: number[] = [];
  try {
    await deadline(pool.ready(), timeoutMs, "pool ready");
    await gate("ready");
    for (let i = 0; i < warmup + samples; i++) {
      const start = performance.now();
      const value = await deadline(pool.submit(tasks.noop, []), timeoutMs, `round trip ${i}`);
      const ms = performance.now() - start;
      if (value !== null) throw new Error(`round trip ${i} returned ${JSON.stringify(value)}`);
      if (i >= warmup) times.push(ms);
    }
  } finally {
    await deadline(pool.shutdown(), timeoutMs, "pool shutdown");
  }
  const sorted = [...times].sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
  return {
    p50Ms: pct(50),
    p99Ms: pct(99),
    meanMs: times.reduce((a, b) => a + b, 0) / times.length,
    maxMs: sorted[sorted.length - 1],
    samples: times.length,
  };
}

/** RSS and V8 heap in use, after a full GC when the runtime exposes `gc`. */
function memory(): { rss: number; heap: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) { for (let i = 0; i < 3; i++) gc(); }
  const usage = process.memoryUsage();
  return { rss: usage.rss, heap: usage.heapUsed };
}

async function fill(): Promise<unknown> {
  const jobs = int("jobs");
  const pool = newPool(false);
  const redis = await connect(values.url!, "streamfutures-bench-fill");
  try {
    await deadline(pool.ready(), timeoutMs, "pool ready");
    const before = memory();
    // A generator, so that no input array of `jobs` argument lists is held alongside.
    const argsList = function* (): Generator<[]> {
      for (let i = 0; i < jobs; i++) yield [];
    };
    const futures = pool.map(tasks.noop, argsList());
    // Every task is in Redis once the queue's stream holds all of them (no worker runs).
    const stream = `${values.app}:queue:default`;
    const until = Date.now() + timeoutMs;
    let length = 0;
    while ((length = Number(await redis.sendCommand(["XLEN", stream]))) < jobs) {
      if (Date.now() > until) {
        throw new Error(`${stream} holds ${length} entries after ${timeoutMs} ms, not ${jobs}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Redis holds every task before this client has handled the last SUBMIT replies and let go of
    // what it sent: read the heap again until it stops falling.
    let after = memory();
    for (;;) {
      if (Date.now() > until) throw new Error(`the heap did not settle within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      const next = memory();
      const settled = next.heap >= after.heap * 0.995;
      if (next.heap < after.heap) after = next;
      if (settled) break;
    }
    await gate("filled", true);
    const results = await deadline(Promise.all(futures), timeoutMs, `draining ${jobs} tasks`);
    check(results, null, "fill");
    await deadline(pool.shutdown(), timeoutMs, "pool shutdown");
    return {
      jobs: results.length,
      rssBefore: before.rss,
      rssAfter: after.rss,
      heapBefore: before.heap,
      heapAfter: after.heap,
    };
  } finally {
    redis.close();
  }
}

const roles: Record<string, () => Promise<unknown>> = { throughput, latency, fill };

if (!Object.hasOwn(roles, role) || positionals.length !== 1) {
  console.error(`usage: _client (${Object.keys(roles).join("|")}) --url U --app A ...`);
  process.exit(2);
}
try {
  const result = await roles[role]();
  console.log(JSON.stringify(result));
  process.exit(0);
} catch (error) {
  log("failed:", (error as Error)?.stack ?? error);
  process.exit(1);
}
