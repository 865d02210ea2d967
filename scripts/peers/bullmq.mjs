/**
 * BullMQ peer for the streamfutures benchmark (benchmark-only: bullmq is a devDependency).
 * Run with Node, BullMQ's native runtime; driven by scripts/_peers.ts.
 *
 *   node scripts/peers/bullmq.mjs worker     --url U --queue Q [--concurrency 100] [--task-ms 0]
 *   node scripts/peers/bullmq.mjs throughput --url U --queue Q [--jobs 20000] [--warmup 0]
 *     [--payload 0] [--gate]
 *   node scripts/peers/bullmq.mjs latency    --url U --queue Q [--samples 2000] [--warmup 200]
 *   node scripts/peers/bullmq.mjs fill       --url U --queue Q [--jobs 100000]
 *
 * Prints one JSON line of results on stdout (throughput: with `cpuMicros`, the producer's CPU time
 * over the timed part); logs go to stderr. A worker prints "ready" on stderr
 * once it is listening, runs until SIGTERM/SIGINT, closes (waiting for its active jobs) and prints
 * `{ processed }`. With --gate a producer prints "ready" on stderr once connected and listening for
 * events, and starts only when a line arrives on stdin (so the driver can snapshot Redis first).
 *
 * Settings (BullMQ 6.7.0, Redis client: node-redis `redis@6`, since ioredis is not installed; BullMQ
 * 6 ships a node-redis adapter and wraps a node-redis client passed as `connection`):
 * - Jobs are added with `removeOnComplete: true` (BullMQ's advice for queues that do not need
 *   finished jobs: the job hash is deleted in the same script that completes it). Failures are kept
 *   (the default) and any 'failed' event aborts the run with an error.
 * - throughput: `Queue.addBulk` in chunks of --chunk (default 1000) jobs, awaited in turn; completion
 *   is every job's 'completed' event from one `QueueEvents` (the events stream, XREAD BLOCK).
 *   `QueueEvents` starts reading from the stream's last id taken before the first add
 *   (`lastEventId`), so no event can be missed whenever its first XREAD reaches Redis.
 * - latency: sequential `queue.add` + `job.waitUntilFinished(queueEvents)`. Here jobs use
 *   `removeOnComplete: { count: 1000 }`: `waitUntilFinished` checks the job's state once after
 *   subscribing, and a job already completed *and deleted* by then would be reported as a
 *   "Missing key" failure; keeping the last 1000 completed jobs avoids that race.
 * - worker: `new Worker(queue, processor, { concurrency })` with all other defaults (stalled checks
 *   every 30 s, lock renewal, drainDelay 5 s); the processor is a no-op async function, or
 *   `await setTimeout(taskMs)`.
 * - fill: `addBulk` in chunks with the throughput job options, no worker running. The returned
 *   Job objects are held (as a client holds futures) while the process measures its RSS and heap
 *   (after a GC with `node --expose-gc`) against the figures before adding.
 */

import { parseArgs } from "node:util";
import { deadline, gate, intOption, memory, runRole, summarize } from "./_common.mjs";
import { setTimeout as sleep } from "node:timers/promises";
import { performance } from "node:perf_hooks";
import { Queue, QueueEvents, Worker } from "bullmq";
import { createClient } from "redis";

const PREFIX = "bull";

const { positionals, values } = parseArgs({
  allowPositionals: true,
  strict: true,
  options: {
    url: { type: "string", default: "redis://127.0.0.1:6379" },
    queue: { type: "string", default: "bench" },
    concurrency: { type: "string", default: "100" },
    "task-ms": { type: "string", default: "0" },
    payload: { type: "string", default: "0" },
    jobs: { type: "string", default: "20000" },
    chunk: { type: "string", default: "1000" },
    samples: { type: "string", default: "2000" },
    warmup: { type: "string", default: "0" },
    gate: { type: "boolean", default: false },
    "timeout-ms": { type: "string", default: "120000" },
  },
});

const int = (name) => intOption(values, name);
const log = (...args) => console.error(`[bullmq ${positionals[0] ?? "?"}]`, ...args);

function newClient() {
  const client = createClient({ url: values.url });
  client.on("error", (error) => log("redis error:", error.message));
  return client;
}

/** The events stream's last id ("0-0" when empty), so QueueEvents misses nothing after it. */
async function lastEventId(client, queue) {
  if (!client.isOpen) await client.connect();
  const last = await client.sendCommand([
    "XREVRANGE",
    `${PREFIX}:${queue}:events`,
    "+",
    "-",
    "COUNT",
    "1",
  ]);
  return Array.isArray(last) && last.length > 0 ? String(last[0][0]) : "0-0";
}

