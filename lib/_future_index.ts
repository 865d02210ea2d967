/**
 * The futures a pool is waiting on, by task id. Usually one future per task; with dedupe and
 * `pool.future(id)` several futures can stand for the same task.
 *
 * @module
 */

import type { StreamFuture } from "./future.ts";

const NONE: readonly StreamFuture<unknown>[] = Object.freeze([]);

/** Futures by task id. */
export class FutureIndex {
  #byId = new Map<string, StreamFuture<unknown> | StreamFuture<unknown>[]>();
  #size = 0;

  /** The number of futures. */
  get size(): number {
    return this.#size;
  }

  /** Adds a future under its current id. */
  add(future: StreamFuture<unknown>): void {
    const current = this.#byId.get(future.id);
    if (current === undefined) this.#byId.set(future.id, future);
    else if (Array.isArray(current)) current.push(future);
    else this.#byId.set(future.id, [current, future]);
    this.#size++;
  }

  /** Removes a future (filed under `id`, default its current id); false when it was not there. */
  remove(future: StreamFuture<unknown>, id = future.id): boolean {
    const current = this.#byId.get(id);
    if (current === future) {
      this.#byId.delete(id);
    } else if (Array.isArray(current) && current.includes(future)) {
      const rest = current.filter((f) => f !== future);
      this.#byId.set(id, rest.length === 1 ? rest[0] : rest);
    } else {
      return false;
    }
    this.#size--;
    return true;
  }

  /** The futures of a task id (none: an empty list). */
  get(id: string): readonly StreamFuture<unknown>[] {
    const current = this.#byId.get(id);
    return current === undefined ? NONE : Array.isArray(current) ? current : [current];
  }

  /** The future of a task id when there is exactly one (the common case: no list is made). */
  only(id: string): StreamFuture<unknown> | readonly StreamFuture<unknown>[] | undefined {
    return this.#byId.get(id);
  }

  /** True when some future stands for the task. */
  has(id: string): boolean {
    return this.#byId.has(id);
  }

  /** Every future. */
  *values(): IterableIterator<StreamFuture<unknown>> {
    for (const value of this.#byId.values()) {
      if (Array.isArray(value)) yield* value;
      else yield value;
    }
  }
}
