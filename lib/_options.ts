/**
 * Runtime checks of user options, in one place. Each throws `TypeError` / `RangeError` saying
 * what was wrong and what is accepted.
 *
 * @module
 */

/** A positive integer option (or its default). */
export function positiveInt(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a positive integer, got ${describeValue(value)}`);
  }
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/** A non-negative integer option (or its default). */
export function nonNegativeInt(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") {
    throw new TypeError(`${name} must be a non-negative integer, got ${describeValue(value)}`);
  }
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

/** The longest delay a JavaScript timer takes: 2^31 − 1 ms, about 24.8 days. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The longest duration Redis keeps for us (a TTL, a delay): 100 years, in ms. */
export const MAX_STORED_MS = 3_155_760_000_000;

/**
 * A duration in milliseconds that a timer of this process waits out (a heartbeat interval, a
 * grace period, a task timeout): finite, > 0 unless `allowZero`, at most {@link MAX_TIMER_MS};
 * rounded up to whole milliseconds.
 */
export function duration(
  value: unknown,
  name: string,
  fallback: number,
  allowZero = false,
): number {
  return checkedDuration(value, name, fallback, allowZero, MAX_TIMER_MS, "about 24.8 days");
}

/**
 * A duration in milliseconds that Redis keeps (a key's TTL, a task's delay, how long results or
 * dedupe entries stay): finite, > 0 unless `allowZero`, at most {@link MAX_STORED_MS}; rounded
 * up to whole milliseconds, since Redis takes integers.
 */
export function storedDuration(
  value: unknown,
  name: string,
  fallback: number,
  allowZero = false,
): number {
  return checkedDuration(value, name, fallback, allowZero, MAX_STORED_MS, "100 years");
}

function checkedDuration(
  value: unknown,
  name: string,
  fallback: number,
  allowZero: boolean,
  max: number,
  maxText: string,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") {
    throw new TypeError(
      `${name} must be a ${
        allowZero ? "non-negative" : "positive"
      } finite number of milliseconds, got ${describeValue(value)}`,
    );
  }
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new RangeError(
      `${name} must be a ${
        allowZero ? "non-negative" : "positive"
      } finite number of milliseconds, got ${String(value)}`,
    );
  }
  if (value > max) {
    throw new RangeError(
      `${name} must be at most ${max} milliseconds (${maxText}), got ${String(value)}`,
    );
  }
  return Math.ceil(value);
}

/**
 * Throws `TypeError` for an option of `options` (set to anything but `undefined`) whose name is
 * not a key of `known`: a misspelt option would otherwise be ignored without a word. `known` is
 * a record with every option name of the options' interface (so the compiler keeps it complete).
 */
export function checkOptionNames(
  options: object,
  known: Readonly<Record<string, true>>,
  what: string,
): void {
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined || Object.hasOwn(known, name)) continue;
    const names = Object.keys(known);
    const best = nearestName(name, names);
    throw new TypeError(
      `unknown option ${JSON.stringify(name)} of ${what}${
        best === undefined ? "" : ` (did you mean ${JSON.stringify(best)}?)`
      }; the options are ${names.join(", ")}`,
    );
  }
}

/**
 * An options argument: an object (or undefined, then `{}`) with no option {@link checkOptionNames}
 * does not know.
 */
export function checkOptions<T extends object>(
  options: T | undefined,
  known: Readonly<Record<string, true>>,
  what: string,
): T {
  if (options === undefined) return {} as T;
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`the options of ${what} must be an object, got ${describeValue(options)}`);
  }
  checkOptionNames(options, known, what);
  return options;
}

/** A `signal` option: an `AbortSignal` or undefined. */
export function abortSignal(value: unknown, name: string): AbortSignal | undefined {
  if (value === undefined || value instanceof AbortSignal) return value;
  throw new TypeError(`${name} must be an AbortSignal, got ${describeValue(value)}`);
}

/** The name among `names` nearest to `name`, if it is close enough to be a slip of the fingers. */
export function nearestName(name: string, names: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const known of names) {
    const distance = editDistance(name.toLowerCase(), known.toLowerCase());
    const limit = Math.min(3, Math.floor(Math.max(name.length, known.length) / 3));
    if (distance <= limit && distance < bestDistance) [best, bestDistance] = [known, distance];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j] + 1,
        current[j - 1] + 1,
        previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length];
}

/** A value for messages: its type and, for primitives, the value itself. */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "function") return `function ${value.name || "(anonymous)"}`;
  if (typeof value === "object") return `an object (${Object.prototype.toString.call(value)})`;
  if (typeof value === "string") return JSON.stringify(value);
  return `${typeof value} ${String(value)}`;
}

const NAME = /^[A-Za-z0-9_.\-]+$/;

/** A key-prefix component such as the app or a queue name: letters, digits, `_`, `.`, `-`. */
export function keyName(value: unknown, name: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== "string" || !NAME.test(value)) {
    throw new TypeError(
      `${name} must be a non-empty string of letters, digits, "_", "." or "-", got ${
        JSON.stringify(value)
      }`,
    );
  }
  return value;
}

/** A boolean option (or its default). */
export function bool(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new TypeError(`${name} must be true or false, got ${describeValue(value)}`);
  }
  return value;
}

/**
 * The heartbeat interval and timeout (ms, defaults 1000 and 5000); the timeout must be longer
 * than the interval, or every listener would look dead between two heartbeats.
 */
export function heartbeats(
  interval: unknown,
  timeout: unknown,
): { heartbeatInterval: number; heartbeatTimeout: number } {
  const heartbeatInterval = duration(interval, "heartbeatInterval", 1000);
  const heartbeatTimeout = duration(timeout, "heartbeatTimeout", 5000);
  if (heartbeatTimeout <= heartbeatInterval) {
    throw new RangeError(
      `heartbeatTimeout (${heartbeatTimeout} ms) must be longer than heartbeatInterval (${heartbeatInterval} ms)`,
    );
  }
  return { heartbeatInterval, heartbeatTimeout };
}

/** Which failed attempts of a task are retried: lost ones only, or also those that threw. */
export type RetryOn = "lost" | "error";

/** A `retryOn` option (or its default). */
export function retryOn(value: unknown, name: string, fallback: RetryOn): RetryOn {
  if (value === undefined) return fallback;
  if (value !== "lost" && value !== "error") {
    throw new TypeError(
      `${name} must be "lost" (retry attempts whose worker died) or "error" (also attempts that ` +
        `threw or timed out), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}
