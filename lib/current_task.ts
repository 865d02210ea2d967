/**
 * `currentTask()`: what a running task knows about itself.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import type { KeyValueStore } from "./kv.ts";

/** The context of the task being run on a worker. */
export interface TaskContext {
  /** The task's id (its field in the `<app>:<op>:*` hashes). */
  readonly taskId: string;
  /** The id of the operation (`submit` or `map` call) the task belongs to. */
  readonly operationId: string;
  /** 1 for the first run, 2 for the first retry, ... */
  readonly attempt: number;
  /** The queue the task was submitted to. */
  readonly queue: string;
  /**
   * Aborted when the task should stop, with the reason as `signal.reason`: a `CancelledError`
   * when it was cancelled, a `TimeoutError` when it ran past its `timeout`, a `WorkerInterrupted`
   * when its worker shuts down and the grace period has passed, a `WorkerLostError` when the
   * worker learns that the task was given to another attempt. A task that ignores it is stopped
   * by force once the worker's task grace period has passed.
   */
  readonly signal: AbortSignal;
  /**
   * Publishes a progress value (anything the codec accepts) to the task's client, where
   * `future.progress()` yields it. Cheap enough to call often; values are sent in order.
   */
  progress(value: unknown): void;
  /**
   * The app's shared key-value store (the same as `pool.kv`): `get`, `set`, `append`, `pop`,
   * `incr`, `delete`, `entries`, atomic under many concurrent workers.
   */
  readonly kv: KeyValueStore;
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
