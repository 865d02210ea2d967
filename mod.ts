/**
 * streamfutures: Python `concurrent.futures`-style futures over Redis Streams.
 *
 * A {@link StreamFuturePool} submits calls of exported task functions to a Redis stream; worker
 * processes on any machine (`deno run -A jsr:@x/streamfutures/worker --tasks ./tasks.ts`) take
 * them from a consumer group and fulfil the futures.
 *
 * @example
 * ```ts ignore
 * import { asCompleted, StreamFuturePool } from "@x/streamfutures";
 * import * as tasks from "./tasks.ts";
 *
 * await using pool = new StreamFuturePool({
 *   url: "redis://127.0.0.1:6379/3",
 *   workers: 4,
 *   tasks: new URL("./tasks.ts", import.meta.url),
 * });
 * console.log(await pool.submit(tasks.add, [3, 8])); // 11
 * for await (const f of asCompleted(pool.map(tasks.add, [[0, 1], [2, 3]]))) console.log(await f);
 * ```
 *
 * @module
 */

export { StreamFuturePool } from "./lib/pool.ts";
export type {
  ImapOptions,
  MapOptions,
  OperationResult,
  PoolOptions,
  ProgressOptions,
  ShutdownOptions,
  SubmitOptions,
  TaskResult,
} from "./lib/pool.ts";
export type { KeyValueSetOptions, KeyValueStore, KeyValueStoreOptions } from "./lib/kv.ts";
export type { ProgressStream } from "./lib/_progress_bar.ts";
export type { ExecutorMode } from "./lib/_executor.ts";
export type { LogFormat, LogLevel } from "./lib/_log.ts";
export type { RetryOn } from "./lib/_options.ts";
export type { OnParentError } from "./lib/_submit_options.ts";
export type { ScheduleInfo, ScheduleOptions } from "./lib/schedule.ts";
export { StreamFuture } from "./lib/future.ts";
export type {
  DoneCallback,
  FutureHooks,
  FutureState,
  ResultOptions,
  TaskTimings,
} from "./lib/future.ts";
export { asCompleted } from "./lib/as_completed.ts";
export type { AsCompletedOptions } from "./lib/as_completed.ts";
export { wait } from "./lib/wait.ts";
export type { ReturnWhen, WaitOptions, WaitResult } from "./lib/wait.ts";
export { currentTask } from "./lib/current_task.ts";
export type { TaskContext } from "./lib/current_task.ts";
export { Listener } from "./lib/listener.ts";
export type { ListenerOptions } from "./lib/listener.ts";
export {
  CancelledError,
  ConnectionError,
  DependencyError,
  NoWorkersError,
  PoolClosedError,
  ProtocolError,
  RemoteTaskError,
  StreamFuturesError,
  TaskFailure,
  TaskNotFoundError,
  TaskTimeoutError,
  TimeoutError,
  UnknownTaskError,
  WorkerInterrupted,
  WorkerLostError,
} from "./lib/errors.ts";
export type { RemoteErrorInfo, StreamFuturesErrorOptions } from "./lib/errors.ts";
export { decode, encode } from "./lib/codec.ts";
export type { ConnectionOptions } from "./lib/_redis.ts";
export type { TaskFunction, TaskModules } from "./lib/_tasks.ts";
