/**
 * bee-queue peer for the streamfutures benchmark (benchmark-only: bee-queue is a devDependency).
 * Run with Node, bee-queue's native runtime; driven by scripts/_peers.ts.
 *
 *   node scripts/peers/bee_queue.mjs worker     --url U --queue Q [--concurrency 100] [--task-ms 0]
 *   node scripts/peers/bee_queue.mjs throughput --url U --queue Q [--jobs 20000] [--warmup 0]
 *     [--payload 0] [--gate]
 *   node scripts/peers/bee_queue.mjs latency    --url U --queue Q [--samples 2000] [--warmup 200]
 *   node scripts/peers/bee_queue.mjs fill       --url U --queue Q [--jobs 100000]
 *
 * Prints one JSON line of results on stdout (throughput: with `cpuMicros`, the producer's CPU time
 * over the timed part); logs go to stderr. A worker prints "ready" on stderr
 * once it is listening, runs until SIGTERM/SIGINT, closes (waiting for its active jobs) and prints
 * `{ processed }`. With --gate a producer prints "ready" on stderr once connected and subscribed,
 * and starts only when a line arrives on stdin (so the driver can snapshot Redis first).
 *
 * Settings (bee-queue 2.0.0 with its own node_redis 3 client), following its README's advice to
 * turn off what a queue instance does not need:
 * - worker: `isWorker: true, getEvents: false` (a worker needs no events, so no Pub/Sub
 *   connection), `sendEvents: true` (the default: its 'succeeded' messages are the producer's
 *   completion events), `storeJobs: false`, `removeOnSuccess: true` (the job hash entry is removed
 *   in the script that completes it), `activateDelayedJobs: false` (default; no delayed jobs here).
 *   `queue.process(concurrency, async handler)`; no `checkStalledJobs` timer (the README leaves it
 *   to the user; a run lasts seconds).
 * - throughput: `isWorker: false`, `getEvents: true` and `activateDelayedJobs: false` (the
 *   defaults), `storeJobs: false` (completion is counted with the queue-level 'job succeeded'
 *   Pub/Sub event, which needs no Job table). Jobs are `createJob({})` saved with
 *   `queue.saveAll(jobs)` (one pipelined batch) in chunks of --chunk (default 1000), awaited in
 *   turn. Any 'job failed' event aborts the run.
 * - latency: `isWorker: false, getEvents: true, storeJobs: true` (job-level events need the Job
 *   table): `job.save()` then wait for that job's 'succeeded' event. The queue-level
 *   'job succeeded' event for the same id also settles the wait: the save reply and the Pub/Sub
 *   message travel on two connections, and if the message came first the job-level event would
 *   never fire.
 * - fill: `isWorker: false, getEvents: false`, `saveAll` in chunks, no worker running. The Job
 *   objects are held (as a client holds futures) while the process measures its RSS and heap
 *   (after a GC with `node --expose-gc`) against the figures before saving.
 */

import { parseArgs } from "node:util";
import { deadline, gate, intOption, memory, runRole, summarize } from "./_common.mjs";
import { setTimeout as sleep } from "node:timers/promises";
import { performance } from "node:perf_hooks";
import Queue from "bee-queue";

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
const log = (...args) => console.error(`[bee-queue ${positionals[0] ?? "?"}]`, ...args);

/** A connected queue with the given settings. */
async function open(settings) {
  const queue = new Queue(values.queue, { redis: { url: values.url }, ...settings });
  queue.on("error", (error) => log("queue error:", error.message));
  await queue.ready();
  return queue;
}

async function worker() {
  const concurrency = Math.max(1, int("concurrency"));
  const taskMs = int("task-ms");
  const queue = await open({
    isWorker: true,
    getEvents: false,
    sendEvents: true,
    storeJobs: false,
    removeOnSuccess: true,
    activateDelayedJobs: false,
  });
  let processed = 0;
  queue.process(
    concurrency,
    taskMs > 0
      ? async () => {
        processed++;
        await sleep(taskMs);
      }
      // deno-lint-ignore require-await -- an async no-op, as the library's docs write processors
      : async () => {
        processed++;
      },
  );
  let stopping;
  const stop = () =>
    stopping ??= (async () => {
      await queue.close(30_000);
      console.log(JSON.stringify({ processed }));
      process.exit(0);
    })();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  console.error("ready");
}

/**
 * A job's data: `{}`, or with `--payload N` `{ s: <N characters> }` (the no-op processor ignores
 * it), the same string for every job.
 */
