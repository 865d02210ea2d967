/**
 * `StreamFuture`: the handle of one task, modelled on Python's `concurrent.futures.Future` and
 * usable as a promise.
 *
 * The state machine is small and explicit:
 *
 * ```
 * pending ──► running ──► finished (value or error)
 *    │  ◄────────┤ (retry: back to the queue)
 *    └───────────┴──────► cancelled
 * ```
 *
 * @module
 */

import { CancelledError } from "./errors.ts";
import { Channel } from "./_channel.ts";
import { checkLimits, type WaitLimits, withinLimits } from "./_deadline.ts";
import { describeValue } from "./_options.ts";

/** Where the time of a task went (ms, Redis' clock for the instants). */
export interface TaskTimings {
  /** Time in the queue: from the entry being runnable to its start. */
  wait: number;
  /** Run time on the worker. */
  run: number;
  /** When the task started (its last attempt). */
  startedAt: Date;
}

/** The states of a future (Python's PENDING / RUNNING / CANCELLED / FINISHED). */
export type FutureState = "pending" | "running" | "cancelled" | "finished";

/** Options of {@link StreamFuture.result} and {@link StreamFuture.exception}. */
export type ResultOptions = WaitLimits;

/** What the pool does for a future (cancel in Redis, dispose of it). */
export interface FutureHooks {
  /** Asks Redis to cancel the task; resolves true if it was stopped before completing. */
  cancel(future: StreamFuture<unknown>): Promise<boolean>;
  /**
   * The future is disposed of: for a task of this pool, cancel it if it is not done and remove
   * its entries (unless the pool keeps them); for a task it only watches, stop watching.
   */
  dispose(future: StreamFuture<unknown>): Promise<void>;
  /** The app (key prefix) of the pool the future belongs to. */
  readonly app?: string;
}

/** The pool's side of a future: how the reply reader moves it through its states. */
export interface FutureControl {
  /** The task started on a worker (attempt `attempt`). */
  markRunning(attempt?: number): void;
  /** The task went back to its queue for another attempt. */
  markPending(attempt: number): void;
  /** The task completed with a value. */
  resolve(value: unknown): void;
  /** The task failed, or could not be submitted. */
  reject(error: unknown): void;
  /** The task was cancelled. */
  cancel(error?: CancelledError): void;
  /** True when the future finished with an error (not cancelled). */
  failed(): boolean;
  /** The future stands for another task (dedupe: an identical call's task). */
  rebind(id: string, operationId: string): void;
  /** The task published a progress value ("p") or yielded a value ("y"), already decoded. */
  event(kind: "p" | "y", attempt: number, index: number, value: unknown): void;
  /**
   * Removes a callback given to `addDoneCallback` (a wait that ended before the future did);
   * nothing when it is not there.
   */
  removeDoneCallback(callback: (future: StreamFuture<unknown>) => void): void;
  /** The app of the future's pool (undefined for a future made without one). */
  app(): string | undefined;
  /** The task's timings, from its final notice: `"<wait ms>,<run ms>,<started at ms>"`. */
  timings(timings: string): void;
  /** Called on every state change (progress bars). */
  observe(observer: (future: StreamFuture<unknown>) => void): void;
}

let controlOf: (future: StreamFuture<unknown>) => FutureControl;

/** Callback given to {@link StreamFuture.addDoneCallback}. */
export type DoneCallback<T> = (future: StreamFuture<T>) => void;

/**
 * The future of a task submitted with `pool.submit` or `pool.map`. It is `PromiseLike`: `await`
 * it for the task's value; it rejects with `RemoteTaskError` when the task threw and with
 * `CancelledError` when it was cancelled.
 *
 * @example
 * ```ts ignore
 * const f = pool.submit(tasks.add, [3, 8]);
 * f.addDoneCallback((done) => console.log(done.id, "done"));
 * console.log(await f.result({ timeout: 5_000 })); // 11
 * ```
 */
