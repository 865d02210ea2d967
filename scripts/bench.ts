/**
 * A first benchmark of streamfutures against a private redis-server:
 *
 * - end-to-end throughput of `pool.map(tasks.noop, ...)` with local listeners (median of runs),
 * - round-trip latency of sequential `await pool.submit(tasks.noop, [])` (p50 / p99),
 * - Redis commands and Redis CPU per task over the throughput runs (INFO commandstats / cpu).
 *
 *   deno task bench
 *   deno run -A scripts/bench.ts --tasks 20000 --workers 4 --concurrency 100 --runs 3 [--json]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { StreamFuturePool } from "../mod.ts";
import * as tasks from "../examples/tasks.ts";
import { connect, type RedisConnection } from "../lib/_redis.ts";
import { RedisNotInstalledError, type RedisServer, startRedisServer } from "./_redis_server.ts";

const TASKS = new URL("../examples/tasks.ts", import.meta.url);
const LATENCY_WARMUP = 200;
const LATENCY_SAMPLES = 2000;
const WARMUP_TASKS = 2000;
/** A measured run that takes longer than this fails the benchmark instead of hanging it. */
const RUN_TIMEOUT_MS = 60_000;

const USAGE =
  `usage: deno run -A scripts/bench.ts [--tasks N] [--workers N] [--concurrency N] [--runs N] [--json]

  --tasks N        no-op tasks per throughput run (default 20000)
  --workers N      local listeners (threads) of the pool (default 4)
  --concurrency N  tasks each listener runs at once (default 100)
  --runs N         measured throughput runs; the median is reported (default 3)
  --json           print one JSON object instead of markdown`;

interface Params {
  tasks: number;
  workers: number;
  concurrency: number;
  runs: number;
  json: boolean;
}

