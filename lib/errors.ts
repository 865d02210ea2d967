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
 * ├── TaskFailure         the task ran (or was due to run) and did not produce a value; `attempts`
 * │   ├── RemoteTaskError     the task threw on a worker
 * │   ├── WorkerLostError     its worker (or executor thread) died: no heartbeat within the timeout
 * │   ├── TaskTimeoutError    it ran longer than its `timeout` and was stopped
 * │   └── DependencyError     a parent task (a future among its arguments) failed or was cancelled
 * ├── NoWorkersError      no live listener serves the queue
 * ├── PoolClosedError     work was submitted after shutdown
 * ├── ConnectionError     Redis was unreachable for longer than the reconnect deadline
 * ├── TaskNotFoundError   `pool.future(id)`: no such task (never submitted, released, expired)
 * ├── ProtocolError       a stream entry or reply could not be understood
 * ├── UnknownTaskError    (worker side) no task module exports the requested name
 * └── WorkerInterrupted   (worker side) the worker stopped before the task finished
 * ```
 *
 * Bad arguments are plain `TypeError` / `RangeError`.
 *
 * @module
 */

import { decode, encode, ERROR_FIELDS } from "./codec.ts";

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
  /**
   * What else the thrown value held, as [codec](./codec.ts) JSON text: for an `Error`,
   * `{"cause"?, "errors"?, "props"?}` (its `cause`, an `AggregateError`'s `errors`, its other own
   * enumerable properties such as `code`), as the codec encodes an `Error`'s; for a value that is
   * not an `Error`, `{"value"}`. Absent when there is nothing more, when it cannot be serialized,
   * or when it is longer than {@link MAX_ERROR_DETAIL} characters.
   */
  detail?: string;
}

/**
 * Base class of the errors a future rejects with when its task did not produce a value on a
 * worker. `attempts` is how many times the task was started (1 without retries).
 */
export class TaskFailure extends StreamFuturesError {
  /** How many attempts were made (1 unless the task was retried). */
  attempts: number;

  /**
   * @param message What went wrong.
   * @param options `cause` is kept on the error; `attempts` defaults to 1.
   */
  constructor(message: string, options?: StreamFuturesErrorOptions & { attempts?: number }) {
    super(message, options);
    this.name = "TaskFailure";
    this.attempts = options?.attempts ?? 1;
  }
}

/**
 * A task threw (or rejected) on a worker. `remoteName`, `message` and `remoteStack` describe the
 * remote error; `name` stays `"RemoteTaskError"` so it can be told apart from local errors. Its
 * `cause` is the remote error rebuilt: an `Error` (a `TypeError`, `RangeError`, ... for the
 * built-in names, an `AggregateError` with its `errors`) with the remote name, message and stack,
 * its own `cause` chain and its other own enumerable properties (e.g. `code`); or, when the task
 * threw a value that is not an `Error`, that value. Properties and values the codec cannot
 * serialize are not passed on.
 *
 * @example
 * ```ts ignore
 * try {
 *   await pool.submit(tasks.fail, ["bad input"]);
 * } catch (e) {
 *   if (e instanceof RemoteTaskError) console.log(e.remoteName, e.message, e.attempts);
 * }
 * ```
 */
export class RemoteTaskError extends TaskFailure {
  /** The remote error's `name`, e.g. `"RangeError"`. */
  readonly remoteName: string;
  /** The stack trace printed on the worker, if any. */
  readonly remoteStack: string | undefined;

  /**
   * @param info The remote error's name, message and stack.
   * @param options `cause` is kept on the error; `attempts` defaults to 1.
   */
  constructor(info: RemoteErrorInfo, options?: StreamFuturesErrorOptions & { attempts?: number }) {
    super(
      info.message,
      options && "cause" in options ? options : { ...options, ...remoteCause(info) },
    );
    this.name = "RemoteTaskError";
    this.remoteName = info.name;
    this.remoteStack = info.stack;
  }
}

/**
 * The `cause` of a {@link RemoteTaskError} (`{}` for none): the remote error rebuilt from its
 * name, message, stack and `detail`, or the thrown non-Error value. A `detail` that cannot be
 * decoded is left out.
 */
function remoteCause(info: RemoteErrorInfo): { cause?: unknown } {
  let detail: Record<string, unknown> = {};
  if (typeof info.detail === "string") {
    try {
      const parsed = JSON.parse(info.detail);
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) detail = parsed;
    } catch {
      // Left out.
    }
  }
  try {
    if (info.name === NON_ERROR) {
      return "value" in detail ? { cause: decode(JSON.stringify(detail.value)) } : {};
    }
    const v: Record<string, unknown> = { name: String(info.name), message: String(info.message) };
    // (Without the remote stack, one with no frames rather than the local one of its revival.)
    v.stack = typeof info.stack === "string" ? info.stack : `${v.name}: ${v.message}`;
    for (const key of ["cause", "errors", "props"]) if (key in detail) v[key] = detail[key];
    return { cause: decode(JSON.stringify({ $sf: "Error", v })) };
  } catch {
    // A detail the codec refuses: the error without it.
    if (info.name === NON_ERROR) return {};
    const v = { name: String(info.name), message: String(info.message), stack: "" };
    v.stack = typeof info.stack === "string" ? info.stack : `${v.name}: ${v.message}`;
    return { cause: decode(JSON.stringify({ $sf: "Error", v })) };
  }
}

/**
 * The worker running the task died (SIGKILL, crash, lost network, a terminated executor thread):
 * its heartbeat was older than `heartbeatTimeout`, and no retries were left. The results hash
 * holds `"WorkerLostError: <message>"`.
 */
export class WorkerLostError extends TaskFailure {
  /**
   * @param message Which task was lost and when.
   * @param options `cause` is kept on the error; `attempts` defaults to 1.
   */
  constructor(
    message = "the worker running the task was lost",
    options?: StreamFuturesErrorOptions & { attempts?: number },
  ) {
    super(message, options);
    this.name = "WorkerLostError";
  }
}

/**
 * The task ran longer than its `timeout` (submit option, or the worker's `--task-timeout`): its
 * `currentTask().signal` was aborted with a `TimeoutError`, and if it did not return within the
 * worker's task grace period its executor thread was terminated.
 */
export class TaskTimeoutError extends TaskFailure {
  /**
   * @param message Which task timed out, after how long.
   * @param options `cause` is kept on the error; `attempts` defaults to 1.
   */
  constructor(
    message = "the task timed out",
    options?: StreamFuturesErrorOptions & { attempts?: number },
  ) {
    super(message, options);
    this.name = "TaskTimeoutError";
  }
}

/**
 * A parent of the task (a future passed among its arguments) failed or was cancelled, so the task
 * did not run (the default `onParentError: "fail"`). `cause` is the parent's error, `parentId`
 * its task id.
 */
export class DependencyError extends TaskFailure {
  /** The task id of the parent that failed. */
  readonly parentId: string | undefined;

  /**
   * @param message Which parent failed, and how.
   * @param options `cause` is the parent's error; `parentId` its id.
   */
  constructor(
    message = "a parent task failed",
    options?: StreamFuturesErrorOptions & { attempts?: number; parentId?: string },
  ) {
    super(message, { attempts: 0, ...options });
    this.name = "DependencyError";
    this.parentId = options?.parentId;
  }
}

/** `pool.future(id)` / `pool.operation(id)`: no such task exists (any more) in Redis. */
export class TaskNotFoundError extends StreamFuturesError {
  /**
   * @param message Which task was looked up.
   * @param options `cause` is kept on the error.
   */
  constructor(message = "no such task", options?: StreamFuturesErrorOptions) {
    super(message, options);
    this.name = "TaskNotFoundError";
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

/**
 * Redis could not be reached for longer than the reconnect deadline (`reconnectDeadline`,
 * default 30 s). Shorter outages are ridden out: commands are retried with backoff and jitter.
 */
export class ConnectionError extends StreamFuturesError {
  /**
   * @param message What could not be done, and for how long Redis was unreachable.
   * @param options `cause` is kept on the error (the last connection error).
   */
  constructor(message = "Redis is unreachable", options?: StreamFuturesErrorOptions) {
    super(message, options);
    this.name = "ConnectionError";
  }
}

/** Raised on the worker (and reported to the client) for a task name no module exports. */
export class UnknownTaskError extends StreamFuturesError {
  /**
   * @param message Which name was unknown.
   * @param options `cause` is kept on the error.
   */
  constructor(message: string, options?: StreamFuturesErrorOptions) {
    super(message, options);
    this.name = "UnknownTaskError";
  }
}

/**
 * The reason a task's `currentTask().signal` is aborted with, and the error name recorded for it,
 * when its worker stops (SIGINT / SIGTERM) before the task finished within the grace period.
 */
export class WorkerInterrupted extends StreamFuturesError {
  /**
   * @param message Why the worker stopped, e.g. `"SIGTERM"`.
   * @param options `cause` is kept on the error.
   */
  constructor(message: string, options?: StreamFuturesErrorOptions) {
    super(message, options);
    this.name = "WorkerInterrupted";
  }
}

/** Formats an error the way the seed's `results` hash stores it: `"<ErrorName>: <message>"`. */
export function formatErrorLine(name: string, message: string): string {
  return `${name}: ${message}`;
}

/** The most characters of a thrown error's name that {@link describeThrown} keeps. */
export const MAX_ERROR_NAME = 200;
/** The most characters of a thrown error's message that {@link describeThrown} keeps. */
export const MAX_ERROR_MESSAGE = 64 * 1024;
/** The most characters of a thrown error's stack that {@link describeThrown} keeps. */
export const MAX_ERROR_STACK = 64 * 1024;
/** The most characters of the `detail` (cause, properties) of a thrown value that {@link describeThrown} keeps. */
export const MAX_ERROR_DETAIL = 64 * 1024;
/** The most characters of the message at the start of a stack that is too long. */
const STACK_MESSAGE = 1024;
/** The `remoteName` of a thrown value that is not an `Error`. */
const NON_ERROR = "NonErrorThrown";

/**
 * The {@link RemoteErrorInfo.detail} of a thrown value: the codec's encoding of an `Error`'s
 * cause, AggregateError members and own properties, or of a non-Error value; undefined when there
 * is nothing more, it cannot be serialized (a function among the properties, a cycle, ...), or it
 * is longer than {@link MAX_ERROR_DETAIL} characters.
 */
function detailOf(thrown: unknown, isError: boolean): string | undefined {
  try {
    if (!isError) {
      if (typeof thrown === "string" && thrown.length > MAX_ERROR_DETAIL) return undefined;
      const detail = `{"value":${encode(thrown, "the thrown value")}}`;
      return detail.length <= MAX_ERROR_DETAIL ? detail : undefined;
    }
    // Only the parts beyond name, message and stack, on a stand-in (a long message or stack is
    // not encoded again).
    const error = thrown as Error & { errors?: unknown };
    // Properties the codec cannot serialize (a function, a cycle, ...) are left out one by one.
    const props = error as unknown as Record<string, unknown>;
    const keys = Object.keys(error).filter((key) => {
      if (ERROR_FIELDS.has(key)) return false;
      try {
        encode(props[key]);
        return true;
      } catch {
        return false;
      }
    });
    const hasCause = Object.hasOwn(error, "cause");
    const errors = error instanceof AggregateError && Array.isArray(error.errors)
      ? error.errors
      : undefined;
    if (keys.length === 0 && !hasCause && errors === undefined) return undefined;
    const stand: Error = errors === undefined ? new Error("") : new AggregateError(errors, "");
    delete stand.stack;
    if (hasCause) Object.defineProperty(stand, "cause", { value: error.cause });
    for (const key of keys) (stand as unknown as Record<string, unknown>)[key] = props[key];
    const v = (JSON.parse(encode(stand, "the thrown error")) as { v: Record<string, unknown> }).v;
    const more: Record<string, unknown> = {};
    for (const key of ["cause", "errors", "props"]) if (key in v) more[key] = v[key];
    const detail = JSON.stringify(more);
    return detail.length <= MAX_ERROR_DETAIL ? detail : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Extracts name, message and stack from anything a task may throw (including non-Errors). Never
 * throws itself: a value whose properties or string form cannot be read (a throwing getter or
 * `toString`, a revoked proxy, an object without a prototype holding a BigInt) is still described.
 * Name, message and stack are cut to {@link MAX_ERROR_NAME}, {@link MAX_ERROR_MESSAGE} and
 * {@link MAX_ERROR_STACK} characters (marked `… (truncated: N characters in all)`): a task that
 * throws a huge message must not stall its worker nor fill Redis. What else it held (an `Error`'s
 * cause and own properties, a non-Error value) is its `detail`, within {@link MAX_ERROR_DETAIL}.
 */
export function describeThrown(thrown: unknown): RemoteErrorInfo {
  let isError = false;
  try {
    isError = thrown instanceof Error;
  } catch {
    // A proxy whose prototype cannot be read: described as a non-Error below.
  }
  if (isError) {
    const error = thrown as Error;
    const name = readText(() => error.name) || "Error";
    const message = readText(() => error.message);
    let stack = readText(() => error.stack);
    if (stack !== undefined && stack.length > MAX_ERROR_STACK && message !== undefined) {
      // The stack usually starts with "name: message": a long message is cut shorter there (it
      // is whole, or cut, in `message`), so that the frames after it are kept.
      const head = `${name}: ${message}`;
      if (message.length > STACK_MESSAGE && stack.startsWith(head)) {
        stack = `${name}: ${truncate(message, STACK_MESSAGE)}${stack.slice(head.length)}`;
      }
    }
    const info: RemoteErrorInfo = {
      name: truncate(name, MAX_ERROR_NAME),
      message: message === undefined
        ? "(the error's message cannot be read)"
        : truncate(message, MAX_ERROR_MESSAGE),
      stack: stack === undefined ? undefined : truncate(stack, MAX_ERROR_STACK),
    };
    const detail = detailOf(thrown, true);
    if (detail !== undefined) info.detail = detail;
    return info;
  }
  const message = typeof thrown === "string" ? thrown : readText(() => JSON.stringify(thrown)) ??
    readText(() => String(thrown)) ?? readText(() => Object.prototype.toString.call(thrown)) ??
    "a value that cannot be described";
  const info: RemoteErrorInfo = {
    name: NON_ERROR,
    message: `a non-Error value was thrown: ${truncate(message, MAX_ERROR_MESSAGE)}`,
  };
  const detail = detailOf(thrown, false);
  if (detail !== undefined) info.detail = detail;
  return info;
}

/**
 * `text` cut to its first `max` characters (never between the halves of a surrogate pair), with
 * a marker that says how long it was; unchanged when not longer.
 */
function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}… (truncated: ${text.length} characters in all)`;
}

/** `read()` as a string, or undefined when it is null / undefined or reading or converting it throws. */
function readText(read: () => unknown): string | undefined {
  try {
    const value = read();
    if (value === undefined || value === null) return undefined;
    return typeof value === "string" ? value : String(value);
  } catch {
    return undefined;
  }
}
