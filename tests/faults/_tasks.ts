/**
 * Task module of the fault tests: tasks that misbehave on purpose, and tasks that leave traces
 * (files) so that the tests can see what ran where, how often, and when it was aborted.
 *
 * @module
 */

import { appendFileSync, existsSync, writeFileSync } from "node:fs";
import process from "node:process";
import { currentTask } from "../../mod.ts";

/**
 * The pid of the worker process running this task: this process, or its parent when executors
 * are processes of their own (Deno).
 */
function workerPid(): number {
  return process.env.STREAMFUTURES_EXECUTOR_PROCESS === "1" ? process.ppid : process.pid;
}

/** Where and how a task ran. */
export interface Trace {
  pid: number;
  attempt: number;
  taskId: string;
}

function trace(): Trace {
  const { attempt, taskId } = currentTask();
  return { pid: workerPid(), attempt, taskId };
}

/**
 * Appends one JSON line (what ran, where) to `file`. `where` is taken up front by callers that log
 * from an abort listener, which runs outside the task's context.
 */
function log(file: string, event: string, extra: Record<string, unknown> = {}, where = trace()) {
  appendFileSync(file, JSON.stringify({ event, at: Date.now(), ...where, ...extra }) + "\n");
}

/** Sleeps `ms` (ends early with the abort reason when aborted) and returns where it ran. */
export async function nap(ms: number, file?: string): Promise<Trace> {
  const { signal } = currentTask();
  const where = trace();
  if (file) log(file, "start");
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      if (file) log(file, "aborted", { reason: (signal.reason as Error)?.name }, where);
      reject(signal.reason);
    }, { once: true });
  });
  if (file) log(file, "done");
  return trace();
}

/** Sleeps `ms` ignoring its abort signal (but notes the abort in `file`), returns where it ran. */
export async function stubbornNap(ms: number, file?: string): Promise<Trace> {
  const { signal } = currentTask();
  const where = trace();
  if (file) {
    log(file, "start");
    signal.addEventListener("abort", () => log(file, "aborted", {}, where), { once: true });
  }
  await new Promise((resolve) => setTimeout(resolve, ms));
  if (file) log(file, "done");
  return trace();
}

/** Never returns: a synchronous infinite loop (notes its start in `file`). */
export function loopForever(file?: string): never {
  if (file) log(file, "start");
  for (;;) {
    // spin
  }
}

/** Busy-waits on the CPU for `ms` and returns where it ran (notes its start in `file`). */
export function burn(ms: number, file?: string): Trace {
  if (file) log(file, "start");
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // spin
  }
  return trace();
}

/** Throws until its attempt number exceeds `failures`, then returns where it ran. */
export function flaky(failures: number, file?: string): Trace {
  if (file) log(file, "start");
  const { attempt } = currentTask();
  if (attempt <= failures) throw new Error(`attempt ${attempt} fails on purpose`);
  return trace();
}

/** Returns a string of `bytes` ASCII characters. */
export function bigResult(bytes: number): string {
  return "x".repeat(bytes);
}

/** Returns its arguments' total length. */
export function size(text: string): number {
  return text.length;
}

/** Returns a symbol (not serializable). */
export function returnSymbol(): symbol {
  return Symbol("nope");
}

/** Throws a number (not an Error). */
export function throwNumber(): never {
  throw 42;
}

/** Throws a value that resists description: its properties or string form throw when read. */
export function throwOdd(kind: string): never {
  if (kind === "nullProtoBigInt") throw Object.assign(Object.create(null), { reason: 1n });
  if (kind === "messageGetter") {
    const error = new Error("hidden");
    Object.defineProperty(error, "message", {
      get() {
        throw new Error("no message for you");
      },
    });
    throw error;
  }
  if (kind === "toStringThrows") {
    throw {
      toJSON() {
        throw new Error("no JSON");
      },
      toString() {
        throw new Error("no string");
      },
    };
  }
  throw new RangeError(`kind must be nullProtoBigInt, messageGetter or toStringThrows: ${kind}`);
}

/** An error class of a task module's own. */
class HttpError extends Error {
  status: number;
  constructor(status: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HttpError";
    this.status = status;
  }
}

