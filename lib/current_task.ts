/**
 * `currentTask()`: what a running task knows about itself.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";

/** The context of the task being run on a worker. */
export interface TaskContext {
  /** The task's id (its field in the `<app>:<op>:*` hashes). */
  readonly taskId: string;
  /** The id of the operation (`submit` or `map` call) the task belongs to. */
  readonly operationId: string;
  /** 1 for the first run, 2 for the first retry, ... */
  readonly attempt: number;
  /**
   * Aborted when the task should stop. In this version that is when its worker shuts down and
   * the grace period has passed (reason: `WorkerInterrupted`).
   */
  readonly signal: AbortSignal;
}

const storage = new AsyncLocalStorage<TaskContext>();

/**
 * Returns the context of the task that is running, from anywhere inside it (including code it
 * awaits). Throws when called outside a task.
 *
 * @example
 * ```ts
 * import { currentTask } from "@x/streamfutures";
 *
 * export async function slowEcho(value: string): Promise<string> {
 *   const { signal, taskId } = currentTask();
 *   await new Promise((resolve) => setTimeout(resolve, 100));
 *   signal.throwIfAborted();
 *   return `${taskId}: ${value}`;
 * }
 * ```
 */
export function currentTask(): TaskContext {
  const context = storage.getStore();
  if (!context) {
    throw new Error(
      "currentTask() was called outside a running task (call it inside a task function)",
    );
  }
  return context;
}

/** Runs `fn` with `context` as the current task. */
export function runInTask<T>(context: TaskContext, fn: () => T): T {
  return storage.run(context, fn);
}
