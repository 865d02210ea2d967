/**
 * `StreamFuturePool`: Python's `concurrent.futures.Executor` over Redis Streams.
 *
 * A pool submits tasks to a queue's stream (one Lua call per batch), reads every completion of
 * its futures from one reply stream with one blocking read, and may run local listeners
 * (`workers: N`) in threads of its own, isolated from the client.
 *
 * @module
 */

import {
  byteLength,
  checkPayloadSize,
  decode,
  encodeWithRefs,
  mayExceedPayload,
  plainJsonText,
} from "./codec.ts";
import {
  CancelledError,
  ConnectionError,
  formatErrorLine,
  NoWorkersError,
  PoolClosedError,
  ProtocolError,
  TaskNotFoundError,
} from "./errors.ts";
import { futureControl, type FutureHooks, futureList, StreamFuture } from "./future.ts";
import { checkLimits } from "./_deadline.ts";
import { FutureIndex } from "./_future_index.ts";
import { loadConfigSync } from "./_config.ts";
import {
  checkLogFormat,
  checkLogLevel,
  createLogger,
  type LogFormat,
  type Logger,
  type LogLevel,
} from "./_log.ts";
import { KeyValueStore, reconnectingCommander } from "./kv.ts";
import {
  ARGS_ASIDE,
  ARGS_ASIDE_MIN,
  CLIENT_ID_LENGTH,
  COMPACT_NOTICE_MARK,
  GROUP,
  Keys,
  Status,
} from "./_keys.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES, type ListenerOptions } from "./listener.ts";
import { type LocalListeners, startLocalListeners } from "./_local_listeners.ts";
import { type ExecutorMode, executorMode } from "./_executor.ts";
import { CANCEL } from "./_lua/cancel.ts";
import { RECOVER_TASKS } from "./_lua/recover.ts";
import { SUBMIT, SUBMIT_EX, SUBMIT_SOLO } from "./_lua/submit.ts";
import { TOUCH } from "./_lua/touch.ts";
import { UNWATCH, WATCH } from "./_lua/watch.ts";
import { errorFromPayload, settleStored } from "./_outcome.ts";
import {
  callOutcomes,
  checkChunksize,
  chunkArgs,
  chunkCallIds,
  chunkCalls,
  chunkId,
  chunkTaskName,
  isChunkCall,
  parseChunkId,
} from "./_chunks.ts";
import {
  abortSignal,
  bool,
  checkOptions,
  describeValue,
  duration,
  heartbeats,
  keyName,
  MAX_TIMER_MS,
  nonNegativeInt,
  positiveInt,
  storedDuration,
} from "./_options.ts";
import type { RetryOn } from "./_options.ts";
import {
  dedupeHash,
  type DedupeSpec,
  dedupeSpec,
  DEFAULT_POLICY,
  dueSpec,
  type OnParentError,
  onParentError,
  policyFields,
  type TaskPolicy,
  taskPolicy,
} from "./_submit_options.ts";
import {
  checkScheduleName,
  deleteSchedule,
  listSchedules,
  saveSchedule,
  type ScheduleInfo,
  type ScheduleOptions,
  storedSchedule,
} from "./schedule.ts";
import {
  type BlockingReader,
  checkConnectionOptions,
  connect,
  type ConnectionOptions,
  connectReader,
  type RedisConnection,
  replyPairs,
  withReconnect,
} from "./_redis.ts";
import { parseStreamReplyFlat } from "./_stream.ts";
import { setImmediate } from "node:timers";
import { ProgressBar, type ProgressStream } from "./_progress_bar.ts";
import { type ImapHost, imapResults } from "./_imap.ts";
import { TimeoutError } from "./errors.ts";
import { wait } from "./wait.ts";
import { errorFromLine } from "./_outcome.ts";
import {
  checkTaskModules,
  loadTasks,
  type TaskFunction,
  type TaskModules,
  type TaskRegistry,
} from "./_tasks.ts";

/** Options of {@link StreamFuturePool}. */
export interface PoolOptions {
  /** Where Redis is: `redis://host:port/db` (`rediss://` for TLS) or `{ host, port, db, ... }`. */
  url?: ConnectionOptions;
  /** The `<application>` key prefix (default `"streamfutures"`). */
  app?: string;
  /**
   * Local listeners started and stopped with the pool (default 0): listeners in this process,
   * whose tasks run on executor threads they share (see `executors`).
   */
  workers?: number;
  /** Executor threads of the local listeners (default: the number of CPUs). */
  executors?: number;
  /**
   * Threads, processes or inline (this thread) for the local listeners' executors (see
   * `ListenerOptions`).
   */
  executorMode?: ExecutorMode;
  /** Tasks each local listener runs at once (default 8). */
  concurrency?: number;
  /** Tasks each local listener claims beyond `concurrency` (default 0; see `ListenerOptions`). */
  prefetch?: number;
  /** Task modules: their exported functions are the tasks `submit` / `map` accept. */
  tasks?: TaskModules;
  /** The queue work goes to unless `submit` says otherwise (default `"default"`). */
  queue?: string;
  /** Fail fast with `NoWorkersError` when no live listener serves the queue (default true). */
  requireWorkers?: boolean;
  /**
   * Keep the tasks' entries in Redis after the pool closes, and after their futures are disposed
   * (default false).
   */
  keep?: boolean;
  /** Heartbeat interval of local listeners, ms (default 1000). */
  heartbeatInterval?: number;
  /**
   * A listener, or a running task, whose heartbeat is older than this (ms) is not live (default
   * 5000): submitting then fails with `NoWorkersError`, and a running task is lost.
   */
  heartbeatTimeout?: number;
  /** Default `retries` of submitted tasks (default 0). */
  retries?: number;
  /** Default `retryDelay` of submitted tasks, ms (default 0). */
  retryDelay?: number;
  /** Default `retryOn` of submitted tasks (default `"lost"`). */
  retryOn?: RetryOn;
  /** Default `timeout` of submitted tasks, ms (default: none, or the worker's `--task-timeout`). */
  timeout?: number;
  /** The largest encoded argument list accepted by `submit`/`map`, bytes (default 16 MiB). */
  maxPayloadBytes?: number;
  /**
   * How long Redis may be unreachable before calls fail with `ConnectionError`, ms (default
   * 30000). Shorter outages are ridden out: commands are retried, reads resume, and the futures
   * of the outage settle once Redis is back.
   */
  reconnectDeadline?: number;
  /**
   * Time to live of the keys of this pool's operations and of its reply stream, ms (default one
   * hour), refreshed while the pool lives: the keys of a client that crashed expire.
   */
  orphanTtl?: number;
  /** Local listeners: how long a task that ignores its abort signal may run on, ms (default 2000). */
  taskGrace?: number;
  /** Default `dedupeTtl` of submitted tasks, ms (default 0). */
  dedupeTtl?: number;
  /** Redis password (instead of one in the URL; e.g. from `STREAMFUTURES_PASSWORD`). */
  password?: string;
  /** Log level of the pool and its local listeners (default `"info"`; local listeners `"warn"`). */
  logLevel?: LogLevel;
  /** Log line format (default `"text"`). */
  logFormat?: LogFormat;
}

/** Options of {@link StreamFuturePool.submit} and {@link StreamFuturePool.map}. */
export interface SubmitOptions {
  /** Aborting it cancels the task(s): a pending task never runs, a running one is stopped. */
  signal?: AbortSignal;
  /** The queue to submit to (default: the pool's `queue`). */
  queue?: string;
  /**
   * How many more times a task may be started after a failed attempt (default: the pool's
   * `retries`, 0). Which failures are retried is `retryOn`.
   */
  retries?: number;
  /**
   * Delay before the first retry, ms; each further retry waits twice as long as the one before
   * (default: the pool's `retryDelay`, 0).
   */
  retryDelay?: number;
  /**
   * `"lost"` (default): retry only attempts whose worker died or was stopped; `"error"`: also
   * attempts that threw or timed out.
   */
  retryOn?: RetryOn;
  /**
   * Run time limit on the worker, ms: then the task's signal is aborted with a `TimeoutError`,
   * it is stopped by force after the worker's task grace period, and the future rejects with
   * `TaskTimeoutError`.
   */
  timeout?: number;
  /** Runnable no earlier than this many ms from now (counted on Redis' clock). */
  delay?: number;
  /** Runnable no earlier than this time (compared with Redis' clock). */
  startAt?: Date;
  /** Priority within the queue, an integer from -9 to 9 (default 0): higher runs first. */
  priority?: number;
  /**
   * Share the task of an identical call (same task name, same arguments with object keys in any
   * order) that is pending, running, or finished within `dedupeTtl`, in this client or another:
   * one task runs, every caller gets its outcome.
   */
  dedupe?: boolean;
  /** Like `dedupe`, with calls identified by this key instead of their name and arguments. */
  dedupeKey?: string;
  /** How long a finished deduplicated task is still shared, ms (default: the pool's, 0). */
  dedupeTtl?: number;
  /**
   * A parent task (a future among the arguments) that failed or was cancelled: `"fail"`
   * (default) fails this task with `DependencyError` without running it; `"pass"` runs it with
   * an `Error` carrying the parent's error name and message in place of the parent's value.
   */
  onParentError?: OnParentError;
}

/** Options of {@link StreamFuturePool.shutdown}. */
export interface ShutdownOptions {
  /** Wait for every future to settle and for the pool's resources to be released (default true). */
  wait?: boolean;
  /** Cancel every future not settled yet, running or not (default false). */
  cancelFutures?: boolean;
}

/**
 * The value type of a task function's future: what it returns (awaited), and for a generator
 * function (sync or async) its return value — the values it yields arrive on `future.stream()`.
 */
export type TaskResult<F extends TaskFunction> = [ReturnType<F>] extends [never] ? never
  : ReturnType<F> extends GeneratorLike<infer R> ? R
  : Awaited<ReturnType<F>>;

// deno-lint-ignore no-explicit-any
type GeneratorLike<R> = Generator<unknown, R, any> | AsyncGenerator<unknown, R, any>;

interface Outgoing {
  readonly future: StreamFuture<unknown>;
  readonly fn: TaskFunction | string;
  /** A chunk of `map` calls of `fn` (task `chunk:<name>`; see `_chunks.ts`). */
  readonly chunk?: boolean;
  readonly args: string;
  /** Parent tasks referenced in the arguments (`"<op>/<taskId>"` as encoded). */
  readonly parents: readonly string[];
  /** The parents' futures, in the order of `parents`. */
  readonly parentFutures: readonly StreamFuture<unknown>[];
}

interface Batch {
  readonly queue: string;
  readonly op: string;
  readonly items: Outgoing[];
  /** Extra entry fields (retry policy, timeout, priority), as name, value pairs. */
  readonly extra: string[];
  /** When the tasks become runnable (see `dueSpec`). */
  readonly due: string;
  readonly onParentError: OnParentError;
  /** How calls are deduplicated (hashed when sent, once the task name is known). */
  readonly dedupe: DedupeSpec;
  /** Set when a flush took the batch: later items of the operation need a new batch. */
  sealed?: boolean;
}

/**
 * `submit` calls of one flush that go out together (see {@link SUBMIT_SOLO}): single-task
 * operations of one queue with the same settings, in submission order.
 */
interface SoloRun {
  /** Queue, due time and extra fields, the settings the run's operations share. */
  readonly key: string;
  readonly batches: Batch[];
  readonly items: Outgoing[];
  readonly names: string[];
}

/** Options of {@link StreamFuturePool.map}. */
export interface MapOptions extends SubmitOptions {
  /**
   * Draw a progress bar (done / failed / running, rate, ETA) on stderr while the tasks run, when
   * stderr is a terminal: `true`, or the bar's label.
   */
  progress?: boolean | string;
  /**
   * Send the calls in chunks of up to this many (default 1), as Python's `Executor.map` does
   * (`imap`: a chunk also goes out when the window is full, and when an async input stalls):
   * each chunk is one task, whose calls a worker runs one after the other. Every call still gets
   * its own future, value and error; for many short calls, far fewer Redis writes and messages.
   * Per chunk, not per call: the lease, heartbeats and fencing, retries after a lost worker
   * (`retryOn: "error"` with retries is refused), `timeout` (the run time limit of the whole
   * chunk), `currentTask()`'s task id, attempt and signal, and what `results()` / `future(id)`
   * see in Redis (each call's progress values still reach its own future). A call
   * whose future is cancelled still runs unless every call of its chunk is cancelled (then the
   * chunk is). A call's future cannot be an argument of another task; a call with futures among
   * its arguments goes as a task of its own. Chunks are also cut so that their arguments stay
   * within `maxPayloadBytes`.
   */
  chunksize?: number;
}