/**
 * Throws an error that carries more than a name and a message: "cause" (an HttpError with a
 * status, caused by a TypeError with a code, a Date and a BigInt), "aggregate", "value" (a plain
 * object), "function" (a property the codec cannot serialize next to one it can).
 */
export function throwRich(kind: string): never {
  if (kind === "cause") {
    const inner = Object.assign(new TypeError("socket hang up"), {
      code: "ECONNRESET",
      at: new Date(0),
      bytes: 10n,
    });
    throw new HttpError(503, "upstream failed", { cause: inner });
  }
  if (kind === "aggregate") throw new AggregateError([new RangeError("a"), "b"], "two failed");
  if (kind === "value") throw { code: 42, tags: new Set(["x"]) };
  if (kind === "function") throw Object.assign(new Error("f"), { retry: () => 1, code: "E_F" });
  throw new RangeError(`kind must be cause, aggregate, value or function: ${kind}`);
}

/** Writes `value` to `file` (for tests that need a side effect), returns where it ran. */
export function touch(file: string, value: string): Trace {
  writeFileSync(file, value);
  return trace();
}

/** Returns where it ran at once. */
export function where(): Trace {
  return trace();
}

/**
 * A synchronous infinite loop that appends a line to `file` every 20 ms (proof of life); the
 * first line is the pid of the process that runs it.
 */
export function loopTicking(file: string): never {
  appendFileSync(file, `${process.pid}\n`);
  let last = 0;
  for (;;) {
    if (Date.now() - last >= 20) {
      appendFileSync(file, "tick\n");
      last = Date.now();
    }
  }
}

/** Prints `text` on stdout and returns it. */
export function say(text: string): string {
  console.log(text);
  return text;
}

/** Where it ran, and whether on the process's main thread (inline executors run there). */
export async function whichThread(): Promise<{ pid: number; main: boolean }> {
  const { isMainThread } = await import("node:worker_threads");
  return { pid: process.pid, main: isMainThread };
}

/** Returns `"ok"`, leaving behind a timer whose callback throws where nobody can catch it. */
export function strayThrow(): string {
  setTimeout(() => {
    throw new Error("thrown by a stray timer");
  }, 0);
  return "ok";
}

/**
 * Ends the process or thread it runs on: `how` is `"process"` (`process.exit`) or `"deno"`
 * (`Deno.exit`, on Deno only).
 */
export function exitExecutor(how: string, code: number): never {
  if (how === "deno") {
    (globalThis as unknown as { Deno: { exit(code: number): never } }).Deno.exit(code);
  } else process.exit(code);
  throw new Error(`${how} exit returned`);
}

/** Throws an Error with a message of `chars` characters (and a stack that holds it, too). */
export function throwHuge(chars: number): never {
  throw new Error("m".repeat(chars));
}

/**
 * While the file named by STREAMFUTURES_TEST_FAIL_LOAD exists, this module fails to load: an
 * executor that starts then cannot load its task modules.
 */
const failLoadFlag = process.env.STREAMFUTURES_TEST_FAIL_LOAD;
if (failLoadFlag && existsSync(failLoadFlag)) {
  throw new Error(`the fault tasks fail to load on purpose (${failLoadFlag} exists)`);
}

/** Made once per load of this module: tells the executors (threads, processes) apart. */
const executorToken = `${process.pid}:${Math.random()}`;

/** Sleeps `ms`, then returns a token of the executor it ran on (the same for all its tasks). */
export async function napExecutor(ms: number): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  return executorToken;
}

/**
 * For chunks of calls: `n * 10`, but throws a `RangeError` for odd `n` and returns a symbol (which
 * cannot be sent) for 4.
 */
export function tens(n: number): unknown {
  if (n % 2 === 1) throw new RangeError(`odd: ${n}`);
  if (n === 4) return Symbol("four");
  return n * 10;
}

/** Publishes the progress values `n` and `n * 10`, then returns `n`. */
export async function report(n: number): Promise<number> {
  const { progress } = currentTask();
  progress(n);
  await new Promise((resolve) => setTimeout(resolve, 1));
  progress(n * 10);
  return n;
}
