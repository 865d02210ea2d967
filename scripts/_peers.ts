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
  /** Deadline of each wait in ms (default {@link DEFAULT_TIMEOUT_MS}). */
  timeoutMs?: number;
}

/** One measured throughput run of a peer. */
export interface PeerThroughput {
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
}

/**
 * Measures one throughput run of a peer: FLUSHDB, starts `workers` worker processes and the
 * producer (which runs `warmup` jobs first), resets the Redis stats once all are ready, lets the
 * producer add `jobs` jobs and wait for every completion event, then reads Redis' CPU and
 * command counts and stops the workers (SIGTERM), checking that they processed every job.
 */
export async function peerThroughput(
  system: PeerSystem,
  opts: PeerThroughputOptions,
): Promise<PeerThroughput> {
  const jobs = positive(opts.jobs, "jobs");
  const workers = positive(opts.workers, "workers");
  const concurrency = positive(opts.concurrency, "concurrency");
  const taskMs = nonNegative(opts.taskMs, "taskMs");
  const warmup = nonNegative(opts.warmup ?? Math.min(2000, jobs), "warmup");
  const timeoutMs = positive(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
  const redis = await connect(opts.url, "streamfutures-bench-peers");
  const children: PeerProcess[] = [];
  try {
    await redis.sendCommand(["FLUSHDB"]);
    for (let i = 0; i < workers; i++) {
      children.push(
        PeerProcess.start(system, "worker", {
          url: opts.url,
          concurrency: String(concurrency),
          "task-ms": String(taskMs),
        }),
      );
    }
    await Promise.all(children.map((w) => w.waitFor("ready", timeoutMs)));
    const producer = PeerProcess.start(system, "throughput", {
      url: opts.url,
      jobs: String(jobs),
      warmup: String(warmup),
      "timeout-ms": String(timeoutMs),
    }, { gate: true });
    children.push(producer);
    const workersExit = () => children.slice(0, workers).map((w) => w.exitedEarly());
    await Promise.race([producer.waitFor("ready", timeoutMs), ...workersExit()]);

    // The driver's own commands after the reset, taken out of the counts below.
    await redis.sendCommand(["CONFIG", "RESETSTAT"]);
    const cpuBefore = redisCpu(await info(redis, "cpu"));
    await producer.go();
    const result = await Promise.race([
      producer.result<{ seconds: number; jobs: number }>(timeoutMs),
      ...workersExit(),
    ]);
    const cpuAfter = redisCpu(await info(redis, "cpu"));
    const calls = commandCalls(await info(redis, "commandstats"));
    subtract(calls, "config|resetstat", 1);
    subtract(calls, "info", 2);

    let processed = 0;
    for (const worker of children.slice(0, workers)) {
      processed += (await worker.stop(timeoutMs)).processed;
    }
    if (processed !== jobs + warmup) {
      throw new Error(
        `${system}: the workers processed ${processed} jobs, expected ${jobs + warmup} ` +
          `(${warmup} warm-up + ${jobs})`,
      );
    }
    if (result.jobs !== jobs || !(result.seconds > 0)) {
      throw new Error(`${system}: unexpected producer result ${JSON.stringify(result)}`);
    }
    const callsByCommand: Record<string, number> = {};
    let total = 0;
    for (const [cmd, n] of [...calls].sort((a, b) => b[1] - a[1])) {
      callsByCommand[cmd] = n / jobs;
      total += n;
    }
    return {
      seconds: result.seconds,
      jobsPerSec: jobs / result.seconds,
      redisCpuUsPerJob: ((cpuAfter - cpuBefore) * 1e6) / jobs,
      redisCallsPerJob: total / jobs,
      callsByCommand,
    };
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
 * repeat) with one worker process at concurrency 1, after FLUSHDB.
 */
export async function peerLatency(
  system: PeerSystem,
  opts: PeerLatencyOptions,
): Promise<PeerLatency> {
  const samples = positive(opts.samples, "samples");
  const warmup = nonNegative(opts.warmup ?? 200, "warmup");
  const timeoutMs = positive(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
  const redis = await connect(opts.url, "streamfutures-bench-peers");
  const children: PeerProcess[] = [];
  try {
    await redis.sendCommand(["FLUSHDB"]);
    const worker = PeerProcess.start(system, "worker", {
      url: opts.url,
      concurrency: "1",
      "task-ms": "0",
    });
    children.push(worker);
    await worker.waitFor("ready", timeoutMs);
    const producer = PeerProcess.start(system, "latency", {
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

/** Redis memory of a peer's pending jobs. */
export interface PeerMemory {
  /** `used_memory` after adding the jobs minus before, divided by the jobs. */
  bytesPerJob: number;
}

/**
 * Measures the Redis memory of pending jobs: FLUSHDB, `used_memory`, adds `jobs` no-op jobs with
 * no worker running (the producer process has exited, so its connections hold nothing), and
 * `used_memory` again.
 */
export async function peerMemory(system: PeerSystem, opts: PeerMemoryOptions): Promise<PeerMemory> {
  const jobs = positive(opts.jobs, "jobs");
  const timeoutMs = positive(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
  const redis = await connect(opts.url, "streamfutures-bench-peers");
  const children: PeerProcess[] = [];
  try {
    await redis.sendCommand(["FLUSHDB"]);
    const before = usedMemory(await info(redis, "memory"));
    const producer = PeerProcess.start(system, "fill", {
      url: opts.url,
      jobs: String(jobs),
      "timeout-ms": String(timeoutMs),
    });
    children.push(producer);
    const result = await producer.result<{ jobs: number }>(timeoutMs);
    if (result.jobs !== jobs) {
      throw new Error(`${system}: unexpected fill result ${JSON.stringify(result)}`);
    }
    const after = usedMemory(await info(redis, "memory"));
    return { bytesPerJob: (after - before) / jobs };
  } finally {
    await killAll(children);
    redis.close();
  }
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
const NODE = Deno.env.get("NODE") || "node";
/** How long a SIGKILLed child may take to be reaped. */
const KILL_WAIT_MS = 10_000;
/** How much of a child's stderr an error message quotes. */
const STDERR_TAIL = 4000;

/** A peer script running under Node, with its output collected. */
class PeerProcess {
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
      this.#notify();
      return status;
    });
  }

  /** Starts `node <script> <role> --queue Q --<flag> <value>...`. */
  static start(
    system: PeerSystem,
    role: string,
    flags: Record<string, string>,
    { gate = false } = {},
  ): PeerProcess {
    const args = [peerScript(system), role, "--queue", QUEUE];
    for (const [name, value] of Object.entries(flags)) args.push(`--${name}`, value);
    if (gate) args.push("--gate");
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(NODE, {
        args,
        stdin: gate ? "piped" : "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(
          `cannot run the ${system} peer: "${NODE}" (Node.js) is not on PATH; install Node 20+ ` +
            `or set NODE to its path`,
          { cause: error },
        );
      }
      throw error;
    }
    return new PeerProcess(child, `${system} ${role} (pid ${child.pid})`);
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

  /** Tells a gated producer to start (writes a line on its stdin). */
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
    await this.#until(() => this.#status !== undefined, "finishing", timeoutMs);
    if (!this.#status!.success) throw this.#failure("failed");
    const last = this.#out.trimEnd().split("\n").pop() ?? "";
    try {
      return JSON.parse(last) as T;
    } catch (error) {
      throw this.#failure(`printed no JSON result (stdout: ${JSON.stringify(last)})`, error);
    }
  }

  /** Never resolves; rejects if the process exits (e.g. a worker that crashed mid-run). */
  exitedEarly(): Promise<never> {
    return this.#exited.then(() => {
      throw this.#failure("exited while the run went on");
    });
  }

  /** Sends SIGTERM and waits for a clean exit with a `{ processed }` result. */
  stop(timeoutMs: number): Promise<{ processed: number }> {
    this.#signal("SIGTERM");
    return this.result<{ processed: number }>(timeoutMs);
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

/** Kills every child still running (after an error; a no-op for those that exited). */
async function killAll(children: readonly PeerProcess[]): Promise<void> {
  const results = await Promise.allSettled(children.map((c) => c.kill()));
  for (const r of results) {
    if (r.status === "rejected") console.error("bench peers: could not kill a child:", r.reason);
  }
}

// ---------------------------------------------------------------------------------------------
// Redis INFO

/** The `key:value` lines of an INFO section. */
async function info(redis: RedisConnection, section: string): Promise<Map<string, string>> {
  const text = String(await redis.sendCommand(["INFO", section]));
  const out = new Map<string, string>();
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

/** used_cpu_sys + used_cpu_user, in seconds. */
function redisCpu(cpu: Map<string, string>): number {
  return Number(cpu.get("used_cpu_sys") ?? NaN) + Number(cpu.get("used_cpu_user") ?? NaN);
}

function usedMemory(memory: Map<string, string>): number {
  const n = Number(memory.get("used_memory"));
  if (!Number.isFinite(n)) throw new Error("INFO memory has no used_memory");
  return n;
}

/** Calls per command from INFO commandstats (commands run inside Lua scripts included). */
function commandCalls(stats: Map<string, string>): Map<string, number> {
  const calls = new Map<string, number>();
  for (const [key, value] of stats) {
    const m = /(?:^|,)calls=(\d+)/.exec(value);
    if (key.startsWith("cmdstat_") && m) calls.set(key.slice(8), Number(m[1]));
  }
  return calls;
}

function subtract(calls: Map<string, number>, cmd: string, n: number): void {
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
