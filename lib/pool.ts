/**
 * `StreamFuturePool`: Python's `concurrent.futures.Executor` over Redis Streams.
 *
 * A pool submits tasks to a queue's stream (one Lua call per batch), reads every completion of
 * its futures from one reply stream with one blocking read, and may run local listeners
 * (`workers: N`) in threads of its own, isolated from the client.
 *
 * @module
 */

import { decode, encode } from "./codec.ts";
import {
  CancelledError,
  NoWorkersError,
  PoolClosedError,
  ProtocolError,
  RemoteTaskError,
} from "./errors.ts";
import { futureControl, type FutureHooks, StreamFuture } from "./future.ts";
import { Keys, Status } from "./_keys.ts";
import { CANCEL } from "./_lua/cancel.ts";
import { SUBMIT } from "./_lua/submit.ts";
import { bool, duration, heartbeats, keyName, nonNegativeInt, positiveInt } from "./_options.ts";
import {
  type BlockingReader,
  checkConnectionOptions,
  connect,
  type ConnectionOptions,
  connectReader,
  type RedisConnection,
} from "./_redis.ts";
import { startThread, type ThreadHandle } from "./_runtime.ts";
import { parseStreamReply } from "./_stream.ts";
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
  /** A listener whose heartbeat is older than this (ms) is not live (default 5000). */
  heartbeatTimeout?: number;
}

/** Options of {@link StreamFuturePool.submit} and {@link StreamFuturePool.map}. */
export interface SubmitOptions {
  /** Aborting it cancels the task(s); a pending task then never runs. */
  signal?: AbortSignal;
  /** The queue to submit to (default: the pool's `queue`). */
  queue?: string;
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
  #ops = new Set<string>();
  #outbox: Batch[] = [];
  #flushing: Promise<void> | undefined;
  #locals: ThreadHandle[] = [];
  #closed = false;
  #closing: Promise<void> | undefined;
  #reading = false;
  #readLoop: Promise<void> | undefined;
  #counter = 0;
  #lastReplyId = "0";

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
    const queue = keyName(options.queue, "queue", this.#queue);
    const op = this.#newOperation();
    const future = this.#newFuture(op, op);
    this.#enqueue({ queue, op, items: [{ future, fn: task, args: encoded }] }, options.signal);
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
      encoded.push(encode(args, `argsList[${i}]`));
      i++;
    }
    const queue = keyName(options.queue, "queue", this.#queue);
    const op = this.#newOperation();
    const items: Outgoing[] = encoded.map((args, index) => ({
      future: this.#newFuture(`${op}.${index.toString(36)}`, op),
      fn: task,
      args,
    }));
    if (items.length > 0) this.#enqueue({ queue, op, items }, options.signal);
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

  #newOperation(): string {
    const op = `${this.clientId}-${(this.#counter++).toString(36)}`;
    this.#ops.add(op);
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
    const { queue, op } = batch;
    const keys = [
      this.#keys.queue(queue),
      this.#keys.listeners(queue),
      this.#keys.status(op),
      this.#keys.results(op),
    ];
    const chunk = (start: number, check: boolean) =>
      SUBMIT.run(this.#cmd!, keys, [
        check ? "1" : "0",
        String(this.#heartbeatTimeout),
        op,
        this.#replyKey,
        ...triples.slice(start * 3, (start + SUBMIT_CHUNK) * 3),
      ]);
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
      const reply = await CANCEL.run(
        this.#cmd!,
        [
          this.#keys.status(future.operationId),
          this.#keys.results(future.operationId),
          this.#replyKey,
        ],
        [future.id, `CancelledError: ${reason?.message ?? "cancelled by the client"}`],
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
    if (this.#keep || !this.#cmd) return;
    const op = future.operationId;
    await Promise.all([
      this.#cmd.sendCommand(["HDEL", this.#keys.status(op), future.id]),
      this.#cmd.sendCommand(["HDEL", this.#keys.heartbeat(op), future.id]),
      this.#cmd.sendCommand(["HDEL", this.#keys.results(op), future.id]),
    ]);
  }

  async #start(): Promise<void> {
    if (this.#modules.length > 0) this.#registry = await loadTasks(this.#modules);
    this.#cmd = await connect(this.#url, "streamfutures-client");
    this.#reader = await connectReader(this.#url, "streamfutures-client-read");
    // The reply stream must exist: workers write to it with NOMKSTREAM so that replies to a
    // vanished client do not recreate it.
    const id = await this.#cmd.sendCommand(["XADD", this.#replyKey, "*", "init", "1"]);
    await this.#cmd.sendCommand(["XDEL", this.#replyKey, String(id)]);
    this.#lastReplyId = String(id);
    this.#reading = true;
    this.#readLoop = this.#readReplies();
    if (this.#workers > 0) await this.#startLocalListeners();
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
      } catch (error) {
        if (!this.#reading) break;
        console.error(
          `streamfutures: reading replies failed (${(error as Error)?.message}); retrying`,
        );
        await new Promise((resolve) => setTimeout(resolve, backoff * (0.5 + Math.random())));
        backoff = Math.min(backoff * 2, 2000);
        continue;
      }
      const entries = parseStreamReply(reply);
      if (entries.length === 0) continue;
      for (const entry of entries) this.#onReply(entry.fields);
      this.#lastReplyId = entries[entries.length - 1].id;
      void this.#cmd!.sendCommand(["XDEL", this.#replyKey, ...entries.map((e) => e.id)]).catch(
        () => {},
      );
    }
  }

  #onReply(fields: Record<string, string>): void {
    const id = fields.t;
    if (id === undefined) return;
    switch (fields.s) {
      case Status.RUNNING:
        return this.#settle(id, (c) => c.markRunning());
      case Status.COMPLETE:
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
        return this.#settle(id, (c) => c.reject(remoteError(id, fields.p)));
      case Status.CANCELLED:
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
    this.#reading = false;
    if (this.#cmd) await this.#reader?.unblock(this.#cmd).catch(() => {});
    await this.#readLoop;
    this.#reader?.close();
    if (this.#cmd) {
      try {
        const keys = [this.#replyKey];
        if (!this.#keep) {
          for (const op of this.#ops) {
            keys.push(this.#keys.status(op), this.#keys.heartbeat(op), this.#keys.results(op));
          }
        }
        for (let i = 0; i < keys.length; i += 300) {
          await this.#cmd.sendCommand(["UNLINK", ...keys.slice(i, i + 300)]);
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

function remoteError(id: string, payload: string | undefined): Error {
  try {
    const info = JSON.parse(payload ?? "") as {
      name?: unknown;
      message?: unknown;
      stack?: unknown;
    };
    return new RemoteTaskError({
      name: String(info.name ?? "Error"),
      message: String(info.message ?? ""),
      stack: typeof info.stack === "string" ? info.stack : undefined,
    });
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
