/**
 * Task module of the composition tests (dependencies, time, queues, dedupe, re-attaching). Tasks
 * append a JSON line to a trace file when they run, so tests can see what ran, where, when and how
 * often.
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
import { currentTask } from "../../mod.ts";

/** Appends `{label, at, pid, taskId, operationId, queue}` to `file`. */
function trace(file: string | undefined, label: string, extra: Record<string, unknown> = {}) {
  if (!file) return;
  const { taskId, operationId, queue } = currentTask();
  appendFileSync(
    file,
    JSON.stringify({
      label,
      at: Date.now(),
      pid: workerPid(),
      taskId,
      operationId,
      queue,
      ...extra,
    }) +
      "\n",
  );
}

/** Returns "world". */
export function world(file?: string): string {
  trace(file, "world");
  return "world";
}

/** Returns "hello <who>". */
export function hello(who: unknown, file?: string): string {
  trace(file, "hello", { who: String(who) });
  return `hello ${who}`;
}

/** Waits `ms`, then returns `value`. */
export async function later<T>(ms: number, value: T, file?: string): Promise<T> {
  trace(file, "later:start", { value });
  await new Promise((resolve) => setTimeout(resolve, ms));
  trace(file, "later:end", { value });
  return value;
}

/** The sum of a list of numbers. */
export function total(values: number[], file?: string): number {
  trace(file, "total", { values });
  return values.reduce((a, b) => a + b, 0);
}

/** The sum of its number arguments. */
export function sum(...values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** Throws an Error named `name`. */
export function fail(name: string, message: string): never {
  const error = new Error(message);
  error.name = name;
  throw error;
}

/** Describes its argument: an Error's name and message, or the value. */
export function inspect(value: unknown, file?: string): unknown {
  trace(file, "inspect");
  if (value instanceof Error) return { error: true, name: value.name, message: value.message };
  return { error: false, value };
}

/** Records that it ran (with a label) and returns the label. */
export function mark(file: string, label: string): string {
  trace(file, "mark", { value: label });
  return label;
}

/** Returns an object echoing its argument, and the attempt. */
export function echo<T>(value: T): T {
  return value;
}

/** Yields 0 .. n-1 (waiting `ms` between values) and returns "done". */
export async function* countTo(n: number, ms = 0): AsyncGenerator<number, string> {
  for (let i = 0; i < n; i++) {
    if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
    yield i;
  }
  return "done";
}

/** A generator whose first attempt yields three values and then fails. */
export function* flakyCount(n: number): Generator<number, number> {
  const { attempt } = currentTask();
  for (let i = 0; i < n; i++) {
    if (attempt === 1 && i === 3) throw new Error("first attempt breaks after 3 values");
    yield i;
  }
  return attempt;
}

/**
 * Yields 1, then a value that cannot be serialized (a function); its finally block marks
 * "cleaned up" in `file`.
 */
export function* yieldBad(file: string): Generator<unknown, string> {
  try {
    yield 1;
    yield () => 2;
    return "not reached";
  } finally {
    trace(file, "mark", { value: "cleaned up" });
  }
}

/** Publishes progress values 0 .. n-1 in one synchronous burst, then yields 0 .. n-1; returns n. */
export function* burst(n: number): Generator<number, number> {
  const { progress } = currentTask();
  for (let i = 0; i < n; i++) progress(i);
  for (let i = 0; i < n; i++) yield i;
  return n;
}

/** Reports progress 0..100 in `steps` steps and returns "ok". */
export async function work(steps: number): Promise<string> {
  const { progress } = currentTask();
  for (let i = 0; i <= steps; i++) {
    progress({ percent: Math.round((i * 100) / steps) });
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return "ok";
}

/** Appends `n` values `"<tag>:<i>"` to the shared list `key`, one call each; returns `n`. */
export async function appendMany(key: string, n: number, tag: string): Promise<number> {
  const { kv } = currentTask();
  for (let i = 0; i < n; i++) await kv.append(key, `${tag}:${i}`);
  await kv.incr(`${key}:count`, n);
  return n;
}

/** Reads a key of the shared store. */
export async function readKey(key: string): Promise<unknown> {
  return await currentTask().kv.get(key);
}

/** Waits until the shared store has `key` (it looks every 20 ms), then returns `value`. */
export async function gate<T>(key: string, value: T): Promise<T> {
  const { kv, signal } = currentTask();
  while (await kv.get(key) === undefined) {
    signal.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return value;
}
