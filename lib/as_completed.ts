/**
 * `asCompleted`: futures in the order they complete, as Python's `concurrent.futures.as_completed`.
 *
 * @module
 */

import { TimeoutError } from "./errors.ts";
import { checkLimits, type WaitLimits } from "./_deadline.ts";
import { MAX_TIMER_MS } from "./_options.ts";
import { futureControl, futureList, type StreamFuture } from "./future.ts";

/** Options of {@link asCompleted}. */
export type AsCompletedOptions = WaitLimits;

/**
 * Yields each future once it is done (finished or cancelled), in completion order; futures
 * already done come first. Duplicates are yielded once. If `timeout` ms pass (counted from the
 * call) before all are done, the iteration throws `TimeoutError`; an aborted `signal` throws its
 * reason. Neither cancels any task.
 *
 * The futures themselves are yielded (not their values), so a failed task does not end the
 * loop: `await` each future to get its value or error.
 *
 * @example
 * ```ts ignore
 * for await (const future of asCompleted(pool.map(tasks.add, [[1, 2], [3, 4]]))) {
 *   console.log(await future);
 * }
 * ```
 */
export function asCompleted<T>(
  futures: Iterable<StreamFuture<T>>,
  options?: AsCompletedOptions,
): AsyncIterableIterator<StreamFuture<T>> {
  // Hand-written rather than an async generator: `yield` in an async generator awaits
  // thenables, which would hand out each future's value instead of the future.
  const { timeout, signal } = checkLimits(options, "asCompleted()");
  const pending = new Set(futureList(futures, "asCompleted()"));
  const total = pending.size;
  const deadline = timeout === undefined ? undefined : Date.now() + timeout;
  const ready: StreamFuture<T>[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  const onDone = (f: StreamFuture<unknown>) => {
    ready.push(f as StreamFuture<T>);
    wake?.();
  };
  for (const future of pending) future.addDoneCallback(onDone);

  const end = (): IteratorResult<StreamFuture<T>> => {
    if (!finished) {
      finished = true;
      // Nothing is left on the futures still pending, and a next() waiting returns.
      for (const future of pending) {
        futureControl(future as StreamFuture<unknown>).removeDoneCallback(onDone);
      }
      wake?.();
    }
    return { value: undefined, done: true };
  };

  const step = async (): Promise<IteratorResult<StreamFuture<T>>> => {
    while (!finished) {
      while (ready.length > 0) {
        const future = ready.shift()!;
        if (pending.delete(future)) return { value: future, done: false };
      }
      if (pending.size === 0) return end();
      if (signal?.aborted) {
        end();
        throw signal.reason;
      }
      const left = deadline === undefined ? undefined : deadline - Date.now();
      if (left !== undefined && left <= 0) {
        end();
        throw new TimeoutError(
          `${pending.size} of ${total} futures unfinished after ${timeout} ms`,
        );
      }
      await new Promise<void>((resolve) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const done = () => {
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          wake = undefined;
          resolve();
        };
        wake = done;
        // A wait past the timer limit wakes early and goes round again.
        if (left !== undefined) timer = setTimeout(done, Math.min(left, MAX_TIMER_MS));
        signal?.addEventListener("abort", done, { once: true });
      });
    }
    return end();
  };

  // Calls of next() made before the last one settled wait for it, in turn (as an async
  // generator queues them): each gets its own future.
  let queue: Promise<unknown> = Promise.resolve();
  const next = (): Promise<IteratorResult<StreamFuture<T>>> => {
    const result = queue.then(step);
    queue = result.catch(() => {});
    return result;
  };

  return {
    next,
    return: (): Promise<IteratorResult<StreamFuture<T>>> => Promise.resolve(end()),
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}