export class StreamFuture<T> implements PromiseLike<T> {
  #id: string;
  #operationId: string;
  #state: FutureState = "pending";
  #error: unknown = undefined;
  #failed = false;
  // Private fields do not mention T in a parameter position, so StreamFuture stays covariant
  // (a StreamFuture<never> is a StreamFuture<number>).
  #callbacks: ((future: StreamFuture<unknown>) => void)[] | undefined;
  // The promise is made when first asked for (`then`, `result`...): a future nobody awaits costs
  // no promise, and one settled before anyone asked gets an already settled one.
  #promise: Promise<T> | undefined;
  #resolve: ((value: unknown) => void) | undefined;
  #reject: ((error: unknown) => void) | undefined;
  #value: unknown = undefined;
  #hooks: FutureHooks;
  #released = false;
  #attempt = 1;
  /** Read from the final notice when asked for (`"<wait>,<run>,<startedAt>"`). */
  #timings: string | TaskTimings | undefined;
  #progress: Channel<unknown> | undefined;
  #yields: Channel<unknown> | undefined;
  /** The last progress event delivered: its attempt and index. */
  #lastProgressAttempt = 0;
  #lastProgressIndex = -1;
  /** The next yielded value to deliver (values of a retried attempt are not delivered twice). */
  #nextYield = 0;
  /**
   * The latest attempt whose yielded values were delivered: values of an earlier one (a worker
   * that was replaced and sends what it had queued) are dropped.
   */
  #lastYieldAttempt = 0;
  #observers: ((future: StreamFuture<unknown>) => void)[] | undefined;

