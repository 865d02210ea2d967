/**
 * Drives the peer benchmarks (BullMQ and bee-queue, benchmark-only devDependencies) from Deno:
 * each peer runs as Node child processes (`scripts/peers/*.mjs`, their native runtime) against a
 * private Redis, and the Redis-side cost (CPU, commands, memory) is measured here with INFO.
 *
 * Every wait has a deadline, and every child process is killed (and awaited) when a measure fails,
 * so a broken peer fails the benchmark with a clear error instead of hanging it or leaving orphans.
 *
 * ```ts
 * const server = await startRedisServer();
 * const t = await peerThroughput("bee-queue", {
 *   url: server.url, jobs: 20_000, workers: 1, concurrency: 100, taskMs: 0,
 * });
 * ```
 *
 * The private Redis is flushed (FLUSHDB) by each measure: never point these at a shared one.
 *
 * The pieces are exported for scripts/bench.ts, which drives streamfutures the same way:
 * {@link BenchProcess} (a child process with deadlines on every wait), {@link measureThroughput}
 * (one throughput run of any system, measured exactly as the peers' are), and the Redis INFO
 * helpers.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { connect, type RedisConnection } from "../lib/_redis.ts";
import { withinLimits } from "../lib/_deadline.ts";

/** A peer queue library. */
export type PeerSystem = "bullmq" | "bee-queue";

/** The peers, in the order they are reported. */
export const PEER_SYSTEMS: readonly PeerSystem[] = ["bullmq", "bee-queue"];

/** Display names of the peers. */
export const PEER_NAMES: Readonly<Record<PeerSystem, string>> = {
  "bullmq": "BullMQ",
  "bee-queue": "bee-queue",
};

/** The default deadline of every wait (a worker starting, a run finishing, a process exiting). */
export const DEFAULT_TIMEOUT_MS = 120_000;

const SCRIPTS: Readonly<Record<PeerSystem, URL>> = {
  "bullmq": new URL("./peers/bullmq.mjs", import.meta.url),
  "bee-queue": new URL("./peers/bee_queue.mjs", import.meta.url),
};

/** The queue name the peers use (the Redis is flushed before each measure). */
const QUEUE = "peerbench";

/** Options of {@link peerThroughput}. */
export interface PeerThroughputOptions {
  /** The private Redis (`redis://host:port`); it is flushed. */
  url: string;
  /** Jobs of the measured run. */
  jobs: number;
  /** Worker processes. */
  workers: number;
  /** Jobs each worker process runs at once. */
  concurrency: number;
  /** Duration of each job (`0`: a no-op; else `await setTimeout(taskMs)`). */
  taskMs: number;
  /** Jobs run through the same processes before the measured run (default `min(2000, jobs)`). */
  warmup?: number;
  /** Each job's data holds a string of this many characters (default 0: empty data). */
  payload?: number;
  /** Deadline of each wait in ms (default {@link DEFAULT_TIMEOUT_MS}). */
  timeoutMs?: number;
}

/** One measured throughput run (of a peer, or of any system measured by {@link measureThroughput}). */
export interface Throughput {
  /** Wall time from the first add to the last completion event seen by the producer. */
  seconds: number;
  /** `jobs / seconds`. */
  jobsPerSec: number;
  /** Redis CPU (used_cpu_sys + used_cpu_user) over the run, per job, in µs. */
  redisCpuUsPerJob: number;
  /** Redis commands over the run per job (all `cmdstat_*` calls, commands inside Lua included). */
  redisCallsPerJob: number;
  /** Redis commands per job by command name (lower case, as INFO commandstats names them). */
  callsByCommand: Record<string, number>;
  /** CPU time (user + system) of the producer process over the timed part, per job, in µs. */
  producerCpuUsPerJob?: number;
  /** CPU time of the worker processes (all together) over the run, per job, in µs (Linux). */
  workerCpuUsPerJob?: number;
  /**
   * Redis time inside each command per job, µs (INFO commandstats `usec`; a script's time
   * includes the commands it runs, which are counted under their own names as well).
   */
  usecByCommand?: Record<string, number>;
  /**
   * CPU the rest of the machine used during the timed part, in cores: all CPU time (/proc/stat)
   * less the producer's, the workers' and Redis' (Linux). Other load skews a run.
   */
  otherCpuCores?: number;
}

