/**
 * Example task module: every exported function is a task named by its export name.
 *
 * @module
 */

import { currentTask } from "../mod.ts";

/** Adds two numbers. */
export function add(a: number, b: number): number {
  return a + b;
}

/** Throws a `RangeError` with the given message. */
export function fail(message: string): never {
  throw new RangeError(message);
}

/** Waits `ms` milliseconds (stops early when the task is cancelled) and returns `ms`. */
export async function sleep(ms: number): Promise<number> {
  const { signal } = currentTask();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
  return ms;
}

/** Returns its argument unchanged (round-trips every serializable type). */
export function echo<T>(value: T): T {
  return value;
}

/** Does nothing; for benchmarks. */
export function noop(): null {
  return null;
}

/** Returns the context the task sees. */
export function whoami(): { taskId: string; operationId: string; attempt: number } {
  const { taskId, operationId, attempt } = currentTask();
  return { taskId, operationId, attempt };
}

/** Throws a value that is not an `Error`. */
export function throwString(value: string): never {
  throw value;
}

/** Returns a function, which cannot be serialized. */
export function returnFunction(): () => void {
  return () => {};
}

/** Busy-waits on the CPU for `ms` milliseconds. */
export function spin(ms: number): number {
  const end = Date.now() + ms;
  let n = 0;
  while (Date.now() < end) n++;
  return n;
}