  static {
    // One small object per call, its methods on the prototype: the pool asks for a control on
    // every notice it applies, so a literal of a dozen closures per call was a dozen allocations.
    class Control implements FutureControl {
      constructor(readonly future: StreamFuture<unknown>) {}
      app(): string | undefined {
        return this.future.#hooks.app;
      }
      removeDoneCallback(callback: (future: StreamFuture<unknown>) => void): void {
        const callbacks = this.future.#callbacks;
        if (callbacks) removeItem(callbacks, callback);
      }
      markRunning(attempt?: number): void {
        const future = this.future;
        if (attempt !== undefined && attempt > future.#attempt) future.#attempt = attempt;
        if (future.#state === "pending") {
          future.#state = "running";
          future.#notify();
        }
      }
      markPending(attempt: number): void {
        const future = this.future;
        if (attempt > future.#attempt) future.#attempt = attempt;
        if (future.#state === "running") {
          future.#state = "pending";
          future.#notify();
        }
      }
      resolve(value: unknown): void {
        this.future.#settle("finished", value, undefined, false);
      }
      reject(error: unknown): void {
        this.future.#settle("finished", undefined, error, true);
      }
      cancel(error?: CancelledError): void {
        this.future.#settle("cancelled", undefined, error ?? new CancelledError(), true);
      }
      failed(): boolean {
        return this.future.#state === "finished" && this.future.#failed;
      }
      rebind(id: string, operationId: string): void {
        this.future.#id = id;
        this.future.#operationId = operationId;
      }
      event(kind: "p" | "y", attempt: number, index: number, value: unknown): void {
        const future = this.future;
        if (future.done()) return;
        if (kind === "y") {
          if (attempt < future.#lastYieldAttempt || attempt < future.#attempt) return;
          if (index < future.#nextYield) return; // already delivered by an earlier attempt
          future.#lastYieldAttempt = attempt;
          future.#nextYield = index + 1;
          (future.#yields ??= new Channel()).push(value);
        } else {
          const lastAttempt = future.#lastProgressAttempt;
          if (
            attempt < lastAttempt ||
            (attempt === lastAttempt && index <= future.#lastProgressIndex)
          ) return;
          future.#lastProgressAttempt = attempt;
          future.#lastProgressIndex = index;
          (future.#progress ??= new Channel()).push(value);
        }
      }
      timings(raw: string): void {
        this.future.#timings = raw;
      }
      observe(observer: (future: StreamFuture<unknown>) => void): void {
        (this.future.#observers ??= []).push(observer);
      }
    }
    controlOf = (future) => new Control(future);
  }

  /** Futures are created by the pool; see `StreamFuturePool.submit`. */
  constructor(id: string, operationId: string, hooks: FutureHooks) {
    this.#id = id;
    this.#operationId = operationId;
    this.#hooks = hooks;
  }

  /**
   * The task id. With `dedupe`, once the submission is confirmed, the id of the task this call
   * shares (submitted earlier, maybe by another client).
   */
  get id(): string {
    return this.#id;
  }

  /** The id of the operation (one per `submit` / `map` call) the task belongs to. */
  get operationId(): string {
    return this.#operationId;
  }

  /** The current state. A task that goes back to its queue for a retry is `pending` again. */
  get state(): FutureState {
    return this.#state;
  }

  /**
   * Where the task's time went once it finished: `{ wait, run }` in ms (queue wait, run time on
   * the worker) and `startedAt`; `undefined` before that, or when it did not run (cancelled
   * before it started, failed in Redis).
   */
  get timings(): TaskTimings | undefined {
    if (typeof this.#timings === "string") {
      const [wait, run, started] = this.#timings.split(",").map(Number);
      this.#timings = { wait, run, startedAt: new Date(started) };
    }
    return this.#timings;
  }

  /**
   * The progress values the task publishes with `currentTask().progress(value)`, in order, each
   * once; the iteration ends when the future settles. Values published before the call are kept
   * for it. One reader per future.
   *
   * @example
   * ```ts ignore
   * const f = pool.submit(tasks.resize, ["photo.jpg"]);
   * for await (const percent of f.progress()) console.log(`${percent} %`);
   * ```
   */
  progress(): AsyncIterableIterator<unknown> {
    this.#progress ??= new Channel();
    if (this.done()) this.#progress.close();
    return this.#progress.take("future.progress()");
  }

  /**
   * The values a generator task yields (partial results), in order, each once even when the task
   * is retried; the iteration ends when the task returns (its return value is what `await
   * future` gives) and throws its error when it fails. One reader per future.
   *
   * @example
   * ```ts ignore
   * // export async function* pages(url: string) { for (...) yield page; return count; }
   * const f = pool.submit(tasks.pages, ["https://example.com"]);
   * for await (const page of f.stream()) console.log(page);
   * console.log("pages:", await f);
   * ```
   */
  stream(): AsyncIterableIterator<unknown> {
    this.#yields ??= new Channel();
    if (this.done()) this.#closeChannels();
    return this.#yields.take("future.stream()");
  }

  /** The attempt the task is on (1, then 2 after its first retry, ...). */
  get attempt(): number {
    return this.#attempt;
  }

  /** True when the future is cancelled or finished. */
  done(): boolean {
    return this.#state === "cancelled" || this.#state === "finished";
  }

  /** True while a worker runs the task. */
  running(): boolean {
    return this.#state === "running";
  }

  /** True when the task was cancelled. */
  cancelled(): boolean {
    return this.#state === "cancelled";
  }

  /**
   * Waits for the task's value. A `timeout` (ms) rejects the wait with `TimeoutError`, an aborted
   * `signal` with its reason; neither cancels the task. A future already done gives its outcome
   * whatever the limits (as Python's `result(timeout=0)` does).
   */
  result(options?: ResultOptions): Promise<T> {
    const promise = this.#promiseOf();
    // A result() nobody awaits must not crash the process with an unhandled rejection.
    promise.catch(ignore);
    const limits = checkLimits(options, "result()");
    if (this.done()) return promise;
    return withinLimits(promise, limits, `task ${this.id}`, (settled) => {
      // (A done callback that is removed when the wait ends early: a reaction on the promise
      // would stay until the task settles, one per wait of a polling loop.)
      (this.#callbacks ??= []).push(settled);
      // (Not the list itself: once the future settles, the list is being run, and left alone.)
      return () => controlOf(this as StreamFuture<unknown>).removeDoneCallback(settled);
    });
  }

  /**
   * Waits for the task to finish and returns the error it failed with, or `undefined` if it
   * completed. Rejects with `CancelledError` if it was cancelled (as Python does).
   */
  async exception(options?: ResultOptions): Promise<unknown> {
    try {
      await this.result(options);
      return undefined;
    } catch (error) {
      if (this.#state === "finished" && this.#failed && error === this.#error) return error;
      throw error;
    }
  }

  /**
   * Cancels the task if it has not completed: a pending task never runs; a running task's
   * `currentTask().signal` is aborted on its worker (and the task is stopped by force if it ignores
   * it). Resolves `true` if the task was stopped before completing (or already was cancelled),
   * `false` if it had finished.
   */
  async cancel(): Promise<boolean> {
    if (this.#state === "finished") return false;
    if (this.#state === "cancelled") return true;
    const stopped = await this.#hooks.cancel(this as StreamFuture<unknown>);
    if (stopped) controlOf(this as StreamFuture<unknown>).cancel();
    return stopped || this.cancelled();
  }

  /**
   * Calls `callback(future)` when the future is done — at once if it already is. Errors thrown
   * by the callback are reported and otherwise ignored.
   */
  addDoneCallback(callback: DoneCallback<T>): void {
    if (typeof callback !== "function") {
      throw new TypeError("addDoneCallback() needs a function (future) => void");
    }
    if (this.done()) runCallback(callback, this);
    else (this.#callbacks ??= []).push(callback as (future: StreamFuture<unknown>) => void);
  }

  /** Promise interface: the task's value, or its error. */
  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    return this.#promiseOf().then(onfulfilled, onrejected);
  }

  /** Promise interface: handles the task's error. */
  catch<R = never>(onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null): Promise<T | R> {
    return this.#promiseOf().catch(onrejected);
  }

  /** Promise interface: runs `onfinally` when the future settles. */
  finally(onfinally?: (() => void) | null): Promise<T> {
    return this.#promiseOf().finally(onfinally);
  }

  /**
   * `await using`: for a task this pool submitted, cancels it if it is not done, then releases
   * its entries in Redis (unless the pool was created with `keep: true`); for a task it attached
   * to (`pool.future`, a shared dedupe call), stops watching it and leaves it alone.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.#hooks.dispose(this as StreamFuture<unknown>);
  }

  /** @ignore */
  get [Symbol.toStringTag](): string {
    return "StreamFuture";
  }

  /** The future's promise, made on first use (settled already if the future is done). */
  #promiseOf(): Promise<T> {
    if (this.#promise) return this.#promise;
    if (this.done()) {
      this.#promise = this.#failed
        ? Promise.reject(this.#error)
        : Promise.resolve(this.#value as T);
    } else {
      this.#promise = new Promise<T>((resolve, reject) => {
        this.#resolve = resolve as (value: unknown) => void;
        this.#reject = reject;
      });
    }
    return this.#promise;
  }

  #settle(state: FutureState, value: unknown, error: unknown, failed: boolean): void {
    if (this.done()) return;
    this.#state = state;
    this.#failed = failed;
    if (failed) {
      this.#error = error;
      this.#reject?.(error);
    } else {
      this.#value = value;
      this.#resolve?.(value);
    }
    this.#resolve = this.#reject = undefined;
    this.#closeChannels();
    this.#notify();
    const callbacks = this.#callbacks;
    if (!callbacks) return;
    this.#callbacks = undefined;
    for (const callback of callbacks) runCallback(callback, this as StreamFuture<unknown>);
  }

  #closeChannels(): void {
    this.#progress?.close();
    if (this.#state === "finished" && !this.#failed) this.#yields?.close();
    else this.#yields?.close(this.#error, true);
  }

  #notify(): void {
    if (!this.#observers) return;
    for (const observer of this.#observers) {
      try {
        observer(this as StreamFuture<unknown>);
      } catch {
        // An observer's failure is its own.
      }
    }
  }
}

function ignore(): void {}

function runCallback<T>(callback: DoneCallback<T>, future: StreamFuture<T>): void {
  try {
    callback(future);
  } catch (error) {
    console.error(`streamfutures: a done callback of task ${future.id} threw:`, error);
  }
}

/** The pool's control handle of a future (not part of the public API). */
export function futureControl(future: StreamFuture<unknown>): FutureControl {
  return controlOf(future);
}

/**
 * The futures of an iterable argument of `what` (e.g. `"wait()"`), checked: a `TypeError` names
 * the first element that is not a {@link StreamFuture}.
 */
export function futureList<T>(futures: Iterable<StreamFuture<T>>, what: string): StreamFuture<T>[] {
  if (
    futures === null || typeof (futures as Iterable<unknown>)?.[Symbol.iterator] !== "function"
  ) {
    throw new TypeError(
      `${what} takes an iterable of futures, got ${describeValue(futures)}`,
    );
  }
  const list = [...futures];
  list.forEach((future, i) => {
    if (!(future instanceof StreamFuture)) {
      throw new TypeError(
        `${what} takes futures of a StreamFuturePool; element ${i} is ${describeValue(future)}`,
      );
    }
  });
  return list;
}

/** Removes the last occurrence of `item` from `list`, if there is one. */
function removeItem<T>(list: T[], item: T): void {
  const i = list.lastIndexOf(item);
  if (i >= 0) list.splice(i, 1);
}
