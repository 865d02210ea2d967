/**
 * Chunks: `pool.map` / `pool.imap` with `{ chunksize }` send their calls in chunks of up to
 * `chunksize` calls, as Python's `Executor.map(..., chunksize=n)` does. Each chunk is one task in
 * Redis (one stream entry, one START and FINISH, one result), named `chunk:<task name>`, whose one
 * argument is the list of its calls' argument lists; a worker runs the calls one after the other
 * and records the list of their outcomes, `[1, value]` or `[0, name, message, stack, detail?]` each, and
 * publishes a call's progress values as `[call, value]`. The client gives every call a future of
 * its own, settled from its chunk's (a call with futures among its arguments is no chunk's: the
 * pool sends it as a task of its own).
 *
 * What is per chunk, not per call: the lease, heartbeats and fencing, retries (after a lost
 * worker; `retryOn: "error"` is refused, since an error of one call would run its whole chunk
 * again), `timeout` (the run time limit of the whole chunk), `currentTask()`'s task id, attempt
 * and signal, and what Redis keeps (`pool.results(op)` and `pool.future(id)` see the chunks).
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { byteLength, checkPayloadSize, encode } from "./codec.ts";
import { CancelledError, describeThrown, ProtocolError, RemoteTaskError } from "./errors.ts";
import { futureControl, type FutureHooks, StreamFuture } from "./future.ts";
import type { TaskFunction } from "./_tasks.ts";

/** The prefix of a chunk task's name: `chunk:<task name>`. Task modules may not export it. */
export const CHUNK_PREFIX = "chunk:";

/** The largest `chunksize` accepted. */
export const MAX_CHUNKSIZE = 100_000;

/** Checks `chunksize`: a whole number from 1 to {@link MAX_CHUNKSIZE} (default 1). */
export function checkChunksize(value: unknown): number {
  if (value === undefined) return 1;
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(
      `chunksize must be a whole number of calls per chunk (1 to ${MAX_CHUNKSIZE}), got ${
        typeof value === "number" ? value : typeof value
      }`,
    );
  }
  if (value < 1 || value > MAX_CHUNKSIZE) {
    throw new RangeError(
      `chunksize must be from 1 to ${MAX_CHUNKSIZE} calls per chunk, got ${value}`,
    );
  }
  return value;
}

/** The task name of a chunk of calls of task `name`. */
export function chunkTaskName(name: string): string {
  return CHUNK_PREFIX + name;
}

/** The task name of the calls a chunk task runs, or `undefined` for a task that is no chunk. */
export function chunkedTaskName(name: string): string | undefined {
  return name.startsWith(CHUNK_PREFIX) ? name.slice(CHUNK_PREFIX.length) : undefined;
}

/**
 * A chunk task's id: `<op>.c_<index of its first call>_<number of its calls>`, both in base 36,
 * so that any client can tell which calls a chunk holds (`pool.future(callId)`,
 * `pool.operation()`, `pool.results()`).
 */
export function chunkId(op: string, first: number, count: number): string {
  return `${op}.c_${first.toString(36)}_${count.toString(36)}`;
}

/**
 * The first call and the number of calls of a chunk task id ({@link chunkId}); undefined for any
 * other id (and for the ids of an earlier version, `<op>.c_<first>`, which do not say their count).
 */
export function parseChunkId(id: string): { first: number; count: number } | undefined {
  const match = /\.c_([0-9a-z]+)_([0-9a-z]+)$/.exec(id);
  if (!match) return undefined;
  const first = parseInt(match[1], 36);
  const count = parseInt(match[2], 36);
  return Number.isSafeInteger(first) && count >= 1 && count <= MAX_CHUNKSIZE
    ? { first, count }
    : undefined;
}

/** The ids of a chunk's calls, `<op>.<index in base 36>` each, in order. */
export function chunkCallIds(op: string, first: number, count: number): string[] {
  return Array.from({ length: count }, (_, k) => `${op}.${(first + k).toString(36)}`);
}

/**
 * The outcome of each call of a completed chunk (its task's value): `{ value }` or `{ error }`;
 * a `ProtocolError` for each call when the value is not the list of `count` outcomes.
 */
