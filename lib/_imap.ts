/**
 * `pool.imap`'s loop: reads argument lists from any iterable (even an endless or slow one), keeps
 * at most `window` calls submitted and not consumed, and yields their results, in input order or
 * as they complete. The pool sends the calls and releases their entries (see {@link ImapHost}).
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { StreamFuture } from "./future.ts";
import { byteLength } from "./codec.ts";
import { chunkTaskOf } from "./_chunks.ts";
import { describeValue } from "./_options.ts";
import { ProgressBar } from "./_progress_bar.ts";

/** One input's encoded argument list, with the futures it references (its parents). */
export interface EncodedCall {
  readonly text: string;
  /** Parent tasks referenced in the arguments (`"<op>/<taskId>"` as encoded). */
  readonly refs: readonly string[];
  /** The parents' futures, in the order of `refs`. */
  readonly parentFutures: readonly StreamFuture<unknown>[];
}

/** What the loop needs of its pool, for one `imap` operation. */
export interface ImapHost {
  /** The most bytes of one task's arguments. */
  readonly maxPayloadBytes: number;
  /** Throws `PoolClosedError` once the pool is shut down. */
  checkOpen(): void;
  /** Encodes input `index`'s argument list: its JSON text, or the text with its parents. */
  encode(args: readonly unknown[], index: number): string | EncodedCall;
  /** Sends call `index` as a task of its own; returns its future. */
  sendCall(index: number, call: EncodedCall): StreamFuture<unknown>;
  /** Sends calls `first`.. (their encoded argument lists) as one chunk; returns their futures. */
  sendChunk(first: number, texts: string[]): StreamFuture<unknown>[];
  /** Keeps done / failed / running counts of a future for the progress bar. */
  countProgress(
    future: StreamFuture<unknown>,
    counts: { done: number; failed: number; running: number },
    update: () => void,
  ): void;
  /** Releases the entries of consumed tasks (by task id). */
  releaseConsumed(ids: string[]): void;
  /** Marks the operation as still adding tasks (kept and refreshed while it is). */
  pin(pinned: boolean): void;
}

/** The loop's settings (checked by `pool.imap`). */
export interface ImapSettings {
  /** The most calls submitted and not yet consumed. */
  readonly window: number;
  /** Yield in input order (else as they complete). */
  readonly ordered: boolean;
  /** Calls per chunk (1: a task per call). */
  readonly chunksize: number;
  /** The input is an async iterable (it may stall; ready results are yielded meanwhile). */
  readonly asyncInput: boolean;
  /** Aborting cancels the calls in flight; the generator then throws the reason. */
  readonly signal?: AbortSignal;
  /** Draw a progress bar. */
  readonly progress: boolean;
  /** The bar's label. */
  readonly label?: string;
}

const NO_REFS: readonly never[] = Object.freeze([]);

/**
 * Yields the results of `fn` over the argument lists of `iterator`, whose calls the host sends as
 * tasks of operation `op` (their ids are `<op>.<input index in base 36>`).
 */
