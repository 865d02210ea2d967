/**
 * `wait`: block until some or all futures are done, as Python's `concurrent.futures.wait`.
 *
 * @module
 */

import { checkLimits, longTimeout, WAIT_LIMITS } from "./_deadline.ts";
import { TimeoutError } from "./errors.ts";
import { futureControl, futureList, type StreamFuture } from "./future.ts";

/** When {@link wait} returns. */
export type ReturnWhen = "FIRST_COMPLETED" | "FIRST_EXCEPTION" | "ALL_COMPLETED";

/** Options of {@link wait}. */
export interface WaitOptions {
  /** When to return (default `"ALL_COMPLETED"`). */
  returnWhen?: ReturnWhen;
  /** Stop waiting after this many ms if the condition is not met yet (see `onTimeout`). */
  timeout?: number;
  /**
   * What happens when `timeout` passes first: `"throw"` (default) rejects with `TimeoutError`;
   * `"return"` returns `{ done, notDone }` as they are, without error (Python's semantics).
   */
  onTimeout?: "throw" | "return";
  /** Stop waiting when aborted: rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** The outcome of {@link wait}. */
export interface WaitResult<T> {
  /** Futures that are done (finished or cancelled). */
  done: Set<StreamFuture<T>>;
  /** Futures that are not done yet. */
  notDone: Set<StreamFuture<T>>;
}

/** Every option name of {@link WaitOptions}. */
const WAIT_OPTIONS: Record<keyof WaitOptions, true> = {
  ...WAIT_LIMITS,
  returnWhen: true,
  onTimeout: true,
};

const RETURN_WHEN: readonly ReturnWhen[] = ["FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"];

/**
 * Waits until the `returnWhen` condition holds and returns the futures split into `done` and
 * `notDone`:
 * - `"FIRST_COMPLETED"`: any future is done;
 * - `"FIRST_EXCEPTION"`: any future finished with an error, or all are done;
 * - `"ALL_COMPLETED"` (default): all are done.
 *
 * `timeout` (ms) bounds the wait: when it passes first, `wait` rejects with `TimeoutError` (how
 * many futures are not done is in its message) or, with `onTimeout: "return"`, returns whatever is
 * done without error, as Python's `concurrent.futures.wait` does. An aborted `signal` rejects with
 * its reason. No task is cancelled either way: only the wait ends.
 *
 * @example
 * ```ts ignore
 * const { done, notDone } = await wait(futures, { returnWhen: "FIRST_COMPLETED", timeout: 1000 });
 * // Python's semantics: no error when the timeout passes.
 * const { notDone: late } = await wait(futures, { timeout: 1000, onTimeout: "return" });
 * ```
 */
export async function wait<T>(
  futures: Iterable<StreamFuture<T>>,
  options?: WaitOptions,
): Promise<WaitResult<T>> {
  const { timeout, signal, ...rest } = checkLimits(options, "wait()", WAIT_OPTIONS);
  const returnWhen = rest.returnWhen ?? "ALL_COMPLETED";
  if (!RETURN_WHEN.includes(returnWhen)) {
    throw new TypeError(
      `returnWhen must be one of ${RETURN_WHEN.join(", ")}, got ${JSON.stringify(returnWhen)}`,
    );
  }
  const onTimeout = rest.onTimeout ?? "throw";
  if (onTimeout !== "throw" && onTimeout !== "return") {
    throw new TypeError(
      `onTimeout must be "throw" or "return", got ${JSON.stringify(rest.onTimeout)}`,
    );
  }
  signal?.throwIfAborted();
  const all = new Set(futureList(futures, "wait()"));

  const satisfied = (): boolean => {
    let doneCount = 0;
    for (const f of all) {
      if (!f.done()) continue;
      doneCount++;
      if (returnWhen === "FIRST_COMPLETED") return true;
      if (returnWhen === "FIRST_EXCEPTION" && futureControl(f as StreamFuture<unknown>).failed()) {
        return true;
      }
    }
    return doneCount === all.size;
  };

  if (!satisfied()) {
    await new Promise<void>((resolve, reject) => {
      let clearTimer: (() => void) | undefined;
      let finished = false;
      const finish = (error?: unknown) => {
        if (finished) return;
        finished = true;
        clearTimer?.();
        signal?.removeEventListener("abort", onAbort);
        // (A wait that ends first leaves nothing on the futures: polling loops do not grow.)
        for (const f of all) futureControl(f as StreamFuture<unknown>).removeDoneCallback(check);
        if (error !== undefined) reject(error);
        else resolve();
      };
      const onAbort = () => finish(signal!.reason);
      const check = () => {
        if (satisfied()) finish();
      };
      for (const f of all) f.addDoneCallback(check);
      const expire = () => {
        if (onTimeout === "return") return finish();
        let open = 0;
        for (const f of all) if (!f.done()) open++;
        finish(
          new TimeoutError(
            `wait timed out after ${timeout} ms (returnWhen ${returnWhen}): ` +
              `${open} of ${all.size} futures not done`,
          ),
        );
      };
      if (timeout !== undefined) clearTimer = longTimeout(expire, timeout);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
  const done = new Set<StreamFuture<T>>();
  const notDone = new Set<StreamFuture<T>>();
  for (const f of all) (f.done() ? done : notDone).add(f);
  return { done, notDone };
}
