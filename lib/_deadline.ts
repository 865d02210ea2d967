/**
 * Waits on a promise with an optional timeout and abort signal, cleaning up its timer and
 * listener either way. The wrapped work is never cancelled: only the wait ends.
 *
 * @module
 */

import { abortSignal, checkOptions, describeValue, MAX_TIMER_MS } from "./_options.ts";
import { TimeoutError } from "./errors.ts";

/** A timeout (ms) and/or signal bounding a wait. */
export interface WaitLimits {
  /** Give up waiting after this many milliseconds (rejects with `TimeoutError`). */
  timeout?: number;
  /** Give up waiting when aborted (rejects with `signal.reason`). */
  signal?: AbortSignal;
}

/** Every option name of {@link WaitLimits}. */
export const WAIT_LIMITS: Record<keyof WaitLimits, true> = { timeout: true, signal: true };

/**
 * Checks the options of a wait (`what`, e.g. `"result()"`): an object, or undefined, with no
 * option but those of `known`; `timeout` a non-negative number of ms, `signal` an `AbortSignal`.
 */
export function checkLimits<T extends WaitLimits>(
  options: T | undefined,
  what: string,
  known: Readonly<Record<string, true>> = WAIT_LIMITS,
): T & { timeout: number | undefined; signal: AbortSignal | undefined } {
  const checked = checkOptions(options, known, what);
  return {
    ...checked,
    timeout: checkTimeout(checked.timeout),
    signal: abortSignal(checked.signal, "signal"),
  };
}

/** Validates a `timeout` option: a non-negative finite number of ms, or undefined. */
export function checkTimeout(timeout: unknown, what = "timeout"): number | undefined {
  if (timeout === undefined) return undefined;
  if (typeof timeout !== "number") {
    throw new TypeError(
      `${what} must be a non-negative finite number of milliseconds, got ${describeValue(timeout)}`,
    );
  }
  if (!(timeout >= 0) || !Number.isFinite(timeout)) {
    throw new RangeError(
      `${what} must be a non-negative finite number of milliseconds, got ${String(timeout)}`,
    );
  }
  return timeout;
}

/**
 * `setTimeout` for any delay: JavaScript timers fire at once for delays over 2^31 − 1 ms (about
 * 24.8 days), so a longer one is waited out in steps. Returns the function that clears it.
 */
export function longTimeout(callback: () => void, ms: number): () => void {
  const end = Date.now() + ms;
  let timer: ReturnType<typeof setTimeout>;
  const arm = (left: number) => {
    timer = setTimeout(() => {
      const rest = end - Date.now();
      if (left > MAX_TIMER_MS && rest > 0) arm(rest);
      else callback();
    }, Math.min(left, MAX_TIMER_MS));
  };
  arm(ms);
  return () => clearTimeout(timer);
}

/**
 * Resolves like `promise`, unless the timeout passes or the signal aborts first. `limits` are
 * checked already ({@link checkLimits}). `watch`, when given, is how to learn that `promise`
 * settled without a reaction on it that lives until it does (a wait that ends early leaves
 * nothing behind): it calls its argument then, and returns the function that stops watching.
 */
export function withinLimits<T>(
  promise: Promise<T>,
  limits: WaitLimits,
  what: string,
  watch?: (settled: () => void) => () => void,
): Promise<T> {
  const { timeout, signal } = limits;
  if (timeout === undefined && !signal) return promise;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    let clearTimer: (() => void) | undefined;
    let unwatch: (() => void) | undefined;
    const onAbort = () => {
      cleanup();
      reject(signal!.reason);
    };
    const cleanup = () => {
      clearTimer?.();
      unwatch?.();
      signal?.removeEventListener("abort", onAbort);
    };
    if (timeout !== undefined) {
      clearTimer = longTimeout(() => {
        cleanup();
        reject(new TimeoutError(`${what} did not finish within ${timeout} ms`));
      }, timeout);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    if (watch) {
      unwatch = watch(() => {
        cleanup();
        resolve(promise);
      });
      return;
    }
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
