/**
 * The error tree of streamfutures, modelled on CPython's `concurrent.futures._base`.
 *
 * Every class sets `name` (so `err.name` survives minification and crosses the wire as
 * `"<ErrorName>: <message>"`) and accepts `{ cause }`.
 *
 * ```
 * StreamFuturesError
 * ├── CancelledError      the task was cancelled before it completed
 * ├── TimeoutError        a client-side wait ran out (the task goes on)
 * ├── RemoteTaskError     the task threw on a worker
 * ├── NoWorkersError      no live listener serves the queue
 * ├── PoolClosedError     work was submitted after shutdown
 * └── ProtocolError       a stream entry or reply could not be understood
 * ```
 *
 * Bad arguments are plain `TypeError` / `RangeError`.
 *
 * @module
 */

/** Options accepted by every streamfutures error. */
export interface StreamFuturesErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown;
}

/** Base class of every error raised by streamfutures itself. */
export class StreamFuturesError extends Error {
  /**
   * @param message What went wrong.
   * @param options `cause` is kept on the error.
   */
  constructor(message: string, options?: StreamFuturesErrorOptions) {
    super(message, options);
    this.name = "StreamFuturesError";
  }
}

/**
 * The future was cancelled (by `cancel()`, an aborted `signal`, or
 * `shutdown({ cancelFutures: true })`) before its task completed.
 *
 * @example
 * ```ts ignore
 * const f = pool.submit(tasks.sleep, [1000]);
 * await f.cancel();
 * await f.catch((e) => e instanceof CancelledError); // true
 * ```
 */
export class CancelledError extends StreamFuturesError {
  /**
   * @param message What was cancelled.
   * @param options `cause` is kept on the error (e.g. the abort reason).
   */
  constructor(message = "the task was cancelled", options?: StreamFuturesErrorOptions) {
    super(message, options);
    this.name = "CancelledError";
  }
}

/** A client-side wait (`result({ timeout })`, `wait`, `asCompleted`) ran out. The task is left alone. */
export class TimeoutError extends StreamFuturesError {
  /**
   * @param message What timed out.
   * @param options `cause` is kept on the error.
   */
  constructor(message = "the wait timed out", options?: StreamFuturesErrorOptions) {
    super(message, options);
    this.name = "TimeoutError";
  }
}

/** What a worker reports about an error thrown by a task. */
export interface RemoteErrorInfo {
  /** The remote error's `name`, e.g. `"RangeError"`. */
  name: string;
  /** The remote error's `message`. */
  message: string;
  /** The remote stack trace, if the worker had one. */
  stack?: string;
}

/**
 * A task threw (or rejected) on a worker. `remoteName`, `message` and `remoteStack` describe the
 * remote error; `name` stays `"RemoteTaskError"` so it can be told apart from local errors.
 *
 * @example
 * ```ts ignore
 * try {
 *   await pool.submit(tasks.fail, ["bad input"]);
 * } catch (e) {
 *   if (e instanceof RemoteTaskError) console.log(e.remoteName, e.message);
 * }
 * ```
 */
export class RemoteTaskError extends StreamFuturesError {
  /** The remote error's `name`, e.g. `"RangeError"`. */
  readonly remoteName: string;
  /** The stack trace printed on the worker, if any. */
  readonly remoteStack: string | undefined;

  /**
   * @param info The remote error's name, message and stack.
   * @param options `cause` is kept on the error.
   */
  constructor(info: RemoteErrorInfo, options?: StreamFuturesErrorOptions) {
    super(info.message, options);
    this.name = "RemoteTaskError";
    this.remoteName = info.name;
    this.remoteStack = info.stack;
  }
}

/** No live listener (worker with a fresh heartbeat) serves the queue the work was submitted to. */
export class NoWorkersError extends StreamFuturesError {
  /**
   * @param message Which queue had no listener.
   * @param options `cause` is kept on the error.
   */
  constructor(message = "no live worker serves this queue", options?: StreamFuturesErrorOptions) {
    super(message, options);
    this.name = "NoWorkersError";
  }
}

/** Work was submitted to a pool after `shutdown()` began. */
export class PoolClosedError extends StreamFuturesError {
  /**
   * @param message What was attempted.
   * @param options `cause` is kept on the error.
   */
  constructor(
    message = "cannot schedule new futures after shutdown",
    options?: StreamFuturesErrorOptions,
  ) {
    super(message, options);
    this.name = "PoolClosedError";
  }
}

/** A stream entry or reply could not be understood (missing fields, bad JSON, unknown version). */
export class ProtocolError extends StreamFuturesError {
  /**
   * @param message What was wrong with the entry.
   * @param options `cause` is kept on the error (e.g. the JSON `SyntaxError`).
   */
  constructor(message: string, options?: StreamFuturesErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
  }
}

/** Formats an error the way the seed's `results` hash stores it: `"<ErrorName>: <message>"`. */
export function formatErrorLine(name: string, message: string): string {
  return `${name}: ${message}`;
}

/** Extracts name, message and stack from anything a task may throw (including non-Errors). */
export function describeThrown(thrown: unknown): RemoteErrorInfo {
  if (thrown instanceof Error) {
    return { name: thrown.name || "Error", message: String(thrown.message), stack: thrown.stack };
  }
  let message: string;
  try {
    message = typeof thrown === "string" ? thrown : JSON.stringify(thrown) ?? String(thrown);
  } catch {
    message = String(thrown);
  }
  return { name: "NonErrorThrown", message: `a non-Error value was thrown: ${message}` };
}