export function callOutcomes(
  value: unknown,
  count: number,
  chunkTaskId: string,
  attempts: number,
): ({ value: unknown } | { error: Error })[] {
  const list = Array.isArray(value) && value.length === count ? value : undefined;
  return Array.from({ length: count }, (_, i) => {
    const outcome = list?.[i];
    if (!Array.isArray(outcome)) {
      return {
        error: new ProtocolError(
          `the outcome of its call ${i} is missing from the result of chunk ${chunkTaskId}`,
        ),
      };
    }
    if (outcome[0] === 1) return { value: outcome[1] };
    return {
      error: new RemoteTaskError({
        name: String(outcome[1]),
        message: String(outcome[2]),
        stack: typeof outcome[3] === "string" && outcome[3] ? outcome[3] : undefined,
        detail: typeof outcome[4] === "string" ? outcome[4] : undefined,
      }, { attempts }),
    };
  });
}

/** The encoded argument list of a chunk task: one argument, the list of its calls' lists. */
export function chunkArgs(calls: readonly string[]): string {
  return `[[${calls.join(",")}]]`;
}

/**
 * The outcome of a call whose own outcome does not fit in its chunk's result: short, so that one
 * per call left still fits ({@link runChunk}).
 */
const TOO_LARGE = '[0,"RangeError","its outcome does not fit in its chunk\'s result ' +
  '(maxPayloadBytes in all): use a smaller chunksize",""]';

/** How long a chunk's calls may run without the event loop turning (abort messages, heartbeats). */
const TURN_MS = 10;

/**
 * Runs a chunk's calls of `fn` one after the other (on a worker, inside the chunk's task context;
 * `onCall(i)` is told which call runs) and returns the encoded list of their outcomes. A call that
 * throws, whose value cannot be encoded or is longer than `maxPayloadBytes`, or that is a generator
 * (whose values a chunk cannot stream) has a failed outcome; the others go on. The outcomes in all
 * stay within `maxPayloadBytes`: one that would not fit (with room kept for a short outcome per
 * call left) is replaced by a short `RangeError`. Between calls the event loop turns at least every
 * {@link TURN_MS} ms, even for synchronous calls, and the chunk stops with `signal.reason` once it
 * is cancelled or timed out.
 */
export async function runChunk(
  fn: TaskFunction,
  calls: unknown,
  signal: AbortSignal,
  maxPayloadBytes: number,
  onCall?: (index: number) => void,
): Promise<string> {
  if (!Array.isArray(calls) || !calls.every(Array.isArray)) {
    throw new TypeError("a chunk task takes one argument, the list of its calls' argument lists");
  }
  const parts: string[] = new Array(calls.length);
  // "[", "]" and a comma per call, then the outcomes so far.
  let used = calls.length + 1;
  let turned = performance.now();
  for (let i = 0; i < calls.length; i++) {
    if (performance.now() - turned >= TURN_MS) {
      await new Promise((resolve) => setImmediate(resolve));
      turned = performance.now();
    }
    if (signal.aborted) throw signal.reason;
    onCall?.(i);
    let part: string;
    try {
      const result = fn(...(calls[i] as unknown[]));
      if (isGenerator(result)) {
        throw new TypeError(
          "a generator task cannot run in a chunk (map's chunksize > 1): its values would be lost",
        );
      }
      const encoded = encode(await result, "result");
      checkPayloadSize(encoded, maxPayloadBytes, "the result");
      part = `[1,${encoded}]`;
    } catch (thrown) {
      const info = describeThrown(thrown);
      part = `[0,${JSON.stringify(info.name)},${JSON.stringify(info.message)},${
        JSON.stringify(info.stack ?? "")
      }${info.detail === undefined ? "" : `,${JSON.stringify(info.detail)}`}]`;
    }
    const bytes = byteLength(part);
    const reserve = (calls.length - i - 1) * TOO_LARGE.length;
    if (used + bytes + reserve > maxPayloadBytes) {
      parts[i] = TOO_LARGE;
      used += TOO_LARGE.length;
    } else {
      parts[i] = part;
      used += bytes;
    }
  }
  return `[${parts.join(",")}]`;
}

/** True for generator objects (sync or async). */
export function isGenerator(value: unknown): boolean {
  if (value === null || typeof value !== "object") return false;
  const tag = Object.prototype.toString.call(value);
  return tag === "[object AsyncGenerator]" || tag === "[object Generator]";
}

/** The chunk each call's future belongs to. */
const chunkOf = new WeakMap<StreamFuture<unknown>, Chunk>();

