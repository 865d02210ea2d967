/**
 * Waits on a promise with an optional timeout and abort signal, cleaning up its timer and
 * listener either way. The wrapped work is never cancelled: only the wait ends.
 *
 * @module
 */

import { TimeoutError } from "./errors.ts";

/** A timeout (ms) and/or signal bounding a wait. */
export interface WaitLimits {
  /** Give up waiting after this many milliseconds (rejects with `TimeoutError`). */
  timeout?: number;
  /** Give up waiting when aborted (rejects with `signal.reason`). */
  signal?: AbortSignal;
}

/** Validates a `timeout` option: a non-negative finite number of ms, or undefined. */
export function checkTimeout(timeout: unknown, what = "timeout"): number | undefined {
  if (timeout === undefined) return undefined;
  if (typeof timeout !== "number" || !(timeout >= 0) || !Number.isFinite(timeout)) {
    throw new RangeError(
      `${what} must be a non-negative finite number of milliseconds, got ${String(timeout)}`,
    );
  }
  return timeout;
}

/** Resolves like `promise`, unless the timeout passes or the signal aborts first. */
export function withinLimits<T>(
  promise: Promise<T>,
  limits: WaitLimits | undefined,
  what: string,
): Promise<T> {
  const timeout = checkTimeout(limits?.timeout);
  const signal = limits?.signal;
  if (timeout === undefined && !signal) return promise;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = () => {
      cleanup();
      reject(signal!.reason);
    };
    const cleanup = () => {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    if (timeout !== undefined) {
      timer = setTimeout(() => {
        cleanup();
        reject(new TimeoutError(`${what} did not finish within ${timeout} ms`));
      }, timeout);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        cleanup();
        resolve(value);
      },
      (error) => {
        cleanup();
        reject(error);
      },
    );
  });
}