/** Options of {@link StreamFuturePool.imap}. */
export interface ImapOptions extends MapOptions {
  /** Yield results in input order (default true), or as they complete. */
  ordered?: boolean;
  /**
   * The most tasks submitted and not yet consumed at a time (default 1000): reading of the input
   * pauses until results are consumed.
   */
  window?: number;
}

/** Every option name of {@link PoolOptions}: a name not among them is refused. */
const POOL_OPTIONS: Record<keyof PoolOptions, true> = {
  url: true,
  app: true,
  workers: true,
  executors: true,
  executorMode: true,
  concurrency: true,
  prefetch: true,
  tasks: true,
  queue: true,
  requireWorkers: true,
  keep: true,
  heartbeatInterval: true,
  heartbeatTimeout: true,
  retries: true,
  retryDelay: true,
  retryOn: true,
  timeout: true,
  maxPayloadBytes: true,
  reconnectDeadline: true,
  orphanTtl: true,
  taskGrace: true,
  dedupeTtl: true,
  password: true,
  logLevel: true,
  logFormat: true,
};

/** Every option name of {@link SubmitOptions}. */
const SUBMIT_OPTIONS: Record<keyof SubmitOptions, true> = {
  signal: true,
  queue: true,
  retries: true,
  retryDelay: true,
  retryOn: true,
  timeout: true,
  delay: true,
  startAt: true,
  priority: true,
  dedupe: true,
  dedupeKey: true,
  dedupeTtl: true,
  onParentError: true,
};

/** Every option name of {@link MapOptions}. */
const MAP_OPTIONS: Record<keyof MapOptions, true> = {
  ...SUBMIT_OPTIONS,
  progress: true,
  chunksize: true,
};

/** Every option name of {@link ImapOptions}. */
const IMAP_OPTIONS: Record<keyof ImapOptions, true> = {
  ...MAP_OPTIONS,
  ordered: true,
  window: true,
};

/** Every option name of {@link ShutdownOptions}. */
const SHUTDOWN_OPTIONS: Record<keyof ShutdownOptions, true> = { wait: true, cancelFutures: true };

/** One task of `pool.results(operationId)`. */
export interface OperationResult {
  /** The task id. */
  taskId: string;
  /** Where the task is. */
  status: "pending" | "running" | "completed" | "failed" | "cancelled";
  /** The value, when completed. */
  value?: unknown;
  /** The error, when failed or cancelled. */
  error?: Error;
}

/** Options of {@link StreamFuturePool.progress}. */
export interface ProgressOptions {
  /** The bar's label. */
  label?: string;
  /** Where to draw (default stderr; nothing is drawn unless it is a terminal). */
  stream?: ProgressStream;
}

const PROGRESS_OPTIONS: Record<keyof ProgressOptions, true> = { label: true, stream: true };

/** Checks map's and imap's `progress` option: a boolean, or the bar's label. */
function checkProgressOption(progress: unknown): void {
  if (progress !== undefined && typeof progress !== "boolean" && typeof progress !== "string") {
    throw new TypeError(
      `progress must be true, false or the bar's label (a string), got ${describeValue(progress)}`,
    );
  }
}

/** The fields of a reply notice (see docs/protocol.md, "Reply stream entries"). */
interface Notice {
  t: string;
  s?: string;
  p?: string;
  m?: string;
  a?: string;
  i?: string;
  e?: string;
}

/** What a pool remembers of one of its operations. */
interface OperationInfo {
  queue: string;
  /** Its queue and priority level: `"q"` or `"q:p5"`. */
  stream: string;
  /** Futures not settled yet. */
  open: number;
  /** Its number: the operation id is `<clientId>-<n in base 36>`. */
  n: number;
  /** When the last one settled (ms). */
  settledAt: number;
  /** Keys kept alive with the operation's: the records of its tasks that wait for parents. */
  extraKeys: string[];
  /** Still adding tasks (an imap in progress): kept, and refreshed, even with none open. */
  pinned?: boolean;
}

/** Where a started task is, for the lost-task check. */
interface Started {
  /** Its queue and priority level: `"q"` or `"q:p5"`. */
  readonly queue: string;
  readonly op: string;
  entryId: string;
}

/** Task and operation ids accepted by `pool.future` / `pool.operation`. */
const TASK_ID = /^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)?$/;

/** Tasks per SUBMIT call (keeps each Lua call short). */
const SUBMIT_CHUNK = 500;
/**
 * SUBMIT calls of one operation (or one run of plain `submit`s) in flight at once, each of up to
 * {@link SUBMIT_CHUNK} tasks: enough to keep Redis busy while the next call is built, few enough
 * that a `map` of 100,000 tasks does not build and buffer every call at once (under Deno its peak
 * RSS went from 233-254 to 183 MB, docs/performance.md). A task of a `map` is taken from its batch
 * only when its call is built, so until then cancelling its future needs no Redis.
 */
const SUBMIT_WINDOW = 4;

/**
 * Runs `step` on {@link SUBMIT_WINDOW} lanes at once, each lane again as soon as its last step is
 * done, until a step says there is nothing left (false): at most that many calls in flight.
 */
async function inWindow(step: () => Promise<boolean>): Promise<void> {
  await Promise.all(Array.from({ length: SUBMIT_WINDOW }, async () => {
    while (await step());
  }));
}
/**
 * Tasks in an operation's first SUBMIT call, the one that checks for a live listener and that the
 * rest wait for: small, so that workers get the first tasks while the rest are still being sent.
 */
const FIRST_CHUNK = 100;
/** Completions read per XREAD. */
const READ_COUNT = 1000;
/** How long one blocking XREAD waits, ms. */
const READ_BLOCK = 1000;
/**
 * Reply entries read before the reply stream is trimmed: `XTRIM MINID ~` frees whole stream nodes
 * (100 entries by default), so trimming after every small read mostly frees nothing and costs a
 * command, a write and a wake of both processes. The periodic refresh trims the rest.
 */
const TRIM_EVERY = 100;

function randomId(length: number): string {
  const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz";
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = "";
  for (const b of bytes) out += alphabet[b % 36];
  return out;
}

/**
 * A pool of futures served by workers listening on a Redis stream.
 *
 * @example
 * ```ts ignore
 * import { asCompleted, StreamFuturePool } from "@x/streamfutures";
 * import * as tasks from "./tasks.ts";
 *
 * await using pool = new StreamFuturePool({
 *   url: "redis://127.0.0.1:6379/3",
 *   app: "MyApp",
 *   workers: 4,
 *   tasks: new URL("./tasks.ts", import.meta.url),
 * });
 * console.log(await pool.submit(tasks.add, [3, 8])); // 11
 * for await (const f of asCompleted(pool.map(tasks.add, [[0, 1], [2, 3]]))) console.log(await f);
 * ```
 */
export class StreamFuturePool implements AsyncDisposable {
  /** This client's id (its reply stream is `<app>:replies:<clientId>`). */
  readonly clientId: string;
  /** The application key prefix. */
  readonly app: string;
  /**
   * The app's shared key-value store (tasks see the same one as `currentTask().kv`): `get`,
   * `set` (with a TTL), `append`, `pop`, `incr`, `delete`, `entries`.
   *
   * @example
   * ```ts ignore
   * await pool.kv.set("threshold", 0.8);
   * await Promise.all(pool.map(tasks.scan, files.map((f) => [f])));
   * console.log(await pool.kv.get("hits")); // appended to by the tasks
   * ```
   */
  readonly kv: KeyValueStore;
  readonly #keys: Keys;
  readonly #url: ConnectionOptions;
  readonly #queue: string;
  readonly #requireWorkers: boolean;
  readonly #keep: boolean;
  readonly #modules: (string | URL)[];
  readonly #workers: number;
  readonly #executors: number | undefined;
  readonly #executorMode: ExecutorMode | undefined;
  readonly #concurrency: number;
  readonly #prefetch: number;
  readonly #heartbeatInterval: number;
  readonly #heartbeatTimeout: number;
  readonly #defaults: TaskPolicy;
  readonly #maxPayloadBytes: number;
  readonly #reconnectDeadline: number;
  readonly #orphanTtl: number;
  readonly #taskGrace: number;
  readonly #dedupeTtl: number;
  readonly #replyKey: string;
  readonly #logger: Logger;
  readonly #logLevel: LogLevel;
  readonly #localLogLevel: LogLevel;
  readonly #logFormat: LogFormat;
  readonly #hooks: FutureHooks;
  #registry: TaskRegistry | undefined;
  #cmd: RedisConnection | undefined;
  #reader: BlockingReader | undefined;
  /** Why a future is being cancelled, until its cancellation is confirmed. */
  #cancelReasons = new Map<string, CancelledError>();
  #ready: Promise<void>;
  #futures = new FutureIndex();
  #unsent = new Set<string>();
  /**
   * Futures settled without their task reaching Redis (cancelled before they were sent, or their
   * SUBMIT failed): a child that takes one as an argument has its outcome written for it first.
   */
  #settledUnsent = new WeakSet<StreamFuture<unknown>>();
  /** Futures of tasks this pool did not submit (attached, or shared by dedupe): `"<op>/<id>"`. */
  #attached = new Set<string>();
  /** Operations being written, for children that must wait for their parents' entries. */
  #writing = new Map<string, Promise<void>>();
  /** `future(id)`'s attaching under way (a child waits for it: its parent may be a chunk call). */
  #attaching = new WeakMap<StreamFuture<unknown>, Promise<void>>();
  /** Resolves once the flush under way has taken its batches (and put their writes in #writing). */
  #flushTaken: Promise<void> = Promise.resolve();
  #onFlushTaken: () => void = () => {};
  /**
   * Futures taken from the outbox whose SUBMIT call Redis has not answered yet, each with a
   * promise settled once it has: a cancel waits for it (a CANCEL sent before would find no status).
   */
  #unanswered = new Map<string, Promise<void>>();

  /**
   * This pool's operations with unsettled futures (and imap's until they are forgotten, and all of
   * them with `keep`): their queue, how many of their futures are unsettled, and when the last one
   * settled (for the TTL refresh and the close).
   */
  #ops = new Map<string, OperationInfo>();
  /**
   * The other operations whose keys may still exist (settled less than `orphanTtl` ago), for the
   * close: their numbers, in the order they settled — a number each rather than a record, so that
   * what a long-lived pool remembers does not grow with all it ran in the last `orphanTtl`.
   */
  #settled: number[] = [];
  /** `[time, #settled.length]` at each TTL refresh: how to find the prefix that has expired. */
  #settledMarks: [number, number][] = [];
  #outbox: Batch[] = [];
  #flushing: Promise<void> | undefined;
  #locals: LocalListeners | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** The shutdown closed the command connection. */
  #disconnected = false;
  #reading = false;
  #readLoop: Promise<void> | undefined;
  #counter = 0;
  #lastReplyId = "0";
  /** Reply entries read since the reply stream was last trimmed. */
  #untrimmed = 0;
  /** Started tasks, by task id: where to look when checking whether their worker is alive. */
  #started = new Map<string, Started>();
  #timers: ReturnType<typeof setInterval>[] = [];