/** True for the future of a call sent in a chunk. */
export function isChunkCall(future: StreamFuture<unknown>): boolean {
  return chunkOf.has(future);
}

/** The future of the chunk task a call's future belongs to, if it was sent in a chunk. */
export function chunkTaskOf(future: StreamFuture<unknown>): StreamFuture<unknown> | undefined {
  return chunkOf.get(future)?.task;
}

/** One chunk: its task's future and its calls' futures. */
class Chunk {
  readonly task: StreamFuture<unknown>;
  readonly calls: StreamFuture<unknown>[] = [];
  /** Calls whose holder cancelled them (asked: their futures settle a moment later). */
  readonly #unwanted = new Set<StreamFuture<unknown>>();
  /** Calls whose future was disposed of by its holder. */
  #disposed = 0;

  constructor(task: StreamFuture<unknown>) {
    this.task = task;
  }

  async cancel(call: StreamFuture<unknown>): Promise<boolean> {
    if (this.task.done()) return this.task.cancelled();
    // The chunk's task stops (or never runs) once none of its calls is wanted any more; until
    // then a cancelled call still runs with the others, and its outcome is dropped.
    this.#unwanted.add(call);
    if (this.#unwanted.size < this.calls.length) return true;
    return await this.task.cancel();
  }

  async dispose(call: StreamFuture<unknown>): Promise<void> {
    if (!call.done()) await call.cancel();
    if (++this.#disposed === this.calls.length) await this.task[Symbol.asyncDispose]();
  }

  /** Wires the task's states and outcome to the calls' futures. */
  follow(): void {
    const task = this.task;
    futureControl(task).observe((t) => {
      for (const call of this.calls) {
        if (t.state === "running") futureControl(call).markRunning(t.attempt);
        else if (t.state === "pending") futureControl(call).markPending(t.attempt);
      }
    });
    // The calls settle once the progress values published before the outcome are handed on.
    void this.#forwardProgress().finally(() =>
      task.then((outcomes) => this.#settle(outcomes), (error) => {
        const raw = this.#rawTimings();
        for (const call of this.calls) {
          const control = futureControl(call);
          if (raw) control.timings(raw);
          if (task.cancelled() && error instanceof CancelledError) control.cancel(error);
          else control.reject(error);
        }
      })
    );
  }

  /**
   * Hands the progress values the chunk's calls publish (`[call, value]`, see the executor) to
   * the calls' futures, until the chunk's future settles.
   */
  async #forwardProgress(): Promise<void> {
    let index = 0;
    for await (const event of this.task.progress()) {
      if (!Array.isArray(event) || event.length !== 2) continue;
      const call = this.calls[event[0]];
      if (call) futureControl(call).event("p", this.task.attempt, index++, event[1]);
    }
  }

  /** The chunk task's timings, in the form of a final notice's, if it ran. */
  #rawTimings(): string | undefined {
    const timings = this.task.timings;
    return timings && `${timings.wait},${timings.run},${timings.startedAt.getTime()}`;
  }

  #settle(outcomes: unknown): void {
    const raw = this.#rawTimings();
    const settled = callOutcomes(outcomes, this.calls.length, this.task.id, this.task.attempt);
    this.calls.forEach((call, i) => {
      const control = futureControl(call);
      if (call.attempt < this.task.attempt) control.markPending(this.task.attempt);
      if (raw) control.timings(raw);
      const outcome = settled[i];
      if ("error" in outcome) control.reject(outcome.error);
      else control.resolve(outcome.value);
    });
  }
}

const CALL_HOOKS: FutureHooks = {
  cancel: (call) => chunkOf.get(call)!.cancel(call),
  dispose: (call) => chunkOf.get(call)!.dispose(call),
};

/**
 * The futures of a chunk's calls (ids `ids`, operation `op`), settled from the chunk task's
 * future `task`.
 */
export function chunkCalls(
  task: StreamFuture<unknown>,
  op: string,
  ids: readonly string[],
): StreamFuture<unknown>[] {
  const chunk = new Chunk(task);
  for (const id of ids) {
    const call = new StreamFuture<unknown>(id, op, CALL_HOOKS);
    chunkOf.set(call, chunk);
    chunk.calls.push(call);
  }
  chunk.follow();
  return chunk.calls;
}
