/**
 * `deno task bench`: streamfutures against BullMQ and bee-queue, side by side, on one private
 * redis-server (issue 6). Every system runs the same way — one producer process, worker processes
 * at concurrency 100, Redis flushed before each run — and the systems take turns within each
 * repetition (the order rotates), so a slow phase of the machine hits them all alike. Medians are
 * reported, with the ratios ours / peer and a PASS / FAIL per target of the issue.
 *
 * Measures:
 * 1. Throughput: `--tasks` tasks (default 20,000) per run, median of `--runs` (default 5); no-op
 *    tasks with 1, 2 and 4 worker processes, 1 ms and 10 ms tasks with one (efficiency = measured
 *    / ideal, ideal = concurrency × workers / task time). Producer: `pool.map` (ours, in a process
 *    of its own: tests/bench/_client.ts), `addBulk` (BullMQ), `saveAll` (bee-queue); wall time from
 *    the first submit until the producer holds every result (peers: every completion event).
 *    Each run starts fresh processes and warms them up with 2,000 tasks first (`--warmup N`:
 *    N instead, for every system; a warm-up as large as the timed run measures processes whose
 *    JIT and heap have seen a run of that size, nearer a long-running worker and client).
 *    And long arguments: 2,000 no-op tasks whose one argument (peers: job data) is a string of
 *    100,000 characters, with 200 to warm up, Redis' and every process's CPU per task.
 * 2. Redis cost per task over the no-op, 1-worker runs: CPU (INFO cpu) and commands (INFO
 *    commandstats, commands inside Lua included), by command too; and the CPU time of the producer
 *    and worker processes per task.
 * 3. Round-trip latency: 2,000 sequential `await pool.submit(noop, [])` after 200 (peers: add +
 *    wait for completion), one worker process at concurrency 1 for every system; p50 / p99, each
 *    the median over the runs (`--runs`, the systems taking turns, fresh processes each run: one
 *    run of each swings by half from one minute to the next on this VM). Then,
 *    in the same phase of the machine, the floor of such a round trip with no queue at all: a
 *    `PING` round trip, and a ping-pong with another process through two streams, each side
 *    blocked in `XREAD` (scripts/_echo.ts): the two wakes any design pays whose producer and worker
 *    processes meet only through Redis.
 * 4. Memory: Redis `used_memory` per pending task (100,000 tasks, no worker), the producer's RSS
 *    and heap growth while it holds the futures (peers: the Job objects), and for ours whether
 *    Redis is back to its baseline once a worker has run the tasks and the pool has closed.
 * 5. The no-op and 10 ms, 1-worker throughput runs with our client and worker under Node too (the
 *    npm build, made by scripts/build_npm.ts into a private temp copy, so the project's npm/ is
 *    untouched).
 * 6. Ours only (the peers have no such settings): the no-op and 10 ms runs again with our worker's
 *    `--prefetch` (100 and 25), and with `--executor-mode inline` (tasks on the worker's own
 *    thread: no-op, 100 KB argument, and 10 ms with `--prefetch 100`), under Deno and Node; the
 *    latency with `--executor-mode inline` too (Deno). Their ratios compare with the peers' runs
 *    of the same tasks; a target is met when one of ours meets it, the table saying which.
 *
 *   deno task bench [--runs 5] [--tasks 20000] [--warmup 2000] [--quick]
 *     [--only ours|bullmq|bee-queue]...
 *     [--skip-node] [--json] [--out results.json]
 *
 * Every wait has a deadline; child processes are killed when a measure fails (or on Ctrl-C), and
 * the redis-server is stopped at the end. A failed measure is reported (exit code 1) without
 * throwing away the others.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import { connect, type RedisConnection } from "../lib/_redis.ts";
import { parseStreamReply } from "../lib/_stream.ts";
import { RedisNotInstalledError, type RedisServer, startRedisServer } from "./_redis_server.ts";
import {
  BenchProcess,
  type ClientMemory,
  DEFAULT_TIMEOUT_MS,
  measureThroughput,
  NODE,
  nodeVersion,
  PEER_SYSTEMS,
  peerLatency,
  peerMemory,
  type PeerSystem,
  peerThroughput,
  peerVersion,
  redisInfo,
  type Throughput,
  usedMemory,
} from "./_peers.ts";

// ---------------------------------------------------------------------------------------------
// Settings

/** A system of the benchmark: ours under Deno or Node, or a peer. */
type System = "ours" | "ours-node" | PeerSystem;

/** Every system, in the order of the table's columns. */
const SYSTEMS: readonly System[] = ["ours", "ours-node", ...PEER_SYSTEMS];

const NAMES: Readonly<Record<System, string>> = {
  "ours": "ours (Deno)",
  "ours-node": "ours (Node)",
  "bullmq": "BullMQ",
  "bee-queue": "bee-queue",
};

/** The `--only` names. */
const SELECTABLE = ["ours", "bullmq", "bee-queue"] as const;

const CONCURRENCY = 100;
const WARMUP_TASKS = 2000;
const LATENCY_SAMPLES = 2000;
const LATENCY_WARMUP = 200;
/** Every system's latency worker runs at this concurrency (the peers' driver's default). */
const LATENCY_CONCURRENCY = 1;
const MEMORY_TASKS = 100_000;
const QUICK_MEMORY_TASKS = 20_000;
const APP = "bench";
const TIMEOUT_MS = DEFAULT_TIMEOUT_MS;
/** The npm build of a private copy of the project. */
const BUILD_TIMEOUT_MS = 300_000;
const WORKER_READY = "streamfutures-worker: ready";

/** The targets of issue 6. */
const TARGET = {
  vsBeeQueue: 3,
  vsBullmq: 4,
  redisCpuUs: 15,
  redisCalls: 6,
  p50Ms: 0.3,
  p99Ms: 1,
  bytesPerPendingTask: 300,
  /** "No growth after tasks are released": Redis memory left per released task, bytes. */
  residueBytesPerTask: 1,
  efficiency10ms: 0.9,
} as const;

const ROOT = fromFileUrl(new URL("../", import.meta.url));
const OURS_DENO = {
  worker: fromFileUrl(new URL("../worker.ts", import.meta.url)),
  client: fromFileUrl(new URL("../tests/bench/_client.ts", import.meta.url)),
  tasks: fromFileUrl(new URL("../examples/tasks.ts", import.meta.url)),
};

/** One throughput setting, run for each of its systems. */
interface Variant {
  id: string;
  label: string;
  taskMs: number;
  workers: number;
  systems: readonly System[];
  /** Our workers' `--prefetch` (ours only). */
  prefetch?: number;
  /** Our workers' `--executor-mode` (ours only; default: the runtime's). */
  executorMode?: "inline";
  /** The producer's `map` chunksize (ours only; default 1: every call a task of its own). */
  chunksize?: number;
  /** For a setting of ours only: the setting whose peers' runs its ratios compare with. */
  peersOf?: string;
  /** Each task's argument (job data for the peers) holds a string of this many characters. */
  payload?: number;
  /** Tasks of each run and of its warm-up, instead of `--tasks` and `--warmup`. */
  tasks?: number;
  warmup?: number;
}

/** The argument size of the long-arguments setting, and its tasks per run. */
const PAYLOAD = 100_000;
const PAYLOAD_TASKS = 2_000;

/** The `--prefetch` of our workers in the prefetch settings: 10 ms tasks, no-op tasks. */
const PREFETCH = 25;
const PREFETCH_NOOP = 100;
/**
 * The `--prefetch` of our inline workers' 10 ms setting: with no hop to an executor, a freed slot
 * starts a prefetched task at once, and 100 did better than 25 in probes (docs/performance.md).
 */
const PREFETCH_INLINE = 100;
/** Our worker's flag for the inline settings. */
const INLINE = "--executor-mode inline";
/**
 * `map`'s chunksize in the chunk settings: no-op calls, and 10 ms calls (chunks of 50 sleeps that
 * run one after the other: 400 chunks of 20,000 calls, four to each of the 100 slots; chunks of 10
 * and 25 did worse in probes, docs/performance.md).
 */
const CHUNKS_NOOP = 100;
/** Calls per run of the no-op chunk setting: 20,000 take it a fraction of a second. */
const CHUNK_TASKS = 100_000;
const CHUNKS_10MS = 50;

