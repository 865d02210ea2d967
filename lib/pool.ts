/**
 * `StreamFuturePool`: Python's `concurrent.futures.Executor` over Redis Streams.
 *
 * A pool submits tasks to a queue's stream (one Lua call per batch), reads every completion of
 * its futures from one reply stream with one blocking read, and may run local listeners
 * (`workers: N`) in threads of its own, isolated from the client.
 *
 * @module
 */

import { checkPayloadSize, decode, encode } from "./codec.ts";
import {
  CancelledError,
  ConnectionError,
  NoWorkersError,
  PoolClosedError,
  ProtocolError,
  RemoteTaskError,
  TaskTimeoutError,
  WorkerLostError,
} from "./errors.ts";
import { futureControl, type FutureHooks, StreamFuture } from "./future.ts";
import { GROUP, Keys, Status } from "./_keys.ts";
import { DEFAULT_MAX_PAYLOAD_BYTES } from "./listener.ts";
import { CANCEL } from "./_lua/cancel.ts";
import { RECOVER_TASKS } from "./_lua/recover.ts";
import { SUBMIT } from "./_lua/submit.ts";
import {
  bool,
  duration,
  heartbeats,
  keyName,
  nonNegativeInt,
  positiveInt,
  type RetryOn,
  retryOn,
} from "./_options.ts";
import {
  type BlockingReader,
  checkConnectionOptions,
  connect,
  type ConnectionOptions,
  connectReader,
  type RedisConnection,
  withReconnect,
} from "./_redis.ts";
import { startThread, type ThreadHandle } from "./_runtime.ts";
import { parseStreamReplyFlat } from "./_stream.ts";
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
  /** Local listeners started and stopped with the pool, each in its own thread (default 0). */
  workers?: number;
  /** Tasks each local listener runs at once (default 8). */
  concurrency?: number;
  /** Task modules: their exported functions are the tasks `submit` / `map` accept. */
  tasks?: TaskModules;
  /** The queue work goes to unless `submit` says otherwise (default `"default"`). */
  queue?: string;
  /** Fail fast with `NoWorkersError` when no live listener serves the queue (default true). */
  requireWorkers?: boolean;
  /** Keep the tasks' entries in Redis after the pool closes (default false). */
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
}

/** Options of {@link StreamFuturePool.shutdown}. */
export interface ShutdownOptions {
  /** Wait for every future to settle and for the pool's resources to be released (default true). */
  wait?: boolean;
  /** Cancel every future that has not started (default false). */
  cancelFutures?: boolean;
}

/** The value type of a task function's future. */
export type TaskResult<F extends TaskFunction> = Awaited<ReturnType<F>>;

interface Outgoing {
  readonly future: StreamFuture<unknown>;
  readonly fn: TaskFunction | string;
  readonly args: string;
}

interface Batch {
  readonly queue: string;
  readonly op: string;
  readonly items: Outgoing[];
  /** Extra entry fields (retry policy, timeout), as name, value pairs. */
  readonly extra: string[];
}

/** Where a started task is, for the lost-task check. */
interface Started {
  readonly queue: string;
  readonly op: string;
  entryId: string;
}