/** One measured throughput run of a peer. */
export type PeerThroughput = Throughput;

/**
 * Measures one throughput run of a peer: FLUSHDB, starts `workers` worker processes and the
 * producer (which runs `warmup` jobs first), resets the Redis stats once all are ready, lets the
 * producer add `jobs` jobs and wait for every completion event, then reads Redis' CPU and
 * command counts and stops the workers (SIGTERM), checking that they processed every job.
 */
export function peerThroughput(
  system: PeerSystem,
  opts: PeerThroughputOptions,
): Promise<Throughput> {
  const jobs = positive(opts.jobs, "jobs");
  const concurrency = positive(opts.concurrency, "concurrency");
  const taskMs = nonNegative(opts.taskMs, "taskMs");
  const warmup = nonNegative(opts.warmup ?? Math.min(2000, jobs), "warmup");
  const timeoutMs = positive(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
  return measureThroughput({
    name: system,
    url: opts.url,
    jobs,
    warmup,
    workers: positive(opts.workers, "workers"),
    timeoutMs,
    workerReady: "ready",
    startWorker: () =>
      startPeer(system, "worker", {
        url: opts.url,
        concurrency: String(concurrency),
        "task-ms": String(taskMs),
      }),
    startProducer: () =>
      startPeer(system, "throughput", {
        url: opts.url,
        jobs: String(jobs),
        warmup: String(warmup),
        "timeout-ms": String(timeoutMs),
        ...(opts.payload ? { payload: String(nonNegative(opts.payload, "payload")) } : {}),
      }, { gate: true }),
    stopWorker: async (worker, ms) => (await worker.stop(ms)).processed,
  });
}

/** How {@link measureThroughput} runs one system. */
export interface ThroughputSetup {
  /** The system's name, for messages. */
  name: string;
  /** The private Redis (`redis://host:port`); it is flushed. */
  url: string;
  /** Jobs of the measured run (what the producer is told). */
  jobs: number;
  /** Warm-up jobs the producer runs before it says "ready" (to check the workers' counts). */
  warmup: number;
  /** Worker processes. */
  workers: number;
  /** Deadline of each wait in ms. */
  timeoutMs: number;
  /** The stderr line a worker prints once it takes work. */
  workerReady: string;
  /** Starts worker process number `index` (from 0). */
  startWorker(index: number): BenchProcess;
  /**
   * Starts the gated producer: it warms up, says "ready" on stderr, waits for the go line on
   * stdin, runs `jobs` jobs until it holds every result, and prints its result as the last line
   * of stdout: `{ seconds, jobs, cpuMicros? }` (`cpuMicros`: its CPU time over the timed part).
   */
  startProducer(): BenchProcess;
  /** Stops a worker cleanly; resolves with the jobs it processed, when it tells. */
  stopWorker(worker: BenchProcess, timeoutMs: number): Promise<number | undefined>;
}

/**
 * Measures one throughput run of any system: FLUSHDB, starts the worker processes and waits until
 * each is ready, starts the gated producer and waits until it has warmed up, resets Redis'
 * statistics (CONFIG RESETSTAT), lets the producer go and waits for its result, then reads Redis'
 * CPU and command counts (the driver's own CONFIG and INFO calls taken out) and the workers' CPU
 * time, and stops the workers, checking the jobs they processed when they tell. Every wait has a
 * deadline; every process is killed (and reaped) when anything fails.
 */
export async function measureThroughput(setup: ThroughputSetup): Promise<Throughput> {
  const jobs = positive(setup.jobs, "jobs");
  const warmup = nonNegative(setup.warmup, "warmup");
  const workers = positive(setup.workers, "workers");
  const timeoutMs = positive(setup.timeoutMs, "timeoutMs");
  const redis = await connect(setup.url, "streamfutures-bench-driver");
  const children: BenchProcess[] = [];
  try {
    await redis.sendCommand(["FLUSHDB"]);
    for (let i = 0; i < workers; i++) children.push(setup.startWorker(i));
    const workerProcs = children.slice();
    await Promise.all(workerProcs.map((w) => w.waitFor(setup.workerReady, timeoutMs)));
    const producer = setup.startProducer();
    children.push(producer);
    const workersExit = () => workerProcs.map((w) => w.exitedEarly());
    await Promise.race([producer.waitFor("ready", timeoutMs), ...workersExit()]);

    // The driver's own commands after the reset, taken out of the counts below.
    await redis.sendCommand(["CONFIG", "RESETSTAT"]);
    const cpuBefore = redisCpuSeconds(await redisInfo(redis, "cpu"));
    const workerCpuBefore = await processesCpuSeconds(workerProcs);
    const machineBefore = await machineCpuSeconds();
    await producer.go();
    const result = await Promise.race([
      producer.result<{ seconds: number; jobs: number; cpuMicros?: number }>(timeoutMs),
      ...workersExit(),
    ]);
    const machineAfter = await machineCpuSeconds();
    const workerCpuAfter = await processesCpuSeconds(workerProcs);
    const cpuAfter = redisCpuSeconds(await redisInfo(redis, "cpu"));
    const stats = await redisInfo(redis, "commandstats");
    const calls = commandCalls(stats);
    subtractCalls(calls, "config|resetstat", 1);
    subtractCalls(calls, "info", 2);

    let processed: number | undefined = 0;
    for (const worker of workerProcs) {
      const n = await setup.stopWorker(worker, timeoutMs);
      processed = n === undefined || processed === undefined ? undefined : processed + n;
    }
    if (processed !== undefined && processed !== jobs + warmup) {
      throw new Error(
        `${setup.name}: the workers processed ${processed} jobs, expected ${jobs + warmup} ` +
          `(${warmup} warm-up + ${jobs})`,
      );
    }
    if (result.jobs !== jobs || !(result.seconds > 0)) {
      throw new Error(`${setup.name}: unexpected producer result ${JSON.stringify(result)}`);
    }
    const callsByCommand: Record<string, number> = {};
    let total = 0;
    for (const [cmd, n] of [...calls].sort((a, b) => b[1] - a[1])) {
      callsByCommand[cmd] = n / jobs;
      total += n;
    }
    const out: Throughput = {
      seconds: result.seconds,
      jobsPerSec: jobs / result.seconds,
      redisCpuUsPerJob: ((cpuAfter - cpuBefore) * 1e6) / jobs,
      redisCallsPerJob: total / jobs,
      callsByCommand,
    };
    if (typeof result.cpuMicros === "number") out.producerCpuUsPerJob = result.cpuMicros / jobs;
    if (workerCpuBefore !== undefined && workerCpuAfter !== undefined) {
      out.workerCpuUsPerJob = ((workerCpuAfter - workerCpuBefore) * 1e6) / jobs;
    }
    out.usecByCommand = {};
    for (const [cmd, usec] of commandUsec(stats)) {
      if (calls.has(cmd)) out.usecByCommand[cmd] = usec / jobs;
    }
    if (
      machineBefore !== undefined && machineAfter !== undefined &&
      out.producerCpuUsPerJob !== undefined && out.workerCpuUsPerJob !== undefined
    ) {
      const ours = (out.producerCpuUsPerJob + out.workerCpuUsPerJob + out.redisCpuUsPerJob) *
        jobs / 1e6;
      out.otherCpuCores = Math.max(0, machineAfter - machineBefore - ours) / result.seconds;
    }
    return out;
  } finally {
    await killAll(children);
    redis.close();
  }
}

/** Options of {@link peerLatency}. */
export interface PeerLatencyOptions {
  /** The private Redis (`redis://host:port`); it is flushed. */
  url: string;
  /** Measured round trips. */
  samples: number;
  /** Round trips before the measured ones (default 200). */
  warmup?: number;
  /** Concurrency of the worker process (default 1). */
  concurrency?: number;
  /** Deadline of each wait in ms (default {@link DEFAULT_TIMEOUT_MS}). */
  timeoutMs?: number;
}

/** Round-trip latency of a peer, in ms. */
export interface PeerLatency {
  /** Median. */
  p50Ms: number;
  /** 99th percentile (nearest rank). */
  p99Ms: number;
  /** Mean. */
  meanMs: number;
}

/**
 * Measures sequential round trips of a peer (add one no-op job, wait until it has finished,
 * repeat) with one worker process at `concurrency` (default 1), after FLUSHDB.
 */
export async function peerLatency(
  system: PeerSystem,
  opts: PeerLatencyOptions,
): Promise<PeerLatency> {
  const samples = positive(opts.samples, "samples");
  const warmup = nonNegative(opts.warmup ?? 200, "warmup");
  const concurrency = positive(opts.concurrency ?? 1, "concurrency");
  const timeoutMs = positive(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
  const redis = await connect(opts.url, "streamfutures-bench-peers");
  const children: BenchProcess[] = [];
  try {
    await redis.sendCommand(["FLUSHDB"]);
    const worker = startPeer(system, "worker", {
      url: opts.url,
      concurrency: String(concurrency),
      "task-ms": "0",
    });
    children.push(worker);
    await worker.waitFor("ready", timeoutMs);
    const producer = startPeer(system, "latency", {
      url: opts.url,
      samples: String(samples),
      warmup: String(warmup),
      "timeout-ms": String(timeoutMs),
    });
    children.push(producer);
    const result = await Promise.race([
      producer.result<PeerLatency & { samples: number }>(timeoutMs),
      worker.exitedEarly(),
    ]);
    const { processed } = await worker.stop(timeoutMs);
    if (result.samples !== samples || processed !== samples + warmup) {
      throw new Error(
        `${system}: ${result.samples} samples and ${processed} jobs processed, expected ` +
          `${samples} and ${samples + warmup}`,
      );
    }
    return { p50Ms: result.p50Ms, p99Ms: result.p99Ms, meanMs: result.meanMs };
  } finally {
    await killAll(children);
    redis.close();
  }
}

/** Options of {@link peerMemory}. */
export interface PeerMemoryOptions {
  /** The private Redis (`redis://host:port`); it is flushed. */
  url: string;
  /** Pending jobs to add. */
  jobs: number;
  /** Deadline of each wait in ms (default {@link DEFAULT_TIMEOUT_MS}). */
  timeoutMs?: number;
}

/** Redis memory of a peer's pending jobs, and its producer's. */
export interface PeerMemory {
  /** `used_memory` after adding the jobs minus before, divided by the jobs. */
  bytesPerJob: number;
  /**
   * The producer process's RSS growth while it holds the handle (Job object) of every job it
   * added, per job (after a full GC), when the producer reports it.
   */
  clientRssBytesPerJob?: number;
  /** The same for the producer's V8 heap in use. */
  clientHeapBytesPerJob?: number;
}

/**
 * Measures the Redis memory of pending jobs: FLUSHDB, `used_memory`, adds `jobs` no-op jobs with
 * no worker running (the producer process has exited, so its connections hold nothing), and
 * `used_memory` again. The producer reports its own RSS and heap before adding and while holding
 * every added job's handle.
 */
export async function peerMemory(system: PeerSystem, opts: PeerMemoryOptions): Promise<PeerMemory> {
  const jobs = positive(opts.jobs, "jobs");
  const timeoutMs = positive(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
  const redis = await connect(opts.url, "streamfutures-bench-peers");
  const children: BenchProcess[] = [];
  try {
    await redis.sendCommand(["FLUSHDB"]);
    const before = usedMemory(await redisInfo(redis, "memory"));
    const producer = startPeer(system, "fill", {
      url: opts.url,
      jobs: String(jobs),
      "timeout-ms": String(timeoutMs),
    }, { nodeArgs: ["--expose-gc"] });
    children.push(producer);
    const result = await producer.result<ClientMemory & { jobs: number }>(timeoutMs);
    if (result.jobs !== jobs) {
      throw new Error(`${system}: unexpected fill result ${JSON.stringify(result)}`);
    }
    const after = usedMemory(await redisInfo(redis, "memory"));
    const out: PeerMemory = { bytesPerJob: (after - before) / jobs };
    if (typeof result.rssAfter === "number" && typeof result.rssBefore === "number") {
      out.clientRssBytesPerJob = (result.rssAfter - result.rssBefore) / jobs;
    }
    if (typeof result.heapAfter === "number" && typeof result.heapBefore === "number") {
      out.clientHeapBytesPerJob = (result.heapAfter - result.heapBefore) / jobs;
    }
    return out;
  } finally {
    await killAll(children);
    redis.close();
  }
}

/** What a producer reports of its own memory (bytes): RSS and V8 heap in use, before and after. */
export interface ClientMemory {
  rssBefore?: number;
  rssAfter?: number;
  heapBefore?: number;
  heapAfter?: number;
}

/** The path of a peer's Node script. */
export function peerScript(system: PeerSystem): string {
  const url = SCRIPTS[system];
  if (!url) throw new TypeError(`unknown peer ${JSON.stringify(system)}`);
  return fileURLToPath(url);
}

/** `node --version` of the Node that runs the peers (`null` if it cannot be run). */
export async function nodeVersion(): Promise<string | null> {
  try {
    const out = await new Deno.Command(NODE, { args: ["--version"], stdin: "null" }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}

/** The installed version of a peer library (from its package.json in node_modules). */
export async function peerVersion(system: PeerSystem): Promise<string> {
  const url = new URL(`../node_modules/${system}/package.json`, import.meta.url);
  const pkg = JSON.parse(await Deno.readTextFile(url)) as { version?: string };
  return pkg.version ?? "?";
}

// ---------------------------------------------------------------------------------------------
// Child processes

/** The Node executable (override with the NODE environment variable). */
export const NODE: string = Deno.env.get("NODE") || "node";
/** How long a SIGKILLed child may take to be reaped. */
const KILL_WAIT_MS = 10_000;
/** How much of a child's stderr an error message quotes. */
const STDERR_TAIL = 4000;

/** Options of {@link BenchProcess.spawn}. */
export interface BenchProcessOptions {
  /** How messages name the process (default: the command and its first argument). */
  what?: string;
  /** Keep stdin open for {@link BenchProcess.go} (default false: stdin is /dev/null). */
  gate?: boolean;
  /** Working directory. */
  cwd?: string;
}

/**
 * A child process of the benchmark with its output collected: every wait on it has a deadline,
 * and a failure quotes the tail of its stderr. Processes still running are listed, so that
 * {@link killAllRunning} can end them when the benchmark is interrupted.
 */
export class BenchProcess {
  static readonly #running = new Set<BenchProcess>();
  #out = "";
  #err = "";
  #status: Deno.CommandStatus | undefined;
  #listeners = new Set<() => void>();
  readonly #child: Deno.ChildProcess;
  readonly #exited: Promise<Deno.CommandStatus>;
  readonly #what: string;

  private constructor(child: Deno.ChildProcess, what: string) {
    this.#child = child;
    this.#what = what;
    BenchProcess.#running.add(this);
    const pump = async (stream: ReadableStream<Uint8Array>, into: "out" | "err") => {
      for await (const text of stream.pipeThrough(new TextDecoderStream())) {
        if (into === "out") this.#out += text;
        else this.#err += text;
        this.#notify();
      }
    };
    const pumps = Promise.all([pump(child.stdout, "out"), pump(child.stderr, "err")]);
    this.#exited = child.status.then(async (status) => {
      await pumps.catch(() => {});
      this.#status = status;
      BenchProcess.#running.delete(this);
      this.#notify();
      return status;
    });
  }

  /** Starts `command args...` with stdout and stderr piped (and collected). */
  static spawn(
    command: string,
    args: readonly string[],
    options: BenchProcessOptions = {},
  ): BenchProcess {
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(command, {
        args: [...args],
        cwd: options.cwd,
        stdin: options.gate ? "piped" : "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(`cannot run "${command}": not found (is it on PATH?)`, { cause: error });
      }
      throw error;
    }
    const what = options.what ?? `${command.split("/").pop()} ${args[0] ?? ""}`.trim();
    return new BenchProcess(child, `${what} (pid ${child.pid})`);
  }

  /** Kills (SIGKILL) every benchmark process still running and waits until they are reaped. */
  static killAllRunning(): Promise<void> {
    return killAll([...BenchProcess.#running]);
  }

  /** The OS process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Everything the process wrote on stderr so far. */
  get stderr(): string {
    return this.#err;
  }

  /** Everything the process wrote on stdout so far. */
  get stdout(): string {
    return this.#out;
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  /** Resolves when `check()` holds; re-checked on every output chunk and on exit. */
  #until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
    let listener: (() => void) | undefined;
    const done = new Promise<void>((resolve, reject) => {
      listener = () => {
        try {
          if (check()) resolve();
          else if (this.#status) reject(this.#failure(`exited before ${what}`));
        } catch (error) {
          reject(error);
        }
      };
      this.#listeners.add(listener);
      listener();
    });
    return withinLimits(done, { timeout: timeoutMs }, `${this.#what}: ${what}`)
      .catch((error) => {
        throw error instanceof Error && error.name === "TimeoutError"
          ? this.#failure(`${what}: no result after ${timeoutMs} ms`, error)
          : error;
      })
      .finally(() => this.#listeners.delete(listener!));
  }

  #failure(what: string, cause?: unknown): Error {
    const status = this.#status
      ? ` (exit code ${this.#status.code}${this.#status.signal ? `, ${this.#status.signal}` : ""})`
      : "";
    const tail = this.#err.length > STDERR_TAIL ? `…${this.#err.slice(-STDERR_TAIL)}` : this.#err;
    return new Error(`${this.#what} ${what}${status}; its stderr:\n${tail.trimEnd()}`, { cause });
  }

  /** Waits until a line of stderr reads `text` (e.g. "ready"). */
  waitFor(text: string, timeoutMs: number): Promise<void> {
    return this.#until(
      () => this.#err.split("\n").some((line) => line.trim() === text),
      `saying "${text}"`,
      timeoutMs,
    );
  }

  /** Tells a gated process to go on (writes a line on its stdin, then closes it). */
  async go(): Promise<void> {
    const writer = this.#child.stdin.getWriter();
    try {
      await writer.write(new TextEncoder().encode("go\n"));
      await writer.close();
    } catch (error) {
      throw this.#failure("did not take the go line", error);
    }
  }

  /** Waits for a successful exit and parses the last line of stdout as JSON. */
  async result<T>(timeoutMs: number): Promise<T> {
    await this.exit(timeoutMs);
    const last = this.#out.trimEnd().split("\n").pop() ?? "";
    try {
      return JSON.parse(last) as T;
    } catch (error) {
      throw this.#failure(`printed no JSON result (stdout: ${JSON.stringify(last)})`, error);
    }
  }

  /** Waits for the process to exit, and fails unless it exited with code 0. */
  async exit(timeoutMs: number): Promise<void> {
    await this.#until(() => this.#status !== undefined, "finishing", timeoutMs);
    if (!this.#status!.success) throw this.#failure("failed");
  }

  /** Never resolves; rejects if the process exits (e.g. a worker that crashed mid-run). */
  exitedEarly(): Promise<never> {
    return this.#exited.then(() => {
      throw this.#failure("exited while the run went on");
    });
  }

  /** Sends SIGTERM and waits for a clean exit with a `{ processed }` result (a peer worker). */
  stop(timeoutMs: number): Promise<{ processed: number }> {
    this.#signal("SIGTERM");
    return this.result<{ processed: number }>(timeoutMs);
  }

  /** Sends SIGTERM and waits for a clean exit (code 0). */
  terminate(timeoutMs: number): Promise<void> {
    this.#signal("SIGTERM");
    return this.exit(timeoutMs);
  }

  #signal(signal: Deno.Signal): void {
    if (this.#status) return;
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
  }

  /** SIGKILLs the process if it still runs and waits until it is reaped. */
  async kill(): Promise<void> {
    if (this.#status) return;
    this.#signal("SIGKILL");
    await withinLimits(
      this.#exited,
      { timeout: KILL_WAIT_MS },
      `${this.#what}: exit after SIGKILL`,
    );
  }
}

/** Options of {@link startPeer}. */
interface StartPeerOptions {
  /** Keep stdin open for the go line. */
  gate?: boolean;
  /** Node flags before the script (e.g. `--expose-gc`). */
  nodeArgs?: readonly string[];
}

/** Starts `node [nodeArgs] <script> <role> --queue Q --<flag> <value>... [--gate]`. */
function startPeer(
  system: PeerSystem,
  role: string,
  flags: Record<string, string>,
  { gate = false, nodeArgs = [] }: StartPeerOptions = {},
): BenchProcess {
  const args = [...nodeArgs, peerScript(system), role, "--queue", QUEUE];
  for (const [name, value] of Object.entries(flags)) args.push(`--${name}`, value);
  if (gate) args.push("--gate");
  try {
    return BenchProcess.spawn(NODE, args, { gate, what: `${system} ${role}` });
  } catch (error) {
    if ((error as Error).cause instanceof Deno.errors.NotFound) {
      throw new Error(
        `cannot run the ${system} peer: "${NODE}" (Node.js) is not on PATH; install Node 20+ ` +
          `or set NODE to its path`,
        { cause: error },
      );
    }
    throw error;
  }
}

/** Kills every child still running (after an error; a no-op for those that exited). */
export async function killAll(children: readonly BenchProcess[]): Promise<void> {
  const results = await Promise.allSettled(children.map((c) => c.kill()));
  for (const r of results) {
    if (r.status === "rejected") console.error("bench: could not kill a child:", r.reason);
  }
}

/** Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`; 100 on Linux). */
const CLOCK_TICKS = 100;

/** One /proc/<pid>/stat: parent pid and CPU ticks (own and reaped children's). */
interface ProcStat {
  ppid: number;
  ticks: number;
}

async function procStat(pid: number | string): Promise<ProcStat | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The fields after the command name (which may hold spaces), from field 3 (state) on.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
    // ppid: field 4; utime, stime, cutime, cstime: fields 14 to 17.
    const ticks = f[11] + f[12] + f[13] + f[14];
    return Number.isFinite(ticks) ? { ppid: f[1], ticks } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU time (user + system, all threads) of a running process and of all its descendants (e.g.
 * executor processes; those already reaped through their parents' cutime / cstime) in seconds,
 * from /proc; `undefined` where that cannot be read (not Linux, or the process is gone).
 */
export async function processCpuSeconds(pid: number): Promise<number | undefined> {
  const root = await procStat(pid);
  if (!root) return undefined;
  const stats = new Map<number, ProcStat>([[pid, root]]);
  try {
    for await (const entry of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(entry.name) || Number(entry.name) === pid) continue;
      const stat = await procStat(entry.name);
      if (stat) stats.set(Number(entry.name), stat);
    }
  } catch {
    return root.ticks / CLOCK_TICKS;
  }
  let ticks = 0;
  for (const [id, stat] of stats) {
    for (let p: number | undefined = id, hops = 0; p !== undefined && hops < 64; hops++) {
      if (p === pid) {
        ticks += stat.ticks;
        break;
      }
      p = stats.get(p)?.ppid;
    }
  }
  return ticks / CLOCK_TICKS;
}

/**
 * CPU time the whole machine has used (all cores, user + nice + system + irq + softirq + steal)
 * in seconds, from /proc/stat; `undefined` where that cannot be read.
 */
export async function machineCpuSeconds(): Promise<number | undefined> {
  try {
    const line = (await Deno.readTextFile("/proc/stat")).split("\n")[0];
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
    const ticks = user + nice + system + irq + softirq + (steal || 0);
    return Number.isFinite(ticks) ? ticks / CLOCK_TICKS : undefined;
  } catch {
    return undefined;
  }
}

/** The CPU seconds of several processes together (`undefined` if one cannot be read). */
async function processesCpuSeconds(procs: readonly BenchProcess[]): Promise<number | undefined> {
  let sum = 0;
  for (const p of procs) {
    const s = await processCpuSeconds(p.pid);
    if (s === undefined) return undefined;
    sum += s;
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------
// Redis INFO

/** The `key:value` lines of an INFO section. */
export async function redisInfo(
  redis: RedisConnection,
  section: string,
): Promise<Map<string, string>> {
  const text = String(await redis.sendCommand(["INFO", section]));
  const out = new Map<string, string>();
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

/** used_cpu_sys + used_cpu_user of INFO cpu, in seconds. */
export function redisCpuSeconds(cpu: Map<string, string>): number {
  return Number(cpu.get("used_cpu_sys") ?? NaN) + Number(cpu.get("used_cpu_user") ?? NaN);
}

/** used_memory of INFO memory, in bytes. */
export function usedMemory(memory: Map<string, string>): number {
  const n = Number(memory.get("used_memory"));
  if (!Number.isFinite(n)) throw new Error("INFO memory has no used_memory");
  return n;
}

/** Calls per command from INFO commandstats (commands run inside Lua scripts included). */
export function commandCalls(stats: Map<string, string>): Map<string, number> {
  const calls = new Map<string, number>();
  for (const [key, value] of stats) {
    const m = /(?:^|,)calls=(\d+)/.exec(value);
    if (key.startsWith("cmdstat_") && m) calls.set(key.slice(8), Number(m[1]));
  }
  return calls;
}

/** Microseconds spent in each command from INFO commandstats. */
export function commandUsec(stats: Map<string, string>): Map<string, number> {
  const usec = new Map<string, number>();
  for (const [key, value] of stats) {
    const m = /(?:^|,)usec=(\d+)/.exec(value);
    if (key.startsWith("cmdstat_") && m) usec.set(key.slice(8), Number(m[1]));
  }
  return usec;
}

/** Takes `n` calls of `cmd` out of `calls` (the driver's own commands). */
export function subtractCalls(calls: Map<string, number>, cmd: string, n: number): void {
  const left = (calls.get(cmd) ?? 0) - n;
  if (left > 0) calls.set(cmd, left);
  else calls.delete(cmd);
}

// ---------------------------------------------------------------------------------------------
// Options

function positive(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`${what} must be a positive integer, got ${n}`);
  }
  return n;
}

function nonNegative(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${what} must be a non-negative integer, got ${n}`);
  }
  return n;
}