  /** Creates the pool; connecting and starting local listeners happen in the background. */
  constructor(explicit: PoolOptions = {}) {
    // Options may also come from STREAMFUTURES_* variables and a streamfutures.env file.
    checkOptions(explicit, POOL_OPTIONS, "new StreamFuturePool()");
    const config = loadConfigSync("pool", explicit as Record<string, unknown>);
    const options = config.options as PoolOptions;
    this.#url = checkConnectionOptions(options.url, "url", options.password);
    this.app = keyName(options.app, "app", "streamfutures");
    this.#keys = new Keys(this.app);
    this.#queue = keyName(options.queue, "queue", "default");
    this.#requireWorkers = bool(options.requireWorkers, "requireWorkers", true);
    this.#keep = bool(options.keep, "keep", false);
    this.#modules = checkTaskModules(options.tasks);
    this.#workers = nonNegativeInt(options.workers, "workers", 0);
    this.#executorMode = options.executorMode === undefined
      ? undefined
      : executorMode(options.executorMode);
    this.#executors = options.executors === undefined
      ? undefined
      : positiveInt(options.executors, "executors", 1);
    this.#concurrency = positiveInt(options.concurrency, "concurrency", 8);
    this.#prefetch = nonNegativeInt(options.prefetch, "prefetch", 0);
    ({ heartbeatInterval: this.#heartbeatInterval, heartbeatTimeout: this.#heartbeatTimeout } =
      heartbeats(options.heartbeatInterval, options.heartbeatTimeout));
    this.#defaults = taskPolicy({ ...options, priority: undefined }, DEFAULT_POLICY);
    this.#dedupeTtl = storedDuration(options.dedupeTtl, "dedupeTtl", 0, true);
    this.#maxPayloadBytes = positiveInt(
      options.maxPayloadBytes,
      "maxPayloadBytes",
      DEFAULT_MAX_PAYLOAD_BYTES,
    );
    this.#reconnectDeadline = duration(options.reconnectDeadline, "reconnectDeadline", 30_000);
    this.#orphanTtl = storedDuration(options.orphanTtl, "orphanTtl", 3_600_000);
    this.#taskGrace = duration(options.taskGrace, "taskGrace", 2_000, true);
    if (this.#workers > 0 && this.#modules.length === 0) {
      throw new TypeError("workers > 0 needs tasks: the task modules the local listeners run");
    }
    this.kv = new KeyValueStore(
      reconnectingCommander(() => this.#connection(), this.#reconnectDeadline),
      this.app,
    );
    // The last character says that this client reads compact completion notices (see _keys.ts).
    this.clientId = randomId(CLIENT_ID_LENGTH - 1) + COMPACT_NOTICE_MARK;
    this.#logLevel = checkLogLevel(options.logLevel, "logLevel");
    // Local listeners say little unless asked: their start and stop lines are noise in a client.
    this.#localLogLevel = options.logLevel === undefined ? "warn" : this.#logLevel;
    this.#logFormat = checkLogFormat(options.logFormat, "logFormat");
    this.#logger = createLogger({
      level: this.#logLevel,
      format: this.#logFormat,
      name: `pool ${this.clientId}`,
    });
    for (const warning of config.warnings) this.#logger.warn(warning);
    this.#replyKey = this.#keys.replies(this.clientId);
    this.#hooks = {
      cancel: (future) => this.#cancel(future),
      dispose: (future) => this.#dispose(future),
      app: this.app,
    };
    this.#ready = this.#start();
    this.#ready.catch(() => {});
  }

  /**
   * Resolves once the pool is connected, its task modules are loaded and its local listeners are
   * live. Submitting does not need it (work waits for it), but after it `submit` reports an
   * unknown task function synchronously.
   */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** The number of futures that have not settled (a chunk of `map` / `imap` calls counts once). */
  get pending(): number {
    return this.#futures.size;
  }

  /**
   * Submits one call of a task and returns its future. `fn` is an exported function of one of
   * the pool's task modules, or a task name. The operation id equals the task id.
   *
   * Throws `TypeError` for arguments that cannot be serialized (naming the path) and for a
   * function that is not a task (once the task modules are loaded; before that the future
   * rejects with it), and `PoolClosedError` after shutdown.
   */
  submit<F extends TaskFunction>(
    fn: F,
    args: Parameters<F>,
    options?: SubmitOptions,
  ): StreamFuture<TaskResult<F>>;
  submit<T = unknown>(
    fn: string,
    args: readonly unknown[],
    options?: SubmitOptions,
  ): StreamFuture<T>;
  submit(
    fn: TaskFunction | string,
    args: readonly unknown[],
    options?: SubmitOptions,
  ): StreamFuture<unknown> {
    this.#checkOpen();
    options = checkOptions(options, SUBMIT_OPTIONS, "submit()");
    const task = this.#taskRef(fn);
    if (!Array.isArray(args)) {
      throw new TypeError(`args must be an array of task arguments, got ${describeValue(args)}`);
    }
    const { text, refs, parentFutures } = encodeArgs(args, "args", this.app);
    checkPayloadSize(text, this.#maxPayloadBytes, "the arguments");
    const batch = this.#batchOf(options);
    const future = this.#newFuture(batch.op, batch.op);
    batch.items.push({ future, fn: task, args: text, parents: refs, parentFutures });
    this.#enqueue(batch, options.signal);
    return future;
  }

  /**
   * Submits one call of a task per argument list, all under one operation id, and returns their
   * futures in input order (eager, like Python's `Executor.map` but returning futures). With
   * `chunksize` > 1 the calls go in chunks, one task per chunk (see {@link MapOptions.chunksize}).
   *
   * @example
   * ```ts ignore
   * const sums = await Promise.all(pool.map(tasks.add, [[1, 2], [3, 4]]));
   * const many = pool.map(tasks.add, pairs, { chunksize: 100 }); // one task per 100 calls
   * ```
   */
  map<F extends TaskFunction>(
    fn: F,
    argsList: Iterable<Parameters<F>>,
    options?: MapOptions,
  ): StreamFuture<TaskResult<F>>[];
  map<T = unknown>(
    fn: string,
    argsList: Iterable<readonly unknown[]>,
    options?: MapOptions,
  ): StreamFuture<T>[];
  map(
    fn: TaskFunction | string,
    argsList: Iterable<readonly unknown[]>,
    options?: MapOptions,
  ): StreamFuture<unknown>[] {
    this.#checkOpen();
    options = checkOptions(options, MAP_OPTIONS, "map()");
    const task = this.#taskRef(fn);
    const chunksize = this.#chunksizeOf(options);
    checkProgressOption(options.progress);
    if (
      argsList === null || typeof (argsList as Iterable<unknown>)?.[Symbol.iterator] !== "function"
    ) {
      throw new TypeError(
        `argsList must be an iterable of argument arrays, got ${describeValue(argsList)}`,
      );
    }
    const encoded: (string | EncodedArgs)[] = [];
    let i = 0;
    for (const args of argsList) {
      if (!Array.isArray(args)) {
        throw new TypeError(
          `argsList[${i}] must be an array of task arguments, got ${describeValue(args)}`,
        );
      }
      encoded.push(encodeListItem(args, "argsList", i, this.#maxPayloadBytes, this.app));
      i++;
    }
    if (options.dedupe || options.dedupeKey !== undefined) {
      throw new TypeError("dedupe applies to submit(), not to map() (each call is a task)");
    }
    const batch = this.#batchOf(options);
    const op = batch.op;
    let futures: StreamFuture<unknown>[];
    if (chunksize > 1) futures = this.#chunks(task, encoded, batch, chunksize);
    else {
      futures = new Array(encoded.length);
      for (let index = 0; index < encoded.length; index++) {
        const item = encoded[index];
        const plain = typeof item === "string";
        const future = this.#newFuture(`${op}.${index.toString(36)}`, op);
        batch.items.push({
          future,
          fn: task,
          args: plain ? item : item.text,
          parents: plain ? NO_REFS : item.refs,
          parentFutures: plain ? NO_REFS : item.parentFutures,
        });
        futures[index] = future;
      }
    }
    if (batch.items.length > 0) this.#enqueue(batch, options.signal);
    if (options.progress) {
      void this.progress(futures, {
        label: typeof options.progress === "string" ? options.progress : undefined,
      });
    }
    return futures;
  }

  /** Checks `chunksize` and what it cannot be combined with (map, imap). */
  #chunksizeOf(options: MapOptions): number {
    const chunksize = checkChunksize(options.chunksize);
    if (chunksize > 1) {
      const policy = taskPolicy(options, this.#defaults);
      if (policy.retries > 0 && policy.retryOn === "error") {
        throw new TypeError(
          'retryOn: "error" with retries cannot be combined with chunksize > 1 (an error of one ' +
            'call would run its whole chunk again): use chunksize 1, or retryOn: "lost"',
        );
      }
    }
    return chunksize;
  }

  /**
   * `map`'s calls in chunks of up to `chunksize` (see {@link MapOptions.chunksize}): one task of
   * the chunk task `chunk:<name>` per chunk (id `<op>.c_<index of its first call>_<calls>`), added to
   * `batch`, its arguments within maxPayloadBytes; a call with futures among its arguments is a
   * task of its own (`<op>.<index>`). Returns the calls' futures.
   */
  #chunks(
    task: TaskFunction | string,
    encoded: readonly (string | EncodedArgs)[],
    batch: Batch,
    chunksize: number,
  ): StreamFuture<unknown>[] {
    const op = batch.op;
    const futures: StreamFuture<unknown>[] = new Array(encoded.length);
    const limit = this.#maxPayloadBytes;
    let start = 0;
    let texts: string[] = [];
    let bytes = 4; // [[ and ]]
    const send = () => {
      if (texts.length === 0) return;
      const calls = this.#chunk(batch, task, start, texts);
      for (let k = 0; k < calls.length; k++) futures[start + k] = calls[k];
      texts = [];
      bytes = 4;
    };
    for (let index = 0; index < encoded.length; index++) {
      const item = encoded[index];
      if (typeof item !== "string") {
        // A call with futures among its arguments is a task of its own: its parents' outcomes
        // are its own, not its chunk's.
        send();
        const future = this.#newFuture(`${op}.${index.toString(36)}`, op);
        batch.items.push({
          future,
          fn: task,
          args: item.text,
          parents: item.refs,
          parentFutures: item.parentFutures,
        });
        futures[index] = future;
        start = index + 1;
        continue;
      }
      const size = byteLength(item) + 1;
      if (texts.length > 0 && bytes + size > limit) send();
      if (texts.length === 0) start = index;
      texts.push(item);
      bytes += size;
      if (texts.length === chunksize) send();
    }
    send();
    return futures;
  }

  /**
   * Adds to `batch` the chunk task of the calls whose encoded argument lists are `texts`, the
   * first of them call number `first` of the operation; returns the calls' futures.
   */
  #chunk(
    batch: Batch,
    task: TaskFunction | string,
    first: number,
    texts: string[],
  ): StreamFuture<unknown>[] {
    const op = batch.op;
    const future = this.#newFuture(chunkId(op, first, texts.length), op);
    batch.items.push({ future, fn: task, chunk: true, args: chunkArgs(texts), ...NO_PARENTS });
    return chunkCalls(future, op, chunkCallIds(op, first, texts.length));
  }

  /**
   * Like {@link map}, for inputs of any size: takes the argument lists from any iterable or async
   * iterable (even an endless one), keeps at most `window` tasks submitted and not yet consumed
   * (it stops reading the input until results are consumed), and yields the results — in input
   * order when `ordered` (default), else as they complete. A failed task throws its error from
   * the iteration. Each task's entries in Redis are released as its result is consumed; leaving
   * the loop early (or aborting `signal`) cancels the tasks still in flight.
   *
   * @example
   * ```ts ignore
   * async function* lines() { for await (const line of file.readLines()) yield [line]; }
   * for await (const length of pool.imap(tasks.measure, lines(), { window: 500 })) total += length;
   * ```
   */
  imap<F extends TaskFunction>(
    fn: F,
    argsIterable: Iterable<Parameters<F>> | AsyncIterable<Parameters<F>>,
    options?: ImapOptions,
  ): AsyncGenerator<TaskResult<F>, void, undefined>;
  imap<T = unknown>(
    fn: string,
    argsIterable: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>,
    options?: ImapOptions,
  ): AsyncGenerator<T, void, undefined>;
  imap(
    fn: TaskFunction | string,
    argsIterable: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>,
    options?: ImapOptions,
  ): AsyncGenerator<unknown, void, undefined> {
    this.#checkOpen();
    options = checkOptions(options, IMAP_OPTIONS, "imap()");
    const task = this.#taskRef(fn);
    const chunksize = this.#chunksizeOf(options);
    checkProgressOption(options.progress);
    const window = positiveInt(options.window, "window", 1000);
    const ordered = bool(options.ordered, "ordered", true);
    if (options.dedupe || options.dedupeKey !== undefined) {
      throw new TypeError("dedupe applies to submit(), not to imap()");
    }
    const source = argsIterable as Partial<AsyncIterable<unknown> & Iterable<unknown>>;
    const iterator = typeof source?.[Symbol.asyncIterator] === "function"
      ? source[Symbol.asyncIterator]!()
      : typeof source?.[Symbol.iterator] === "function"
      ? source[Symbol.iterator]!()
      : undefined;
    if (!iterator) {
      throw new TypeError(
        `argsIterable must be an iterable or async iterable of argument arrays, got ${
          describeValue(argsIterable)
        }`,
      );
    }
    const template = this.#batchOf(options);
    const op = template.op;
    const info = this.#ops.get(op)!;
    let batch: Batch | undefined;
    const openBatch = () => {
      if (!batch || batch.sealed) {
        batch = { ...template, items: [], sealed: false };
        this.#enqueue(batch, undefined);
      }
      return batch;
    };
    const host: ImapHost = {
      maxPayloadBytes: this.#maxPayloadBytes,
      checkOpen: () => this.#checkOpen(),
      encode: (args, index) =>
        encodeListItem(args, "argsIterable", index, this.#maxPayloadBytes, this.app),
      sendCall: (index, { text, refs, parentFutures }) => {
        const future = this.#newFuture(`${op}.${index.toString(36)}`, op);
        openBatch().items.push({ future, fn: task, args: text, parents: refs, parentFutures });
        return future;
      },
      sendChunk: (first, texts) => this.#chunk(openBatch(), task, first, texts),
      countProgress: (future, counts, update) => this.#countProgress(future, counts, update),
      releaseConsumed: (ids) => this.#releaseConsumed(op, ids),
      pin: (pinned) => (info.pinned = pinned),
    };
    return imapResults(host, op, iterator, {
      window,
      ordered,
      chunksize,
      asyncInput: typeof source?.[Symbol.asyncIterator] === "function",
      signal: options.signal,
      progress: Boolean(options.progress),
      label: typeof options.progress === "string" ? options.progress : undefined,
    });
  }

  /** Removes the fields of consumed tasks from their operation's hashes (imap). */
  #releaseConsumed(op: string, ids: string[]): void {
    if (this.#keep || !this.#cmd) return;
    const cmd = this.#cmd;
    for (const key of this.#opKeys([op])) {
      void cmd.sendCommand(["HDEL", key, ...ids]).catch(() => {});
    }
  }

  /** Keeps done / failed / running counts of a future for a progress bar. */
  #countProgress(
    future: StreamFuture<unknown>,
    counts: { done: number; failed: number; running: number },
    update: () => void,
  ): void {
    let running = future.running();
    const control = futureControl(future);
    control.observe((f) => {
      if (f.running() !== running) {
        running = f.running();
        counts.running += running ? 1 : -1;
      }
      if (f.done()) {
        if (f.cancelled() || control.failed()) counts.failed++;
        else counts.done++;
      }
      update();
    });
  }

  /**
   * Draws a progress bar of `futures` (done / failed / running, rate, ETA) on stderr while they
   * run, when stderr is a terminal (nothing otherwise); resolves when all of them are done.
   *
   * @example
   * ```ts ignore
   * const futures = pool.map(tasks.resize, photos.map((p) => [p]));
   * await pool.progress(futures, { label: "resizing" });
   * ```
   */
  async progress(
    futures: Iterable<StreamFuture<unknown>>,
    options?: ProgressOptions,
  ): Promise<void> {
    const list = futureList(futures, "progress()");
    options = checkOptions(options, PROGRESS_OPTIONS, "progress()");
    if (options.label !== undefined && typeof options.label !== "string") {
      throw new TypeError(`label must be a string, got ${describeValue(options.label)}`);
    }
    const stream = options.stream as { write?: unknown } | undefined;
    if (stream !== undefined && (stream === null || typeof stream.write !== "function")) {
      throw new TypeError(
        `stream must be a writable stream (an object with write()), got ${describeValue(stream)}`,
      );
    }
    const counts = { done: 0, failed: 0, running: 0 };
    const bar = new ProgressBar({
      total: list.length,
      label: options.label,
      stream: options.stream,
    });
    try {
      await new Promise<void>((resolve) => {
        let left = list.length;
        if (left === 0) return resolve();
        for (const future of list) {
          if (future.done()) {
            if (future.cancelled() || futureControl(future).failed()) counts.failed++;
            else counts.done++;
            if (--left === 0) resolve();
            continue;
          }
          if (future.running()) counts.running++; // #countProgress takes it off when it stops
          this.#countProgress(future, counts, () => bar.update(counts));
          future.addDoneCallback(() => {
            if (--left === 0) resolve();
          });
        }
        bar.update(counts);
      });
    } finally {
      bar.update(counts);
      bar.stop();
    }
  }

  /**
   * Every task of an operation (a `submit` or `map` call, of this client or another) with its
   * status and its value or error, in input order, read from Redis.
   */
  async results(operationId: string): Promise<OperationResult[]> {
    if (typeof operationId !== "string" || !TASK_ID.test(operationId)) {
      throw new TypeError(
        `operationId must be an operation id, got ${JSON.stringify(operationId)}`,
      );
    }
    const cmd = await this.#connection();
    await this.#submitted([operationId]);
    const [statuses, values] = await Promise.all([
      cmd.sendCommand(["HGETALL", this.#keys.status(operationId)]),
      cmd.sendCommand(["HGETALL", this.#keys.results(operationId)]),
    ]);
    const stored = new Map(replyPairs(values));
    const names = ["pending", "running", "completed", "failed", "cancelled"] as const;
    const out: OperationResult[] = replyPairs(statuses).map(([taskId, code]) => {
      const status = names[Number(code)] ?? "pending";
      const result: OperationResult = { taskId, status };
      const text = stored.get(taskId) ?? "";
      if (status === "completed") {
        try {
          result.value = decode(text);
        } catch (error) {
          result.error = new ProtocolError(`the result of task ${taskId} cannot be decoded`, {
            cause: error,
          });
        }
      } else if (status === "failed") {
        result.error = errorFromLine(text);
      } else if (status === "cancelled") {
        result.error = new CancelledError(text.replace(/^CancelledError: /, ""));
      }
      return result;
    });
    return expandChunks(out).sort((a, b) => inputIndex(a.taskId) - inputIndex(b.taskId));
  }

  /**
   * Waits until every future is done; with `timeout` (ms), throws `TimeoutError` naming how many
   * are unfinished when it passes (the tasks go on).
   */
  async join(
    futures: Iterable<StreamFuture<unknown>>,
    options?: { timeout?: number; signal?: AbortSignal },
  ): Promise<void> {
    const list = futureList(futures, "join()");
    const { timeout, signal } = checkLimits(options, "join()");
    const { notDone } = await wait(list, {
      timeout,
      signal,
      returnWhen: "ALL_COMPLETED",
      onTimeout: "return",
    });
    if (notDone.size > 0) {
      throw new TimeoutError(
        `${notDone.size} of ${list.length} tasks unfinished after ${timeout} ms`,
      );
    }
  }

  /**
   * A live future for a task submitted by another client or an earlier run, as long as its
   * entries exist in Redis: `state`, `result()`, `cancel()` work on it. It rejects with
   * `TaskNotFoundError` when there is no such task. Disposing it only stops watching the task.
   *
   * @example
   * ```ts ignore
   * const f = pool.future<number>("l1ynbhk9vt-2.a");
   * console.log(await f.result({ timeout: 60_000 }));
   * ```
   */
  future<T = unknown>(taskId: string): StreamFuture<T> {
    this.#checkOpen();
    if (typeof taskId !== "string" || !TASK_ID.test(taskId)) {
      throw new TypeError(
        `taskId must be a task id such as "l1ynbhk9vt-2" or "l1ynbhk9vt-2.a", got ${
          JSON.stringify(taskId)
        }`,
      );
    }
    const dot = taskId.indexOf(".");
    const op = dot === -1 ? taskId : taskId.slice(0, dot);
    const future = new StreamFuture<unknown>(taskId, op, this.#hooks);
    this.#futures.add(future);
    this.#attached.add(`${op}/${taskId}`);
    this.#attaching.set(future, this.#watch([future]));
    return future as StreamFuture<T>;
  }

  /**
   * Live futures for every task of an operation (a `submit` or `map` call, maybe of another
   * client), in input order. Rejects with `TaskNotFoundError` when the operation has no tasks.
   */
  async operation<T = unknown>(operationId: string): Promise<StreamFuture<T>[]> {
    this.#checkOpen();
    if (typeof operationId !== "string" || !TASK_ID.test(operationId)) {
      throw new TypeError(
        `operationId must be an operation id, got ${JSON.stringify(operationId)}`,
      );
    }
    await this.#ready;
    await this.#submitted([operationId]);
    const ids = await this.#cmd!.sendCommand(["HKEYS", this.#keys.status(operationId)]) as string[];
    if (ids.length === 0) {
      throw new TaskNotFoundError(`operation ${operationId} has no tasks (in app "${this.app}")`);
    }
    ids.sort((a, b) => inputIndex(a) - inputIndex(b));
    const tasks = ids.map((id) => this.#attachedFuture(id, operationId));
    // A chunk task stands for its calls: a future per call, following it.
    const futures = tasks.flatMap((task) => {
      const chunk = parseChunkId(task.id);
      return chunk
        ? chunkCalls(task, operationId, chunkCallIds(operationId, chunk.first, chunk.count))
        : [task];
    });
    await this.#watch(tasks);
    return futures as StreamFuture<T>[];
  }

  /**
   * Waits until what this pool has submitted so far of the operations `ops` is written (or failed),
   * so that a read right after `submit` / `map` (`results`, `operation`, `future`) finds it.
   */
  async #submitted(ops: readonly string[]): Promise<void> {
    if (!ops.some((op) => this.#ops.has(op))) return; // not this pool's
    // (Only until the flush under way has taken its batches: waiting for all it writes would
    // deadlock a child of that flush that waits for this attach.)
    if (this.#outbox.some((batch) => ops.includes(batch.op))) await this.#flushTaken;
    const writes = ops.map((op) => this.#writing.get(op)).filter((w) => w !== undefined);
    if (writes.length > 0) await Promise.all(writes.map((w) => w.catch(() => {})));
  }

  /** A future of this pool for a task it attaches to (WATCH follows once it is watched). */
  #attachedFuture(id: string, op: string): StreamFuture<unknown> {
    const future = new StreamFuture<unknown>(id, op, this.#hooks);
    this.#futures.add(future);
    this.#attached.add(`${op}/${id}`);
    return future;
  }

  /**
   * Follows the call `future` (id `<op>.<index>`, no task of its own) through the chunk task of
   * its operation that holds it, if there is one; resolves whether there is.
   */
  async #followChunkCall(future: StreamFuture<unknown>): Promise<boolean> {
    const op = future.operationId;
    const dot = future.id.indexOf(".");
    if (dot < 0 || !/^[0-9a-z]+$/.test(future.id.slice(dot + 1))) return false;
    const index = parseInt(future.id.slice(dot + 1), 36);
    const ids = await this.#cmd!.sendCommand(["HKEYS", this.#keys.status(op)]) as string[];
    let found: { id: string; first: number; count: number } | undefined;
    for (const id of ids) {
      const chunk = parseChunkId(id);
      if (chunk && chunk.first <= index && index < chunk.first + chunk.count) {
        found = { id, ...chunk };
      }
    }
    if (!found) return false;
    followsChunk.add(future);
    const task = this.#attachedFuture(found.id, op);
    const call =
      chunkCalls(task, op, chunkCallIds(op, found.first, found.count))[index - found.first];
    futureControl(task).observe((t) => {
      if (t.running()) this.#settleOne(future, (c) => c.markRunning(t.attempt));
    });
    call.then(
      (value) => this.#settleOne(future, (c) => c.resolve(value)),
      (error) =>
        this.#settleOne(
          future,
          (c) => call.cancelled() ? c.cancel(error as CancelledError) : c.reject(error),
        ),
    );
    await this.#watch([task]);
    return true;
  }

  /** Attaches futures to their tasks (WATCH): settles finished ones, watches the others. */
  async #watch(futures: StreamFuture<unknown>[]): Promise<void> {
    try {
      await this.#ready;
      await this.#submitted([...new Set(futures.map((f) => f.operationId))]);
      const cmd = this.#cmd!;
      const refs = futures.map((f) => `${f.operationId}/${f.id}`);
      const replies = await withReconnect(
        cmd,
        () => WATCH.run(cmd, [], [this.app, this.#replyKey, ...refs]),
        this.#reconnectDeadline,
        "attaching to tasks",
      ) as string[][];
      const missing: StreamFuture<unknown>[] = [];
      futures.forEach((future, i) => {
        const [status, stored] = replies[i];
        if (status === "m") {
          missing.push(future);
        } else if (status === Status.RUNNING) {
          futureControl(future).markRunning();
        } else if (status !== Status.NOT_STARTED) {
          this.#settleOne(future, (c) => settleStored(c, future.id, status, stored));
        }
      });
      for (const future of missing) {
        // A call sent in a chunk (map's chunksize > 1) has no task of its own: its chunk's.
        if (await this.#followChunkCall(future)) continue;
        this.#settleOne(future, (c) =>
          c.reject(
            new TaskNotFoundError(
              `no task ${future.id} in app "${this.app}" (never submitted, released, or expired)`,
            ),
          ));
      }
    } catch (error) {
      for (const future of futures) this.#settleOne(future, (c) => c.reject(error));
    }
  }

  /**
   * Creates or replaces the named cron schedule: at each due time of `cron` (5 fields, or 6 with
   * seconds first, e.g. `"0/10 * * * * *"` every ten seconds; read in `options.timezone`, default
   * UTC) a worker enqueues `fn(...args)`, once however many workers are up. Resolves with the
   * next run time.
   *
   * @example
   * ```ts ignore
   * await pool.schedule("nightly-report", "30 2 * * *", tasks.report, ["daily"], {
   *   timezone: "Europe/Berlin",
   * });
   * ```
   */
  async schedule<F extends TaskFunction>(
    name: string,
    cron: string,
    fn: F | string,
    args: Parameters<F> | readonly unknown[],
    options: ScheduleOptions = {},
  ): Promise<Date | undefined> {
    this.#checkOpen();
    const checked = checkScheduleName(name);
    const task = this.#taskRef(fn);
    if (!Array.isArray(args)) {
      throw new TypeError(`args must be an array of task arguments, got ${describeValue(args)}`);
    }
    const { text, refs } = encodeArgs(args, "args", this.app);
    if (refs.length > 0) throw new TypeError("a scheduled task cannot take futures as arguments");
    checkPayloadSize(text, this.#maxPayloadBytes, "the arguments");
    await this.#ready;
    const schedule = storedSchedule(
      checked,
      cron,
      this.#nameOf(task),
      text,
      options,
      this.#queue,
      this.#defaults,
    );
    return await saveSchedule(this.#scheduleContext(), schedule);
  }

  /** Removes a schedule; resolves `true` when it existed. */
  async unschedule(name: string): Promise<boolean> {
    const checked = checkScheduleName(name);
    await this.#connection();
    return await deleteSchedule(this.#scheduleContext(), checked);
  }

  /** The app's schedules, by name, with their next run times. */
  async schedules(): Promise<ScheduleInfo[]> {
    await this.#connection();
    return await listSchedules(this.#scheduleContext());
  }

  /**
   * The command connection, once connected; `PoolClosedError` once the shutdown closed it (reads
   * such as `results()`, `schedules()` and `kv` work until then).
   */
  async #connection(): Promise<RedisConnection> {
    await this.#ready;
    if (this.#disconnected || !this.#cmd) {
      throw new PoolClosedError("the pool is shut down: its connection to Redis is closed");
    }
    return this.#cmd;
  }

  #scheduleContext() {
    return {
      cmd: this.#cmd!,
      keys: this.#keys,
      defaultQueue: this.#queue,
      reconnectDeadline: this.#reconnectDeadline,
    };
  }

  /**
   * Shuts the pool down: no new work is accepted; with `cancelFutures`, every unsettled future is
   * cancelled (running tasks are stopped); then (in the background unless `wait`) it waits for every future to settle, stops
   * the local listeners, and removes its keys (unless `keep`). Safe to call more than once: a
   * call with `cancelFutures` during a shutdown without it cancels what is still unsettled.
   */
  shutdown(options?: ShutdownOptions): Promise<void> {
    options = checkOptions(options, SHUTDOWN_OPTIONS, "shutdown()");
    const wait = bool(options.wait, "wait", true);
    const cancelFutures = bool(options.cancelFutures, "cancelFutures", false);
    this.#closed = true;
    // A shutdown under way (graceful) is escalated by a call with cancelFutures (as a second
    // Ctrl-C would be): every future not settled yet is cancelled now.
    if (this.#closing && cancelFutures) void this.#cancelAll();
    this.#closing ??= this.#close(cancelFutures);
    this.#closing.catch((error) => {
      if (!wait) this.#logger.error("shutdown failed", { error });
    });
    return wait ? this.#closing : Promise.resolve();
  }

  /** `await using pool = ...`: shuts down and waits. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown({ wait: true });
  }

  #checkOpen(): void {
    if (this.#closed) throw new PoolClosedError();
  }

  #taskRef(fn: TaskFunction | string): TaskFunction | string {
    if (typeof fn === "string") {
      if (fn.length === 0) throw new TypeError("the task name must be a non-empty string");
      return fn;
    }
    if (typeof fn !== "function") {
      throw new TypeError(`fn must be a task function or a task name, got ${describeValue(fn)}`);
    }
    if (this.#registry) this.#nameOf(fn);
    return fn;
  }

  #nameOf(fn: TaskFunction | string): string {
    if (typeof fn === "string") return fn;
    const name = this.#registry?.nameOf.get(fn);
    if (name === undefined) {
      const known = this.#registry ? [...this.#registry.byName.keys()].join(", ") : "";
      throw new TypeError(
        `${
          fn.name || "this function"
        } is not a task: it is not exported by the pool's task modules` +
          (known
            ? ` (tasks: ${known})`
            : " (the pool has no task modules; pass `tasks` or a task name)"),
      );
    }
    return name;
  }

  /** Checks the options of a submit / map call and opens its operation (items to be added). */
  #batchOf(options: SubmitOptions): Batch {
    abortSignal(options.signal, "signal");
    const queue = keyName(options.queue, "queue", this.#queue);
    const policy = taskPolicy(options, this.#defaults);
    const extra = policyFields(policy);
    const due = dueSpec(options);
    const ope = onParentError(options.onParentError);
    const dedupe = dedupeSpec(options, this.#dedupeTtl);
    const op = this.#newOperation(queue, policy.priority);
    return {
      queue,
      op,
      items: [],
      extra,
      due,
      onParentError: ope,
      dedupe,
    };
  }

  #newOperation(queue: string, priority: number): string {
    const n = this.#counter++;
    const op = this.#opName(n);
    const stream = priority === 0 ? queue : `${queue}:p${priority}`;
    this.#ops.set(op, { queue, stream, open: 0, n, settledAt: 0, extraKeys: [] });
    return op;
  }

  /** The id of this pool's operation number `n`. */
  #opName(n: number): string {
    return `${this.clientId}-${n.toString(36)}`;
  }

  #newFuture(id: string, op: string): StreamFuture<unknown> {
    const future = new StreamFuture<unknown>(id, op, this.#hooks);
    this.#futures.add(future);
    this.#unsent.add(id);
    this.#ops.get(op)!.open++;
    return future;
  }

  #enqueue(batch: Batch, signal: AbortSignal | undefined): void {
    if (signal) {
      if (signal.aborted) {
        for (const { future } of batch.items) {
          this.#settle(future.id, (c) => c.cancel(abortError(signal)));
        }
        return;
      }
      const onAbort = () => {
        for (const { future } of batch.items) {
          if (!future.done()) void this.#cancel(future, abortError(signal)).catch(() => {});
        }
      };
      signal.addEventListener("abort", onAbort, { once: true });
      let left = batch.items.length;
      for (const { future } of batch.items) {
        future.addDoneCallback(() => {
          if (--left === 0) signal.removeEventListener("abort", onAbort);
        });
      }
    }
    this.#outbox.push(batch);
    if (!this.#flushing) {
      this.#flushTaken = new Promise((resolve) => (this.#onFlushTaken = resolve));
      this.#flushing = this.#flush();
    }
  }

  async #flush(): Promise<void> {
    try {
      await this.#ready;
    } catch (error) {
      const batches = this.#outbox.splice(0);
      for (const batch of batches) this.#failBatch(batch.items, error);
      this.#flushing = undefined;
      this.#onFlushTaken();
      return;
    }
    // Let this turn of the event loop's submissions join this flush.
    await new Promise((resolve) => setImmediate(resolve));
    const batches = this.#outbox.splice(0);
    for (const batch of batches) batch.sealed = true;
    this.#flushing = undefined;
    const taken = this.#onFlushTaken;
    // The batches go out in submission order, without an await between them (FIFO within a
    // queue; the first of identical calls creates the task).
    const calls: Promise<void>[] = [];
    // Consecutive plain `submit`s of one queue and settings go out in one call.
    let solo: SoloRun | undefined;
    const sendSolo = () => {
      if (solo) calls.push(this.#submitSolo(solo));
      solo = undefined;
    };
    try {
      for (const batch of batches) {
        const items: Outgoing[] = [];
        const names: string[] = [];
        // A large batch's first chunk goes out before the rest of its items are taken (see
        // #submitBatch): workers get their first tasks sooner.
        const next = this.#takeItems(batch, 0, FIRST_CHUNK, items, names);
        if (items.length === 0) continue;
        const dedupe = dedupeHash(batch.dedupe, names[0], items[0].args);
        if (
          dedupe === "" && items.length === 1 && next === batch.items.length &&
          items[0].parents.length === 0 && items[0].future.id === batch.op
        ) {
          const key = `${batch.queue}\n${batch.due}\n${batch.extra.join("\n")}`;
          if (solo && solo.key !== key) sendSolo();
          solo ??= { key, batches: [], items: [], names: [] };
          solo.batches.push(batch);
          solo.items.push(items[0]);
          solo.names.push(names[0]);
          continue;
        }
        sendSolo();
        const written = this.#submitBatch(batch, items, names, dedupe, next);
        this.#writing.set(batch.op, written);
        void written.finally(() => this.#writing.delete(batch.op));
        calls.push(written);
      }
      sendSolo();
    } finally {
      taken(); // (every write of the flush is in #writing now)
    }
    await Promise.all(calls);
  }

  /**
   * Takes the items of `batch` from index `from` that are still to be sent (not cancelled) into
   * `items`, with their task names into `names`, until `items` holds `want` of them; an item whose
   * task name cannot be found fails at once. Returns the index after the last item looked at.
   */
  #takeItems(
    batch: Batch,
    from: number,
    want: number,
    items: Outgoing[],
    names: string[],
  ): number {
    const all = batch.items;
    let i = from;
    while (i < all.length && items.length < want) {
      const item = all[i++];
      if (!this.#unsent.delete(item.future.id)) continue; // cancelled before it was sent
      try {
        const name = this.#nameOf(item.fn);
        names.push(item.chunk ? chunkTaskName(name) : name);
      } catch (error) {
        this.#settle(item.future.id, (c) => c.reject(error));
        continue;
      }
      items.push(item);
    }
    return i;
  }

  /**
   * An item whose parents were deduplicated after it was encoded (their futures now stand for
   * shared tasks), with the shared tasks in their place.
   */
  #unalias(item: Outgoing): Outgoing {
    const moved = new Map<string, string>();
    item.parents.forEach((ref, i) => {
      const f = item.parentFutures[i];
      const now = `${f.operationId}/${f.id}`;
      if (now !== ref) moved.set(ref, now);
    });
    if (moved.size === 0) return item;
    const rewrite = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(rewrite);
      if (value === null || typeof value !== "object") return value;
      const record = value as Record<string, unknown>;
      if (record.$sf === "Future" && record.v && typeof record.v === "object") {
        const { op, id } = record.v as { op: string; id: string };
        const shared = moved.get(`${op}/${id}`);
        if (!shared) return value;
        const [sharedOp, sharedId] = shared.split("/");
        return { $sf: "Future", v: { op: sharedOp, id: sharedId } };
      }
      const out: Record<string, unknown> = Object.create(null);
      for (const key of Object.keys(record)) out[key] = rewrite(record[key]);
      return out;
    };
    // Two parents may now be one task (two futures of one call shared by dedupe): listed once,
    // since the task waits for each listed parent's release.
    const parents: string[] = [];
    const parentFutures: StreamFuture<unknown>[] = [];
    item.parents.forEach((p, i) => {
      const ref = moved.get(p) ?? p;
      if (parents.includes(ref)) return;
      parents.push(ref);
      parentFutures.push(item.parentFutures[i]);
    });
    return {
      ...item,
      args: JSON.stringify(rewrite(JSON.parse(item.args))),
      parents,
      parentFutures,
    };
  }

  /**
   * Writes a run of single-task operations (see {@link SoloRun}) in calls of up to
   * {@link SUBMIT_CHUNK}, each checking for a live listener itself.
   */
  #submitSolo(run: SoloRun): Promise<void> {
    const { batches, items, names } = run;
    const { queue, extra, due } = batches[0];
    const cmd = this.#cmd!;
    const keys = [this.#keys.listeners(queue)];
    const head = [
      this.app,
      this.#requireWorkers ? "1" : "0",
      String(this.#heartbeatTimeout),
      "",
      this.#replyKey,
      String(this.#orphanTtl),
      queue,
      due,
      String(extra.length / 2),
      ...extra,
    ];
    const send = async (start: number, end: number): Promise<void> => {
      const args = head.slice();
      const aside = new Map<string, string[]>();
      for (let i = start; i < end; i++) {
        const { future } = items[i];
        args.push(future.id, names[i], this.#argsField(aside, future, items[i].args));
      }
      try {
        // Idempotent (see SUBMIT_SOLO), so a call cut by a lost connection is simply sent again.
        const written = await withReconnect(
          cmd,
          async () => {
            await this.#storeAside(aside);
            return SUBMIT_SOLO.run(cmd, keys, args);
          },
          this.#reconnectDeadline,
          `submitting to queue "${queue}"`,
        );
        if (written === -1) {
          this.#dropAside(aside.keys());
          this.#failBatch(items.slice(start, end), this.#noWorkers(queue));
        }
      } catch (error) {
        this.#failBatch(items.slice(start, end), error);
      }
    };
    const answered: (() => void)[] = [];
    for (let start = 0; start < items.length; start += SUBMIT_CHUNK) {
      const call = new Promise<void>((resolve) => answered.push(resolve));
      this.#whileUnanswered(items.slice(start, start + SUBMIT_CHUNK), call);
    }
    let at = 0;
    const written = inWindow(async () => {
      if (at >= items.length) return false;
      const start = at;
      at = Math.min(at + SUBMIT_CHUNK, items.length);
      await send(start, at);
      answered[start / SUBMIT_CHUNK]();
      return true;
    });
    // Set before the flush goes on: a later batch of it may have these operations as parents.
    for (const batch of batches) this.#writing.set(batch.op, written);
    void written.finally(() => {
      for (const batch of batches) this.#writing.delete(batch.op);
    });
    return written;
  }

  /**
   * The `args` field of a task's entry: its encoded arguments, or {@link ARGS_ASIDE} when they
   * are long enough to be stored beside the entry (they are then added to `aside`, `{args key:
   * [taskId, args, ...]}`, for {@link #storeAside}).
   */
  #argsField(aside: Map<string, string[]>, future: StreamFuture<unknown>, args: string): string {
    if (args.length < ARGS_ASIDE_MIN) return args;
    const key = this.#keys.args(future.operationId);
    const pairs = aside.get(key);
    if (pairs) pairs.push(future.id, args);
    else aside.set(key, [future.id, args]);
    return ARGS_ASIDE;
  }

  /**
   * Stores long arguments beside their entries (see {@link #argsField}) with the operation's time
   * to live, before the SUBMIT call that writes the entries (on the same connection, so a worker
   * that reads an entry finds them). Plain `HSET`s: in a script, Redis would hash every byte of
   * them.
   */
  async #storeAside(aside: Map<string, string[]>): Promise<void> {
    if (aside.size === 0) return;
    const cmd = this.#cmd!;
    const ttl = String(this.#orphanTtl);
    const writes: Promise<unknown>[] = [];
    for (const [key, pairs] of aside) {
      writes.push(cmd.sendCommand(["HSET", key, ...pairs]), cmd.sendCommand(["PEXPIRE", key, ttl]));
    }
    await Promise.all(writes);
  }

  /**
   * Deletes the arguments hashes of operations that were refused (best effort: they expire
   * anyway).
   */
  #dropAside(keys: Iterable<string>): void {
    const names = [...keys];
    if (names.length > 0) void this.#cmd!.sendCommand(["UNLINK", ...names]).catch(() => {});
  }

  /**
   * Notes `items` as taken into a SUBMIT call that Redis has not answered until `answered`
   * settles (see {@link #unanswered}).
   */
  #whileUnanswered(items: readonly Outgoing[], answered: Promise<unknown>): void {
    const ids = items.map((item) => item.future.id);
    const settled = answered.then(() => {}, () => {});
    for (const id of ids) this.#unanswered.set(id, settled);
    void settled.then(() => {
      for (const id of ids) if (this.#unanswered.get(id) === settled) this.#unanswered.delete(id);
    });
  }

  /** The error of tasks refused because no live worker serves `queue`. */
  #noWorkers(queue: string): NoWorkersError {
    return new NoWorkersError(
      `no live worker serves queue "${queue}" of app "${this.app}" (no listener heartbeat within ${this.#heartbeatTimeout} ms); ` +
        `start one with \`deno run -A worker.ts --tasks ... --app ${this.app} --queue ${queue}\`, ` +
        `pass workers: N, or requireWorkers: false to let work wait in Redis`,
    );
  }

  /**
   * Writes one operation's tasks: a first chunk of {@link FIRST_CHUNK}, then chunks of
   * {@link SUBMIT_CHUNK}. Only the first chunk checks for a live listener; the rest follow once it
   * passed, so an operation is refused whole or written whole. Tasks with parents wait until their
   * parents' operations are written; they and deduplicated tasks go through SUBMIT_EX.
   * `items` holds the batch's first chunk (taken by {@link #takeItems}); the rest of the batch,
   * from index `next`, is taken a chunk at a time as each call is built, at most
   * {@link SUBMIT_WINDOW} calls in flight.
   */
  async #submitBatch(
    batch: Batch,
    items: Outgoing[],
    names: string[],
    dedupe: string,
    next: number,
  ): Promise<void> {
    // The first call's tasks are taken already; they may wait for their parents before it goes.
    let firstAnswered!: () => void;
    this.#whileUnanswered(items, new Promise<void>((resolve) => (firstAnswered = resolve)));
    try {
      await this.#writeBatch(batch, items, names, dedupe, next, firstAnswered);
    } finally {
      firstAnswered();
    }
  }

  /** {@link #submitBatch}'s calls; `firstAnswered` once the first one is answered. */
  async #writeBatch(
    batch: Batch,
    items: Outgoing[],
    names: string[],
    dedupe: string,
    next: number,
    firstAnswered: () => void,
  ): Promise<void> {
    const { queue, op, extra } = batch;
    const withParents = batch.items.some((item) => item.parents.length > 0);
    const unalias = (list: Outgoing[], from: number) => {
      for (let i = from; i < list.length; i++) {
        if (list[i].parents.length > 0) list[i] = this.#unalias(list[i]);
      }
    };
    if (withParents) {
      const parents = new Set(
        batch.items.flatMap((item) => item.parents.map((p) => p.split("/")[0])),
      );
      const waits = [...parents].map((parentOp) => this.#writing.get(parentOp)).filter((w) => w);
      if (waits.length > 0) await Promise.all(waits);
      await this.#writeUnsentParents(batch.items);
      unalias(items, 0);
      // A call whose parent turned out to be another call's task (dedupe) is identified by that
      // task: identical calls naming either future are one call.
      if (dedupe !== "") dedupe = dedupeHash(batch.dedupe, names[0], items[0].args);
    }
    /** Takes up to `want` more tasks of the batch (all that are left: Infinity). */
    const take = (want: number): [Outgoing[], string[]] => {
      const part: Outgoing[] = [];
      const partNames: string[] = [];
      next = this.#takeItems(batch, next, want, part, partNames);
      if (withParents) unalias(part, 0);
      return [part, partNames];
    };
    /** Fails the first chunk and every task of the batch not taken yet. */
    const failAll = (error: unknown) => {
      const [rest] = take(Infinity);
      this.#failBatch(items.concat(rest), error);
    };
    if (withParents) {
      // A future attached by id may turn out to be a call sent in a chunk, which has no task of
      // its own to wait for: refused as refOfFuture refuses the submitting pool's own.
      const parents = batch.items.flatMap((item) => item.parentFutures);
      const attaching = parents.map((f) => this.#attaching.get(f)).filter((w) => w !== undefined);
      if (attaching.length > 0) await Promise.all(attaching);
      const call = parents.find((f) => followsChunk.has(f));
      if (call) return failAll(chunkCallArgumentError(call.id));
    }
    const general = dedupe !== "" || withParents;
    const keys = [this.#keys.listeners(queue), this.#keys.status(op), this.#keys.results(op)];
    const cmd = this.#cmd!;
    // Idempotent (see SUBMIT), so a call cut by a lost connection is simply sent again.
    const chunk = (slice: Outgoing[], sliceNames: string[], check: boolean) => {
      const args = [
        this.app,
        check ? "1" : "0",
        String(this.#heartbeatTimeout),
        op,
        this.#replyKey,
        String(this.#orphanTtl),
        queue,
        batch.due,
        String(extra.length / 2),
        ...extra,
      ];
      if (general) args.push(batch.onParentError, String(batch.dedupe.ttl));
      // A deduplicated call may come to stand for another task: its arguments stay in the entry.
      const aside = new Map<string, string[]>();
      slice.forEach((item, i) => {
        const field = dedupe === "" ? this.#argsField(aside, item.future, item.args) : item.args;
        args.push(item.future.id, sliceNames[i], field);
        if (general) args.push(item.parents.join(" "), dedupe);
      });
      return withReconnect(
        cmd,
        async () => {
          await this.#storeAside(aside);
          return await (general ? SUBMIT_EX : SUBMIT).run(cmd, keys, args);
        },
        this.#reconnectDeadline,
        `submitting to queue "${queue}"`,
      );
    };
    /** Notes the dependency keys of tasks with parents among the operation's keys. */
    const noteDeps = (list: Outgoing[]) => {
      const info = this.#ops.get(op);
      if (!info) return;
      for (const item of list) {
        if (item.parents.length > 0) info.extraKeys.push(this.#keys.deps(op, item.future.id));
      }
    };
    try {
      const written = await chunk(items, names, this.#requireWorkers);
      if (written === -1) {
        this.#dropAside([this.#keys.args(op)]);
        failAll(this.#noWorkers(queue));
        return;
      }
      if (Array.isArray(written)) this.#onShared(items, written as unknown[][]);
      noteDeps(items);
    } catch (error) {
      failAll(error);
      return;
    } finally {
      firstAnswered();
    }
    await inWindow(async () => {
      const [part, partNames] = take(SUBMIT_CHUNK);
      if (part.length === 0) return false;
      noteDeps(part);
      const call = chunk(part, partNames, false);
      this.#whileUnanswered(part, call);
      try {
        await call;
      } catch (error) {
        this.#failBatch(part, error);
      }
      return true;
    });
  }

  /**
   * SUBMIT_EX's replies for deduplicated tasks: a future whose call matched an existing task now
   * stands for that task (it was added to the task's watchers, or the task had finished).
   */
  #onShared(items: Outgoing[], replies: unknown[][]): void {
    replies.forEach((reply, i) => {
      if (reply[0] !== "d") return;
      const future = items[i].future;
      const [sharedOp, sharedId] = String(reply[1]).split("/");
      const status = String(reply[2]);
      this.#futures.remove(future);
      this.#ops.delete(future.operationId);
      futureControl(future).rebind(sharedId, sharedOp);
      this.#attached.add(`${sharedOp}/${sharedId}`);
      this.#futures.add(future);
      if (status === Status.RUNNING) futureControl(future).markRunning();
      else if (status !== Status.NOT_STARTED) {
        this.#settleOne(future, (c) => settleStored(c, sharedId, status, String(reply[3])));
      }
    });
  }

  /**
   * Writes the outcome of the parents among `items`' that settled without reaching Redis (status
   * "4" cancelled or "3" failed, unless Redis has one), so that SUBMIT treats them as it treats
   * any finished parent: the child fails with `DependencyError` naming the parent's error, or gets
   * that error as its argument (`onParentError: "pass"`), instead of finding no such task.
   */
  async #writeUnsentParents(items: readonly Outgoing[]): Promise<void> {
    const parents = new Set<StreamFuture<unknown>>();
    for (const item of items) {
      for (const f of item.parentFutures) if (this.#settledUnsent.has(f)) parents.add(f);
    }
    if (parents.size === 0) return;
    const cmd = this.#cmd!;
    const ttl = String(this.#orphanTtl);
    try {
      await Promise.all([...parents].map(async (f) => {
        const cancelled = f.cancelled();
        const error = cancelled ? undefined : await f.exception().catch((e) => e);
        const line = cancelled
          ? formatErrorLine("CancelledError", "the task was cancelled before it was sent")
          : formatErrorLine(
            (error as Error)?.name ?? "Error",
            (error as Error)?.message ?? String(error),
          );
        const status = this.#keys.status(f.operationId);
        const results = this.#keys.results(f.operationId);
        if (await cmd.sendCommand(["HSETNX", status, f.id, cancelled ? "4" : "3"]) === 1) {
          await cmd.sendCommand(["HSET", results, f.id, line]);
        }
        await cmd.sendCommand(["PEXPIRE", status, ttl, "NX"]);
        await cmd.sendCommand(["PEXPIRE", results, ttl, "NX"]);
      }));
    } catch (error) {
      // The child's SUBMIT then finds no parent (TaskNotFoundError) or fails on its own.
      this.#logger.warn("could not write the outcome of a parent that was never sent", { error });
    }
  }

  #failBatch(items: readonly Outgoing[], error: unknown): void {
    for (const { future } of items) {
      this.#unsent.delete(future.id);
      this.#settledUnsent.add(future);
      this.#settle(future.id, (c) => c.reject(error));
    }
  }

  /** Applies a state change to the live futures of a task and forgets those that are done. */
  #settle(id: string, change: (control: ReturnType<typeof futureControl>) => void): void {
    const found = this.#futures.only(id);
    if (found === undefined) return;
    if (!Array.isArray(found)) return this.#settleOne(found as StreamFuture<unknown>, change);
    for (const future of [...found]) this.#settleOne(future, change);
  }

  #settleOne(
    future: StreamFuture<unknown>,
    change: (control: ReturnType<typeof futureControl>) => void,
  ): void {
    if (future.done()) return;
    change(futureControl(future));
    if (future.done()) {
      const info = this.#ops.get(future.operationId);
      if (info && --info.open === 0) this.#retire(future.operationId, info);
      this.#futures.remove(future);
      if (!this.#futures.has(future.id)) {
        this.#attached.delete(`${future.operationId}/${future.id}`);
        this.#started.delete(future.id);
      }
    }
  }

  /**
   * The last future of an operation settled. Its keys are no longer refreshed and stay readable
   * until they expire; the pool keeps only its number, to delete them at close. An imap's
   * operation stays a record while it runs (and is forgotten by the TTL refresh), and so does every
   * operation with `keep`.
   */
  #retire(op: string, info: OperationInfo): void {
    info.settledAt = Date.now();
    if (info.pinned || this.#keep) return;
    this.#ops.delete(op);
    this.#settled.push(info.n);
  }

  /** The status, heartbeat, results, arguments and delayed-entries hashes of operations. */
  #opKeys(ops: Iterable<string>): string[] {
    const keys: string[] = [];
    for (const op of ops) {
      const k = this.#keys;
      keys.push(k.status(op), k.heartbeat(op), k.results(op), k.args(op), k.delayedEntries(op));
    }
    return keys;
  }

  async #cancel(future: StreamFuture<unknown>, reason?: CancelledError): Promise<boolean> {
    if (future.done()) return future.cancelled();
    if (this.#unsent.delete(future.id)) {
      for (const f of this.#futures.get(future.id)) this.#settledUnsent.add(f);
      this.#settle(future.id, (c) => c.cancel(reason));
      return true;
    }
    await this.#ready;
    // A task whose SUBMIT call Redis has not answered yet: CANCEL would not find it.
    const answered = this.#unanswered.get(future.id);
    if (answered) {
      await answered;
      if (future.done()) return future.cancelled();
    }
    // The confirmation may arrive on the reply stream before CANCEL returns: keep the reason.
    if (reason) this.#cancelReasons.set(future.id, reason);
    try {
      const cmd = this.#cmd!;
      const op = future.operationId;
      const reply = await withReconnect(
        cmd,
        () =>
          CANCEL.run(
            cmd,
            [
              this.#keys.status(op),
              this.#keys.results(op),
              this.#replyKey,
              this.#keys.replyOf(op) ?? this.#replyKey,
            ],
            [
              this.app,
              future.id,
              `CancelledError: ${reason?.message ?? "cancelled by the client"}`,
              future.operationId,
            ],
          ),
        this.#reconnectDeadline,
        `cancelling task ${future.id}`,
      );
      if (reply === "" && !future.done()) {
        // Redis does not know the task (any more): it lost its keys, so it can never run.
        this.#settle(future.id, (c) => c.cancel(reason));
        return true;
      }
      if (reply !== 1) {
        // Final already (or a status this library does not write): its notice may never come
        // (a reply stream that was lost or tampered with), so the stored outcome settles it.
        if (!future.done()) {
          const stored = await cmd.sendCommand(["HGET", this.#keys.results(op), future.id]);
          const status = String(reply);
          this.#settle(future.id, (c) => settleStored(c, future.id, status, String(stored ?? "")));
        }
        return false;
      }
      this.#settle(future.id, (c) => c.cancel(reason));
      return true;
    } finally {
      this.#cancelReasons.delete(future.id);
    }
  }

  async #dispose(future: StreamFuture<unknown>): Promise<void> {
    const attached = this.#attached.has(`${future.operationId}/${future.id}`);
    if (!attached && !future.done()) await future.cancel();
    this.#futures.remove(future);
    if (this.#futures.has(future.id)) return; // another future of this pool stands for it
    this.#unsent.delete(future.id);
    this.#started.delete(future.id);
    const op = future.operationId;
    const ref = `${op}/${future.id}`;
    if (this.#attached.delete(ref)) {
      // Not this pool's task: stop watching it, leave its entries alone.
      if (this.#cmd) await UNWATCH.run(this.#cmd, [], [this.app, this.#replyKey, ref]);
      return;
    }
    if (this.#keep || !this.#cmd) return;
    const cmd = this.#cmd;
    await Promise.all(this.#opKeys([op]).map((key) => cmd.sendCommand(["HDEL", key, future.id])));
  }

  async #start(): Promise<void> {
    if (this.#modules.length > 0) this.#registry = await loadTasks(this.#modules);
    const deadline = this.#reconnectDeadline;
    this.#cmd = await connect(this.#url, "streamfutures-client", deadline);
    this.#reader = await connectReader(this.#url, "streamfutures-client-read", deadline);
    const id = await this.#makeReplyStream();
    // The submit scripts are in Redis before the first flush: a call that finds its script
    // missing loads it and goes again, behind calls sent after it (submission order is kept
    // unless Redis loses its functions while the pool runs: FUNCTION FLUSH, a restart without
    // persistence).
    await Promise.all([SUBMIT, SUBMIT_SOLO, SUBMIT_EX].map((script) => script.load(this.#cmd!)));
    this.#lastReplyId = String(id);
    this.#reading = true;
    this.#readLoop = this.#readReplies();
    this.#timers.push(
      setInterval(() => void this.#checkStarted(), this.#heartbeatInterval),
      setInterval(
        () => void this.#refreshTtl(),
        Math.min(Math.max(1, this.#orphanTtl / 3), MAX_TIMER_MS),
      ),
    );
    if (this.#workers > 0) {
      this.#locals = await startLocalListeners(
        this.#workers,
        {
          url: this.#url,
          app: this.app,
          queues: [this.#queue],
          tasks: this.#registry!.urls,
          concurrency: this.#concurrency,
          prefetch: this.#prefetch,
          heartbeatInterval: this.#heartbeatInterval,
          heartbeatTimeout: this.#heartbeatTimeout,
          taskGrace: this.#taskGrace,
          maxPayloadBytes: this.#maxPayloadBytes,
          reconnectDeadline: this.#reconnectDeadline,
          executorMode: this.#executorMode,
          logLevel: this.#localLogLevel,
          logFormat: this.#logFormat,
        } satisfies ListenerOptions,
        this.#executors,
      );
    }
  }

  /**
   * Looks for lost tasks among those this pool saw start: a task whose heartbeat is older than
   * `heartbeatTimeout` goes back to its queue (retries left) or fails with WorkerLostError, in
   * Redis (RECOVER_TASKS); the outcome arrives on the reply stream like any other.
   */
  async #checkStarted(): Promise<void> {
    if (this.#started.size === 0 || !this.#cmd) return;
    const cmd = this.#cmd;
    const records: string[] = [];
    for (const [taskId, where] of this.#started) {
      records.push(where.queue, where.entryId, where.op, taskId);
    }
    try {
      for (let i = 0; i < records.length; i += 4 * 500) {
        const gone = await RECOVER_TASKS.run(cmd, [], [
          this.app,
          GROUP,
          String(this.#heartbeatTimeout),
          this.#replyKey,
          ...records.slice(i, i + 4 * 500),
        ]) as string[];
        for (const id of gone) {
          this.#settle(id, (c) =>
            c.reject(
              new TaskNotFoundError(
                `task ${id} no longer exists in Redis (its entries were released, expired or ` +
                  `deleted while it ran)`,
              ),
            ));
        }
      }
    } catch {
      // Redis is unreachable: the next check tries again (the read loop reports the outage).
    }
  }

  /**
   * Refreshes the time to live of the reply stream and of the keys of every operation that still
   * has unsettled futures. The keys of settled operations are left to expire (they stay readable
   * for `orphanTtl` after their last task settled); operations settled longer ago than that are
   * forgotten.
   */
  async #refreshTtl(): Promise<void> {
    const cmd = this.#cmd;
    if (!cmd) return;
    this.#trimReplies();
    const keys = [this.#replyKey];
    const now = Date.now();
    for (const [op, info] of this.#ops) {
      if (info.open > 0 || info.pinned || this.#keep) {
        keys.push(...this.#opKeys([op]), ...info.extraKeys);
      } else if (now - info.settledAt > this.#orphanTtl) {
        this.#ops.delete(op);
      }
    }
    this.#forgetExpired(now);
    try {
      for (let i = 0; i < keys.length; i += 3000) {
        await TOUCH.run(cmd, keys.slice(i, i + 3000), [String(this.#orphanTtl)]);
      }
    } catch {
      // Redis is unreachable: the next refresh tries again, well within the time to live.
    }
  }

  /**
   * Forgets the settled operations whose keys have expired: those settled before a refresh that
   * lies more than `orphanTtl` back (their keys were last refreshed before they settled).
   */
  #forgetExpired(now: number): void {
    const marks = this.#settledMarks;
    let expired = 0;
    while (marks.length > 0 && now - marks[0][0] > this.#orphanTtl) expired = marks.shift()![1];
    if (expired > 0) {
      this.#settled.splice(0, expired);
      for (const mark of marks) mark[1] -= expired;
    }
    marks.push([now, this.#settled.length]);
  }

  async #readReplies(): Promise<void> {
    let backoff = 50;
    let failedSince: number | undefined;
    while (this.#reading) {
      let reply: unknown;
      try {
        reply = await this.#reader!.sendCommand([
          "XREAD",
          "COUNT",
          String(READ_COUNT),
          "BLOCK",
          String(READ_BLOCK),
          "STREAMS",
          this.#replyKey,
          this.#lastReplyId,
        ]);
        backoff = 50;
        if (failedSince !== undefined) {
          this.#logger.info("reading replies again");
          void this.#afterOutage().catch((error) => {
            this.#logger.warn("checking the tasks after the outage failed", { error });
          });
        }
        failedSince = undefined;
      } catch (error) {
        if (!this.#reading) break;
        if (failedSince === undefined) {
          this.#logger.warn("reading replies failed; retrying", { error });
        }
        failedSince ??= Math.min(Date.now(), this.#reader!.downSince ?? Infinity);
        const down = Date.now() - failedSince;
        if (down >= this.#reconnectDeadline && this.#futures.size > 0) {
          // Past the deadline the waiting futures fail; reading goes on for later work.
          const failure = new ConnectionError(
            `Redis unreachable for ${down} ms (reconnectDeadline ${this.#reconnectDeadline} ms): ${
              (error as Error)?.message
            }`,
            { cause: error },
          );
          for (const future of [...this.#futures.values()]) {
            this.#unsent.delete(future.id);
            this.#settleOne(future, (c) => c.reject(failure));
          }
        }
        await new Promise((resolve) => setTimeout(resolve, backoff * (0.5 + Math.random())));
        backoff = Math.min(backoff * 2, 2000);
        continue;
      }
      const entries = parseStreamReplyFlat(reply);
      if (entries.length === 0) continue;
      for (const entry of entries) this.#onReply(entry.flat);
      this.#lastReplyId = entries[entries.length - 1].id;
      this.#untrimmed += entries.length;
      if (this.#untrimmed >= TRIM_EVERY) this.#trimReplies();
    }
  }

  /**
   * After Redis was unreachable: it may have come back without its data (a restart without
   * persistence). The reply stream is made again if it is gone (workers write to it with
   * NOMKSTREAM), and every future whose task Redis no longer knows (no status) fails with
   * `TaskNotFoundError` instead of waiting forever.
   */
  /**
   * Makes the reply stream, empty; resolves with the id of the entry that made it. It must exist:
   * workers write to it with NOMKSTREAM so that replies to a vanished client do not recreate it.
   * It expires unless this pool keeps refreshing it.
   */
  async #makeReplyStream(): Promise<string> {
    const cmd = this.#cmd!;
    const id = String(await cmd.sendCommand(["XADD", this.#replyKey, "*", "init", "1"]));
    await cmd.sendCommand(["XDEL", this.#replyKey, id]);
    await TOUCH.run(cmd, [this.#replyKey], [String(this.#orphanTtl)]);
    return id;
  }

  async #afterOutage(): Promise<void> {
    const cmd = this.#cmd!;
    if (await cmd.sendCommand(["EXISTS", this.#replyKey]) === 0) {
      this.#logger.warn(
        "Redis lost this client's reply stream (a restart without persistence, a flush?): " +
          "made it again; tasks it no longer knows fail with TaskNotFoundError",
      );
      await this.#makeReplyStream();
    }
    const byOp = new Map<string, StreamFuture<unknown>[]>();
    for (const future of this.#futures.values()) {
      if (future.done() || this.#unsent.has(future.id) || this.#unanswered.has(future.id)) {
        continue;
      }
      const list = byOp.get(future.operationId);
      if (list) list.push(future);
      else byOp.set(future.operationId, [future]);
    }
    for (const [op, futures] of byOp) {
      for (let i = 0; i < futures.length; i += 1000) {
        const chunk = futures.slice(i, i + 1000);
        const statuses = await cmd.sendCommand(
          ["HMGET", this.#keys.status(op), ...chunk.map((f) => f.id)],
        ) as unknown[];
        chunk.forEach((future, j) => {
          if (statuses[j] !== null && statuses[j] !== undefined) return;
          const error = new TaskNotFoundError(
            `task ${future.id} is gone from Redis: its keys vanished while Redis was unreachable ` +
              "(a restart without persistence, a flush or an eviction)",
          );
          this.#unsent.delete(future.id);
          this.#settleOne(future, (c) => c.reject(error));
        });
      }
    }
  }

  /**
   * Trims the reply entries before the last one read: they are done with. Whole stream nodes at a
   * time, far cheaper for Redis than deleting entry by entry; not waited for, errors ignored.
   */
  #trimReplies(): void {
    const cmd = this.#cmd;
    if (!cmd || this.#untrimmed === 0) return;
    this.#untrimmed = 0;
    void cmd.sendCommand(["XTRIM", this.#replyKey, "MINID", "~", this.#lastReplyId])
      .catch(() => {});
  }

  /**
   * Applies the notices of one reply entry: each starts with its `t` field and runs until the next
   * notice, or is a compact completion notice, `c <task id>NUL<timings>NUL<value>`.
   */
  #onReply(flat: string[]): void {
    // One notice object, refilled for each notice (a reply entry may hold thousands).
    const notice: Notice = { t: "" };
    let open = false;
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const name = flat[i];
      if (name === "c") {
        if (open) this.#onNotice(notice);
        open = false;
        const packed = flat[i + 1];
        const a = packed.indexOf("\0");
        const b = a < 0 ? -1 : packed.indexOf("\0", a + 1);
        if (b < 0) continue; // not a compact notice: ignored, like any unknown field
        notice.t = packed.slice(0, a);
        notice.s = Status.COMPLETE;
        notice.m = b > a + 1 ? packed.slice(a + 1, b) : undefined;
        notice.p = packed.slice(b + 1);
        notice.a = notice.i = notice.e = undefined;
        this.#onNotice(notice);
      } else if (name === "t") {
        if (open) this.#onNotice(notice);
        open = true;
        notice.t = flat[i + 1];
        notice.s =
          notice.p =
          notice.m =
          notice.a =
          notice.i =
          notice.e =
            undefined;
      } else if (open) {
        (notice as unknown as Record<string, string>)[name] = flat[i + 1];
      }
    }
    if (open) this.#onNotice(notice);
  }

  #onNotice(fields: Notice): void {
    const id = fields.t;
    const timings = fields.m;
    // (A completion sets its timings in the same pass over the task's futures.)
    if (timings && fields.s !== Status.COMPLETE) this.#settle(id, (c) => c.timings(timings));
    switch (fields.s) {
      case "p":
      case "y":
      case "P":
      case "Y": {
        // Upper case: several consecutive values as a JSON array, the first one's index in `i`.
        const futures = this.#futures.get(id);
        if (futures.length === 0) return;
        let value: unknown;
        try {
          value = decode(fields.p ?? "");
        } catch {
          return; // a value this client cannot read is skipped
        }
        const packed = fields.s === "P" || fields.s === "Y";
        if (packed && !Array.isArray(value)) return;
        const values = packed ? value as unknown[] : [value];
        const kind = fields.s === "p" || fields.s === "P" ? "p" : "y";
        const attempt = Number(fields.a);
        const first = Number(fields.i);
        for (const future of futures) {
          const control = futureControl(future);
          values.forEach((v, k) => control.event(kind, attempt, first + k, v));
        }
        return;
      }
      case Status.NOT_STARTED: // back to the queue for another attempt
        this.#started.delete(id);
        return this.#settle(id, (c) => c.markPending(Number(fields.a) || 1));
      case Status.RUNNING: {
        const future = this.#futures.get(id)[0];
        if (future && fields.e) {
          const stream = this.#ops.get(future.operationId)?.stream;
          if (stream) {
            this.#started.set(id, { queue: stream, op: future.operationId, entryId: fields.e });
          }
        }
        return this.#settle(id, (c) => c.markRunning(Number(fields.a) || undefined));
      }
      case Status.COMPLETE:
        this.#started.delete(id);
        return this.#settle(id, (c) => {
          if (timings) c.timings(timings);
          try {
            c.resolve(decode(fields.p ?? ""));
          } catch (error) {
            c.reject(
              new ProtocolError(`the result of task ${id} cannot be decoded`, { cause: error }),
            );
          }
        });
      case Status.ERROR:
        this.#started.delete(id);
        return this.#settle(id, (c) => c.reject(errorFromPayload(id, fields.p)));
      case Status.CANCELLED:
        this.#started.delete(id);
        return this.#settle(id, (c) => c.cancel(this.#cancelReasons.get(id)));
    }
  }

  /** Cancels every future of the pool that is not settled (shutdown with `cancelFutures`). */
  async #cancelAll(): Promise<void> {
    await Promise.all([...this.#futures.values()].map((f) => f.cancel().catch(() => false)));
  }

  async #close(cancelFutures: boolean): Promise<void> {
    try {
      await this.#ready;
    } catch {
      // Start-up failed: the futures were rejected with its error; release what exists.
    }
    while (this.#flushing) await this.#flushing;
    if (cancelFutures) await this.#cancelAll();
    await Promise.all([...this.#futures.values()].map((f) => f.then(() => {}, () => {})));
    await this.#locals?.stop();
    for (const timer of this.#timers) clearInterval(timer);
    this.#reading = false;
    if (this.#cmd) await this.#reader?.unblock(this.#cmd).catch(() => {});
    await this.#readLoop;
    this.#reader?.close();
    if (this.#cmd) {
      try {
        if (this.#attached.size > 0) {
          await UNWATCH.run(this.#cmd, [], [this.app, this.#replyKey, ...this.#attached]);
        }
        await this.#cmd.sendCommand(["UNLINK", this.#replyKey]);
        const ops = [...this.#ops.keys()];
        const cmd = this.#cmd;
        if (this.#keep) {
          // Kept keys outlive the pool: no orphan expiry for them.
          await Promise.all(this.#opKeys(ops).map((key) => cmd.sendCommand(["PERSIST", key])));
        } else {
          // 100 operations (500 keys) per UNLINK; the settled ones named only when sent.
          const unlink = (names: string[]) => cmd.sendCommand(["UNLINK", ...this.#opKeys(names)]);
          for (let i = 0; i < ops.length; i += 100) await unlink(ops.slice(i, i + 100));
          for (let i = 0; i < this.#settled.length; i += 100) {
            await unlink(this.#settled.slice(i, i + 100).map((n) => this.#opName(n)));
          }
        }
      } finally {
        this.#disconnected = true;
        this.#cmd.close();
      }
    }
  }
}

/**
 * The rows of `results()` with each chunk task's row replaced by its calls' rows: a completed
 * chunk's calls with their own outcomes, any other chunk's calls with its status and error.
 */
function expandChunks(rows: OperationResult[]): OperationResult[] {
  if (!rows.some((row) => parseChunkId(row.taskId))) return rows;
  return rows.flatMap((row) => {
    const chunk = parseChunkId(row.taskId);
    if (!chunk) return [row];
    const op = row.taskId.slice(0, row.taskId.indexOf("."));
    const ids = chunkCallIds(op, chunk.first, chunk.count);
    if (row.status !== "completed") return ids.map((taskId) => ({ ...row, taskId }));
    const outcomes = callOutcomes(row.value, chunk.count, row.taskId, 1);
    return ids.map((taskId, i): OperationResult => {
      const outcome = outcomes[i];
      return "error" in outcome
        ? { taskId, status: "failed", error: outcome.error }
        : { taskId, status: "completed", value: outcome.value };
    });
  });
}

/**
 * Where a task of an operation comes in its input: `<op>.<index in base 36>`, or a chunk's
 * `<op>.c_<index of its first call in base 36>_<calls>`; -1 for a task that is its operation.
 */
function inputIndex(id: string): number {
  const dot = id.indexOf(".");
  if (dot === -1) return -1;
  const at = id.startsWith("c_", dot + 1) ? dot + 3 : dot + 1;
  return parseInt(id.slice(at), 36);
}

function abortError(signal: AbortSignal): CancelledError {
  return new CancelledError("the task was cancelled: its signal was aborted", {
    cause: signal.reason,
  });
}

/** Encoded task arguments, with the futures among them (parent tasks). */
interface EncodedArgs {
  text: string;
  refs: readonly string[];
  parentFutures: readonly StreamFuture<unknown>[];
}

const NO_REFS: readonly never[] = Object.freeze([]);
/** The parent fields of an item without parents. */
const NO_PARENTS = { parents: NO_REFS, parentFutures: NO_REFS } as const;
/** The futures met while encoding one argument list (encoding is synchronous: one at a time). */
const parentsMet = new Map<string, StreamFuture<unknown>>();
/** Futures attached by id (`pool.future`) to calls that were sent in chunks. */
const followsChunk = new WeakSet<StreamFuture<unknown>>();
function chunkCallArgumentError(id: string): TypeError {
  return new TypeError(
    `the future of call ${id}, sent in a chunk (map's chunksize > 1), cannot be a task ` +
      "argument: await it and pass its value, or map with chunksize 1",
  );
}
/** The app of the pool whose arguments are being encoded (a parent must be of the same app). */
let encodingApp: string | undefined;
function refOfFuture(value: object): { op: string; id: string } | undefined {
  if (!(value instanceof StreamFuture)) return undefined;
  const app = futureControl(value).app();
  if (app !== undefined && encodingApp !== undefined && app !== encodingApp) {
    throw new TypeError(
      `the future of task ${value.id} belongs to app "${app}", not "${encodingApp}": a task's ` +
        "parents must be tasks of its own app (await it and pass its value)",
    );
  }
  if (isChunkCall(value) || followsChunk.has(value)) throw chunkCallArgumentError(value.id);
  parentsMet.set(`${value.operationId}/${value.id}`, value);
  return { op: value.operationId, id: value.id };
}

/**
 * Encodes one argument list of `map` / `imap` (`list[index]` in messages) and checks its size: the
 * JSON text of plain JSON arguments (the common case: no intermediate objects, no message paths
 * made and dropped per task), else the text with the futures it references (`EncodedArgs`, only
 * when there are some).
 */
function encodeListItem(
  args: readonly unknown[],
  list: string,
  index: number,
  limit: number,
  app: string,
): string | EncodedArgs {
  let text = plainJsonText(args);
  let item: EncodedArgs | undefined;
  if (text === undefined) {
    item = encodeArgs(args, `${list}[${index}]`, app);
    text = item.text;
  }
  if (mayExceedPayload(text, limit)) {
    checkPayloadSize(text, limit, `the arguments of ${list}[${index}]`);
  }
  return item && item.refs.length > 0 ? item : text;
}

/** Encodes task arguments; futures among them become task references (parents). */
function encodeArgs(args: readonly unknown[], path: string, app: string): EncodedArgs {
  parentsMet.clear();
  encodingApp = app;
  const { text, refs } = encodeWithRefs(args, path, refOfFuture);
  if (refs.length === 0) return { text, refs: NO_REFS, parentFutures: NO_REFS };
  const parentFutures = refs.map((ref) => parentsMet.get(ref)!);
  parentsMet.clear();
  return { text, refs, parentFutures };
}