function parseParams(): Params {
  const { values } = parseArgs({
    args: Deno.args,
    strict: true,
    allowPositionals: false,
    options: {
      tasks: { type: "string", default: "20000" },
      workers: { type: "string", default: "4" },
      concurrency: { type: "string", default: "100" },
      runs: { type: "string", default: "3" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const int = (name: "tasks" | "workers" | "concurrency" | "runs"): number => {
    const text = values[name];
    const n = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) {
      throw new TypeError(`--${name} must be a positive integer, got ${JSON.stringify(text)}`);
    }
    return n;
  };
  return {
    tasks: int("tasks"),
    workers: int("workers"),
    concurrency: int("concurrency"),
    runs: int("runs"),
    json: values.json,
  };
}

/** The `key:value` lines of an INFO section. */
async function info(conn: RedisConnection, section: string): Promise<Map<string, string>> {
  const text = String(await conn.sendCommand(["INFO", section]));
  const out = new Map<string, string>();
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

interface RedisSnapshot {
  /** Calls per command (commands run inside Lua scripts included). */
  calls: Map<string, number>;
  /** used_cpu_sys + used_cpu_user, seconds. */
  cpu: number;
}

async function snapshot(conn: RedisConnection): Promise<RedisSnapshot> {
  const calls = new Map<string, number>();
  for (const [key, value] of await info(conn, "commandstats")) {
    const m = /(?:^|,)calls=(\d+)/.exec(value);
    if (key.startsWith("cmdstat_") && m) calls.set(key.slice(8), Number(m[1]));
  }
  const cpu = await info(conn, "cpu");
  return {
    calls,
    cpu: Number(cpu.get("used_cpu_sys") ?? 0) + Number(cpu.get("used_cpu_user") ?? 0),
  };
}

/** Adds `after - before` into `into` (calls per command and CPU seconds). */
function accumulate(into: RedisSnapshot, before: RedisSnapshot, after: RedisSnapshot): void {
  for (const [cmd, n] of after.calls) {
    const delta = n - (before.calls.get(cmd) ?? 0);
    if (delta > 0) into.calls.set(cmd, (into.calls.get(cmd) ?? 0) + delta);
  }
  into.cpu += after.cpu - before.cpu;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Submits `n` no-op tasks with one `map` and waits for all; returns seconds. */
async function mapRun(pool: StreamFuturePool, n: number): Promise<number> {
  const argsList = Array.from({ length: n }, (): [] => []);
  const start = performance.now();
  const futures = pool.map(tasks.noop, argsList);
  await withTimeout(Promise.all(futures), RUN_TIMEOUT_MS, `a run of ${n} tasks`);
  return (performance.now() - start) / 1000;
}

interface Results {
  deno: string;
  v8: string;
  typescript: string;
  redis: string;
  os: string;
  cpus: number;
  date: string;
  params: Omit<Params, "json">;
  throughput: { tasksPerSecond: number; runs: { seconds: number; tasksPerSecond: number }[] };
  latency: { samples: number; p50Ms: number; p99Ms: number; meanMs: number; maxMs: number };
  redisPerTask: { calls: number; cpuMicros: number; commands: Record<string, number> };
  poolStartMs: number;
}

async function bench(params: Params, server: RedisServer): Promise<Results> {
  const stats = await connect(server.url, "streamfutures-bench-info");
  try {
    const redisVersion = (await info(stats, "server")).get("redis_version") ?? "?";
    const t0 = performance.now();
    const pool = new StreamFuturePool({
      url: server.url,
      app: "bench",
      workers: params.workers,
      concurrency: params.concurrency,
      tasks: TASKS,
    });
    await pool.ready();
    const poolStartMs = performance.now() - t0;
    const log = (line: string) => {
      if (!params.json) console.error(line);
    };

    // Throughput.
    await mapRun(pool, Math.min(WARMUP_TASKS, params.tasks));
    const runs: { seconds: number; tasksPerSecond: number }[] = [];
    const total: RedisSnapshot = { calls: new Map(), cpu: 0 };
    for (let i = 0; i < params.runs; i++) {
      const before = await snapshot(stats);
      const seconds = await mapRun(pool, params.tasks);
      const after = await snapshot(stats);
      accumulate(total, before, after);
      runs.push({ seconds, tasksPerSecond: params.tasks / seconds });
      log(
        `run ${i + 1}/${params.runs}: ${params.tasks} tasks in ${seconds.toFixed(2)} s ` +
          `(${(params.tasks / seconds).toFixed(0)} tasks/s)`,
      );
    }
    // The snapshots' own INFO calls are not the pool's.
    total.calls.delete("info");

    // Latency.
    const samples: number[] = [];
    for (let i = 0; i < LATENCY_WARMUP + LATENCY_SAMPLES; i++) {
      const start = performance.now();
      await withTimeout(pool.submit(tasks.noop, []).result(), RUN_TIMEOUT_MS, "one submit");
      if (i >= LATENCY_WARMUP) samples.push(performance.now() - start);
    }
    log(`latency: ${LATENCY_SAMPLES} sequential round trips done`);
    await withTimeout(pool.shutdown(), RUN_TIMEOUT_MS, "pool shutdown");

    const sorted = [...samples].sort((a, b) => a - b);
    const measured = params.tasks * params.runs;
    const commands: Record<string, number> = {};
    let calls = 0;
    for (const [cmd, n] of [...total.calls].sort((a, b) => b[1] - a[1])) {
      commands[cmd] = n / measured;
      calls += n;
    }
    return {
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      typescript: Deno.version.typescript,
      redis: redisVersion,
      os: `${Deno.build.os} ${Deno.build.arch}`,
      cpus: navigator.hardwareConcurrency,
      date: new Date().toISOString(),
      params: {
        tasks: params.tasks,
        workers: params.workers,
        concurrency: params.concurrency,
        runs: params.runs,
      },
      throughput: { tasksPerSecond: median(runs.map((r) => r.tasksPerSecond)), runs },
      latency: {
        samples: samples.length,
        p50Ms: percentile(sorted, 50),
        p99Ms: percentile(sorted, 99),
        meanMs: samples.reduce((a, b) => a + b, 0) / samples.length,
        maxMs: sorted[sorted.length - 1],
      },
      redisPerTask: { calls: calls / measured, cpuMicros: (total.cpu * 1e6) / measured, commands },
      poolStartMs,
    };
  } finally {
    stats.close();
  }
}

function markdown(r: Results): string {
  const int = (n: number) => Math.round(n).toLocaleString("en-US");
  const { tasks: n, workers, concurrency, runs } = r.params;
  const listeners = `${workers} local listener${workers === 1 ? "" : "s"}`;
  const lines = [
    `# streamfutures benchmark`,
    ``,
    `Deno ${r.deno} (V8 ${r.v8}, TypeScript ${r.typescript}), redis-server ${r.redis} (private), ` +
    `${r.os}, ${r.cpus} CPUs, ${r.date}`,
    ``,
    `| metric | value |`,
    `| --- | --- |`,
    `| throughput: ${int(n)} no-op tasks, \`map\`, ${listeners} × concurrency ${concurrency} ` +
    `| **${int(r.throughput.tasksPerSecond)} tasks/s** (median of ${runs}: ${
      r.throughput.runs.map((x) => int(x.tasksPerSecond)).join(", ")
    }) |`,
    `| round-trip latency, ${int(r.latency.samples)} sequential \`await submit(noop)\`: p50 ` +
    `| **${r.latency.p50Ms.toFixed(2)} ms** |`,
    `| round-trip latency: p99 | **${r.latency.p99Ms.toFixed(2)} ms** (mean ${
      r.latency.meanMs.toFixed(2)
    }, max ${r.latency.maxMs.toFixed(2)}) |`,
    `| Redis commands per task (throughput runs, incl. commands inside Lua) | ${
      r.redisPerTask.calls.toFixed(2)
    } |`,
    `| Redis CPU per task (used_cpu_sys + used_cpu_user) | ${
      r.redisPerTask.cpuMicros.toFixed(1)
    } µs |`,
    `| pool start (connect + ${workers} listener threads) | ${int(r.poolStartMs)} ms |`,
    ``,
    `Redis commands per task by command:`,
    ``,
    `| command | calls / task |`,
    `| --- | --- |`,
    ...Object.entries(r.redisPerTask.commands)
      .filter(([, v]) => v >= 0.0005)
      .map(([cmd, v]) => `| ${cmd.toUpperCase()} | ${v.toFixed(3)} |`),
  ];
  return lines.join("\n");
}

async function main(): Promise<number> {
  let params: Params;
  try {
    params = parseParams();
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  let server: RedisServer;
  try {
    server = await startRedisServer();
  } catch (error) {
    console.error(error instanceof RedisNotInstalledError ? error.message : error);
    return 1;
  }
  let results: Results;
  try {
    results = await bench(params, server);
  } catch (error) {
    console.error("benchmark failed:", error);
    return 1;
  } finally {
    await server.stop();
  }
  console.log(params.json ? JSON.stringify(results, null, 2) : markdown(results));
  return 0;
}

Deno.exit(await main());