function jobData() {
  const n = int("payload");
  return n > 0 ? { s: payloadText ??= "x".repeat(n) } : {};
}
let payloadText;

/** Saves `n` jobs with `saveAll` in chunks, awaited in turn; with `keep`, returns the Jobs. */
async function saveJobs(queue, n, keep) {
  const chunk = Math.max(1, int("chunk"));
  const saved = [];
  for (let done = 0; done < n;) {
    const size = Math.min(chunk, n - done);
    const jobs = new Array(size);
    for (let i = 0; i < size; i++) jobs[i] = queue.createJob(jobData());
    const errors = await queue.saveAll(jobs);
    if (errors.size > 0) {
      const [job, error] = errors.entries().next().value;
      throw new Error(`${errors.size} jobs failed to save (job ${job.id}: ${error.message})`);
    }
    if (keep) saved.push(...jobs);
    done += size;
  }
  return saved;
}

async function throughput() {
  const jobs = int("jobs");
  const warmup = int("warmup");
  const timeoutMs = int("timeout-ms");
  const queue = await open({
    isWorker: false,
    getEvents: true,
    activateDelayedJobs: false,
    storeJobs: false,
  });
  let succeeded = 0;
  let target = 0;
  let onTarget = () => {};
  let onFailure = () => {};
  queue.on("job succeeded", () => {
    if (++succeeded === target) onTarget();
  });
  queue.on("job failed", (jobId, error) => {
    onFailure(new Error(`job ${jobId} failed: ${error.message}`));
  });
  /** Saves `n` jobs and resolves when `n` more 'job succeeded' events have arrived. */
  const run = (n, what) => {
    target = succeeded + n;
    const all = new Promise((resolve, reject) => {
      onTarget = resolve;
      onFailure = reject;
    });
    return deadline(
      Promise.all([saveJobs(queue, n), all]),
      timeoutMs,
      `${what} (${succeeded - (target - n)} of ${n} succeeded)`,
    );
  };
  if (warmup > 0) await run(warmup, "warm-up");
  await gate(values);
  const cpu = process.cpuUsage();
  const start = performance.now();
  await run(jobs, "throughput run");
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  await queue.close();
  console.log(JSON.stringify({ seconds, jobs, cpuMicros: used.user + used.system }));
}

async function latency() {
  const samples = int("samples");
  const warmup = int("warmup");
  const timeoutMs = int("timeout-ms");
  const queue = await open({ isWorker: false, getEvents: true, storeJobs: true });
  /** Ids whose queue-level 'job succeeded' arrived, and the wait (if any) for each. */
  const early = new Set();
  const waits = new Map();
  queue.on("job succeeded", (id) => {
    const wait = waits.get(id);
    if (wait) wait();
    else early.add(id);
  });
  await gate(values);
  const times = [];
  for (let i = 0; i < warmup + samples; i++) {
    const start = performance.now();
    const job = queue.createJob({});
    const succeeded = new Promise((resolve, reject) => {
      job.once("succeeded", resolve);
      job.once("failed", reject);
    });
    await job.save();
    if (early.delete(job.id)) {
      job.removeAllListeners();
    } else {
      await deadline(
        Promise.race([succeeded, new Promise((resolve) => waits.set(job.id, resolve))]),
        timeoutMs,
        `job ${job.id}`,
      );
      waits.delete(job.id);
    }
    if (i >= warmup) times.push(performance.now() - start);
  }
  await queue.close();
  console.log(JSON.stringify(summarize(times)));
}

/** p50 / p99 / mean of round-trip times in ms (nearest-rank percentiles). */
async function fill() {
  const jobs = int("jobs");
  const queue = await open({ isWorker: false, getEvents: false });
  await gate(values);
  const before = memory();
  // The Job handles are held until measured, as a client holds its futures.
  const saved = await saveJobs(queue, jobs, true);
  const after = memory();
  const counts = await queue.checkHealth();
  await queue.close();
  if (counts.waiting !== jobs) {
    throw new Error(`expected ${jobs} waiting jobs, found ${counts.waiting}`);
  }
  if (saved.length !== jobs) throw new Error(`saved ${saved.length} jobs, not ${jobs}`);
  console.log(JSON.stringify({
    jobs,
    rssBefore: before.rss,
    rssAfter: after.rss,
    heapBefore: before.heap,
    heapAfter: after.heap,
  }));
}

await runRole("bee_queue.mjs", { worker, throughput, latency, fill }, positionals, log);