const VARIANTS: readonly Variant[] = [
  { id: "noop-1", label: "no-op tasks, 1 worker process", taskMs: 0, workers: 1, systems: SYSTEMS },
  { id: "noop-2", label: "no-op tasks, 2 worker processes", taskMs: 0, workers: 2, systems: [] },
  { id: "noop-4", label: "no-op tasks, 4 worker processes", taskMs: 0, workers: 4, systems: [] },
  { id: "1ms-1", label: "1 ms tasks, 1 worker process", taskMs: 1, workers: 1, systems: [] },
  {
    id: "10ms-1",
    label: "10 ms tasks, 1 worker process",
    taskMs: 10,
    workers: 1,
    systems: SYSTEMS,
  },
  {
    id: "payload-1",
    label: "no-op tasks with a 100 KB argument, 1 worker process",
    taskMs: 0,
    workers: 1,
    systems: SYSTEMS,
    payload: PAYLOAD,
    tasks: PAYLOAD_TASKS,
    warmup: PAYLOAD_TASKS / 10,
  },
  {
    id: "noop-1-prefetch",
    peersOf: "noop-1",
    label: `no-op tasks, 1 worker process, --prefetch ${PREFETCH_NOOP}`,
    taskMs: 0,
    workers: 1,
    systems: ["ours", "ours-node"] as System[],
    prefetch: PREFETCH_NOOP,
  },
  {
    id: "10ms-1-prefetch",
    peersOf: "10ms-1",
    label: `10 ms tasks, 1 worker process, --prefetch ${PREFETCH}`,
    taskMs: 10,
    workers: 1,
    systems: ["ours", "ours-node"] as System[],
    prefetch: PREFETCH,
  },
  {
    id: "noop-1-inline",
    peersOf: "noop-1",
    label: `no-op tasks, 1 worker process, ${INLINE}`,
    taskMs: 0,
    workers: 1,
    systems: ["ours", "ours-node"] as System[],
    executorMode: "inline" as const,
  },
  {
    id: "10ms-1-inline-prefetch",
    peersOf: "10ms-1",
    label: `10 ms tasks, 1 worker process, ${INLINE} --prefetch ${PREFETCH_INLINE}`,
    taskMs: 10,
    workers: 1,
    systems: ["ours", "ours-node"] as System[],
    prefetch: PREFETCH_INLINE,
    executorMode: "inline" as const,
  },
  {
    id: "payload-1-inline",
    peersOf: "payload-1",
    label: `no-op tasks with a 100 KB argument, 1 worker process, ${INLINE}`,
    taskMs: 0,
    workers: 1,
    systems: ["ours", "ours-node"] as System[],
    payload: PAYLOAD,
    tasks: PAYLOAD_TASKS,
    warmup: PAYLOAD_TASKS / 10,
    executorMode: "inline" as const,
  },
  {
    id: "noop-1-chunks",
    peersOf: "noop-1",
    label: `no-op tasks, 1 worker process, map chunksize ${CHUNKS_NOOP} (${
      int(CHUNK_TASKS)
    } calls a run)`,
    taskMs: 0,
    workers: 1,
    systems: ["ours", "ours-node"] as System[],
    chunksize: CHUNKS_NOOP,
    tasks: CHUNK_TASKS,
    warmup: CHUNK_TASKS / 10,
  },
  {
    id: "10ms-1-chunks",
    peersOf: "10ms-1",
    label: `10 ms tasks, 1 worker process, map chunksize ${CHUNKS_10MS}`,
    taskMs: 10,
    workers: 1,
    systems: ["ours", "ours-node"] as System[],
    chunksize: CHUNKS_10MS,
  },
].map((v) => ({
  ...v,
  systems: v.systems.length ? v.systems : SYSTEMS.filter((s) => s !== "ours-node"),
}));

const QUICK_VARIANTS = new Set([
  "noop-1",
  "10ms-1",
  "10ms-1-prefetch",
  "noop-1-chunks",
  "10ms-1-chunks",
]);
const HEADLINE = "noop-1";

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE = `usage: deno task bench [options]
       deno run -A scripts/bench.ts [options]

  --runs N        throughput runs per system and setting; the median is reported (default 5;
                  1 with --quick)
  --tasks N       tasks per throughput run (default 20000)
  --warmup N      warm-up tasks before each throughput run, every system (default 2000, or
                  --tasks if smaller)
  --quick         one run, fewer settings (no-op and 10 ms tasks on 1 worker process), 20,000
                  pending tasks for the memory measure: a quick check
  --only SYSTEM   ours, bullmq or bee-queue (repeatable, or comma-separated; default: all)
  --skip-node     do not build and run ours under Node
  --json          print one JSON object instead of markdown (progress still goes to stderr)
  --out FILE      also write the JSON object to FILE
  -h, --help      show this help`;

interface Params {
  runs: number;
  tasks: number;
  /** Warm-up tasks per throughput run, before the timed part. */
  warmup: number;
  quick: boolean;
  systems: System[];
  json: boolean;
  out?: string;
}

function parseParams(args: readonly string[]): Params | "help" {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: false,
    options: {
      runs: { type: "string" },
      tasks: { type: "string", default: "20000" },
      warmup: { type: "string" },
      quick: { type: "boolean", default: false },
      only: { type: "string", multiple: true },
      "skip-node": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      out: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  const int = (name: string, text: string): number => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) {
      throw new TypeError(`--${name} must be a positive integer, got ${JSON.stringify(text)}`);
    }
    return n;
  };
  const only = new Set<string>();
  for (const item of values.only ?? []) {
    for (const name of item.split(",").map((s) => s.trim()).filter(Boolean)) {
      if (!(SELECTABLE as readonly string[]).includes(name)) {
        throw new TypeError(`--only takes ${SELECTABLE.join(", ")}; got ${JSON.stringify(name)}`);
      }
      only.add(name);
    }
  }
  const chosen = (s: System) => only.size === 0 || only.has(s === "ours-node" ? "ours" : s);
  const systems = SYSTEMS.filter((s) => chosen(s) && !(s === "ours-node" && values["skip-node"]));
  const tasks = int("tasks", values.tasks);
  if (values.warmup !== undefined && !/^\d+$/.test(values.warmup)) {
    throw new TypeError(
      `--warmup must be a whole number of tasks (0 or more), got ${JSON.stringify(values.warmup)}`,
    );
  }
  return {
    runs: int("runs", values.runs ?? (values.quick ? "1" : "5")),
    tasks,
    warmup: values.warmup !== undefined ? Number(values.warmup) : Math.min(WARMUP_TASKS, tasks),
    quick: values.quick,
    systems,
    json: values.json,
    out: values.out,
  };
}

// ---------------------------------------------------------------------------------------------
// Our system's processes

type Runtime = "deno" | "node";

/** Paths of our worker, client and task module in the npm build. */
interface NpmBuild {
  dir: string;
  worker: string;
  client: string;
  tasks: string;
}

/** Starts our worker process (`worker.ts` / `npm/worker.js`) or bench client. */
function startOurs(
  runtime: Runtime,
  npm: NpmBuild | undefined,
  kind: "worker" | "client",
  args: readonly string[],
  { gate = false, exposeGc = false } = {},
): BenchProcess {
  const what = kind === "worker" ? "worker" : `client ${args[0]}`;
  if (runtime === "deno") {
    return BenchProcess.spawn(Deno.execPath(), [
      "run",
      "-A",
      ...(exposeGc ? ["--v8-flags=--expose-gc"] : []),
      OURS_DENO[kind],
      ...args,
    ], { gate, cwd: ROOT, what: `streamfutures ${what} (Deno)` });
  }
  if (!npm) throw new Error("the npm build of streamfutures is missing");
  return BenchProcess.spawn(NODE, [...(exposeGc ? ["--expose-gc"] : []), npm[kind], ...args], {
    gate,
    cwd: ROOT,
    what: `streamfutures ${what} (Node)`,
  });
}

function workerArgs(runtime: Runtime, npm: NpmBuild | undefined, url: string, concurrency: number) {
  return [
    "--tasks",
    runtime === "deno" ? OURS_DENO.tasks : npm!.tasks,
    "--url",
    url,
    "--app",
    APP,
    "--concurrency",
    String(concurrency),
  ];
}

/** The tasks a stopped worker says it ran (`total_tasks=` of its last summary line), if it does. */
function tasksRun(worker: BenchProcess): number | undefined {
  const all = [...worker.stderr.matchAll(/\btotal_tasks=(\d+)/g)];
  return all.length ? Number(all[all.length - 1][1]) : undefined;
}

