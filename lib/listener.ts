/**
 * `Listener`: the worker loop. It joins the consumer group of one or more queues, proves it is
 * alive by heartbeat, takes at most as many tasks as it has free slots, runs them on executor
 * threads, and writes status, heartbeat and result into the seed's hashes. It also keeps the
 * queues healthy: it recovers tasks whose worker died, moves delayed tasks to their stream when
 * they are due, stops tasks that are cancelled or run past their timeout, and rides out Redis
 * restarts. The `worker.ts` CLI and a pool's local listeners (`workers: N`) both run this loop.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import {
  ConnectionError,
  formatErrorLine,
  type RemoteErrorInfo,
  UnknownTaskError,
  WorkerInterrupted,
} from "./errors.ts";
import {
  type DoneMessage,
  type EventMessage,
  type ExecutorMode,
  executorMode,
  ExecutorPool,
  type RunMessage,
} from "./_executor.ts";
import { hasNul, SEP } from "./_executor_codec.ts";
import { ARGS_ASIDE, GROUP, Keys, PROTOCOL_VERSION } from "./_keys.ts";
import { FINISH } from "./_lua/finish.ts";
import { HEARTBEAT } from "./_lua/heartbeat.ts";
import { PROMOTE } from "./_lua/promote.ts";
import { CRON_DUE, FIRE } from "./_lua/schedule.ts";
import { type CronSpec, nextCronTime } from "./_cron.ts";
import { RECOVER } from "./_lua/recover.ts";
import { REGISTER } from "./_lua/register.ts";
import { START } from "./_lua/start.ts";
import { TAKE } from "./_lua/take.ts";
import {
  checkOptions,
  duration,
  heartbeats,
  keyName,
  MAX_TIMER_MS,
  nonNegativeInt,
  positiveInt,
} from "./_options.ts";
import {
  type BlockingReader,
  checkConnectionOptions,
  connect,
  type ConnectionOptions,
  connectReader,
  type RedisConnection,
  replyPairs,
  subscribe,
  withReconnect,
} from "./_redis.ts";
import { cpuCount, hostname, pid, resolveModuleUrl } from "./_runtime.ts";
import {
  checkLogFormat,
  checkLogLevel,
  createLogger,
  type LogFormat,
  type Logger,
  type LogLevel,
} from "./_log.ts";
import { formatSummary, roundForLog, TaskStats } from "./_metrics.ts";
import { parseFlatEntries, parseStreamReply, type StreamEntry } from "./_stream.ts";
import { checkTaskModules, type TaskModules } from "./_tasks.ts";

export { UnknownTaskError, WorkerInterrupted };

/** Options of a {@link Listener} (and of the `worker.ts` CLI). */
export interface ListenerOptions {
  /** Where Redis is (default `redis://127.0.0.1:6379`). */
  url?: ConnectionOptions;
  /** The `<application>` key prefix (default `"streamfutures"`). */
  app?: string;
  /** The queues to serve (default `["default"]`). */
  queues?: readonly string[];
  /** Task modules (paths relative to the working directory, or URLs). */
  tasks: TaskModules;
  /** Tasks run at once (default 8). */
  concurrency?: number;
  /** Executor threads the tasks run on (default: the number of CPUs, at most `concurrency`). */
  executors?: number;
  /**
   * Tasks claimed beyond `concurrency` (default 0): they wait in the worker and start the moment
   * a slot frees, instead of a claim round trip later. Worth it for short tasks (a few ms), where
   * that round trip is a large part of a task's time. A prefetched task counts as running in
   * Redis (status 1, heartbeat, fenced) while it waits; cancelling it drops it unrun, and a
   * stopping worker gives its prefetched tasks back to the queue unrun (same attempt). Other
   * workers cannot take them meanwhile, so keep it 0 for long tasks.
   */
  prefetch?: number;
  /**
   * `"thread"`, `"process"` or `"inline"`: what an executor is (default: threads on Node,
   * processes on Deno, whose worker threads cannot be stopped in a synchronous loop). `"inline"`
   * runs tasks on the listener's own thread: the fastest, for asynchronous tasks only — a task
   * there cannot be stopped against its will, and a synchronous one stalls the heartbeats (see
   * `ExecutorMode`).
   */
  executorMode?: ExecutorMode;
  /** How often to refresh heartbeats, ms (default 1000). */
  heartbeatInterval?: number;
  /** A heartbeat older than this (ms) means dead (default 5000). */
  heartbeatTimeout?: number;
  /** How long a graceful stop waits for running tasks, ms (default 10000). */
  grace?: number;
  /**
   * How long a task whose signal was aborted (cancelled, timed out) may take to return before its
   * executor thread is terminated, ms (default 2000).
   */
  taskGrace?: number;
  /** Timeout of tasks submitted without one, ms (default: none). */
  taskTimeout?: number;
  /** The largest encoded result accepted, in bytes (default 16 MiB); larger ones fail the task. */
  maxPayloadBytes?: number;
  /** How long Redis may be unreachable before recording a result is given up, ms (default 30 s). */
  reconnectDeadline?: number;
  /** How long one blocking read waits for work, ms (default 1000). */
  block?: number;
  /** Identifies this listener in the registry and as a consumer (default host:pid:random). */
  id?: string;
  /** Receives log lines (default: stderr). */
  log?: (line: string) => void;
  /** Log level (default `"info"`): `debug` adds one line per task. */
  logLevel?: LogLevel;
  /** Log line format (default `"text"`). */
  logFormat?: LogFormat;
  /** How often to log a summary at `info` (tasks/s, failures, mean wait and run), ms; 0: never. */
  statsInterval?: number;
  /** Redis password (instead of one in the URL). */
  password?: string;
}

/** Every option name of {@link ListenerOptions}: a name not among them is refused. */
const LISTENER_OPTIONS: Record<keyof ListenerOptions, true> = {
  url: true,
  app: true,
  queues: true,
  tasks: true,
  concurrency: true,
  executors: true,
  prefetch: true,
  executorMode: true,
  heartbeatInterval: true,
  heartbeatTimeout: true,
  grace: true,
  taskGrace: true,
  taskTimeout: true,
  maxPayloadBytes: true,
  reconnectDeadline: true,
  block: true,
  id: true,
  log: true,
  logLevel: true,
  logFormat: true,
  statsInterval: true,
  password: true,
};

/**
 * A task still running this long after it started gets a `started` notice to its client (which
 * then shows it running and can check its heartbeat); one that finished before costs no notice.
 */
const STARTED_NOTICE_DELAY = 25;

/**
 * A cron tick comes due while no worker looks at the schedules for longer than this: it counts
 * as missed (everything was down; see catchUp and CRON_DUE). One late from a backlog still runs.
 */
const CRON_GRACE = 5_000;
/** Due schedules handled per round (their FIRE calls go out together). */
const CRON_BATCH = 100;

/** The first 10 hex digits of the SHA-1 of `text` (cron operation ids). */
async function shortHash(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest).slice(0, 5), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** The default of `maxPayloadBytes` (pool and worker): 16 MiB. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;

type StopKind = "cancel" | "timeout" | "lost" | "interrupt";

const STOP_REASON: Record<StopKind, string> = {
  cancel: "CancelledError",
  timeout: "TimeoutError",
  lost: "WorkerLostError",
  interrupt: "WorkerInterrupted",
};

/** Consecutive progress or yielded values of a task, sent as one notice (`#queueEvents`). */
interface EventPack {
  task: Task;
  kind: "p" | "y";
  /** The index of the first value. */
  first: number;
  /** Their encoded values. */
  values: string[];
  /** Their length in all, in characters (with a separator each). */
  chars: number;
}

/** The most characters of values one notice packs (about 1 MiB). */
const PACK_CHARS = 1 << 20;

interface Task {
  readonly seq: number;
  readonly entryId: string;
  readonly stream: string;
  readonly queue: string;
  readonly taskId: string;
  readonly op: string;
  readonly reply: string;
  readonly fields: Record<string, string>;
  readonly attempt: number;
  readonly retries: number;
  readonly retryOnError: boolean;
  readonly timeout: number | undefined;
  /** Its arguments are stored beside its entry ({@link ARGS_ASIDE}). */
  readonly aside: boolean;
  /** Those arguments as the bytes Redis sent, for executor processes (else in `fields.args`). */
  argsBytes: Uint8Array | undefined;
  /** Why its arguments stored beside the entry could not be read; it fails instead of running. */
  argsError: RemoteErrorInfo | undefined;
  /** `reserved`: claimed (prefetched), waiting for a free slot to run. */
  state: "starting" | "reserved" | "running" | "finishing";
  /** `performance.now()` at which the task times out. */
  deadline: number | undefined;
  /** Set once the task was told to stop; past `killAt` its executor is terminated. */
  stop: { kind: StopKind; message: string; killAt: number } | undefined;
  /** A cancel notice arrived while START (or TAKE) was in flight. */
  cancelSeen: boolean;
  /** Redis time (ms) when START let it run, and `performance.now()` then (or when it was
   * claimed, for a reserved task: it then starts with the time it waited added). */
  startedAt: number;
  runStart: number;
  /**
   * `performance.now()` when Redis last said this worker holds the task (START or TAKE let it
   * run, or a HEARTBEAT call sent then found it still ours). A prefetched task starts only while
   * that is recent: after the worker was frozen past its lease, it waits for the next heartbeat,
   * which drops it if recovery gave it away meanwhile.
   */
  leaseAt: number;
  /** Queue wait and run time (ms), once it ended. */
  waitMs: number;
  runMs: number;
}