export async function* imapResults(
  host: ImapHost,
  op: string,
  iterator: AsyncIterator<unknown> | Iterator<unknown>,
  { window, ordered, chunksize, asyncInput, signal, progress, label }: ImapSettings,
): AsyncGenerator<unknown, void, undefined> {
  host.pin(true);
  const inFlight = new Map<number, StreamFuture<unknown>>();
  const completed: StreamFuture<unknown>[] = [];
  let wake: (() => void) | undefined;
  let index = 0;
  let exhausted = false;
  const consumed: string[] = [];
  const counts = { done: 0, failed: 0, running: 0 };
  const bar = progress ? new ProgressBar({ label }) : undefined;
  // An abort cancels the tasks in flight at once, even while the loop waits for its input or
  // the caller's loop body runs; the generator throws the reason when it next resumes.
  let abortWait: (() => void) | undefined;
  const onAbort = () => {
    for (const f of inFlight.values()) void f.cancel().catch(() => false);
    wake?.();
    abortWait?.();
  };
  signal?.addEventListener("abort", onAbort);
  /** The input's next item, or the signal's reason at once when it aborts meanwhile. */
  const nextInput = (): Promise<IteratorResult<unknown>> => {
    const step = Promise.resolve(iterator.next());
    if (!signal) return step;
    return Promise.race([
      step,
      new Promise<never>((_, reject) => {
        abortWait = () => reject(signal.reason);
        const clear = () => (abortWait = undefined);
        step.then(clear, clear);
      }),
    ]);
  };
  let reading = false;
  // With chunksize > 1: the calls read and not sent yet (their futures are made when their
  // chunk goes out: full, at the end of the input or of the window, or when the input stalls).
  let chunk: { first: number; texts: string[]; bytes: number } | undefined;
  let consumedCalls = 0;
  /** Calls of each chunk not consumed yet (its task's entries are released after the last). */
  const unconsumed = new Map<StreamFuture<unknown>, number>();
  const follow = (future: StreamFuture<unknown>) => {
    if (!ordered) {
      future.addDoneCallback((f) => {
        completed.push(f);
        wake?.();
      });
    }
    if (bar) host.countProgress(future, counts, () => bar.update(counts));
  };
  const sendChunk = () => {
    if (!chunk) return;
    const { first, texts } = chunk;
    chunk = undefined;
    const calls = host.sendChunk(first, texts);
    unconsumed.set(chunkTaskOf(calls[0])!, calls.length);
    calls.forEach((call, k) => {
      inFlight.set(first + k, call);
      follow(call);
    });
  };
  /** The input's next item, asked for while a result was yielded (see below). */
  let pendingInput: Promise<IteratorResult<unknown>> | undefined;
  let headReady: { future: StreamFuture<unknown>; ready: Promise<true> } | undefined;
  /**
   * A promise of true once a result can be yielded (ordered: the first in input order is done;
   * else: any is), or undefined when nothing is in flight.
   */
  const resultReady = (): Promise<true> | undefined => {
    if (inFlight.size === 0) return undefined;
    if (!ordered) {
      if (completed.length > 0) return Promise.resolve(true);
      return new Promise((resolve) => (wake = () => resolve(true)));
    }
    const head = inFlight.values().next().value!;
    if (headReady?.future !== head) {
      headReady = {
        future: head,
        ready: new Promise((resolve) => head.addDoneCallback(() => resolve(true))),
      };
    }
    return headReady.ready;
  };
  /** Resolves true when `step` has not settled by the end of this turn of the event loop. */
  const stalls = (step: Promise<unknown>) =>
    new Promise<boolean>((resolve) => {
      step.then(() => resolve(false), () => resolve(false));
      setImmediate(() => resolve(true));
    });
  try {
    for (;;) {
      signal?.throwIfAborted();
      // In chunks: a chunk is begun only when the window has room for a whole one (else every
      // consumed call would make a chunk of one).
      while (
        !exhausted &&
        (chunk
          ? inFlight.size + chunk.texts.length < window
          : window - inFlight.size >= Math.min(chunksize, window))
      ) {
        reading = true;
        // (An item asked for before a result was yielded meanwhile is still the next one.)
        const next = pendingInput ?? nextInput();
        pendingInput = undefined;
        if (asyncInput && await stalls(next)) {
          sendChunk();
          // A slow input does not hold back results that are ready: one is yielded while the
          // input's next item is on its way.
          const ready = resultReady();
          if (ready && await Promise.race([next.then(() => false, () => false), ready])) {
            next.catch(() => {}); // awaited later; meanwhile its rejection is not unhandled
            pendingInput = next;
            // (An abort cancels the tasks in flight, which makes one "ready".)
            signal?.throwIfAborted();
            break;
          }
        }
        const step = await next;
        reading = false;
        // The input may take its time: the pool may have been shut down, the signal aborted.
        signal?.throwIfAborted();
        host.checkOpen();
        if (step.done) {
          exhausted = true;
          break;
        }
        const args = step.value;
        if (!Array.isArray(args)) {
          throw new TypeError(
            `argsIterable[${index}] must be an array of task arguments, got ${describeValue(args)}`,
          );
        }
        const item = host.encode(args, index);
        const { text, refs, parentFutures } = typeof item === "string"
          ? { text: item, refs: NO_REFS, parentFutures: NO_REFS }
          : item;
        // In chunks (a call with futures among its arguments is a task of its own), within
        // maxPayloadBytes.
        if (chunksize > 1 && refs.length === 0) {
          const bytes = byteLength(text) + 1;
          if (chunk && chunk.bytes + bytes > host.maxPayloadBytes) sendChunk();
          chunk ??= { first: index, texts: [], bytes: 4 };
          chunk.texts.push(text);
          chunk.bytes += bytes;
          index++;
          if (chunk.texts.length === chunksize) sendChunk();
          continue;
        }
        sendChunk(); // calls go out in input order
        const future = host.sendCall(index, { text, refs, parentFutures });
        inFlight.set(index, future);
        follow(future);
        index++;
      }
      sendChunk();
      if (bar) bar.update({ ...counts, total: exhausted ? index : undefined });
      if (inFlight.size === 0 && !pendingInput) return;
      let next: StreamFuture<unknown>;
      let at: number;
      if (ordered) {
        at = inFlight.keys().next().value!;
        next = inFlight.get(at)!;
        if (!next.done()) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            next.addDoneCallback(() => resolve());
          });
          wake = undefined;
          signal?.throwIfAborted();
        }
      } else {
        while (completed.length === 0) {
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
          signal?.throwIfAborted();
        }
        next = completed.shift()!;
        at = parseInt(next.id.slice(op.length + 1), 36);
      }
      inFlight.delete(at);
      const of = chunkTaskOf(next);
      if (!of) consumed.push(next.id);
      else if (unconsumed.set(of, unconsumed.get(of)! - 1).get(of) === 0) {
        unconsumed.delete(of);
        consumed.push(of.id);
      }
      // Released in batches of 256 calls' tasks (of a chunk's calls, once all are consumed).
      if (++consumedCalls >= 256 && (!of || !unconsumed.has(of))) {
        host.releaseConsumed(consumed.splice(0));
        consumedCalls = 0;
      }
      yield await next;
    }
  } finally {
    host.pin(false);
    signal?.removeEventListener("abort", onAbort);
    bar?.update({ ...counts, total: exhausted ? index : undefined });
    bar?.stop();
    // Stopped early: the tasks still in flight are cancelled; consumed entries released.
    await Promise.all([...inFlight.values()].map((f) => f.cancel().catch(() => false)));
    for (const f of inFlight.values()) if (!chunkTaskOf(f)) consumed.push(f.id);
    for (const f of unconsumed.keys()) consumed.push(f.id);
    if (consumed.length > 0) host.releaseConsumed(consumed.splice(0));
    // (An input still producing its next item, given up on abort, is told to stop without
    // waiting for it: an async generator's return() waits for the step it is in.)
    const stop = Promise.resolve((iterator as AsyncIterator<unknown>).return?.());
    if (reading) stop.catch(() => {});
    else await stop;
  }
}