/** One throughput run of ours (see {@link measureThroughput}). */
function oursThroughput(
  runtime: Runtime,
  npm: NpmBuild | undefined,
  url: string,
  variant: Variant,
  jobs: number,
  warmup: number,
): Promise<Throughput> {
  return measureThroughput({
    name: `streamfutures (${runtime})`,
    url,
    jobs,
    warmup,
    workers: variant.workers,
    timeoutMs: TIMEOUT_MS,
    workerReady: WORKER_READY,
    startWorker: () =>
      startOurs(runtime, npm, "worker", [
        ...workerArgs(runtime, npm, url, CONCURRENCY),
        ...(variant.prefetch ? ["--prefetch", String(variant.prefetch)] : []),
        ...(variant.executorMode ? ["--executor-mode", variant.executorMode] : []),
      ]),
    startProducer: () =>
      startOurs(runtime, npm, "client", [
        "throughput",
        "--url",
        url,
        "--app",
        APP,
        "--jobs",
        String(jobs),
        "--warmup",
        String(warmup),
        "--task-ms",
        String(variant.taskMs),
        ...(variant.payload ? ["--payload", String(variant.payload)] : []),
        ...(variant.chunksize ? ["--chunksize", String(variant.chunksize)] : []),
        "--timeout-ms",
        String(TIMEOUT_MS),
        "--gate",
      ], { gate: true }),
    stopWorker: async (worker, timeoutMs) => {
      await worker.terminate(timeoutMs);
      const run = tasksRun(worker);
      // In chunks, the worker counts chunk tasks: as many as the chunks of both maps is all of
      // the calls (the client checks every call's value).
      const size = variant.chunksize ?? 1;
      const chunks = Math.ceil(jobs / size) + Math.ceil(warmup / size);
      return size > 1 && run === chunks ? jobs + warmup : run;
    },
  });
}

/** Round-trip latency, ms. */
interface Latency {
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs?: number;
  /** Each run's figures, when there were several (the others are their medians, max the max). */
  runs?: Latency[];
}

/** The medians of several runs' latencies (max: the largest), keeping the runs. */
function latencyOfRuns(runs: Latency[]): Latency {
  return {
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    meanMs: median(runs.map((r) => r.meanMs)),
    maxMs: Math.max(...runs.map((r) => r.maxMs ?? 0)),
    runs,
  };
}

/**
 * Sequential round trips of ours (Deno), with one worker process at {@link LATENCY_CONCURRENCY}
 * (with `inline`: `--executor-mode inline`).
 */
async function oursLatency(url: string, inline = false): Promise<Latency> {
  const redis = await connect(url, "streamfutures-bench-driver");
  const children: BenchProcess[] = [];
  try {
    await redis.sendCommand(["FLUSHDB"]);
    const worker = startOurs("deno", undefined, "worker", [
      ...workerArgs("deno", undefined, url, LATENCY_CONCURRENCY),
      ...(inline ? ["--executor-mode", "inline"] : []),
    ]);
    children.push(worker);
    await worker.waitFor(WORKER_READY, TIMEOUT_MS);
    const client = startOurs("deno", undefined, "client", [
      "latency",
      "--url",
      url,
      "--app",
      APP,
      "--samples",
      String(LATENCY_SAMPLES),
      "--warmup",
      String(LATENCY_WARMUP),
      "--timeout-ms",
      String(TIMEOUT_MS),
    ]);
    children.push(client);
    const result = await Promise.race([
      client.result<Latency & { samples: number }>(TIMEOUT_MS),
      worker.exitedEarly(),
    ]);
    await worker.terminate(TIMEOUT_MS);
    const ran = tasksRun(worker);
    if (
      result.samples !== LATENCY_SAMPLES ||
      (ran !== undefined && ran !== result.samples + LATENCY_WARMUP)
    ) {
      throw new Error(
        `streamfutures latency: ${result.samples} samples and ${ran} tasks run, expected ` +
          `${LATENCY_SAMPLES} and ${LATENCY_SAMPLES + LATENCY_WARMUP}`,
      );
    }
    return { p50Ms: result.p50Ms, p99Ms: result.p99Ms, meanMs: result.meanMs, maxMs: result.maxMs };
  } finally {
    await killAllOf(children);
    redis.close();
  }
}

/**
 * What a round trip through Redis costs on this machine in this run, with no queue at all
 * (medians, ms).
 */
interface Floor {
  /** A `PING` round trip from node-redis (Deno): what one call answered by Redis costs. */
  pingMs: number;
  /**
   * One round of a ping-pong with another process through two streams, each side blocked in
   * `XREAD` (scripts/_echo.ts): the two wakes of any design whose producer and worker processes
   * meet only through Redis.
   */
  wakesMs: number;
  /** The 99th percentile of those rounds (nearest rank). */
  wakesP99Ms: number;
}

const ECHO = fromFileUrl(new URL("./_echo.ts", import.meta.url));

/** Measures the {@link Floor}: `LATENCY_SAMPLES` of each after `LATENCY_WARMUP`. */
async function latencyFloor(url: string): Promise<Floor> {
  const prefix = "bench-floor";
  const writer = await connect(url, "streamfutures-bench-floor");
  const reader = await connect(url, "streamfutures-bench-floor-reader");
  let echo: BenchProcess | undefined;
  try {
    await writer.sendCommand(["DEL", `${prefix}:ping`, `${prefix}:pong`]);
    const pings: number[] = [];
    for (let i = 0; i < LATENCY_WARMUP + LATENCY_SAMPLES; i++) {
      const t0 = performance.now();
      await writer.sendCommand(["PING"]);
      if (i >= LATENCY_WARMUP) pings.push(performance.now() - t0);
    }
    echo = BenchProcess.spawn(Deno.execPath(), ["run", "-A", ECHO, url, prefix], {
      cwd: ROOT,
      what: "round-trip floor echo (Deno)",
    });
    await echo.waitFor("ready", TIMEOUT_MS);
    const rounds: number[] = [];
    let last = "0-0";
    for (let i = 0; i < LATENCY_WARMUP + LATENCY_SAMPLES; i++) {
      // The read is sent first, so it is blocked when the answer comes.
      const read = reader.sendCommand(
        ["XREAD", "COUNT", "1", "BLOCK", "5000", "STREAMS", `${prefix}:pong`, last],
      );
      const t0 = performance.now();
      const sent = writer.sendCommand(["XADD", `${prefix}:ping`, "*", "n", String(i)]);
      // Should the echo fail, these are left behind: their rejections are not unhandled ones.
      read.catch(() => {});
      sent.catch(() => {});
      const entries = parseStreamReply(await Promise.race([read, echo.exitedEarly()]));
      const t1 = performance.now();
      await sent;
      if (entries.length !== 1 || entries[0].fields.n !== String(i)) {
        throw new Error(`round-trip floor: round ${i} read ${JSON.stringify(entries)}`);
      }
      last = entries[0].id;
      if (i >= LATENCY_WARMUP) rounds.push(t1 - t0);
    }
    await writer.sendCommand(["XADD", `${prefix}:ping`, "*", "n", "stop"]);
    await echo.exit(TIMEOUT_MS);
    await writer.sendCommand(["DEL", `${prefix}:ping`, `${prefix}:pong`]);
    const sorted = [...rounds].sort((a, b) => a - b);
    const wakesP99Ms = sorted[Math.max(0, Math.ceil(0.99 * sorted.length) - 1)];
    return { pingMs: median(pings), wakesMs: median(rounds), wakesP99Ms };
  } finally {
    await echo?.kill();
    writer.close();
    reader.close();
  }
}

/** Memory measures of one system (bytes). */
interface Memory {
  /** Pending tasks measured. */
  tasks: number;
  /** Redis used_memory with the tasks pending minus before adding them, per task. */
  bytesPerJob: number;
  /** The producer's RSS growth while it holds every task's future / Job, per task. */
  clientRssBytesPerJob?: number;
  /** The same for its V8 heap in use. */
  clientHeapBytesPerJob?: number;
  /**
   * Ours: used_memory once the tasks ran and the pool closed, with the worker still up, minus
   * used_memory with a worker up before any task (the idle reference).
   */
  residueBytes?: number;
  /** Ours: the keys left then (the worker's own: queue stream and group, registry, locks). */
  residueKeys?: string[];
  /** Ours: used_memory with the worker stopped too, minus before the fill (no worker). */
  residueBytesWorkerStopped?: number;
}