/** Tasks grouped by operation, in order. */
function byOp(tasks: readonly Task[]): Map<string, Task[]> {
  const groups = new Map<string, Task[]>();
  for (const task of tasks) {
    const list = groups.get(task.op);
    if (list) list.push(task);
    else groups.set(task.op, [task]);
  }
  return groups;
}

/** One outcome for FINISH: entry id, op, task id, reply, action, a, b, timings. */
type FinishRecord = [string, string, string, string, string, string, string, string];

const ID = /^[A-Za-z0-9_.\-]+$/;

/** A stream entry's number field: a finite number ≥ 0, else `undefined`. */
function nonNegative(value: string | undefined): number | undefined {
  const n = Number(value);
  return value !== undefined && Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** Compares two stream entry ids (`<ms>-<seq>`) without allocating. */
function compareIds(a: string, b: string): number {
  if (a === b) return 0;
  const ad = a.indexOf("-");
  const bd = b.indexOf("-");
  // Same digit counts compare as strings; otherwise the longer number is larger.
  if (ad !== bd) return ad - bd;
  const ms = a < b ? -1 : 1;
  for (let i = 0; i < ad; i++) {
    if (a.charCodeAt(i) !== b.charCodeAt(i)) return ms;
  }
  const as = a.length - ad;
  const bs = b.length - bd;
  if (as !== bs) return as - bs;
  return ms;
}

function idRange(ids: readonly string[]): [string, string] {
  let min = ids[0];
  let max = ids[0];
  for (const id of ids) {
    if (compareIds(id, min) < 0) min = id;
    if (compareIds(id, max) > 0) max = id;
  }
  return [min, max];
}

/**
 * The worker loop.
 *
 * @example
 * ```ts ignore
 * const listener = new Listener({ tasks: "./tasks.ts", url: "redis://127.0.0.1:6379", concurrency: 4 });
 * await listener.start();
 * // ... later
 * await listener.stop({ reason: "SIGTERM" });
 * ```
 */
export class Listener {
  /** This listener's id (its consumer name and registry member). */
  readonly id: string;
  readonly #url: ConnectionOptions;
  readonly #keys: Keys;
  readonly #queues: readonly string[];
  /** The priority levels each queue has (0 always), highest first. */
  #levels = new Map<string, number[]>();
  /** Every stream served, highest priority first (queues rotate within a level). */
  #streams: string[] = [];
  #cronTimer: { at: number; timer: ReturnType<typeof setTimeout> } | undefined;
  #cronRunning = false;
  readonly #modules: (string | URL)[];
  readonly #concurrency: number;
  readonly #prefetch: number;
  /** Prefetched tasks (state `reserved`), in the order they run. */
  #reserved: Task[] = [];
  #refilling = false;
  /** Tasks whose START (or TAKE) is in flight (state `starting`). */
  #startingTasks = 0;
  readonly #executorCount: number | undefined;
  readonly #executorMode: ExecutorMode;
  readonly #heartbeatInterval: number;
  readonly #heartbeatTimeout: number;
  readonly #grace: number;
  readonly #taskGrace: number;
  readonly #taskTimeout: number | undefined;
  readonly #maxPayloadBytes: number;
  readonly #reconnectDeadline: number;
  readonly #block: number;
  readonly #logger: Logger;
  readonly #stats = new TaskStats();
  readonly #statsInterval: number;
  #statsTimer: ReturnType<typeof setInterval> | undefined;
  #executors: ExecutorPool | undefined;
  /** True when this listener started its executor pool (and stops it). */
  #ownsExecutors = true;
  readonly #sink = {
    onDone: (results: (DoneMessage | EventMessage)[]) => this.#onDone(results),
    onLost: (seqs: number[], why: string) => this.#onExecutorLost(seqs, why),
  };
  #cmd: RedisConnection | undefined;
  #reader: BlockingReader | undefined;
  #unsubscribe: (() => void) | undefined;
  #tasks = new Map<number, Task>();
  #byTaskId = new Map<string, Task>();
  /** Tasks with a deadline or a pending kill, watched by the sweep timer. */
  #timed = new Set<Task>();
  #sweepTimer: ReturnType<typeof setTimeout> | undefined;
  #sweepAt = Infinity;
  #starting = new Set<Promise<void>>();
  #finishing = new Set<Promise<void>>();
  /** `<app>:replies:`, the start of every reply stream key. */
  readonly #repliesPrefix: string;
  /** The operation of the last entry taken without a `reply` field, its reply stream and checks. */
  #lastOp: string | undefined;
  #lastReply: string | undefined;
  #lastValid = false;
  /** Outcomes to send at the end of this event-loop turn (see #finish). */
  #outgoing: [Task, FinishRecord][] = [];
  /** Progress events and yielded values to send before them, by reply stream (see #onDone). */
  #outgoingEvents = new Map<string, string[]>();
  #sendScheduled = false;
  #state: "new" | "starting" | "running" | "stopping" | "stopped" = "new";
  #loop: Promise<void> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #beating = false;
  #beats = 0;
  /** When the heartbeat timer last fired (performance.now()), to notice a blocked event loop. */
  #tickAt = 0;
  /** When a blocked event loop was last reported (at most once a minute). */
  #lagReportedAt = -Infinity;
  #slotFree: (() => void) | undefined;
  /** Tasks in hand whose outcome is being recorded (they no longer occupy a slot). */
  #recording = 0;
  /** Called when the last task in hand is released (a graceful stop waits for it). */
  #drained: (() => void) | undefined;
  /** Started tasks in start order, waiting for their `started` notice (see below). */
  #noticeQueue: Task[] = [];
  #noticeHead = 0;
  #noticeTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped: Promise<void> | undefined;
  #rotation = 0;
  /**
   * True while work keeps coming: the read loop then reads and claims in one call (TAKE) rather
   * than a blocking read followed by START. Set by a read that filled its count, until TAKE or
   * START finds the streams drained.
   */
  #busy = false;
  /**
   * After a blocking read, the streams that gave all they were asked for and that no START has
   * found drained since: the read loop stays busy while one is left.
   */
  #full: Set<string> | undefined;
  /** Set when a read's reply was lost: what it delivered may be pending for us, unclaimed. */
  #reclaim = false;
  /** Per stream, the largest entry id this listener has read (new entries come after it). */
  #lastRead = new Map<string, string>();
  /** Set while a TAKE call is in flight, with the cancel notices for tasks not yet in hand. */
  #takeCancels: Set<string> | undefined;
  #completed = 0;
  #failed = 0;
  /** Redis time minus local time, ms (from PROMOTE). */
  #clockOffset = 0;
  #wakeTimers = new Map<string, { at: number; timer: ReturnType<typeof setTimeout> }>();

  /**
   * @param options The listener's options.
   * @param shared Internal: executor threads shared with other listeners of this process (a
   *   pool's local listeners); the listener then neither starts nor stops them.
   */
  constructor(options: ListenerOptions, shared?: { executors: ExecutorPool }) {
    options = checkOptions(
      options as ListenerOptions | undefined,
      LISTENER_OPTIONS,
      "new Listener()",
    );
    if (shared) {
      this.#executors = shared.executors;
      this.#ownsExecutors = false;
    }
    this.#url = checkConnectionOptions(options.url, "url", options.password);
    this.#keys = new Keys(keyName(options.app, "app", "streamfutures"));
    this.#repliesPrefix = `${this.#keys.app}:replies:`;
    const queues = options.queues ?? ["default"];
    if (!Array.isArray(queues) || queues.length === 0) {
      throw new TypeError("queues must be a non-empty array of queue names");
    }
    this.#queues = [...new Set(queues.map((q, i) => keyName(q, `queues[${i}]`, "default")))];
    for (const queue of this.#queues) this.#levels.set(queue, [0]);
    this.#orderStreams();
    this.#modules = checkTaskModules(options.tasks);
    if (this.#modules.length === 0) throw new TypeError("tasks must name at least one task module");
    this.#concurrency = positiveInt(options.concurrency, "concurrency", 8);
    this.#prefetch = nonNegativeInt(options.prefetch, "prefetch", 0);
    this.#executorMode = executorMode(options.executorMode);
    this.#executorCount = options.executors === undefined
      ? undefined
      : positiveInt(options.executors, "executors", 1);
    ({ heartbeatInterval: this.#heartbeatInterval, heartbeatTimeout: this.#heartbeatTimeout } =
      heartbeats(options.heartbeatInterval, options.heartbeatTimeout));
    this.#grace = duration(options.grace, "grace", 10_000, true);
    this.#taskGrace = duration(options.taskGrace, "taskGrace", 2_000, true);
    this.#taskTimeout = options.taskTimeout === undefined
      ? undefined
      : duration(options.taskTimeout, "taskTimeout", 0);
    this.#maxPayloadBytes = positiveInt(
      options.maxPayloadBytes,
      "maxPayloadBytes",
      DEFAULT_MAX_PAYLOAD_BYTES,
    );
    this.#reconnectDeadline = duration(options.reconnectDeadline, "reconnectDeadline", 30_000);
    this.#block = positiveInt(options.block, "block", 1000);
    if (options.id !== undefined && (typeof options.id !== "string" || options.id.trim() === "")) {
      throw new TypeError(
        `id must be a non-empty string (the listener's consumer name), got ${
          JSON.stringify(options.id)
        }`,
      );
    }
    this.id = options.id ?? `${hostname()}:${pid()}:${Math.random().toString(36).slice(2, 8)}`;
    this.#logger = createLogger({
      level: checkLogLevel(options.logLevel, "logLevel"),
      format: checkLogFormat(options.logFormat, "logFormat"),
      name: `worker ${this.id}`,
      sink: options.log,
    });
    this.#statsInterval = duration(options.statsInterval, "statsInterval", 60_000, true);
  }

  /** The number of tasks in hand (starting, running or being recorded). */
  get active(): number {
    return this.#tasks.size;
  }

  /** Counts of tasks this listener finished: `completed` (value) and `failed` (error). */
  get counts(): { completed: number; failed: number } {
    return { completed: this.#completed, failed: this.#failed };
  }

  /**
   * Starts the executor threads (which load the task modules), connects, joins the consumer
   * groups, registers in the listener registry, and starts taking work. Resolves once the
   * listener is live.
   */
  async start(): Promise<void> {
    if (this.#state !== "new") throw new Error(`listener ${this.id} was already started`);
    this.#state = "starting";
    if (this.#ownsExecutors) {
      const modules = await Promise.all(this.#modules.map((m) => resolveModuleUrl(m)));
      this.#executors = new ExecutorPool({
        modules,
        mode: this.#executorMode,
        url: this.#url,
        app: this.#keys.app,
        size: this.#executorCount ?? Math.min(this.#concurrency, await cpuCount()),
        maxPayloadBytes: this.#maxPayloadBytes,
        log: (line) => this.#logger.warn(`${line}`),
      });
      await this.#executors.start();
    }
    const size = this.#executors!.size;
    const deadline = this.#reconnectDeadline;
    this.#cmd = await connect(this.#url, "streamfutures-worker", deadline);
    this.#reader = await connectReader(this.#url, "streamfutures-worker-read", deadline);
    this.#unsubscribe = await subscribe(
      this.#url,
      this.#keys.control(),
      (message) => this.#onControl(message),
      "streamfutures-worker-control",
      deadline,
    );
    await this.#refreshLevels();
    for (const stream of this.#streams) await this.#ensureGroup(stream);
    await this.#beat();
    this.#tickAt = performance.now();
    this.#timer = setInterval(() => {
      this.#checkLag();
      void this.#beat();
    }, this.#heartbeatInterval);
    this.#state = "running";
    for (const queue of this.#queues) {
      this.#promote(queue).catch((error) => {
        this.#logger.warn(`promoting delayed tasks failed: ${error}`);
      });
    }
    this.#cron().catch((error) => {
      this.#logger.warn(`cron schedules failed: ${error}`);
    });
    this.#loop = this.#readLoop();
    if (this.#statsInterval > 0) {
      this.#statsTimer = setInterval(() => {
        if (this.#stats.windowTasks > 0) {
          this.#logger.info("summary", formatSummary(this.#stats.take()));
        }
      }, this.#statsInterval);
    }
    this.#logger.info(
      `serving ${this.#queues.join(", ")} of app ${this.#keys.app}`,
      {
        concurrency: this.#concurrency,
        executors: this.#executors!.mode === "inline"
          ? "inline"
          : this.#ownsExecutors
          ? `${size} ${this.#executors!.mode}`
          : `${size} ${this.#executors!.mode} shared`,
        tasks: this.#executors!.names.join(","),
      },
    );
  }

  /**
   * Stops taking work at once, lets running tasks finish within `grace` ms, then aborts the rest
   * and records them as interrupted (`WorkerInterrupted: <reason>`; back to the queue when they
   * have retries left). Leaves the registry, and closes the connections. Safe to call more than
   * once.
   */
  stop(options: { grace?: number; reason?: string } = {}): Promise<void> {
    this.#stopped ??= this.#stop(
      duration(options.grace, "grace", this.#grace, true),
      options.reason ?? "stopped",
    );
    return this.#stopped;
  }

  async #stop(grace: number, reason: string): Promise<void> {
    if (this.#state === "new") {
      this.#state = "stopped";
      return;
    }
    this.#state = "stopping";
    this.#slotFree?.();
    this.#endPause?.();
    // While Redis is unreachable these would only wait for their timeouts (5 s each): the
    // registry entry lapses by itself, and no read is blocked in Redis.
    if (this.#cmd && this.#cmd.downSince === undefined) {
      await Promise.all(
        this.#queues.map((q) => this.#cmd!.sendCommand(["ZREM", this.#keys.listeners(q), this.id])),
      ).catch(() => {});
      // End the blocking read now; entries it already received are still run.
      await this.#reader?.unblock(this.#cmd).catch(() => {});
    }
    await this.#loop?.catch(() => {});
    // (A claim whose tasks' arguments are being read adds that read when it returns.)
    while (this.#starting.size > 0) await Promise.all(this.#starting);
    if (this.#reserved.length > 0) {
      // Prefetched tasks never ran: back to the queue, same attempt, for another worker.
      const back = this.#reserved;
      this.#reserved = [];
      this.#logger.info(`giving ${back.length} prefetched task(s) back to the queue`);
      this.#finish(back.map((task) => [task, this.#record(task, "q", "", "")]));
    }
    if (this.#tasks.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => (this.#drained = resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, grace))),
      ]);
      clearTimeout(timer);
    }
    const interrupted = [...this.#tasks.values()].filter((t) => t.state === "running");
    if (interrupted.length > 0) {
      this.#logger.warn(`interrupting ${interrupted.length} task(s) (${reason})`);
      const records: Task[] = [];
      for (const task of interrupted) {
        this.#stopTask(task, "interrupt", reason);
        records.push(task);
      }
      const error: RemoteErrorInfo = { name: "WorkerInterrupted", message: reason };
      this.#finish(records.map((t) => [t, this.#failure(t, error, true)]));
    }
    await Promise.all(this.#finishing);
    clearInterval(this.#timer);
    clearInterval(this.#statsTimer);
    clearTimeout(this.#noticeTimer);
    if (this.#stats.windowTasks > 0) {
      this.#logger.info("summary", formatSummary(this.#stats.take()));
    }
    clearTimeout(this.#sweepTimer);
    for (const { timer } of this.#wakeTimers.values()) clearTimeout(timer);
    clearTimeout(this.#cronTimer?.timer);
    if (this.#ownsExecutors) {
      // Interrupted tasks get up to taskGrace to see their aborted signal and return (a task that
      // cleans up on abort may do so) before the executors are terminated.
      if (interrupted.length > 0) await this.#executors?.idle(this.#taskGrace);
      await this.#executors?.close();
    }
    this.#unsubscribe?.();
    // A listener that never connected has no registry entry to remove.
    if (this.#cmd?.downSince !== undefined) {
      this.#logger.warn(
        "could not leave the registry: Redis is unreachable (the entry lapses by itself)",
      );
    } else if (this.#cmd) {
      try {
        const cmd = this.#cmd;
        await Promise.all(
          this.#queues.map((q) => cmd.sendCommand(["ZREM", this.#keys.listeners(q), this.id])),
        );
        // A consumer that still holds entries (results that could not be recorded) is kept, so
        // that recovery finds them.
        await Promise.all(this.#streams.map(async (s) => {
          const held = await cmd.sendCommand(["XPENDING", s, GROUP, "-", "+", "1", this.id]);
          if (Array.isArray(held) && held.length === 0) {
            await cmd.sendCommand(["XGROUP", "DELCONSUMER", s, GROUP, this.id]);
          }
        }));
      } catch (error) {
        this.#logger.warn(
          `could not leave the registry: ${(error as Error).message}`,
        );
      }
    }
    this.#reader?.close();
    this.#cmd?.close();
    this.#state = "stopped";
    this.#logger.info(`stopped (${reason})`);
  }

  async #ensureGroup(stream: string): Promise<void> {
    try {
      // "0": entries added before any worker existed (requireWorkers: false) are delivered too.
      await this.#cmd!.sendCommand(["XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"]);
    } catch (error) {
      if (!String((error as Error)?.message).startsWith("BUSYGROUP")) throw error;
    }
    if (this.#lastRead.has(stream)) return;
    // Entries pending for this consumer name up to the group's last delivered id were read by an
    // earlier process with the same worker id: recovery deals with them, #reclaimTaken must not.
    const groups = await this.#cmd!.sendCommand(["XINFO", "GROUPS", stream]) as unknown[];
    for (const group of groups ?? []) {
      const info = new Map(replyPairs(group));
      if (info.get("name") !== GROUP) continue;
      const last = info.get("last-delivered-id");
      if (last && !this.#lastRead.has(stream)) this.#lastRead.set(stream, last);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Heartbeats, recovery, delayed tasks

  /**
   * Warns (at most once a minute) when two heartbeat ticks were two intervals apart or more:
   * something held up this thread, heartbeats included — with inline executors, most likely a
   * synchronous task. (A hold-up shorter than that may go unnoticed: it may fall between ticks.)
   */
  #checkLag(): void {
    const now = performance.now();
    const gap = now - this.#tickAt;
    this.#tickAt = now;
    if (gap < 2 * this.#heartbeatInterval || now - this.#lagReportedAt < 60_000) return;
    this.#lagReportedAt = now;
    const inline = this.#executors?.mode === "inline";
    this.#logger.warn(
      `this worker's event loop was held up: two heartbeats were ${Math.round(gap)} ms apart ` +
        `(due every ${this.#heartbeatInterval} ms; a task counts as lost after ` +
        `${this.#heartbeatTimeout} ms without one)` +
        (inline
          ? "; tasks run inline, on this thread: run CPU-bound tasks on executors " +
            '(executorMode "thread" or "process")'
          : ""),
    );
  }

  async #beat(): Promise<void> {
    if (this.#beating) return;
    this.#beating = true;
    try {
      const cmd = this.#cmd!;
      // A stopping listener takes no new work: it no longer counts as live.
      const live = this.#state === "running" || this.#state === "starting";
      const writes: Promise<unknown>[] = !live
        ? []
        : this.#queues.map((q) =>
          REGISTER.run(cmd, [this.#keys.listeners(q)], [
            this.id,
            String(this.#heartbeatTimeout * 4),
          ])
        );
      // Tasks whose outcome is being recorded keep heartbeating: were FINISH delayed (Redis
      // slow or reconnecting), recovery must not run them again meanwhile.
      const running = [...this.#tasks.values()].filter((t) => t.state !== "starting");
      if (running.length > 0) {
        const args = [this.#keys.app, GROUP, this.id];
        for (const t of running) args.push(t.stream, t.entryId, t.op, t.taskId);
        const sentAt = performance.now();
        writes.push(
          HEARTBEAT.run(cmd, [], args).then((reply) => {
            const verdicts = reply as (number | string)[];
            const judged = new Set<number>();
            for (let i = 0; i < verdicts.length; i += 2) judged.add(Number(verdicts[i]) - 1);
            // Prefetched tasks Redis found still ours: their lease is confirmed, they may start.
            running.forEach((task, i) => {
              if (task.state === "reserved" && !judged.has(i)) task.leaseAt = sentAt;
            });
            for (let i = 0; i < verdicts.length; i += 2) {
              const task = running[Number(verdicts[i]) - 1];
              if (task?.state === "reserved") {
                this.#dropReserved(task);
                continue;
              }
              if (!task || task.state !== "running" || task.stop) continue;
              const verdict = verdicts[i + 1];
              if (verdict === "c") this.#stopTask(task, "cancel", "the task was cancelled");
              else if (verdict === "l") {
                this.#stopTask(task, "lost", "the task was given to another attempt");
              } else this.#stopTask(task, "cancel", "the task is no longer running");
            }
            this.#refill();
          }),
        );
      }
      // Recovery every half heartbeat timeout (one worker per queue does it, by lock).
      const every = Math.max(1, Math.round(this.#heartbeatTimeout / this.#heartbeatInterval / 2));
      if (++this.#beats % every === 0) {
        for (const stream of this.#streams) writes.push(this.#recover(stream));
      }
      if (live) {
        for (const queue of this.#queues) writes.push(this.#promote(queue));
        writes.push(this.#refreshLevels(), this.#cron());
      }
      await Promise.all(writes);
    } catch (error) {
      if (this.#state === "running") {
        this.#logger.warn(`heartbeat failed: ${(error as Error).message}`);
      }
    } finally {
      this.#beating = false;
    }
  }

  /** The queue a stream belongs to (`<app>:queue:<queue>` or `<app>:queue:<queue>:p<n>`). */
  #queueOf(stream: string): string {
    return stream.slice(this.#keys.queue("").length).split(":")[0];
  }

  /** Orders the streams: priority levels highest first; queues take turns within a level. */
  #orderStreams(): void {
    const levels = [...new Set([...this.#levels.values()].flat())].sort((a, b) => b - a);
    const streams: string[] = [];
    for (const level of levels) {
      for (const queue of this.#queues) {
        if (this.#levels.get(queue)!.includes(level)) {
          streams.push(this.#keys.stream(queue, level));
        }
      }
    }
    this.#streams = streams;
  }

  /** Learns the priority levels of the served queues (`<app>:priorities:<queue>`). */
  async #refreshLevels(): Promise<void> {
    let changed = false;
    for (const queue of this.#queues) {
      const members = await this.#cmd!.sendCommand(["SMEMBERS", this.#keys.priorities(queue)]);
      for (const member of (members as string[]) ?? []) {
        changed = this.#addLevel(queue, Number(member)) || changed;
      }
    }
    if (changed) {
      for (const stream of this.#streams) await this.#ensureGroup(stream);
    }
  }

  /** Adds a priority level to a queue; true when it is new. */
  #addLevel(queue: string, level: number): boolean {
    const levels = this.#levels.get(queue);
    if (!levels || !Number.isInteger(level) || levels.includes(level)) return false;
    levels.push(level);
    levels.sort((a, b) => b - a);
    this.#orderStreams();
    return true;
  }

  /**
   * Looks for lost tasks in a stream (RECOVER), page by page from the start of its pending list,
   * while this worker holds the stream's recovery lock.
   */
  async #recover(stream: string): Promise<void> {
    const queue = this.#queueOf(stream);
    const lockMs = Math.max(1, Math.round(this.#heartbeatTimeout / 2));
    const level = stream.slice(this.#keys.queue(queue).length);
    const lock = this.#keys.recovering(queue, level ? Number(level.slice(2)) : 0);
    let start = "-";
    let requeued = 0;
    let failed = 0;
    for (let page = 0; page < 100; page++) {
      const reply = await RECOVER.run(this.#cmd!, [stream, lock], [
        this.#keys.app,
        GROUP,
        queue,
        String(this.#heartbeatTimeout),
        this.id,
        String(lockMs),
        "1000",
        start,
        page === 0 ? "0" : "1",
      ]);
      if (!Array.isArray(reply)) return; // another worker holds the lock
      requeued += Number(reply[1]);
      failed += Number(reply[2]);
      if (Number(reply[0]) < 1000 || !reply[3]) break;
      start = `(${reply[3]}`;
    }
    if (requeued > 0 || failed > 0) {
      this.#logger.warn(
        `recovered lost tasks of ${stream}: ${requeued} back to ` +
          `the queue, ${failed} failed (WorkerLostError)`,
      );
    }
  }

  /** Moves due delayed tasks of `queue` to its stream, and arms a timer for the next one. */
  async #promote(queue: string): Promise<void> {
    if (this.#state !== "running" && this.#state !== "starting") return;
    const limit = 1000;
    for (;;) {
      const reply = await PROMOTE.run(
        this.#cmd!,
        [this.#keys.delayed(queue)],
        [this.#keys.app, queue, String(limit)],
      ) as number[];
      const [moved, next, now] = reply.map(Number);
      this.#clockOffset = now - Date.now();
      if (moved >= limit) continue;
      if (next >= 0) this.#wakeAt(queue, next);
      return;
    }
  }

  /** Arms (or advances) the timer that promotes `queue`'s delayed tasks at Redis time `due`. */
  #wakeAt(queue: string, due: number): void {
    const current = this.#wakeTimers.get(queue);
    if (current && current.at <= due) return;
    if (current) clearTimeout(current.timer);
    // Timers hold at most 2^31 - 1 ms; a later due time wakes early, finds nothing and re-arms.
    const delay = Math.min(Math.max(0, due - (Date.now() + this.#clockOffset)), MAX_TIMER_MS);
    const timer = setTimeout(() => {
      this.#wakeTimers.delete(queue);
      void this.#promote(queue).catch((error) => {
        this.#logger.warn(
          `promoting delayed tasks failed: ${error.message}`,
        );
      });
    }, delay);
    this.#wakeTimers.set(queue, { at: due, timer });
  }

  #onControl(message: string): void {
    const [kind, a, b] = message.split(" ");
    if (kind === "c") {
      const task = this.#byTaskId.get(b);
      if (!task) {
        // TAKE may have started it already, its reply not yet here: stopped once it is.
        this.#takeCancels?.add(b);
        return;
      }
      if (task.op !== a) return;
      if (task.state === "starting") task.cancelSeen = true;
      else if (task.state === "reserved") this.#dropReserved(task);
      else if (task.state === "running" && !task.stop) {
        this.#stopTask(task, "cancel", "the task was cancelled");
      }
    } else if (kind === "w" && this.#queues.includes(a) && this.#state === "running") {
      this.#wakeAt(a, Number(b));
    } else if (kind === "p" && this.#state === "running" && this.#addLevel(a, Number(b))) {
      // The blocking read under way does not cover the new level's stream: it is ended, and the
      // next one does (the level's first task would otherwise wait out the read's BLOCK).
      void this.#ensureGroup(this.#keys.stream(a, Number(b)))
        .then(() => {
          if (this.#state === "running" && this.#cmd) return this.#reader?.unblock(this.#cmd);
        })
        .catch(() => {});
    } else if (kind === "s" && this.#state === "running") {
      this.#cronWakeAt(Number(a));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Cron schedules

  /** Fires the schedules that are due (each due time once, see FIRE) and arms the next timer. */
  async #cron(): Promise<void> {
    if (this.#cronRunning || (this.#state !== "running" && this.#state !== "starting")) return;
    this.#cronRunning = true;
    try {
      const cmd = this.#cmd!;
      for (let rounds = 0; rounds < 100; rounds++) {
        const [nowText, missedText, dueFlat, headFlat] = await CRON_DUE.run(cmd, [], [
          this.#keys.app,
          String(CRON_BATCH),
          String(CRON_GRACE),
        ]) as [string, string, string[], string[]];
        const now = Number(nowText);
        const due = replyPairs(dueFlat);
        if (due.length === 0) {
          const head = replyPairs(headFlat);
          this.#clockOffset = now - Date.now();
          if (head.length === 1) this.#cronWakeAt(Number(head[0][1]));
          return;
        }
        const missed = Number(missedText);
        const specs = await cmd.sendCommand([
          "HMGET",
          this.#keys.schedules(),
          ...due.map(([name]) => name),
        ]) as (string | null)[];
        // (Each FIRE checks the due time and the schedule it was given, so workers racing over
        // the same due schedules handle each due time once.)
        await Promise.all(
          due.map(([name, score], i) => this.#fire(name, Number(score), specs[i], missed)),
        );
      }
    } finally {
      this.#cronRunning = false;
    }
  }

  /**
   * Handles due time `due` of schedule `name` (its JSON as read, or null when it is gone): fires
   * it, or skips it when it was missed — due no later than `missed`, when no worker looked at the
   * schedules for over CRON_GRACE (see CRON_DUE). One late from a backlog of due schedules, with
   * workers up, is fired.
   */
  async #fire(name: string, due: number, json: string | null, missed: number): Promise<void> {
    let fire = "1";
    let next: number | undefined;
    if (json !== null) {
      try {
        const spec = JSON.parse(json) as { cron: CronSpec; catchUp?: boolean };
        if (due > missed) {
          next = nextCronTime(spec.cron, due);
        } else {
          // Missed while no worker was up: run once (catchUp) or skip, then go on with the first
          // due time not missed (one within CRON_GRACE of now still runs).
          fire = spec.catchUp ? "1" : "0";
          next = nextCronTime(spec.cron, missed);
        }
      } catch (error) {
        this.#logger.warn(`schedule ${name} is broken and is dropped: ${error}`);
        fire = "0"; // (and no next due time: FIRE drops it)
      }
    }
    const op = `cron-${await shortHash(name)}-${due.toString(36)}`;
    await FIRE.run(this.#cmd!, [], [
      this.#keys.app,
      name,
      String(due),
      json ?? "",
      op,
      next === undefined ? "-1" : String(next),
      fire,
    ]);
  }

  #cronWakeAt(due: number): void {
    if (this.#cronTimer && this.#cronTimer.at <= due) return;
    clearTimeout(this.#cronTimer?.timer);
    const delay = Math.max(0, due - (Date.now() + this.#clockOffset));
    this.#cronTimer = {
      at: due,
      timer: setTimeout(() => {
        this.#cronTimer = undefined;
        this.#cron().catch((error) => {
          this.#logger.warn(`cron schedules failed: ${error}`);
        });
      }, Math.min(delay, MAX_TIMER_MS)),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Reading and starting

  /** Ends the read loop's current {@link #pause} early (the listener is stopping). */
  #endPause: (() => void) | undefined;

  /** The read loop's wait before it tries again, `ms` at most: {@link #stop} ends it at once. */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#endPause = undefined;
        resolve();
      }, ms);
      this.#endPause = () => {
        clearTimeout(timer);
        this.#endPause = undefined;
        resolve();
      };
    });
  }

  async #readLoop(): Promise<void> {
    const reader = this.#reader!;
    let backoff = 50;
    while (this.#state === "running") {
      const free = this.#freeSlots();
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.#slotFree = resolve));
        this.#slotFree = undefined;
        continue;
      }
      if (this.#reclaim) {
        if (!await this.#reclaimTaken()) {
          await this.#pause(backoff * (0.5 + Math.random()));
          backoff = Math.min(backoff * 2, 2000);
        }
        continue;
      }
      if (this.#busy) {
        // Until TAKE finds the streams drained; then the blocking read waits for more.
        this.#full = undefined;
        this.#busy = await this.#take(free);
        continue;
      }
      // Priority levels: take what waits, highest level first, before blocking on all streams.
      if (this.#streams.length > this.#queues.length && await this.#readByPriority()) continue;
      if (this.#reclaim) continue;
      // XREADGROUP's COUNT applies per stream: COUNT floor(free / streams), at least 1, on every
      // stream. (Reading fewer streams than there are, in turns, to stay within the free slots
      // left a task on a stream not read waiting out the whole BLOCK: about a second.) The read
      // comes after TAKE found the streams drained, so it returns what one stream received; only
      // entries that reach several streams at once can give more than `free`, and those beyond
      // it wait, claimed, for a slot, as prefetched tasks do (never more than `concurrency` run).
      const streams = this.#streams;
      const count = Math.max(1, Math.floor(free / streams.length));
      let reply: unknown;
      try {
        reply = await reader.sendCommand(
          this.#readCommand(count, streams, streams.map(() => ">"), this.#block),
        );
        backoff = 50;
      } catch (error) {
        if (this.#state !== "running") break;
        const message = String((error as Error)?.message);
        if (message.startsWith("NOGROUP")) {
          for (const stream of this.#streams) await this.#ensureGroup(stream).catch(() => {});
        } else {
          // The read may have delivered entries whose reply was lost: read them back first.
          this.#reclaim = true;
          this.#logger.warn(`read failed (${message}); retrying`);
          await this.#pause(backoff * (0.5 + Math.random()));
          backoff = Math.min(backoff * 2, 2000);
        }
        continue;
      }
      // A stream that gave all it was asked for may hold more: TAKE reads on (and claims in
      // the same call) without blocking, unless START finds it drained first (see
      // #drainedAfterStart). Otherwise the next read blocks again.
      const entries = parseStreamReply(reply);
      const full = new Set<string>();
      const perStream = new Map<string, number>();
      for (const entry of entries) {
        const n = (perStream.get(entry.stream) ?? 0) + 1;
        perStream.set(entry.stream, n);
        if (n >= count) full.add(entry.stream);
      }
      this.#full = full;
      this.#busy = full.size > 0;
      this.#dispatchEntries(entries);
    }
  }

  /**
   * Reads and claims up to `free` new entries in one call (TAKE), streams in priority order
   * (queues of one level take turns). Returns whether more may wait (false after an error).
   */
  async #take(free: number): Promise<boolean> {
    const cmd = this.#cmd!;
    const streams = this.#takeOrder();
    let reply: unknown[];
    const cancels = this.#takeCancels = new Set();
    try {
      reply = await TAKE.run(cmd, streams, [
        this.#keys.app,
        GROUP,
        this.id,
        String(free),
      ]) as unknown[];
    } catch (error) {
      const message = String((error as Error)?.message);
      // The call may have run (in part: a script's writes before an error stay): read back
      // what it may have delivered before going on.
      if (this.#state === "running") this.#reclaim = true;
      if (message.includes("NOGROUP")) {
        for (const stream of this.#streams) await this.#ensureGroup(stream).catch(() => {});
      } else if (this.#state === "running") {
        this.#logger.warn(`reading tasks failed (${message}); retrying`);
      }
      return false;
    } finally {
      this.#takeCancels = undefined;
    }
    const startedAt = Number(reply[0]);
    const verdicts = reply[1] as unknown[];
    const byStream = new Map<string, [Task[], unknown[]]>();
    let n = 0;
    for (const entry of parseFlatEntries(reply, 3)) {
      const verdict = verdicts[n++];
      this.#noteRead(entry);
      if (verdict === "m") {
        this.#logger.warn(
          `dropped malformed entry ${entry.id} of ${entry.stream} ` +
            `(it lacks a valid id, op or reply field)`,
        );
        continue;
      }
      const task = this.#accept(entry);
      if (!task) continue;
      if (cancels.has(task.taskId)) task.cancelSeen = true;
      let batch = byStream.get(entry.stream);
      if (!batch) byStream.set(entry.stream, batch = [[], []]);
      batch[0].push(task);
      batch[1].push(verdict);
    }
    for (const [tasks, taskVerdicts] of byStream.values()) {
      this.#launch(tasks, taskVerdicts, startedAt);
    }
    return reply[2] === 1;
  }

  /** The streams in TAKE's order: priority levels highest first, queues of a level rotating. */
  #takeOrder(): string[] {
    if (this.#queues.length === 1) return this.#streams;
    const turn = this.#rotation++;
    const order: string[] = [];
    let level: string[] = [];
    let levelOf = "";
    const flush = () => {
      for (let i = 0; i < level.length; i++) order.push(level[(turn + i) % level.length]);
      level = [];
    };
    for (const stream of this.#streams) {
      const l = stream.slice(this.#keys.queue("").length + this.#queueOf(stream).length);
      if (l !== levelOf) flush();
      levelOf = l;
      level.push(stream);
    }
    flush();
    return order;
  }

  /** Remembers the largest entry id read from each stream (see {@link #reclaimTaken}). */
  #noteRead(entry: StreamEntry): void {
    const last = this.#lastRead.get(entry.stream);
    if (last === undefined || compareIds(entry.id, last) > 0) {
      this.#lastRead.set(entry.stream, entry.id);
    }
  }

  /**
   * After a read (TAKE or XREADGROUP) whose reply was lost: reads back the entries pending for
   * this listener past the last one it read (what that call delivered, if it ran) and claims them
   * with START, which lets a task of ours with status "0" or "1" run. Returns false when Redis
   * cannot be reached.
   */
  async #reclaimTaken(): Promise<boolean> {
    const free = this.#freeSlots();
    let reply: unknown;
    try {
      reply = await this.#cmd!.sendCommand(
        this.#readCommand(
          free,
          this.#streams,
          this.#streams.map((s) => this.#lastRead.get(s) ?? "0-0"),
        ),
      );
    } catch (error) {
      if (String((error as Error)?.message).includes("NOGROUP")) {
        // A group that is gone holds nothing of ours, but the others may: create the missing
        // ones and read back again (after the loop's backoff).
        for (const stream of this.#streams) await this.#ensureGroup(stream).catch(() => {});
      }
      return false;
    }
    const known = new Set([...this.#tasks.values()].map((t) => `${t.stream} ${t.entryId}`));
    let entries = parseStreamReply(reply).filter((e) => !known.has(`${e.stream} ${e.id}`));
    // No more than the free slots: the rest lies past #lastRead, for the next round.
    this.#reclaim = entries.length > free;
    if (this.#reclaim) entries = entries.slice(0, free);
    if (entries.length > 0) {
      this.#logger.info(`claiming ${entries.length} task(s) read by a call whose reply was lost`);
    }
    this.#dispatchEntries(entries);
    return true;
  }

  /**
   * One non-blocking read per stream, highest priority first, while slots are free. Returns true
   * when it took anything.
   */
  async #readByPriority(): Promise<boolean> {
    let took = false;
    for (const stream of this.#streams) {
      const free = this.#freeSlots();
      if (free <= 0 || this.#state !== "running") break;
      let reply: unknown;
      try {
        reply = await this.#reader!.sendCommand(this.#readCommand(free, [stream], [">"]));
      } catch {
        this.#reclaim = true; // its reply may have been lost (see #reclaimTaken)
        return took; // the blocking read below reports and handles errors
      }
      if (this.#dispatch(reply) > 0) took = true;
    }
    return took;
  }

  /**
   * This listener's `XREADGROUP`: at most `count` entries per stream, after `ids` (`>`: new ones),
   * blocking up to `block` ms when given.
   */
  #readCommand(
    count: number,
    streams: readonly string[],
    ids: readonly string[],
    block?: number,
  ): string[] {
    const options = block === undefined ? [] : ["BLOCK", String(block)];
    return [
      "XREADGROUP",
      "GROUP",
      GROUP,
      this.id,
      "COUNT",
      String(count),
      ...options,
      "STREAMS",
      ...streams,
      ...ids,
    ];
  }

  /** Takes the entries of a read in hand and starts them, one START call per stream. */
  #dispatch(reply: unknown): number {
    return this.#dispatchEntries(parseStreamReply(reply));
  }

  #dispatchEntries(entries: StreamEntry[]): number {
    const byStream = new Map<string, Task[]>();
    let n = 0;
    for (const entry of entries) {
      n++;
      this.#noteRead(entry);
      const task = this.#accept(entry);
      if (!task) continue;
      let list = byStream.get(entry.stream);
      if (!list) byStream.set(entry.stream, list = []);
      list.push(task);
    }
    for (const [stream, tasks] of byStream) {
      const started = this.#startBatch(stream, tasks);
      this.#starting.add(started);
      void started.finally(() => this.#starting.delete(started));
    }
    return n;
  }

  /** Validates an entry and takes it in hand (it occupies a slot from now on). */
  #accept(entry: StreamEntry): Task | undefined {
    const { fields } = entry;
    const taskId = fields.id;
    // Left out by this library's clients: they follow from the task id.
    let op: string | undefined = fields.op;
    if (op === undefined && taskId) {
      const dot = taskId.indexOf(".");
      op = dot < 0 ? taskId : taskId.slice(0, dot);
    }
    let reply: string | undefined = fields.reply;
    let valid: boolean;
    if (op !== undefined && op === this.#lastOp && reply === undefined) {
      // The tasks of one operation come in runs: its checks and reply stream are worked out once.
      reply = this.#lastReply;
      valid = this.#lastValid && !!taskId && ID.test(taskId);
    } else {
      if (reply === undefined && op) reply = this.#keys.replyOf(op);
      const opValid = !!op && ID.test(op) && !!reply && reply.startsWith(this.#repliesPrefix);
      valid = opValid && !!taskId && ID.test(taskId);
      if (op !== undefined && fields.reply === undefined) {
        this.#lastOp = op;
        this.#lastReply = reply;
        this.#lastValid = opValid;
      }
    }
    if (!valid || !taskId || !op || !reply) {
      this.#logger.warn(
        `dropped malformed entry ${entry.id} of ${entry.stream} ` +
          `(it lacks a valid id, op or reply field)`,
      );
      void this.#cmd!.sendCommand(["XACK", entry.stream, GROUP, entry.id])
        .then(() => this.#cmd!.sendCommand(["XDEL", entry.stream, entry.id]))
        .catch(() => {});
      return undefined;
    }
    const timeout = nonNegative(fields.timeout) || this.#taskTimeout;
    const task: Task = {
      seq: this.#executors!.seq(),
      entryId: entry.id,
      stream: entry.stream,
      queue: this.#queueOf(entry.stream),
      taskId,
      op,
      reply,
      fields,
      attempt: Math.max(1, Math.floor(nonNegative(fields.attempt) ?? 1)),
      retries: Math.floor(nonNegative(fields.retries) ?? 0),
      retryOnError: fields.retryOn === "error",
      timeout,
      aside: fields.args === ARGS_ASIDE,
      argsBytes: undefined,
      argsError: undefined,
      state: "starting",
      deadline: undefined,
      stop: undefined,
      cancelSeen: false,
      startedAt: 0,
      runStart: 0,
      leaseAt: 0,
      waitMs: 0,
      runMs: 0,
    };
    this.#tasks.set(task.seq, task);
    this.#byTaskId.set(taskId, task);
    this.#startingTasks++;
    return task;
  }

  async #startBatch(stream: string, tasks: Task[]): Promise<void> {
    const cmd = this.#cmd!;
    const [min, max] = idRange(tasks.map((t) => t.entryId));
    const args = [this.#keys.app, GROUP, this.id, min, max];
    for (const t of tasks) args.push(t.entryId, t.op, t.taskId);
    let verdicts: unknown[];
    let startedAt: number;
    try {
      const reply = await withReconnect(
        cmd,
        () => START.run(cmd, [stream], args),
        this.#reconnectDeadline,
        "starting tasks",
      ) as unknown[];
      startedAt = Number(reply[0]);
      if (reply[1] !== 1) this.#drainedAfterStart(stream);
      verdicts = reply.slice(2);
    } catch (error) {
      // The entries stay pending: recovery gives them to another worker.
      this.#logger.error(`could not start ${tasks.length} task(s)`, { error });
      this.#startingTasks -= tasks.length;
      for (const task of tasks) this.#release(task);
      return;
    }
    this.#launch(tasks, verdicts, startedAt);
  }

  /**
   * START found no entry after its batch in `stream`: the group has nothing more to deliver there
   * (it delivers in order), so a read that filled its count there need not be followed by TAKE.
   * (A hint only: what arrives later wakes the blocking read.)
   */
  #drainedAfterStart(stream: string): void {
    const full = this.#full;
    if (full?.delete(stream) && full.size === 0) this.#busy = false;
  }

  /**
   * Runs the tasks of one stream that START or TAKE let run (verdict 1) on the executors, and
   * releases the others.
   */
  #launch(tasks: Task[], verdicts: unknown[], startedAt: number): void {
    const aside = tasks.filter((task, i) => verdicts[i] === 1 && task.aside);
    if (aside.length > 0) {
      // Counted as starting, so that stopping waits for them to be launched.
      const fetched = this.#fetchAside(aside).then(() =>
        this.#launchNow(tasks, verdicts, startedAt)
      );
      this.#starting.add(fetched);
      void fetched.finally(() => this.#starting.delete(fetched));
    } else {
      this.#launchNow(tasks, verdicts, startedAt);
    }
  }

  /**
   * Reads the arguments stored beside the entries of `tasks` (one `HMGET` per operation) into
   * their `args` field. A task whose arguments are gone (expired, deleted) or cannot be read
   * within the reconnect deadline gets an `argsError` and fails instead of running (retried, if
   * it has attempts left, when Redis was unreachable).
   */
  async #fetchAside(tasks: Task[]): Promise<void> {
    const cmd = this.#cmd!;
    // Executor processes take them as bytes: neither decoded here nor encoded again.
    const options = this.#executors!.takesBytes ? { bytes: true } : undefined;
    await Promise.all([...byOp(tasks)].map(async ([op, list]) => {
      const key = this.#keys.args(op);
      try {
        const values = await withReconnect(
          cmd,
          () => cmd.sendCommand(["HMGET", key, ...list.map((t) => t.taskId)], options),
          this.#reconnectDeadline,
          "reading task arguments",
        ) as unknown[];
        list.forEach((task, i) => {
          const value = values[i];
          if (typeof value === "string") {
            task.fields.args = value;
          } else if (value instanceof Uint8Array) {
            task.argsBytes = value;
          } else {
            task.argsError = {
              name: "ProtocolError",
              message: `the arguments of task ${task.taskId} are gone: they were stored beside ` +
                `its entry, in ${key}, which expired or was deleted`,
            };
          }
        });
      } catch (error) {
        for (const task of list) {
          task.argsError = {
            name: "ConnectionError",
            message: `could not read the arguments of task ${task.taskId} from ${key}: ${
              (error as Error)?.message ?? error
            }`,
          };
        }
      }
    }));
  }

  /** {@link #launch}, once every task that may run has its arguments. */
  #launchNow(tasks: Task[], verdicts: unknown[], startedAt: number): void {
    const now = performance.now();
    this.#startingTasks -= tasks.length;
    const allowed: Task[] = [];
    tasks.forEach((task, i) => {
      if (verdicts[i] !== 1) return this.#release(task);
      task.startedAt = startedAt;
      task.runStart = now;
      task.leaseAt = now;
      task.state = "reserved";
      allowed.push(task);
    });
    if (this.#state === "running") {
      // Claimed tasks queue behind those prefetched earlier (in claim order, so a TAKE's higher
      // priority levels first); whatever finds a free slot starts now.
      this.#reserved.push(...allowed);
      this.#refill();
    } else {
      // Stopping: what fits still runs, as it would have without prefetch; the rest waits to be
      // given back.
      const fit = Math.max(0, this.#concurrency - this.#running());
      this.#run(allowed.slice(0, fit));
      this.#reserved.push(...allowed.slice(fit));
    }
    // Cancelled while START / TAKE was in flight and not started: dropped unrun.
    for (const task of allowed) {
      if (task.state === "reserved" && task.cancelSeen) this.#dropReserved(task);
    }
  }

  /** Tasks given to the executors and not yet being recorded (at most `concurrency`). */
  #running(): number {
    return this.#tasks.size - this.#recording - this.#reserved.length - this.#startingTasks;
  }

  /**
   * Starts prefetched tasks while slots are free (not once the listener stops), those whose lease
   * Redis confirmed within half the heartbeat timeout ({@link Task.leaseAt}); the others wait for
   * the next heartbeat's verdict.
   */
  #refill(): void {
    if (this.#refilling || this.#reserved.length === 0 || this.#state !== "running") return;
    this.#refilling = true;
    try {
      while (this.#reserved.length > 0 && this.#running() < this.#concurrency) {
        const now = performance.now();
        const tasks = this.#takeReserved(this.#concurrency - this.#running(), now);
        if (tasks.length === 0) break;
        for (const task of tasks) {
          // It starts now: its start time in Redis' clock moves on by the time it waited.
          task.startedAt += now - task.runStart;
          task.runStart = now;
        }
        this.#run(tasks);
      }
    } finally {
      this.#refilling = false;
    }
  }

  /** Takes up to `n` prefetched tasks whose lease is fresh, in order, out of {@link #reserved}. */
  #takeReserved(n: number, now: number): Task[] {
    const reserved = this.#reserved;
    const trusted = now - this.#heartbeatTimeout / 2;
    const count = Math.min(n, reserved.length);
    let fresh = 0;
    while (fresh < count && reserved[fresh].leaseAt > trusted) fresh++;
    if (fresh === count) return reserved.splice(0, count);
    // Some have waited past the last confirmation (the worker was frozen, or Redis is away).
    const taken: Task[] = [];
    const kept: Task[] = [];
    for (const task of reserved) {
      (taken.length < n && task.leaseAt > trusted ? taken : kept).push(task);
    }
    this.#reserved = kept;
    return taken;
  }

  /** Drops a prefetched task unrun (it was cancelled, or is no longer this worker's). */
  #dropReserved(task: Task): void {
    const i = this.#reserved.indexOf(task);
    if (i < 0) return;
    this.#reserved.splice(i, 1);
    this.#finish([[task, this.#record(task, "x", "", "")]]);
  }

  /** Runs tasks START or TAKE let run on the executors. */
  #run(tasks: Task[]): void {
    const run: RunMessage[] = [];
    const rejected: [Task, FinishRecord][] = [];
    for (const task of tasks) {
      task.state = "running";
      const now = task.runStart;
      if (task.argsError) {
        const retryable = task.argsError.name === "ConnectionError";
        rejected.push([task, this.#failure(task, task.argsError, retryable)]);
        continue;
      }
      if (task.fields.v !== PROTOCOL_VERSION) {
        const error = {
          name: "ProtocolError",
          message: `unsupported stream entry version ${
            JSON.stringify(task.fields.v ?? null)
          } (this worker reads version ${PROTOCOL_VERSION})`,
        };
        rejected.push([task, this.#failure(task, error, false)]);
        continue;
      }
      const { fn = "", args = "", deps = "" } = task.fields;
      const bytes = task.argsBytes;
      task.argsBytes = undefined;
      if (
        fn.includes(SEP) || (bytes ? hasNul(bytes) : args.includes(SEP)) || deps.includes(SEP)
      ) {
        // Entries reach executors NUL-separated; no valid encoding contains a raw NUL.
        const error = {
          name: "ProtocolError",
          message: `the entry of task ${task.taskId} contains a NUL character`,
        };
        rejected.push([task, this.#failure(task, error, false)]);
        continue;
      }
      if (task.timeout !== undefined) {
        task.deadline = now + task.timeout;
        this.#timed.add(task);
      }
      run.push([
        task.seq,
        fn,
        bytes ?? args,
        task.taskId,
        task.op,
        task.attempt,
        task.queue,
        task.fields.deps ?? "",
      ]);
    }
    if (rejected.length > 0) this.#finish(rejected);
    if (run.length > 0) {
      this.#executors!.run(run, this.#sink);
      for (const task of tasks) if (task.state === "running") this.#noticeQueue.push(task);
      this.#noticeTimer ??= setTimeout(() => this.#sendStartedNotices(), STARTED_NOTICE_DELAY);
    }
    for (const task of tasks) {
      if (task.state === "running" && task.cancelSeen && !task.stop) {
        this.#stopTask(task, "cancel", "the task was cancelled");
      }
    }
    if (this.#timed.size > 0) this.#scheduleSweep();
  }

  /**
   * Tells clients which of their tasks have been running for {@link STARTED_NOTICE_DELAY} ms (a
   * `started` notice: the entry id and attempt, for their lost-task checks), one XADD per client.
   */
  #sendStartedNotices(): void {
    this.#noticeTimer = undefined;
    const queue = this.#noticeQueue;
    const due = performance.now() - STARTED_NOTICE_DELAY;
    const byReply = new Map<string, string[]>();
    let head = this.#noticeHead;
    for (; head < queue.length; head++) {
      const task = queue[head];
      if (task.runStart > due) break;
      if (task.state !== "running" || task.stop) continue;
      let fields = byReply.get(task.reply);
      if (!fields) byReply.set(task.reply, fields = []);
      fields.push("t", task.taskId, "s", "1", "e", task.entryId, "a", String(task.attempt));
    }
    if (head === queue.length) {
      this.#noticeQueue = [];
      this.#noticeHead = 0;
    } else {
      this.#noticeHead = head;
      if (head > 1024 && head * 2 > queue.length) {
        this.#noticeQueue = queue.slice(head);
        this.#noticeHead = 0;
      }
      const wait = this.#noticeQueue[this.#noticeHead].runStart - due;
      this.#noticeTimer = setTimeout(() => this.#sendStartedNotices(), Math.max(1, wait));
    }
    for (const [reply, fields] of byReply) {
      void this.#cmd!.sendCommand(["XADD", reply, "NOMKSTREAM", "*", ...fields]).catch(() => {});
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Stopping tasks: cancel, timeout, lost lease, shutdown

  #stopTask(task: Task, kind: StopKind, message: string): void {
    if (kind === "lost") {
      this.#logger.warn(
        `task ${task.taskId} was given to another attempt; ` +
          `stopping it here and discarding its outcome`,
      );
    }
    task.stop = { kind, message, killAt: performance.now() + this.#taskGrace };
    this.#timed.add(task);
    this.#executors!.abort(task.seq, STOP_REASON[kind], message);
    if (kind !== "interrupt") this.#scheduleSweep();
  }

  #scheduleSweep(): void {
    let next = Infinity;
    for (const task of this.#timed) {
      const at = task.stop ? task.stop.killAt : task.deadline ?? Infinity;
      if (at < next) next = at;
    }
    if (next === Infinity || next >= this.#sweepAt) return;
    clearTimeout(this.#sweepTimer);
    this.#sweepAt = next;
    this.#sweepTimer = setTimeout(() => {
      this.#sweepAt = Infinity;
      this.#sweep();
    }, Math.max(0, next - performance.now()));
  }

  #sweep(): void {
    const now = performance.now();
    const killed: [Task, FinishRecord][] = [];
    for (const task of this.#timed) {
      if (task.state !== "running") {
        this.#timed.delete(task);
        continue;
      }
      if (!task.stop && task.deadline !== undefined && now >= task.deadline) {
        this.#stopTask(
          task,
          "timeout",
          `task ${task.taskId} ran longer than its timeout of ${task.timeout} ms`,
        );
      } else if (task.stop && task.stop.kind !== "interrupt" && now >= task.stop.killAt) {
        this.#logger.warn(
          `task ${task.taskId} ignored its abort signal for ${this.#taskGrace} ms (${task.stop.kind}); ` +
            (this.#executors!.mode === "inline"
              ? "it runs inline and cannot be stopped: it was given up, its outcome will be dropped"
              : "terminating its executor"),
        );
        task.state = "finishing";
        this.#timed.delete(task);
        this.#executors!.kill(task.seq, `${task.taskId} (${task.stop.kind})`);
        killed.push([task, this.#stoppedOutcome(task)]);
      }
    }
    if (killed.length > 0) this.#finish(killed);
    this.#scheduleSweep();
  }

  /** What to record for a task that was told to stop, whatever it returned. */
  #stoppedOutcome(task: Task): FinishRecord {
    if (task.stop?.kind === "timeout") {
      return this.#failure(task, { name: "TaskTimeoutError", message: task.stop.message }, false);
    }
    return this.#record(task, "x", "", "");
  }

  // ---------------------------------------------------------------------------------------------
  // Recording outcomes

  #onDone(results: (DoneMessage | EventMessage)[]): void {
    const records: [Task, FinishRecord][] = [];
    // Progress and yielded values go to the client before the outcome (same connection, sent
    // first by #sendOutcomes); the consecutive values of a task and kind go as one notice.
    let packs: Map<string, EventPack> | undefined;
    for (const r of results) {
      const task = this.#tasks.get(r[0]);
      if (!task || task.state !== "running") continue;
      if (r[1] === 2) {
        if (task.stop) continue;
        const key = `${r[0]} ${r[2]}`;
        let pack = (packs ??= new Map()).get(key);
        if (
          pack &&
          (r[3] !== pack.first + pack.values.length || pack.chars + r[4].length > PACK_CHARS)
        ) {
          this.#queueEvents(pack);
          pack = undefined;
        }
        if (!pack) packs.set(key, pack = { task, kind: r[2], first: r[3], values: [], chars: 0 });
        pack.values.push(r[4]);
        pack.chars += r[4].length + 1;
        continue;
      }
      task.state = "finishing";
      this.#timed.delete(task);
      if (task.stop) {
        records.push([task, this.#stoppedOutcome(task)]);
      } else if (r[1] === 1) {
        records.push([task, this.#record(task, "c", r[2], "")]);
      } else {
        const error = { name: r[2], message: r[3], stack: r[4] || undefined, detail: r[5] };
        records.push([task, this.#failure(task, error, false)]);
      }
    }
    if (packs) { for (const pack of packs.values()) this.#queueEvents(pack); }
    if (records.length > 0) this.#finish(records);
  }

  /**
   * Queues the notice of a task's consecutive progress or yielded values for its client: one
   * value as `s p` / `s y` with the value in `p`; several as `s P` / `s Y` with the JSON array of
   * their encoded values in `p`, `i` the index of the first (a notice per value cost the worker
   * ten Redis arguments per value, and a task publishing hundreds of thousands at once stalled
   * the worker past its heartbeat timeout).
   */
  #queueEvents(pack: EventPack): void {
    const { task, values } = pack;
    let list = this.#outgoingEvents.get(task.reply);
    if (!list) this.#outgoingEvents.set(task.reply, list = []);
    const several = values.length > 1;
    list.push(
      "t",
      task.taskId,
      "s",
      several ? pack.kind.toUpperCase() : pack.kind,
      "a",
      String(task.attempt),
      "i",
      String(pack.first),
      "p",
      several ? `[${values.join(",")}]` : values[0],
    );
    this.#scheduleSend();
  }

  #onExecutorLost(seqs: number[], why: string): void {
    const records: [Task, FinishRecord][] = [];
    for (const seq of seqs) {
      const task = this.#tasks.get(seq);
      if (!task || task.state !== "running") continue;
      task.state = "finishing";
      this.#timed.delete(task);
      records.push([
        task,
        task.stop ? this.#stoppedOutcome(task) : this.#record(
          task,
          "l",
          `task ${task.taskId} was lost on worker ${this.id}: ${why}`,
          "",
        ),
      ]);
    }
    if (records.length > 0) this.#finish(records);
  }

  #record(task: Task, action: string, a: string, b: string): FinishRecord {
    let timings = "";
    if (task.runStart > 0) {
      task.runMs = performance.now() - task.runStart;
      const id = task.entryId;
      task.waitMs = Math.max(0, task.startedAt - Number(id.slice(0, id.indexOf("-"))));
      timings = `${task.waitMs},${task.runMs.toFixed(3)},${task.startedAt}`;
    }
    return [task.entryId, task.op, task.taskId, task.reply, action, a, b, timings];
  }

  /**
   * The record of a failure: another attempt when the failure is retryable (thrown errors and
   * timeouts only with `retryOn: "error"`; interruptions always) and retries remain; a final
   * failure otherwise, dead-lettered when the task had a retry policy for it.
   */
  #failure(task: Task, error: RemoteErrorInfo, alwaysRetryable: boolean): FinishRecord {
    const retryable = alwaysRetryable || (task.retryOnError && error.name !== "ProtocolError");
    const payload = JSON.stringify({ ...error, attempts: task.attempt });
    const line = formatErrorLine(error.name, error.message);
    const action = !retryable ? "e" : task.attempt <= task.retries ? "r" : "d";
    return this.#record(task, action, line, payload);
  }

  /**
   * Sends outcomes to Redis, one FINISH call per stream. A task's slot is free from now on (the
   * next task can start while this one's outcome is recorded); the task stays in hand, and
   * heartbeating, until its outcome is recorded. The outcomes of one event-loop turn go together,
   * at its end (setImmediate): with inline executors each task's outcome arrives on its own, as
   * it settles, and frees its slot at once, but its FINISH waits for the others of the turn.
   */
  #finish(records: [Task, FinishRecord][]): void {
    this.#recording += records.length;
    for (const item of records) item[0].state = "finishing";
    this.#refill();
    this.#slotFree?.();
    for (const item of records) this.#outgoing.push(item);
    this.#scheduleSend();
  }

  /** Sends what {@link #finish} and #onDone collected at the end of this event-loop turn. */
  #scheduleSend(): void {
    if (this.#sendScheduled) return;
    this.#sendScheduled = true;
    const sent = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.#sendOutcomes())
      .catch((error) => this.#logger.error("could not send outcomes", { error }));
    this.#finishing.add(sent);
    void sent.finally(() => this.#finishing.delete(sent));
  }

  /**
   * Sends the collected progress events and yielded values (one XADD per client), then the
   * outcomes: one FINISH call per stream.
   */
  async #sendOutcomes(): Promise<void> {
    this.#sendScheduled = false;
    const events = this.#outgoingEvents;
    this.#outgoingEvents = new Map();
    const cmd = this.#cmd;
    for (const [reply, fields] of events) {
      void cmd?.sendCommand(["XADD", reply, "NOMKSTREAM", "*", ...fields]).catch(() => {});
    }
    const records = this.#outgoing;
    this.#outgoing = [];
    const byStream = new Map<string, [Task, FinishRecord][]>();
    for (const item of records) {
      let list = byStream.get(item[0].stream);
      if (!list) byStream.set(item[0].stream, list = []);
      list.push(item);
    }
    const sends: Promise<void>[] = [];
    for (const [stream, items] of byStream) sends.push(this.#finishBatch(stream, items));
    await Promise.all(sends);
  }

  async #finishBatch(stream: string, items: [Task, FinishRecord][]): Promise<void> {
    const cmd = this.#cmd!;
    const args = [this.#keys.app, GROUP, items[0][0].queue];
    for (const [, record] of items) args.push(...record);
    try {
      const results = await withReconnect(
        cmd,
        () => FINISH.run(cmd, [stream], args),
        this.#reconnectDeadline,
        "recording results",
      ) as number[];
      const debug = this.#logger.enabled("debug");
      const asideDone: Task[] = [];
      items.forEach(([task, record], i) => {
        const result = Number(results[i]);
        const outcome = record[4] === "c" ? "completed" : "failed";
        if (result === 1 && record[4] !== "x") {
          this.#stats.record(outcome, task.waitMs, task.runMs);
        }
        if (debug) {
          this.#logger.debug("task", {
            task: task.taskId,
            fn: task.fields.fn,
            queue: task.queue,
            attempt: task.attempt,
            outcome: record[4] === "q"
              ? "given back"
              : result === 2
              ? "retry"
              : record[4] === "x"
              ? "discarded"
              : outcome,
            recorded: result !== 0,
            wait_ms: roundForLog(task.waitMs),
            run_ms: roundForLog(task.runMs),
          });
        }
        if (result === 0 && record[4] !== "x" && record[4] !== "q") {
          this.#logger.warn(
            `the outcome of task ${task.taskId} was not recorded ` +
              `by this call: the task is no longer this worker's (cancelled, released, given to ` +
              `another attempt — or recorded by an earlier try of the call)`,
          );
        }
        if (result !== 1) return;
        if (task.aside && record[4] !== "x" && record[4] !== "q") asideDone.push(task);
        if (record[4] === "c") this.#completed++;
        else if (record[4] !== "x") this.#failed++;
      });
      if (asideDone.length > 0) this.#dropAside(asideDone);
    } catch (error) {
      const why = error instanceof ConnectionError
        ? error.message
        : `${(error as Error)?.message ?? error}`;
      this.#logger.error(
        `could not record ${items.length} outcome(s) (${why}); ` +
          `their entries stay pending for recovery`,
      );
    } finally {
      this.#recording -= items.length;
      for (const [task] of items) this.#release(task);
    }
  }

  /**
   * Deletes the arguments stored beside the entries of tasks that have their final outcome
   * (best effort: what is left goes with the operation's keys).
   */
  #dropAside(tasks: Task[]): void {
    for (const [op, list] of byOp(tasks)) {
      const ids = list.map((t) => t.taskId);
      void this.#cmd!.sendCommand(["HDEL", this.#keys.args(op), ...ids]).catch(() => {});
    }
  }

  /**
   * Slots free for new tasks: `concurrency` plus `prefetch` minus the tasks starting, running or
   * prefetched. Tasks whose outcomes are being recorded do not count, but at most `concurrency` of
   * them are let through (when Redis is slow to record, reading stops rather than piling up
   * outcomes).
   */
  #freeSlots(): number {
    const busy = this.#tasks.size - this.#recording;
    const limit = this.#concurrency + this.#prefetch;
    return Math.min(limit - busy, limit + this.#concurrency - this.#tasks.size);
  }

  /** Forgets a task and frees its slot. */
  #release(task: Task): void {
    this.#tasks.delete(task.seq);
    this.#timed.delete(task);
    if (this.#byTaskId.get(task.taskId) === task) this.#byTaskId.delete(task.taskId);
    if (this.#tasks.size === 0) this.#drained?.();
    this.#refill();
    this.#slotFree?.();
  }
}