async function worker() {
  const concurrency = Math.max(1, int("concurrency"));
  const taskMs = int("task-ms");
  const client = newClient();
  let processed = 0;
  const processor = taskMs > 0
    ? async () => {
      processed++;
      await sleep(taskMs);
    }
    // deno-lint-ignore require-await -- an async no-op, as the library's docs write processors
    : async () => {
      processed++;
    };
  const w = new Worker(values.queue, processor, { connection: client, concurrency });
  w.on("error", (error) => log("worker error:", error.message));
  await w.waitUntilReady();
  let stopping;
  const stop = () =>
    stopping ??= (async () => {
      await w.close();
      await client.close().catch(() => client.destroy());
      console.log(JSON.stringify({ processed }));
      process.exit(0);
    })();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  console.error("ready");
}

/** Opens the producer side: a Queue and a QueueEvents that sees every event from now on. */
async function producer() {
  const client = newClient();
  const queue = new Queue(values.queue, { connection: client });
  await queue.waitUntilReady();
  const events = new QueueEvents(values.queue, {
    connection: client,
    lastEventId: await lastEventId(client, values.queue),
  });
  events.on("error", (error) => log("queue events error:", error.message));
  await events.waitUntilReady();
  return {
    queue,
    events,
    async close() {
      await events.close();
      await queue.close();
      await client.close().catch(() => client.destroy());
    },
  };
}

const THROUGHPUT_JOB_OPTS = { removeOnComplete: true };

/**
 * A job's data: `{}`, or with `--payload N` `{ s: <N characters> }` (the no-op processor ignores
 * it), the same string for every job.
 */
function jobData() {
  const n = int("payload");
  return n > 0 ? { s: payloadText ??= "x".repeat(n) } : {};
}
let payloadText;

/** Adds `n` jobs with `addBulk` in chunks, awaited in turn; with `keep`, returns the Jobs. */
async function addJobs(queue, n, opts, keep) {
  const chunk = Math.max(1, int("chunk"));
  const added = [];
  for (let done = 0; done < n;) {
    const size = Math.min(chunk, n - done);
    const batch = new Array(size);
    for (let i = 0; i < size; i++) batch[i] = { name: "noop", data: jobData(), opts };
    const jobs = await queue.addBulk(batch);
    if (keep) added.push(...jobs);
    done += size;
  }
  return added;
}

async function throughput() {
  const jobs = int("jobs");
  const warmup = int("warmup");
  const timeoutMs = int("timeout-ms");
  const { queue, events, close } = await producer();
  let completed = 0;
  let target = 0;
  let onTarget = () => {};
  let onFailure = () => {};
  events.on("completed", () => {
    if (++completed === target) onTarget();
  });
  events.on("failed", ({ jobId, failedReason }) => {
    onFailure(new Error(`job ${jobId} failed: ${failedReason}`));
  });
  /** Adds `n` jobs and resolves when `n` more completion events have arrived. */
  const run = (n, what) => {
    target = completed + n;
    const all = new Promise((resolve, reject) => {
      onTarget = resolve;
      onFailure = reject;
    });
    return deadline(
      Promise.all([addJobs(queue, n, THROUGHPUT_JOB_OPTS), all]),
      timeoutMs,
      `${what} (${completed - (target - n)} of ${n} completed)`,
    );
  };
  if (warmup > 0) await run(warmup, "warm-up");
  await gate(values);
  const cpu = process.cpuUsage();
  const start = performance.now();
  await run(jobs, "throughput run");
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  await close();
  console.log(JSON.stringify({ seconds, jobs, cpuMicros: used.user + used.system }));
}

async function latency() {
  const samples = int("samples");
  const warmup = int("warmup");
  const timeoutMs = int("timeout-ms");
  const { queue, events, close } = await producer();
  await gate(values);
  const times = [];
  for (let i = 0; i < warmup + samples; i++) {
    const start = performance.now();
    const job = await queue.add("noop", {}, { removeOnComplete: { count: 1000 } });
    await job.waitUntilFinished(events, timeoutMs);
    if (i >= warmup) times.push(performance.now() - start);
  }
  await close();
  console.log(JSON.stringify(summarize(times)));
}

/** p50 / p99 / mean of round-trip times in ms (nearest-rank percentiles). */
async function fill() {
  const jobs = int("jobs");
  const client = newClient();
  const queue = new Queue(values.queue, { connection: client });
  await queue.waitUntilReady();
  await gate(values);
  const before = memory();
  // The Job handles are held until measured, as a client holds its futures.
  const added = await addJobs(queue, jobs, THROUGHPUT_JOB_OPTS, true);
  const after = memory();
  const waiting = await queue.getWaitingCount();
  await queue.close();
  await client.close().catch(() => client.destroy());
  if (waiting !== jobs) throw new Error(`expected ${jobs} waiting jobs, found ${waiting}`);
  if (added.length !== jobs) throw new Error(`addBulk returned ${added.length} jobs, not ${jobs}`);
  console.log(JSON.stringify({
    jobs,
    rssBefore: before.rss,
    rssAfter: after.rss,
    heapBefore: before.heap,
    heapAfter: after.heap,
  }));
}

await runRole("bullmq.mjs", { worker, throughput, latency, fill }, positionals, log);