async function dbKeys(redis: RedisConnection): Promise<string[]> {
  const keys = (await redis.sendCommand(["KEYS", "*"])) as string[];
  return keys.map(String).sort();
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * used_memory once lazily freed objects (UNLINK) are gone and Redis' client cron has had time to
 * shrink the connections' buffers; with `scripts: false`, less the script cache
 * (used_memory_scripts: the Lua scripts and function libraries loaded, which stay until SCRIPT
 * FLUSH / FUNCTION FLUSH).
 */
async function settledMemory(redis: RedisConnection, { scripts = true } = {}): Promise<number> {
  await sleep(SETTLE_MS);
  const until = Date.now() + 10_000;
  for (;;) {
    const memory = await redisInfo(redis, "memory");
    if (Number(memory.get("lazyfree_pending_objects") ?? 0) === 0 || Date.now() > until) {
      return usedMemory(memory) - (scripts ? 0 : Number(memory.get("used_memory_scripts") ?? 0));
    }
    await sleep(50);
  }
}

/** How long {@link settledMemory} lets Redis settle first, ms. */
const SETTLE_MS = 1000;

/**
 * Memory of ours (Deno), after FLUSHDB:
 * 1. idle reference: a worker process starts (creating the queue's stream and group), runs idle
 *    for a while — used_memory *idle* — and stops: used_memory *base*;
 * 2. the client `map`s `tasks` no-op tasks with no worker (`requireWorkers: false`) and reports
 *    its RSS and heap growth while holding the futures; used_memory *pending*: the Redis memory
 *    per pending task is (pending − base) / tasks;
 * 3. a worker runs them; the client waits for every result and shuts the pool down; used_memory
 *    *released* (worker still up): no growth means released ≈ idle; then with the worker stopped
 *    too, against base. These two compare used_memory less the script cache (the client's
 *    scripts, loaded after the idle reference, stay in it until SCRIPT / FUNCTION FLUSH).
 */
async function oursMemory(url: string, tasks: number): Promise<Memory> {
  const redis = await connect(url, "streamfutures-bench-driver");
  const children: BenchProcess[] = [];
  const startWorker = async () => {
    const worker = startOurs("deno", undefined, "worker", [
      ...workerArgs("deno", undefined, url, CONCURRENCY),
    ]);
    children.push(worker);
    await worker.waitFor(WORKER_READY, TIMEOUT_MS);
    return worker;
  };
  try {
    await redis.sendCommand(["FLUSHDB"]);
    const idleWorker = await startWorker();
    const idle = await settledMemory(redis, { scripts: false });
    await idleWorker.terminate(TIMEOUT_MS);
    const base = await settledMemory(redis);
    const baseNoScripts = await settledMemory(redis, { scripts: false });

    const client = startOurs("deno", undefined, "client", [
      "fill",
      "--url",
      url,
      "--app",
      APP,
      "--jobs",
      String(tasks),
      "--timeout-ms",
      String(TIMEOUT_MS),
    ], { gate: true, exposeGc: true });
    children.push(client);
    await client.waitFor("filled", TIMEOUT_MS);
    const pending = await settledMemory(redis);

    const worker = await Promise.race([startWorker(), client.exitedEarly()]);
    await client.go();
    const result = await Promise.race([
      client.result<ClientMemory & { jobs: number }>(TIMEOUT_MS),
      worker.exitedEarly(),
    ]);
    if (result.jobs !== tasks) {
      throw new Error(`streamfutures fill: unexpected result ${JSON.stringify(result)}`);
    }
    const released = await settledMemory(redis, { scripts: false });
    const residueKeys = await dbKeys(redis);
    await worker.terminate(TIMEOUT_MS);
    const stopped = await settledMemory(redis, { scripts: false });
    return {
      tasks,
      bytesPerJob: (pending - base) / tasks,
      clientRssBytesPerJob: (result.rssAfter! - result.rssBefore!) / tasks,
      clientHeapBytesPerJob: (result.heapAfter! - result.heapBefore!) / tasks,
      residueBytes: released - idle,
      residueKeys,
      residueBytesWorkerStopped: stopped - baseNoScripts,
    };
  } finally {
    await killAllOf(children);
    redis.close();
  }
}

async function killAllOf(children: readonly BenchProcess[]): Promise<void> {
  const results = await Promise.allSettled(children.map((c) => c.kill()));
  for (const r of results) {
    if (r.status === "rejected") console.error("bench: could not kill a child:", r.reason);
  }
}

/**
 * Builds the npm package from a private copy of the project (so the project's npm/ is neither
 * replaced under someone else's feet nor stale): the sources (of tests/, only tests/bench/) are
 * copied to a temp dir with node_modules linked, and scripts/build_npm.ts --no-test runs there.
 */
async function buildNpm(tmp: string): Promise<NpmBuild> {
  const root = join(tmp, "project");
  for (
    const name of [
      "mod.ts",
      "worker.ts",
      "deno.json",
      "package.json",
      "README.md",
      "LICENSE",
      "lib",
      "examples",
      // Only the benchmark client of tests/: the build type-checks every file it is given.
      "tests/bench",
    ]
  ) {
    await cp(join(ROOT, name), join(root, name), { recursive: true });
  }
  await Deno.symlink(join(ROOT, "node_modules"), join(root, "node_modules"));
  const build = BenchProcess.spawn(Deno.execPath(), [
    "run",
    "-A",
    fromFileUrl(new URL("./build_npm.ts", import.meta.url)),
    "--root",
    root,
    "--no-test",
  ], { what: "npm build" });
  try {
    await build.exit(BUILD_TIMEOUT_MS);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${build.stdout.slice(-2000)}`, { cause: error });
  } finally {
    await build.kill();
  }
  const dir = join(root, "npm");
  return {
    dir,
    worker: join(dir, "worker.js"),
    client: join(dir, "tests", "bench", "_client.js"),
    tasks: join(dir, "examples", "tasks.js"),
  };
}

// ---------------------------------------------------------------------------------------------
// The run

/** The runs (or failures) of one system in one setting. */
interface SystemRuns {
  runs: Throughput[];
  errors: string[];
}

/** A measure that failed. */
interface Failed {
  error: string;
}

/** Everything measured (the `--json` output). */
interface Results {
  env: {
    deno: string;
    node: string;
    redis: string;
    bullmq?: string;
    beeQueue?: string;
    os: string;
    cpus: number;
    date: string;
    seconds: number;
  };
  params: {
    runs: number;
    tasks: number;
    quick: boolean;
    concurrency: number;
    warmup: number;
    latencySamples: number;
    latencyWarmup: number;
    latencyConcurrency: number;
    memoryTasks: number;
    systems: System[];
  };
  /** Runs by setting id, then system. */
  throughput: Record<string, Partial<Record<System, SystemRuns>>>;
  latency: Partial<Record<System, Latency | Failed>>;
  /** Ours (Deno) with `--executor-mode inline`, taking turns with the others. */
  latencyInline?: Latency | Failed;
  /** Measured right after the latencies, in the same phase of the machine. */
  floor?: Floor | Failed;
  memory: Partial<Record<System, Memory | Failed>>;
  /** The npm build's failure, when it failed (ours under Node is then left out). */
  npmBuildError?: string;
  summary: Summary;
  failures: string[];
}

/**
 * The first line of a failure, with the telling line of the quoted stderr when there is one
 * (the first that reads like an error, else the last).
 */
function brief(failure: string): string {
  const [head, ...rest] = failure.split("\n");
  const lines = rest.map((l) => l.trim()).filter(Boolean);
  const telling = lines.find((l) => /error|cannot|failed|refused|timed out/i.test(l)) ??
    lines[lines.length - 1];
  const text = telling ? `${head} ${telling}` : head;
  return text.length > 400 ? `${text.slice(0, 400)}…` : text;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isFailed<T extends object>(x: T | Failed | undefined): x is Failed {
  return x !== undefined && "error" in x;
}

async function bench(params: Params, server: RedisServer, tmp: string): Promise<Results> {
  const started = performance.now();
  const log = (line: string) => {
    const t = ((performance.now() - started) / 1000).toFixed(0).padStart(4);
    console.error(`[bench ${t}s] ${line}`);
  };
  const failures: string[] = [];
  const has = (s: System) => params.systems.includes(s);
  const conn = await connect(server.url, "streamfutures-bench-info");
  let redisVersion: string;
  try {
    redisVersion = (await redisInfo(conn, "server")).get("redis_version") ?? "?";
  } finally {
    conn.close();
  }
  const needsNode = params.systems.some((s) => s !== "ours");
  const node = needsNode ? await nodeVersion() : null;
  if (needsNode && node === null) {
    throw new Error(`"${NODE}" (Node.js) cannot be run: install Node 20+ or set NODE to its path`);
  }

  let npm: NpmBuild | undefined;
  let npmBuildError: string | undefined;
  let systems = params.systems;
  if (has("ours-node")) {
    log("building the npm package (private copy) for ours under Node");
    try {
      npm = await buildNpm(tmp);
    } catch (error) {
      npmBuildError = errorText(error);
      failures.push(`npm build: ${npmBuildError}`);
      log(`npm build failed; ours under Node is left out:\n${npmBuildError}`);
      systems = systems.filter((s) => s !== "ours-node");
    }
  }

  const variants = VARIANTS.filter((v) => !params.quick || QUICK_VARIANTS.has(v.id));
  const throughput: Results["throughput"] = {};
  for (const variant of variants) {
    const inVariant = variant.systems.filter((s) => systems.includes(s));
    const byRun: Partial<Record<System, SystemRuns>> = {};
    for (const s of inVariant) byRun[s] = { runs: [], errors: [] };
    throughput[variant.id] = byRun;
    for (let rep = 0; rep < params.runs; rep++) {
      // The order rotates from one repetition to the next.
      const order = inVariant.map((_, i) => inVariant[(i + rep) % inVariant.length]);
      for (const system of order) {
        const what = `${variant.label}, ${NAMES[system]}, run ${rep + 1}/${params.runs}`;
        try {
          const r = system === "ours" || system === "ours-node"
            ? await oursThroughput(
              system === "ours" ? "deno" : "node",
              npm,
              server.url,
              variant,
              variant.tasks ?? params.tasks,
              variant.warmup ?? params.warmup,
            )
            : await peerThroughput(system, {
              url: server.url,
              jobs: variant.tasks ?? params.tasks,
              workers: variant.workers,
              concurrency: CONCURRENCY,
              taskMs: variant.taskMs,
              payload: variant.payload,
              warmup: variant.warmup ?? params.warmup,
              timeoutMs: TIMEOUT_MS,
            });
          byRun[system]!.runs.push(r);
          log(
            `${what}: ${int(r.jobsPerSec)} tasks/s; per task: Redis ${
              r.redisCpuUsPerJob.toFixed(1)
            } µs CPU, ${r.redisCallsPerJob.toFixed(2)} commands; producer ${
              fixed(r.producerCpuUsPerJob, 1)
            } µs, workers ${fixed(r.workerCpuUsPerJob, 1)} µs CPU`,
          );
        } catch (error) {
          byRun[system]!.errors.push(errorText(error));
          failures.push(`${what}: ${errorText(error)}`);
          log(`${what} FAILED: ${errorText(error)}`);
        }
      }
    }
  }

  const latency: Results["latency"] = {};
  const latencySystems = systems.filter((s) => s !== "ours-node");
  // Ours with inline executors takes its turn too.
  type LatencyItem = (typeof latencySystems)[number] | "ours-inline";
  const latencyItems: LatencyItem[] = [
    ...latencySystems,
    ...(latencySystems.includes("ours") ? ["ours-inline" as const] : []),
  ];
  const latencyName = (s: LatencyItem) => s === "ours-inline" ? `ours (Deno), ${INLINE}` : NAMES[s];
  const latencyRuns = new Map<LatencyItem, Latency[]>(latencyItems.map((s) => [s, []]));
  const latencyErrors = new Map<LatencyItem, string>();
  for (let rep = 0; rep < params.runs; rep++) {
    const order = latencyItems.map((_, i) => latencyItems[(i + rep) % latencyItems.length]);
    for (const system of order) {
      const what = `latency, ${latencyName(system)}, run ${rep + 1}/${params.runs}`;
      try {
        const l = system === "ours" || system === "ours-inline"
          ? await oursLatency(server.url, system === "ours-inline")
          : await peerLatency(system, {
            url: server.url,
            samples: LATENCY_SAMPLES,
            warmup: LATENCY_WARMUP,
            concurrency: LATENCY_CONCURRENCY,
            timeoutMs: TIMEOUT_MS,
          });
        latencyRuns.get(system)!.push(l);
        log(`${what}: p50 ${l.p50Ms.toFixed(3)} ms, p99 ${l.p99Ms.toFixed(3)} ms`);
      } catch (error) {
        latencyErrors.set(system, errorText(error));
        failures.push(`${what}: ${errorText(error)}`);
        log(`${what} FAILED: ${errorText(error)}`);
      }
    }
  }
  const latencyOf = (system: LatencyItem): Latency | Failed => {
    const runs = latencyRuns.get(system)!;
    return runs.length > 0
      ? (runs.length === 1 ? runs[0] : latencyOfRuns(runs))
      : { error: latencyErrors.get(system) ?? "no run" };
  };
  for (const system of latencySystems) latency[system] = latencyOf(system);
  const latencyInline = latencyItems.includes("ours-inline") ? latencyOf("ours-inline") : undefined;

  let floor: Floor | Failed;
  try {
    floor = await latencyFloor(server.url);
    log(
      `round-trip floor: PING p50 ${floor.pingMs.toFixed(3)} ms, two wakes p50 ` +
        `${floor.wakesMs.toFixed(3)} ms, p99 ${floor.wakesP99Ms.toFixed(3)} ms`,
    );
  } catch (error) {
    floor = { error: errorText(error) };
    failures.push(`round-trip floor: ${errorText(error)}`);
    log(`round-trip floor FAILED: ${errorText(error)}`);
  }

  const memoryTasks = params.quick ? QUICK_MEMORY_TASKS : MEMORY_TASKS;
  const memory: Results["memory"] = {};
  // Redis allocates a latency histogram for each command name on first use: that would be
  // counted as memory of the tasks. (CONFIG RESETSTAT frees those allocated so far.)
  const admin = await connect(server.url, "streamfutures-bench-admin");
  try {
    await admin.sendCommand(["CONFIG", "SET", "latency-tracking", "no"]);
    await admin.sendCommand(["CONFIG", "RESETSTAT"]);
  } finally {
    admin.close();
  }
  for (const system of systems.filter((s) => s !== "ours-node")) {
    try {
      memory[system] = system === "ours" ? await oursMemory(server.url, memoryTasks) : {
        tasks: memoryTasks,
        ...(await peerMemory(system, {
          url: server.url,
          jobs: memoryTasks,
          timeoutMs: TIMEOUT_MS,
        })),
      };
      const m = memory[system] as Memory;
      log(
        `memory, ${NAMES[system]}: Redis ${int(m.bytesPerJob)} bytes per pending task; client ` +
          `RSS ${fixed(m.clientRssBytesPerJob, 0)}, heap ${fixed(m.clientHeapBytesPerJob, 0)} ` +
          `bytes per held task${
            m.residueBytes === undefined ? "" : `; ${int(m.residueBytes)} bytes left after release`
          }`,
      );
    } catch (error) {
      memory[system] = { error: errorText(error) };
      failures.push(`memory, ${NAMES[system]}: ${errorText(error)}`);
      log(`memory, ${NAMES[system]} FAILED: ${errorText(error)}`);
    }
  }

  const results: Omit<Results, "summary"> = {
    env: {
      deno: Deno.version.deno,
      node: node ?? "?",
      redis: redisVersion,
      bullmq: has("bullmq") ? await peerVersion("bullmq") : undefined,
      beeQueue: has("bee-queue") ? await peerVersion("bee-queue") : undefined,
      os: `${Deno.build.os} ${Deno.build.arch}`,
      cpus: navigator.hardwareConcurrency,
      date: new Date().toISOString(),
      seconds: (performance.now() - started) / 1000,
    },
    params: {
      runs: params.runs,
      tasks: params.tasks,
      quick: params.quick,
      concurrency: CONCURRENCY,
      warmup: params.warmup,
      latencySamples: LATENCY_SAMPLES,
      latencyWarmup: LATENCY_WARMUP,
      latencyConcurrency: LATENCY_CONCURRENCY,
      memoryTasks,
      systems,
    },
    throughput,
    latency,
    latencyInline,
    floor,
    memory,
    npmBuildError,
    failures,
  };
  return { ...results, summary: summarize(results, variants) };
}

// ---------------------------------------------------------------------------------------------
// Summary

/** Medians of one system in one setting. */
interface Medians {
  tasksPerSec: number;
  /** measured / ideal, for timed tasks. */
  efficiency?: number;
  redisCpuUs: number;
  redisCalls: number;
  producerCpuUs?: number;
  workerCpuUs?: number;
  /** CPU used by other processes of the machine during the timed parts, cores. */
  otherCpuCores?: number;
  runs: number[];
}

/** One target of the issue. */
interface TargetCheck {
  target: string;
  measured: string;
  /** `undefined`: not measured in this run. */
  pass?: boolean;
}

interface Summary {
  /** Medians by setting id, then system. */
  medians: Record<string, Partial<Record<System, Medians>>>;
  /** ours / peer throughput by setting id, then `"<ours system>/<peer>"`. */
  ratios: Record<string, Record<string, number>>;
  /** Mean calls per task by command over the headline runs, by system. */
  commands: Partial<Record<System, Record<string, number>>>;
  /** Mean Redis µs per task inside each command over the headline runs, by system. */
  usec: Partial<Record<System, Record<string, number>>>;
  /** CPU used by the rest of the machine during the timed parts of all runs, cores. */
  otherLoad?: { median: number; max: number };
  targets: TargetCheck[];
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function medianOf(runs: readonly Throughput[], pick: (r: Throughput) => number | undefined) {
  const values = runs.map(pick).filter((v): v is number => typeof v === "number");
  return values.length === runs.length && values.length > 0 ? median(values) : undefined;
}

function summarize(r: Omit<Results, "summary">, variants: readonly Variant[]): Summary {
  const medians: Summary["medians"] = {};
  const ratios: Summary["ratios"] = {};
  for (const variant of variants) {
    const out: Partial<Record<System, Medians>> = {};
    for (const [system, runs] of Object.entries(r.throughput[variant.id] ?? {})) {
      if (!runs || runs.runs.length === 0) continue;
      const tasksPerSec = median(runs.runs.map((x) => x.jobsPerSec));
      const ideal = variant.taskMs > 0
        ? (CONCURRENCY * variant.workers * 1000) / variant.taskMs
        : 0;
      out[system as System] = {
        tasksPerSec,
        efficiency: ideal > 0 ? tasksPerSec / ideal : undefined,
        redisCpuUs: median(runs.runs.map((x) => x.redisCpuUsPerJob)),
        redisCalls: median(runs.runs.map((x) => x.redisCallsPerJob)),
        producerCpuUs: medianOf(runs.runs, (x) => x.producerCpuUsPerJob),
        workerCpuUs: medianOf(runs.runs, (x) => x.workerCpuUsPerJob),
        otherCpuCores: medianOf(runs.runs, (x) => x.otherCpuCores),
        runs: runs.runs.map((x) => x.jobsPerSec),
      };
    }
    medians[variant.id] = out;
    const ratio: Record<string, number> = {};
    const peers = variant.peersOf ? medians[variant.peersOf] ?? {} : out;
    for (const ours of ["ours", "ours-node"] as const) {
      for (const peer of PEER_SYSTEMS) {
        if (out[ours] && peers[peer]) {
          ratio[`${ours}/${peer}`] = out[ours]!.tasksPerSec / peers[peer]!.tasksPerSec;
        }
      }
    }
    ratios[variant.id] = ratio;
  }

  const commands: Summary["commands"] = {};
  const usec: Summary["usec"] = {};
  for (const [system, runs] of Object.entries(r.throughput[HEADLINE] ?? {})) {
    if (!runs || runs.runs.length === 0) continue;
    const mean = (pick: (t: Throughput) => Record<string, number> | undefined) => {
      const sums: Record<string, number> = {};
      for (const run of runs.runs) {
        for (const [cmd, n] of Object.entries(pick(run) ?? {})) {
          sums[cmd] = (sums[cmd] ?? 0) + n / runs.runs.length;
        }
      }
      return sums;
    };
    commands[system as System] = mean((t) => t.callsByCommand);
    usec[system as System] = mean((t) => t.usecByCommand);
  }
  const other = Object.values(r.throughput).flatMap((bySystem) =>
    Object.values(bySystem).flatMap((x) => x?.runs.map((t) => t.otherCpuCores) ?? [])
  ).filter((x): x is number => typeof x === "number");
  const otherLoad = other.length ? { median: median(other), max: Math.max(...other) } : undefined;

  // Where ours has an option setting too (--prefetch, --executor-mode inline), each is reported,
  // and the best one decides: the measured text says which is which.
  const targets: TargetCheck[] = [];
  const head = medians[HEADLINE] ?? {};
  const inlineHead = medians["noop-1-inline"] ?? {};
  const chunksHead = medians["noop-1-chunks"] ?? {};
  for (const ours of ["ours", "ours-node"] as const) {
    if (!r.params.systems.includes(ours)) continue;
    for (
      const [peer, min] of [["bee-queue", TARGET.vsBeeQueue], ["bullmq", TARGET.vsBullmq]] as const
    ) {
      const ratio = ratios[HEADLINE]?.[`${ours}/${peer}`];
      const inline = ratios["noop-1-inline"]?.[`${ours}/${peer}`];
      const chunks = ratios["noop-1-chunks"]?.[`${ours}/${peer}`];
      const best = Math.max(ratio ?? -Infinity, inline ?? -Infinity, chunks ?? -Infinity);
      targets.push({
        target: `throughput ≥ ${min}× ${NAMES[peer]} (no-op, 1 worker process; ${NAMES[ours]})`,
        measured: (ratio === undefined
          ? "not measured"
          : `${ratio.toFixed(2)}× (${int(head[ours]!.tasksPerSec)} vs ${
            int(head[peer]!.tasksPerSec)
          } tasks/s)`) +
          (inline === undefined
            ? ""
            : `; ${INLINE}: ${inline.toFixed(2)}× (${int(inlineHead[ours]!.tasksPerSec)}/s)`) +
          (chunks === undefined
            ? ""
            : `; map chunksize ${CHUNKS_NOOP}: ${chunks.toFixed(2)}× (${
              int(chunksHead[ours]!.tasksPerSec)
            }/s)`),
        pass: best === -Infinity ? undefined : best >= min,
      });
    }
  }
  // Redis' cost by default, and with map's chunks (then per call, not per chunk).
  const costs = [["", head.ours], [`; map chunksize ${CHUNKS_NOOP}: `, chunksHead.ours]] as const;
  const costTarget = (
    target: string,
    max: number,
    pick: (m: Medians) => number,
    text: (n: number) => string,
  ) => {
    const measured = costs.filter(([, m]) => m !== undefined) as [string, Medians][];
    targets.push({
      target,
      measured: measured.length
        ? measured.map(([prefix, m]) => prefix + text(pick(m))).join("")
        : "not measured",
      pass: measured.length ? Math.min(...measured.map(([, m]) => pick(m))) <= max : undefined,
    });
  };
  costTarget(
    `Redis CPU per task ≤ ${TARGET.redisCpuUs} µs (no-op, 1 worker process)`,
    TARGET.redisCpuUs,
    (m) => m.redisCpuUs,
    (n) => `${n.toFixed(1)} µs`,
  );
  costTarget(
    `Redis commands per task ≤ ${TARGET.redisCalls} (no-op, 1 worker process)`,
    TARGET.redisCalls,
    (m) => m.redisCalls,
    (n) => n.toFixed(2),
  );
  const floor = r.floor !== undefined && !isFailed(r.floor) ? r.floor : undefined;
  const lats: [string, Latency][] = [];
  for (const [suffix, l] of [["", r.latency.ours], [`, ${INLINE}`, r.latencyInline]] as const) {
    if (l !== undefined && !isFailed(l)) lats.push([`${NAMES.ours}${suffix}`, l]);
  }
  for (
    const [name, max, pick] of [["p50", TARGET.p50Ms, (l: Latency) => l.p50Ms], [
      "p99",
      TARGET.p99Ms,
      (l: Latency) => l.p99Ms,
    ]] as const
  ) {
    targets.push({
      target: `round-trip latency ${name} ≤ ${max} ms`,
      measured: (lats.length
        ? lats.map(([who, l]) =>
          `${who} ${pick(l).toFixed(3)} ms`
        ).join("; ")
        : "not measured") +
        (floor
          ? ` (two wakes alone: ${
            (name === "p50" ? floor.wakesMs : floor.wakesP99Ms).toFixed(3)
          } ms; see Floors)`
          : ""),
      pass: lats.length ? Math.min(...lats.map(([, l]) => pick(l))) <= max : undefined,
    });
  }
  const mem = r.memory.ours;
  const memOk = mem !== undefined && !isFailed(mem);
  targets.push({
    target: `Redis memory per pending task ≤ ${TARGET.bytesPerPendingTask} bytes`,
    measured: memOk ? `${int(mem.bytesPerJob)} bytes` : "not measured",
    pass: memOk ? mem.bytesPerJob <= TARGET.bytesPerPendingTask : undefined,
  });
  targets.push({
    target: `no growth after release: Redis used_memory back to its idle level (a worker up, no ` +
      `task) within ${TARGET.residueBytesPerTask} byte per released task, once the pool closed`,
    measured: memOk
      ? `${signed(mem.residueBytes!)} bytes for ${int(mem.tasks)} tasks ` +
        `(${(mem.residueBytes! / mem.tasks).toFixed(2)} per task)`
      : "not measured",
    pass: memOk ? mem.residueBytes! / mem.tasks <= TARGET.residueBytesPerTask : undefined,
  });
  // Each of ours (Deno, Node; default, --prefetch, inline) is reported; the best one decides.
  const tens: [string, Medians][] = [];
  for (
    const [id, suffix] of [
      ["10ms-1", ""],
      ["10ms-1-prefetch", `, --prefetch ${PREFETCH}`],
      ["10ms-1-inline-prefetch", `, ${INLINE} --prefetch ${PREFETCH_INLINE}`],
      ["10ms-1-chunks", `, map chunksize ${CHUNKS_10MS}`],
    ]
  ) {
    for (const system of ["ours", "ours-node"] as const) {
      const m = medians[id]?.[system];
      if (m?.efficiency !== undefined) tens.push([`${NAMES[system]}${suffix}`, m]);
    }
  }
  const best = Math.max(...tens.map(([, m]) => m.efficiency!));
  targets.push({
    target: `10 ms tasks, concurrency ${CONCURRENCY}, 1 worker process ≥ ` +
      `${pct(TARGET.efficiency10ms)} of ideal ${int((CONCURRENCY * 1000) / 10)}/s`,
    measured: tens.length
      ? tens.map(([name, m]) => `${name} ${pct(m.efficiency!)}`).join("; ")
      : "not measured",
    pass: tens.length ? best >= TARGET.efficiency10ms : undefined,
  });
  return { medians, ratios, commands, usec, otherLoad, targets };
}

// ---------------------------------------------------------------------------------------------
// Markdown

function int(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function fixed(n: number | undefined, digits: number): string {
  return n === undefined ? "?" : n.toFixed(digits);
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)} %`;
}

function signed(n: number): string {
  return `${n >= 0 ? "+" : "−"}${int(Math.abs(n))}`;
}

function ratioText(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? "–" : `${x.toFixed(2)}×`;
}

function markdown(r: Results): string {
  const systems = r.params.systems;
  const peers = PEER_SYSTEMS.filter((p) => systems.includes(p));
  const hasOurs = systems.includes("ours");
  const ratioPeers = hasOurs ? peers : [];
  const header = [
    "metric",
    ...systems.map((s) =>
      s === "bullmq"
        ? `BullMQ ${r.env.bullmq}`
        : s === "bee-queue"
        ? `bee-queue ${r.env.beeQueue}`
        : NAMES[s]
    ),
    ...ratioPeers.map((p) => `ours ÷ ${NAMES[p]}`),
  ];
  const rows: string[][] = [];
  const { medians } = r.summary;
  const variantIds = Object.keys(r.throughput);
  const label = (id: string) => VARIANTS.find((v) => v.id === id)!;

  for (const id of variantIds) {
    const v = label(id);
    const ideal = v.taskMs > 0 ? (CONCURRENCY * v.workers * 1000) / v.taskMs : 0;
    rows.push([
      `throughput, ${v.label}${ideal ? ` (ideal ${int(ideal)}/s)` : ""}`,
      ...systems.map((s) => {
        const m = medians[id]?.[s];
        const errors = r.throughput[id]?.[s]?.errors.length ?? 0;
        if (!m) return errors ? `failed (${errors})` : "–";
        return `**${int(m.tasksPerSec)}/s**${m.efficiency ? ` = ${pct(m.efficiency)}` : ""} (${
          m.runs.map(int).join(", ")
        })${errors ? `, ${errors} failed` : ""}`;
      }),
      ...ratioPeers.map((p) => ratioText(r.summary.ratios[id]?.[`ours/${p}`])),
    ]);
  }
  const head = medians[HEADLINE] ?? {};
  const costRow = (
    text: string,
    pick: (m: Medians) => number | undefined,
    format: (n: number) => string,
    id = HEADLINE,
  ) => {
    const ours = medians[id] ?? {};
    if (Object.keys(ours).length === 0) return;
    // A setting of ours only shows the peers of the setting it is compared with.
    const peersOf = label(id).peersOf;
    const of = peersOf
      ? { ...medians[peersOf], ours: ours.ours, "ours-node": ours["ours-node"] }
      : ours;
    rows.push([
      text,
      ...systems.map((s) => {
        const v = of[s] ? pick(of[s]!) : undefined;
        return v === undefined ? "–" : format(v);
      }),
      ...ratioPeers.map((p) => {
        const a = of.ours ? pick(of.ours) : undefined;
        const b = of[p] ? pick(of[p]!) : undefined;
        return a === undefined || b === undefined ? "–" : ratioText(a / b);
      }),
    ]);
  };
  costRow("Redis CPU per task (no-op, 1 worker)", (m) => m.redisCpuUs, (n) => `${n.toFixed(1)} µs`);
  costRow(
    "Redis commands per task (no-op, 1 worker; inside Lua too)",
    (m) => m.redisCalls,
    (n) => n.toFixed(2),
  );
  costRow(
    "producer CPU per task (no-op, 1 worker)",
    (m) => m.producerCpuUs,
    (n) => `${n.toFixed(1)} µs`,
  );
  costRow(
    "worker CPU per task (no-op, 1 worker)",
    (m) => m.workerCpuUs,
    (n) => `${n.toFixed(1)} µs`,
  );
  const allCpu = (m: Medians) =>
    m.producerCpuUs === undefined || m.workerCpuUs === undefined
      ? undefined
      : m.producerCpuUs + m.workerCpuUs + m.redisCpuUs;
  const us = (n: number) => `${n.toFixed(1)} µs`;
  costRow("CPU per task, all processes (producer + worker + Redis)", allCpu, us);
  costRow("Redis CPU per task (100 KB argument, 1 worker)", (m) => m.redisCpuUs, us, "payload-1");
  costRow("CPU per task, all processes (100 KB argument)", allCpu, us, "payload-1");
  costRow(`worker CPU per task (no-op, ${INLINE})`, (m) => m.workerCpuUs, us, "noop-1-inline");
  costRow(`CPU per task, all processes (no-op, ${INLINE})`, allCpu, us, "noop-1-inline");
  const chunked = `no-op, map chunksize ${CHUNKS_NOOP}, per call`;
  costRow(`Redis CPU per task (${chunked})`, (m) => m.redisCpuUs, us, "noop-1-chunks");
  costRow(
    `Redis commands per task (${chunked})`,
    (m) => m.redisCalls,
    (n) => n.toFixed(2),
    "noop-1-chunks",
  );
  costRow(`CPU per task, all processes (${chunked})`, allCpu, us, "noop-1-chunks");
  costRow(
    `CPU per task, all processes (100 KB argument, ${INLINE})`,
    allCpu,
    us,
    "payload-1-inline",
  );

  const single = (
    text: string,
    table: Partial<Record<System, object>>,
    pick: (x: Latency & Memory) => number | undefined,
    format: (n: number, x: Latency & Memory) => string,
  ) => {
    const value = (s: System): number | undefined => {
      const x = table[s];
      return x === undefined || isFailed(x) ? undefined : pick(x as Latency & Memory);
    };
    rows.push([
      text,
      ...systems.map((s) => {
        const x = table[s];
        if (x !== undefined && isFailed(x)) return "failed";
        const v = value(s);
        return v === undefined ? "–" : format(v, x as Latency & Memory);
      }),
      ...ratioPeers.map((p) => {
        const a = value("ours");
        const b = value(p);
        return a === undefined || b === undefined ? "–" : ratioText(a / b);
      }),
    ]);
  };
  const ms = (n: number) => `${n.toFixed(3)} ms`;
  const lat = `${
    int(r.params.latencySamples)
  } sequential round trips, worker concurrency ${r.params.latencyConcurrency}`;
  /** A latency figure in bold, each run's in brackets when there were several. */
  const withRuns = (pick: (x: Latency) => number) => (n: number, x: Latency) =>
    `**${ms(n)}**${x.runs ? ` (${x.runs.map((run) => pick(run).toFixed(3)).join(", ")})` : ""}`;
  const medianOfRuns = r.params.runs > 1 ? `, median of ${r.params.runs} runs` : "";
  const p50 = (x: Latency) => x.p50Ms;
  const p99 = (x: Latency) => x.p99Ms;
  single(`round-trip latency p50 (${lat}${medianOfRuns})`, r.latency, p50, withRuns(p50));
  single("round-trip latency p99", r.latency, p99, withRuns(p99));
  single("round-trip latency mean", r.latency, (x) => x.meanMs, ms);
  if (r.latencyInline) {
    // Ours with inline executors, beside the peers' figures again (for the ratios).
    const inline = { ...r.latency, ours: r.latencyInline };
    single(`round-trip latency p50, ours with ${INLINE}`, inline, p50, withRuns(p50));
    single(`round-trip latency p99, ours with ${INLINE}`, inline, p99, withRuns(p99));
  }
  const n = int(r.params.memoryTasks);
  single(
    `Redis used_memory per pending task (${n} tasks, no worker)`,
    r.memory,
    (x) => x.bytesPerJob,
    (v) => `**${int(v)} bytes**`,
  );
  single(
    `producer RSS growth per held future / Job (${n})`,
    r.memory,
    (x) => x.clientRssBytesPerJob,
    (v) => `${int(v)} bytes`,
  );
  single(
    `producer V8 heap growth per held future / Job (${n})`,
    r.memory,
    (x) => x.clientHeapBytesPerJob,
    (v) => `${int(v)} bytes`,
  );
  single(
    `Redis used_memory after the ${n} tasks ran and the pool closed, vs idle (worker up)`,
    r.memory,
    (x) => x.residueBytes,
    (v) => `${signed(v)} bytes`,
  );

  const table = (head: string[], body: string[][]) => [
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...body.map((row) => `| ${row.join(" | ")} |`),
  ];
  const e = r.env;
  const p = r.params;
  const lines = [
    `# streamfutures vs BullMQ and bee-queue`,
    ``,
    `Deno ${e.deno}, ${
      e.node === "?" ? "" : `Node ${e.node}, `
    }redis-server ${e.redis} (private, no persistence), ${e.os}, ` +
    `${e.cpus} CPUs, ${e.date}; took ${Math.round(e.seconds)} s.`,
    ``,
    `Throughput: ${int(p.tasks)} tasks per run, one producer process, worker processes at ` +
    `concurrency ${p.concurrency}, ${int(p.warmup)} warm-up tasks per run; median of ${p.runs} ` +
    `run${p.runs === 1 ? "" : "s"} (each run's figure in brackets), the systems taking turns. ` +
    `Per-task costs are medians over the no-op, 1-worker runs.`,
    ...(r.summary.otherLoad
      ? [
        ``,
        `Other load on the machine during the timed parts (CPU not used by the producer, the ` +
        `workers or Redis): median ${r.summary.otherLoad.median.toFixed(2)} cores, max ${
          r.summary.otherLoad.max.toFixed(2)
        } (of ${e.cpus})${
          r.summary.otherLoad.median > 0.25 ? ": **the machine was busy; figures are skewed**" : ""
        }.`,
      ]
      : []),
    ``,
    ...table(header, rows),
    ``,
    `## Targets (issue 6)`,
    ``,
    ...table(
      ["target", "measured", "result"],
      r.summary.targets.map((t) => [
        t.target,
        t.measured,
        t.pass === undefined ? "–" : t.pass ? "PASS" : "**FAIL**",
      ]),
    ),
  ];
  const floor = r.floor;
  if (floor !== undefined) {
    lines.push(
      ``,
      `## Floors of a round trip (this machine, this run, no queue)`,
      ``,
      isFailed(floor) ? `Not measured: ${brief(floor.error)}` : [
        `A \`PING\` round trip from node-redis (Deno): p50 ${floor.pingMs.toFixed(3)} ms. Two ` +
        `wakes — this process blocked in \`XREAD\` while another (Deno, scripts/_echo.ts), ` +
        `blocked in \`XREAD\` too, answers each \`XADD\` with its own: p50 ` +
        `${floor.wakesMs.toFixed(3)} ms per round, p99 ${floor.wakesP99Ms.toFixed(3)} ms.`,
        `Every design whose producer and worker processes meet only through Redis pays the two ` +
        `wakes (bee-queue: \`BRPOPLPUSH\`, then its \`PUBLISH\`); ours also pays START's round ` +
        `trip (a task is fenced before it runs) and the hop to an executor and back (heartbeats ` +
        `go on during a CPU-bound task), about ${
          (floor.wakesMs + floor.pingMs).toFixed(3)
        } ms plus the hop (${INLINE}: no hop). See docs/performance.md, Latency.`,
      ].join(" "),
    );
  }
  const mem = r.memory.ours;
  if (mem && !isFailed(mem) && mem.residueKeys) {
    lines.push(
      ``,
      `After release (ours): ${mem.residueKeys.length} keys left (${
        mem.residueKeys.join(", ") || "none"
      }); used_memory less the script cache: ${
        signed(mem.residueBytes!)
      } bytes vs idle with a worker up, ${
        signed(mem.residueBytesWorkerStopped!)
      } bytes vs before the fill once the worker stopped too. Memory measures run with Redis' ` +
        `latency-tracking off (its per-command histograms, about 40 KB each, would be counted).`,
    );
  }
  const cmdSystems = systems.filter((s) => r.summary.commands[s]);
  if (cmdSystems.length) {
    const all = new Set(cmdSystems.flatMap((s) => Object.keys(r.summary.commands[s]!)));
    const get = (s: System, cmd: string) => r.summary.commands[s]?.[cmd];
    const key = (cmd: string) =>
      get("ours", cmd) ?? Math.max(...cmdSystems.map((s) => get(s, cmd) ?? 0)) / 1e6;
    const cmds = [...all]
      .filter((cmd) => cmdSystems.some((s) => (get(s, cmd) ?? 0) >= 0.0005))
      .sort((a, b) => key(b) - key(a));
    lines.push(
      ``,
      `## Redis commands per task by command (no-op, 1 worker process, mean of the runs)`,
      ``,
      `FCALL (or EVALSHA / EVAL) counts once per script call, and the commands a script runs count as well. ` +
        `The µs columns are Redis' time inside the command per task (INFO commandstats usec): a ` +
        `script's time includes the commands it runs.`,
      ``,
      ...table(
        [
          "command",
          ...cmdSystems.flatMap((s) =>
            s === "ours" ? [`${NAMES[s]} calls`, `${NAMES[s]} µs`] : [NAMES[s]]
          ),
        ],
        [
          ...cmds.map((cmd) => [
            cmd.toUpperCase(),
            ...cmdSystems.flatMap((s) => {
              const v = get(s, cmd);
              const cell = v === undefined ? "–" : v.toFixed(3);
              if (s !== "ours") return [cell];
              const us = r.summary.usec.ours?.[cmd];
              return [cell, us === undefined ? "–" : us.toFixed(2)];
            }),
          ]),
          [
            "total",
            ...cmdSystems.flatMap((s) => {
              const cell = head[s] ? head[s]!.redisCalls.toFixed(2) : "–";
              return s === "ours"
                ? [cell, `(Redis CPU ${head.ours!.redisCpuUs.toFixed(1)})`]
                : [cell];
            }),
          ],
        ],
      ),
    );
  }
  if (r.failures.length) {
    lines.push(``, `## Failures`, ``, ...r.failures.map((f) => `- ${brief(f)}`));
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  let params: Params | "help";
  try {
    params = parseParams(Deno.args);
  } catch (error) {
    console.error(`${errorText(error)}\n\n${USAGE}`);
    return 2;
  }
  if (params === "help") {
    console.log(USAGE);
    return 0;
  }
  if (params.systems.length === 0) {
    console.error(`nothing to run\n\n${USAGE}`);
    return 2;
  }
  for (const name of Object.keys(Deno.env.toObject())) {
    if (name.startsWith("STREAMFUTURES_")) {
      console.error(`bench: warning: ${name} is set; our processes will read it`);
    }
  }
  let server: RedisServer;
  try {
    server = await startRedisServer();
  } catch (error) {
    console.error(error instanceof RedisNotInstalledError ? error.message : error);
    return 1;
  }
  const tmp = await mkdtemp(join(tmpdir(), "streamfutures-bench-"));
  const cleanup = async () => {
    await BenchProcess.killAllRunning();
    await server.stop();
    await rm(tmp, { recursive: true, force: true });
  };
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.error("bench: interrupted; stopping the child processes and redis-server");
    cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let results: Results;
  try {
    results = await bench(params, server, tmp);
  } catch (error) {
    console.error("benchmark failed:", error);
    return 1;
  } finally {
    if (!interrupted) await cleanup();
  }
  const json = JSON.stringify(results, null, 2);
  if (params.out) await Deno.writeTextFile(params.out, json + "\n");
  console.log(params.json ? json : markdown(results));
  return results.failures.length ? 1 : 0;
}

Deno.exit(await main());