/** Tasks per SUBMIT call (keeps each Lua call short). */
const SUBMIT_CHUNK = 500;
/** Completions read per XREAD. */
const READ_COUNT = 1000;
/** How long one blocking XREAD waits, ms. */
const READ_BLOCK = 1000;

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
  readonly #keys: Keys;
  readonly #url: ConnectionOptions;
  readonly #queue: string;
  readonly #requireWorkers: boolean;
  readonly #keep: boolean;
  readonly #modules: (string | URL)[];
  readonly #workers: number;
  readonly #concurrency: number;
  readonly #heartbeatInterval: number;
  readonly #heartbeatTimeout: number;
  readonly #defaults: TaskPolicy;
  readonly #maxPayloadBytes: number;
  readonly #reconnectDeadline: number;
  readonly #orphanTtl: number;
  readonly #taskGrace: number;
  readonly #replyKey: string;
  readonly #hooks: FutureHooks;
  #registry: TaskRegistry | undefined;
  #cmd: RedisConnection | undefined;
  #reader: BlockingReader | undefined;
  /** Why a future is being cancelled, until its cancellation is confirmed. */
  #cancelReasons = new Map<string, CancelledError>();
  #ready: Promise<void>;
  #futures = new Map<string, StreamFuture<unknown>>();
  #unsent = new Set<string>();
  /** This pool's operations and their queues (for the TTL refresh and the close). */
  #ops = new Map<string, string>();
  #outbox: Batch[] = [];
  #flushing: Promise<void> | undefined;
  #locals: ThreadHandle[] = [];
  #closed = false;
  #closing: Promise<void> | undefined;
  #reading = false;
  #readLoop: Promise<void> | undefined;
  #counter = 0;
  #lastReplyId = "0";
  /** Started tasks, by task id: where to look when checking whether their worker is alive. */
  #started = new Map<string, Started>();
  #timers: ReturnType<typeof setInterval>[] = [];

  /** Creates the pool; connecting and starting local listeners happen in the background. */
  constructor(options: PoolOptions = {}) {
    this.#url = checkConnectionOptions(options.url);
    this.app = keyName(options.app, "app", "streamfutures");
    this.#keys = new Keys(this.app);
    this.#queue = keyName(options.queue, "queue", "default");
    this.#requireWorkers = bool(options.requireWorkers, "requireWorkers", true);
    this.#keep = bool(options.keep, "keep", false);
    this.#modules = checkTaskModules(options.tasks);
    this.#workers = nonNegativeInt(options.workers, "workers", 0);
    this.#concurrency = positiveInt(options.concurrency, "concurrency", 8);
    ({ heartbeatInterval: this.#heartbeatInterval, heartbeatTimeout: this.#heartbeatTimeout } =
      heartbeats(options.heartbeatInterval, options.heartbeatTimeout));
    this.#defaults = taskPolicy(options, {
      retries: 0,
      retryDelay: 0,
      retryOn: "lost",
      timeout: undefined,
    });
    this.#maxPayloadBytes = positiveInt(
      options.maxPayloadBytes,
      "maxPayloadBytes",
      DEFAULT_MAX_PAYLOAD_BYTES,
    );
    this.#reconnectDeadline = duration(options.reconnectDeadline, "reconnectDeadline", 30_000);
    this.#orphanTtl = duration(options.orphanTtl, "orphanTtl", 3_600_000);
    this.#taskGrace = duration(options.taskGrace, "taskGrace", 2_000, true);
    if (this.#workers > 0 && this.#modules.length === 0) {
      throw new TypeError("workers > 0 needs tasks: the task modules the local listeners run");
    }
    this.clientId = randomId(10);
    this.#replyKey = this.#keys.replies(this.clientId);
    this.#hooks = {
      cancel: (future) => this.#cancel(future),
      release: (future) => this.#release(future),
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

  /** The number of futures that have not settled. */
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
    options: SubmitOptions = {},
  ): StreamFuture<unknown> {
    this.#checkOpen();
    const task = this.#taskRef(fn);
    if (!Array.isArray(args)) {
      throw new TypeError(`args must be an array of task arguments, got ${describe(args)}`);
    }
    const encoded = encode(args, "args");
    checkPayloadSize(encoded, this.#maxPayloadBytes, "the arguments");
    const queue = keyName(options.queue, "queue", this.#queue);
    const extra = policyFields(taskPolicy(options, this.#defaults));
    const op = this.#newOperation(queue);
    const future = this.#newFuture(op, op);
    this.#enqueue(
      { queue, op, items: [{ future, fn: task, args: encoded }], extra },
      options.signal,
    );
    return future;
  }

  /**
   * Submits one call of a task per argument list, all under one operation id, and returns their
   * futures in input order (eager, like Python's `Executor.map` but returning futures).
   */
  map<F extends TaskFunction>(
    fn: F,
    argsList: Iterable<Parameters<F>>,
    options?: SubmitOptions,
  ): StreamFuture<TaskResult<F>>[];
  map<T = unknown>(
    fn: string,
    argsList: Iterable<readonly unknown[]>,
    options?: SubmitOptions,
  ): StreamFuture<T>[];
  map(
    fn: TaskFunction | string,
    argsList: Iterable<readonly unknown[]>,
    options: SubmitOptions = {},
  ): StreamFuture<unknown>[] {
    this.#checkOpen();
    const task = this.#taskRef(fn);
    if (
      argsList === null || typeof (argsList as Iterable<unknown>)?.[Symbol.iterator] !== "function"
    ) {
      throw new TypeError(
        `argsList must be an iterable of argument arrays, got ${describe(argsList)}`,
      );
    }
    const encoded: string[] = [];
    let i = 0;
    for (const args of argsList) {
      if (!Array.isArray(args)) {
        throw new TypeError(
          `argsList[${i}] must be an array of task arguments, got ${describe(args)}`,
        );
      }
      const text = encode(args, `argsList[${i}]`);
      checkPayloadSize(text, this.#maxPayloadBytes, `the arguments of argsList[${i}]`);
      encoded.push(text);
      i++;
    }
    const queue = keyName(options.queue, "queue", this.#queue);
    const extra = policyFields(taskPolicy(options, this.#defaults));
    const op = this.#newOperation(queue);
    const items: Outgoing[] = encoded.map((args, index) => ({
      future: this.#newFuture(`${op}.${index.toString(36)}`, op),
      fn: task,
      args,
    }));
    if (items.length > 0) this.#enqueue({ queue, op, items, extra }, options.signal);
    return items.map((item) => item.future);
  }

  /**
   * Shuts the pool down: no new work is accepted; with `cancelFutures`, futures not started are
   * cancelled; then (in the background unless `wait`) it waits for every future to settle, stops
   * the local listeners, and removes its keys (unless `keep`). Safe to call more than once.
   */
  shutdown(options: ShutdownOptions = {}): Promise<void> {
    const wait = bool(options.wait, "wait", true);
    const cancelFutures = bool(options.cancelFutures, "cancelFutures", false);
    this.#closed = true;
    this.#closing ??= this.#close(cancelFutures);
    this.#closing.catch((error) => {
      if (!wait) console.error("streamfutures: pool shutdown failed:", error);
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
      throw new TypeError(`fn must be a task function or a task name, got ${describe(fn)}`);
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

  #newOperation(queue: string): string {
    const op = `${this.clientId}-${(this.#counter++).toString(36)}`;
    this.#ops.set(op, queue);
    return op;
  }

  #newFuture(id: string, op: string): StreamFuture<unknown> {
    const future = new StreamFuture<unknown>(id, op, this.#hooks);
    this.#futures.set(id, future);
    this.#unsent.add(id);
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
    this.#flushing ??= this.#flush();
  }

  async #flush(): Promise<void> {
    try {
      await this.#ready;
    } catch (error) {
      const batches = this.#outbox.splice(0);
      for (const batch of batches) this.#failBatch(batch.items, error);
      this.#flushing = undefined;
      return;
    }
    // Let the current tick's submissions join this flush.
    await Promise.resolve();
    const batches = this.#outbox.splice(0);
    this.#flushing = undefined;
    const calls: Promise<void>[] = [];
    for (const batch of batches) {
      const items: Outgoing[] = [];
      const triples: string[] = [];
      for (const item of batch.items) {
        if (!this.#unsent.delete(item.future.id)) continue; // cancelled before it was sent
        let name: string;
        try {
          name = this.#nameOf(item.fn);
        } catch (error) {
          this.#settle(item.future.id, (c) => c.reject(error));
          continue;
        }
        items.push(item);
        triples.push(item.future.id, name, item.args);
      }
      if (items.length > 0) calls.push(this.#submitBatch(batch, items, triples));
    }
    await Promise.all(calls);
  }

  /**
   * Writes one operation's tasks in chunks of {@link SUBMIT_CHUNK}. Only the first chunk checks
   * for a live listener; the rest follow once it passed, so an operation is refused whole or
   * written whole.
   */
  async #submitBatch(batch: Batch, items: Outgoing[], triples: string[]): Promise<void> {
    const { queue, op, extra } = batch;
    const keys = [
      this.#keys.queue(queue),
      this.#keys.listeners(queue),
      this.#keys.status(op),
      this.#keys.results(op),
    ];
    const cmd = this.#cmd!;
    // Idempotent (see SUBMIT), so a call cut by a lost connection is simply sent again.
    const chunk = (start: number, check: boolean) =>
      withReconnect(
        cmd,
        () =>
          SUBMIT.run(cmd, keys, [
            check ? "1" : "0",
            String(this.#heartbeatTimeout),
            op,
            this.#replyKey,
            String(this.#orphanTtl),
            String(extra.length / 2),
            ...extra,
            ...triples.slice(start * 3, (start + SUBMIT_CHUNK) * 3),
          ]),
        this.#reconnectDeadline,
        `submitting to queue "${queue}"`,
      );
    try {
      const written = await chunk(0, this.#requireWorkers);
      if (written === -1) {
        this.#failBatch(
          items,
          new NoWorkersError(
            `no live worker serves queue "${queue}" of app "${this.app}" (no listener heartbeat within ${this.#heartbeatTimeout} ms); ` +
              `start one with \`deno run -A worker.ts --tasks ... --app ${this.app} --queue ${queue}\`, ` +
              `pass workers: N, or requireWorkers: false to let work wait in Redis`,
          ),
        );
        return;
      }
    } catch (error) {
      this.#failBatch(items, error);
      return;
    }
    const rest: Promise<void>[] = [];
    for (let start = SUBMIT_CHUNK; start < items.length; start += SUBMIT_CHUNK) {
      rest.push(
        chunk(start, false).then(
          () => {},
          (error) => this.#failBatch(items.slice(start, start + SUBMIT_CHUNK), error),
        ),
      );
    }
    await Promise.all(rest);
  }

  #failBatch(items: readonly Outgoing[], error: unknown): void {
    for (const { future } of items) {
      this.#unsent.delete(future.id);
      this.#settle(future.id, (c) => c.reject(error));
    }
  }

  /** Applies a state change to a live future and forgets it once it is done. */
  #settle(id: string, change: (control: ReturnType<typeof futureControl>) => void): void {
    const future = this.#futures.get(id);
    if (!future) return;
    change(futureControl(future));
    if (future.done()) this.#futures.delete(id);
  }

  async #cancel(future: StreamFuture<unknown>, reason?: CancelledError): Promise<boolean> {
    if (future.done()) return future.cancelled();
    if (this.#unsent.delete(future.id)) {
      this.#settle(future.id, (c) => c.cancel(reason));
      return true;
    }
    await this.#ready;
    // The confirmation may arrive on the reply stream before CANCEL returns: keep the reason.
    if (reason) this.#cancelReasons.set(future.id, reason);
    try {
      const cmd = this.#cmd!;
      const reply = await withReconnect(
        cmd,
        () =>
          CANCEL.run(
            cmd,
            [
              this.#keys.status(future.operationId),
              this.#keys.results(future.operationId),
              this.#replyKey,
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
      if (reply !== 1) return false;
      this.#settle(future.id, (c) => c.cancel(reason));
      return true;
    } finally {
      this.#cancelReasons.delete(future.id);
    }
  }

  async #release(future: StreamFuture<unknown>): Promise<void> {
    this.#futures.delete(future.id);
    this.#unsent.delete(future.id);
    this.#started.delete(future.id);
    if (this.#keep || !this.#cmd) return;
    const op = future.operationId;
    const cmd = this.#cmd;
    await Promise.all([
      cmd.sendCommand(["HDEL", this.#keys.status(op), future.id]),
      cmd.sendCommand(["HDEL", this.#keys.heartbeat(op), future.id]),
      cmd.sendCommand(["HDEL", this.#keys.results(op), future.id]),
    ]);
  }

  async #start(): Promise<void> {
    if (this.#modules.length > 0) this.#registry = await loadTasks(this.#modules);
    const deadline = this.#reconnectDeadline;
    this.#cmd = await connect(this.#url, "streamfutures-client", deadline);
    this.#reader = await connectReader(this.#url, "streamfutures-client-read", deadline);
    // The reply stream must exist: workers write to it with NOMKSTREAM so that replies to a
    // vanished client do not recreate it. It expires unless this pool keeps refreshing it.
    const id = await this.#cmd.sendCommand(["XADD", this.#replyKey, "*", "init", "1"]);
    await this.#cmd.sendCommand(["XDEL", this.#replyKey, String(id)]);
    await this.#cmd.sendCommand(["PEXPIRE", this.#replyKey, String(this.#orphanTtl)]);
    this.#lastReplyId = String(id);
    this.#reading = true;
    this.#readLoop = this.#readReplies();
    this.#timers.push(
      setInterval(() => void this.#checkStarted(), this.#heartbeatInterval),
      setInterval(() => void this.#refreshTtl(), Math.max(1, this.#orphanTtl / 3)),
    );
    if (this.#workers > 0) await this.#startLocalListeners();
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
        await RECOVER_TASKS.run(cmd, [], [
          this.app,
          GROUP,
          String(this.#heartbeatTimeout),
          ...records.slice(i, i + 4 * 500),
        ]);
      }
    } catch {
      // Redis is unreachable: the next check tries again (the read loop reports the outage).
    }
  }

  /** Refreshes the time to live of the reply stream and of every operation's keys. */
  async #refreshTtl(): Promise<void> {
    const cmd = this.#cmd;
    if (!cmd) return;
    const ttl = String(this.#orphanTtl);
    const calls: Promise<unknown>[] = [cmd.sendCommand(["PEXPIRE", this.#replyKey, ttl])];
    for (const op of this.#ops.keys()) {
      for (const key of [this.#keys.status(op), this.#keys.heartbeat(op), this.#keys.results(op)]) {
        calls.push(cmd.sendCommand(["PEXPIRE", key, ttl]));
      }
    }
    await Promise.all(calls).catch(() => {});
  }

  async #startLocalListeners(): Promise<void> {
    const modules = this.#registry!.urls;
    const starts: Promise<void>[] = [];
    for (let i = 0; i < this.#workers; i++) {
      starts.push((async () => {
        const thread = await startThread(new URL("./_listener_thread.ts", import.meta.url), {
          url: this.#url,
          app: this.app,
          queues: [this.#queue],
          tasks: modules,
          concurrency: this.#concurrency,
          heartbeatInterval: this.#heartbeatInterval,
          heartbeatTimeout: this.#heartbeatTimeout,
          taskGrace: this.#taskGrace,
          maxPayloadBytes: this.#maxPayloadBytes,
          reconnectDeadline: this.#reconnectDeadline,
        });
        this.#locals.push(thread);
        await new Promise<void>((resolve, reject) => {
          thread.onError(reject);
          thread.onMessage((message) => {
            const m = message as { type: string; error?: string };
            if (m.type === "ready") resolve();
            else if (m.type === "error") {
              reject(new Error(`a local listener failed to start: ${m.error}`));
            }
          });
        });
      })());
    }
    await Promise.all(starts);
  }

  async #stopLocalListeners(): Promise<void> {
    await Promise.all(this.#locals.map(async (thread) => {
      const stopped = new Promise<void>((resolve) => {
        thread.onMessage((message) => {
          if ((message as { type: string }).type === "stopped") resolve();
        });
        thread.onError(() => resolve());
      });
      thread.post({ type: "stop" });
      await stopped;
      await thread.terminate();
    }));
    this.#locals = [];
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
        failedSince = undefined;
      } catch (error) {
        if (!this.#reading) break;
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
          for (const id of [...this.#futures.keys()]) {
            this.#unsent.delete(id);
            this.#started.delete(id);
            this.#settle(id, (c) => c.reject(failure));
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
      void this.#cmd!.sendCommand(["XDEL", this.#replyKey, ...entries.map((e) => e.id)]).catch(
        () => {},
      );
    }
  }

  /** Applies the notices of one reply entry (each starts with its `t` field). */
  #onReply(flat: string[]): void {
    let notice: Record<string, string> | undefined;
    for (let i = 0; i + 1 < flat.length; i += 2) {
      if (flat[i] === "t") {
        if (notice) this.#onNotice(notice);
        notice = { t: flat[i + 1] };
      } else if (notice) {
        notice[flat[i]] = flat[i + 1];
      }
    }
    if (notice) this.#onNotice(notice);
  }

  #onNotice(fields: Record<string, string>): void {
    const id = fields.t;
    switch (fields.s) {
      case Status.NOT_STARTED: // back to the queue for another attempt
        this.#started.delete(id);
        return this.#settle(id, (c) => c.markPending(Number(fields.a) || 1));
      case Status.RUNNING: {
        const future = this.#futures.get(id);
        if (future && fields.e) {
          const queue = this.#ops.get(future.operationId);
          if (queue) this.#started.set(id, { queue, op: future.operationId, entryId: fields.e });
        }
        return this.#settle(id, (c) => c.markRunning(Number(fields.a) || undefined));
      }
      case Status.COMPLETE:
        this.#started.delete(id);
        return this.#settle(id, (c) => {
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
        return this.#settle(id, (c) => c.reject(remoteError(id, fields.p)));
      case Status.CANCELLED:
        this.#started.delete(id);
        return this.#settle(id, (c) => c.cancel(this.#cancelReasons.get(id)));
    }
  }

  async #close(cancelFutures: boolean): Promise<void> {
    try {
      await this.#ready;
    } catch {
      // Start-up failed: the futures were rejected with its error; release what exists.
    }
    while (this.#flushing) await this.#flushing;
    if (cancelFutures) {
      await Promise.all([...this.#futures.values()].map((f) => f.cancel().catch(() => false)));
    }
    await Promise.all([...this.#futures.values()].map((f) => f.then(() => {}, () => {})));
    if (this.#locals.length > 0) await this.#stopLocalListeners();
    for (const timer of this.#timers) clearInterval(timer);
    this.#reading = false;
    if (this.#cmd) await this.#reader?.unblock(this.#cmd).catch(() => {});
    await this.#readLoop;
    this.#reader?.close();
    if (this.#cmd) {
      try {
        await this.#cmd.sendCommand(["UNLINK", this.#replyKey]);
        const keys: string[] = [];
        for (const op of this.#ops.keys()) {
          keys.push(this.#keys.status(op), this.#keys.heartbeat(op), this.#keys.results(op));
        }
        if (this.#keep) {
          // Kept keys outlive the pool: no orphan expiry for them.
          const cmd = this.#cmd;
          await Promise.all(keys.map((key) => cmd.sendCommand(["PERSIST", key])));
        } else {
          for (let i = 0; i < keys.length; i += 300) {
            await this.#cmd.sendCommand(["UNLINK", ...keys.slice(i, i + 300)]);
          }
        }
      } finally {
        this.#cmd.close();
      }
    }
  }
}

function abortError(signal: AbortSignal): CancelledError {
  return new CancelledError("the task was cancelled: its signal was aborted", {
    cause: signal.reason,
  });
}

/**
 * The error a future rejects with, from a reply payload `{name, message, stack?, attempts?}`:
 * the library's own verdicts (lost worker, timeout) as their classes, anything the task threw as
 * a `RemoteTaskError`; all with `attempts`.
 */
function remoteError(id: string, payload: string | undefined): Error {
  try {
    const info = JSON.parse(payload ?? "") as {
      name?: unknown;
      message?: unknown;
      stack?: unknown;
      attempts?: unknown;
    };
    const name = String(info.name ?? "Error");
    const message = String(info.message ?? "");
    const attempts = Number(info.attempts) >= 1 ? Number(info.attempts) : 1;
    if (name === "WorkerLostError") return new WorkerLostError(message, { attempts });
    if (name === "TaskTimeoutError") return new TaskTimeoutError(message, { attempts });
    return new RemoteTaskError({
      name,
      message,
      stack: typeof info.stack === "string" ? info.stack : undefined,
    }, { attempts });
  } catch (error) {
    return new ProtocolError(`the error of task ${id} cannot be decoded`, { cause: error });
  }
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "function") return `function ${value.name || "(anonymous)"}`;
  if (typeof value === "object") return `an object (${Object.prototype.toString.call(value)})`;
  return `${typeof value} ${String(value)}`;
}

/** A task's retry policy and timeout. */
interface TaskPolicy {
  retries: number;
  retryDelay: number;
  retryOn: RetryOn;
  timeout: number | undefined;
}

/** Checks the policy options of `options`, falling back to `defaults`. */
function taskPolicy(
  options: {
    retries?: number;
    retryDelay?: number;
    retryOn?: RetryOn;
    timeout?: number;
  },
  defaults: TaskPolicy,
): TaskPolicy {
  return {
    retries: nonNegativeInt(options.retries, "retries", defaults.retries),
    retryDelay: duration(options.retryDelay, "retryDelay", defaults.retryDelay, true),
    retryOn: retryOn(options.retryOn, "retryOn", defaults.retryOn),
    timeout: options.timeout === undefined
      ? defaults.timeout
      : duration(options.timeout, "timeout", 0),
  };
}

/** The extra stream entry fields of a policy (only those that differ from the defaults). */
function policyFields(policy: TaskPolicy): string[] {
  const fields: string[] = [];
  if (policy.retries > 0) fields.push("retries", String(policy.retries));
  if (policy.retryDelay > 0) fields.push("retryDelay", String(Math.round(policy.retryDelay)));
  if (policy.retryOn !== "lost") fields.push("retryOn", policy.retryOn);
  if (policy.timeout !== undefined) fields.push("timeout", String(Math.round(policy.timeout)));
  return fields;
}
