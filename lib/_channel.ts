/**
 * A one-consumer queue of values that arrive over time, read as an async iterable: values pushed
 * before the consumer starts are kept for it; `close()` ends the iteration (with an error, it
 * throws that error after the values already queued).
 *
 * @module
 */

/** A one-consumer async queue. */
export class Channel<T> {
  #values: T[] = [];
  #closed = false;
  #error: unknown = undefined;
  #failed = false;
  #wake: (() => void) | undefined;
  #taken = false;

  /** Adds a value (ignored once closed). */
  push(value: T): void {
    if (this.#closed) return;
    this.#values.push(value);
    this.#wake?.();
  }

  /** Ends the channel; with `error`, the iteration throws it once the queued values are read. */
  close(error?: unknown, failed = false): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#error = error;
    this.#failed = failed;
    this.#wake?.();
  }

  /** The iterable of the values (once: a second call throws `TypeError`). */
  take(what: string): AsyncIterableIterator<T> {
    if (this.#taken) {
      throw new TypeError(`${what} can be iterated once (it is already being read)`);
    }
    this.#taken = true;
    return this.#iterate();
  }

  async *#iterate(): AsyncIterableIterator<T> {
    for (;;) {
      if (this.#values.length > 0) {
        // Hand out what is queued, and forget it.
        const values = this.#values;
        this.#values = [];
        for (const value of values) yield value;
        continue;
      }
      if (this.#closed) {
        if (this.#failed) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }
}
