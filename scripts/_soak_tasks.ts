/**
 * Task module of `deno task soak`: a task of a given duration that leaves a trace of every run
 * that reached its end (so the soak can tell executions from recorded completions).
 *
 * @module
 */

import { appendFileSync } from "node:fs";
import process from "node:process";

/**
 * The pid of the worker process running this task: this process, or its parent when executors
 * are processes of their own (Deno).
 */
function workerPid(): number {
  return process.env.STREAMFUTURES_EXECUTOR_PROCESS === "1" ? process.ppid : process.pid;
}
import { currentTask } from "../mod.ts";

/** What a soak task returns: which attempt ran where (and the payload it was given, if any). */
export interface SoakResult {
  taskId: string;
  attempt: number;
  pid: number;
  nonce: string;
  /** The `payload` argument, returned as it came (`--payload`: long values both ways). */
  payload?: string;
}

/**
 * Sleeps `ms` (stops early when aborted), logs the run to `log`, returns where it ran, with
 * `payload` if one was given.
 */
export async function work(ms: number, log: string, payload?: string): Promise<SoakResult> {
  const { signal, taskId, attempt } = currentTask();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
  const result: SoakResult = {
    taskId,
    attempt,
    pid: workerPid(),
    nonce: Math.random().toString(36).slice(2),
  };
  appendFileSync(log, JSON.stringify(result) + "\n");
  if (payload !== undefined) result.payload = payload;
  return result;
}
