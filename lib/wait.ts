/**
 * `wait`: block until some or all futures are done, as Python's `concurrent.futures.wait`.
 *
 * @module
 */

import { checkTimeout } from "./_deadline.ts";
import { futureControl, type StreamFuture } from "./future.ts";

/** When {@link wait} returns. */
export type ReturnWhen = "FIRST_COMPLETED" | "FIRST_EXCEPTION" | "ALL_COMPLETED";

/** Options of {@link wait}. */
export interface WaitOptions {
  /** When to return (default `"ALL_COMPLETED"`). */
  returnWhen?: ReturnWhen;
  /** Return after this many ms even if the condition is not met (Python semantics: no error). */
  timeout?: number;
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

const RETURN_WHEN: readonly ReturnWhen[] = ["FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"];

/**
 * Waits until the `returnWhen` condition holds and returns the futures split into `done` and
 * `notDone`:
 * - `"FIRST_COMPLETED"`: any future is done;
 * - `"FIRST_EXCEPTION"`: any future finished with an error, or all are done;
 * - `"ALL_COMPLETED"` (default): all are done.
 *
 * As in Python, `timeout` (ms) bounds the wait and then returns whatever is done, without error.
 * An aborted `signal` rejects with its reason. No task is cancelled.
 *
 * @example
 * ```ts ignore
 * const { done, notDone } = await wait(futures, { returnWhen: "FIRST_COMPLETED", timeout: 1000 });
 * ```
 */
export async function wait<T>(
  futures: Iterable<StreamFuture<T>>,
  options: WaitOptions = {},
): Promise<WaitResult<T>> {
  const returnWhen = options.returnWhen ?? "ALL_COMPLETED";
  if (!RETURN_WHEN.includes(returnWhen)) {
    throw new TypeError(
      `returnWhen must be one of ${RETURN_WHEN.join(", ")}, got ${JSON.stringify(returnWhen)}`,
    );
  }
  const timeout = checkTimeout(options.timeout);
  const { signal } = options;
  signal?.throwIfAborted();
  const all = new Set(futures);

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
      let timer: ReturnType<typeof setTimeout> | undefined;
      let finished = false;
      const finish = (error?: unknown) => {
        if (finished) return;
        finished = true;
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (error !== undefined) reject(error);
        else resolve();
      };
      const onAbort = () => finish(signal!.reason);
      const check = () => {
        if (satisfied()) finish();
      };
      for (const f of all) f.addDoneCallback(check);
      if (timeout !== undefined) timer = setTimeout(() => finish(), timeout);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
  const done = new Set<StreamFuture<T>>();
  const notDone = new Set<StreamFuture<T>>();
  for (const f of all) (f.done() ? done : notDone).add(f);
  return { done, notDone };
}
