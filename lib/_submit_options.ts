/**
 * The per-task options of `submit` / `map` (and of schedules), checked in one place and turned
 * into what goes to Redis: extra stream entry fields, the due-time spec, the dedupe material.
 *
 * @module
 */

import { bool, duration, nonNegativeInt, type RetryOn, retryOn } from "./_options.ts";

/** What to do with a task whose parent (a future among its arguments) failed. */
export type OnParentError = "fail" | "pass";

/** A task's retry policy, timeout and priority. */
export interface TaskPolicy {
  retries: number;
  retryDelay: number;
  retryOn: RetryOn;
  timeout: number | undefined;
  priority: number;
}

/** The options that make up a {@link TaskPolicy}. */
export interface TaskPolicyOptions {
  retries?: number;
  retryDelay?: number;
  retryOn?: RetryOn;
  timeout?: number;
  priority?: number;
}

/** The policy of a pool without options. */
export const DEFAULT_POLICY: TaskPolicy = {
  retries: 0,
  retryDelay: 0,
  retryOn: "lost",
  timeout: undefined,
  priority: 0,
};

/** Checks the policy options of `options`, falling back to `defaults`. */
export function taskPolicy(options: TaskPolicyOptions, defaults: TaskPolicy): TaskPolicy {
  const priority = options.priority ?? defaults.priority;
  if (!Number.isInteger(priority) || priority < -9 || priority > 9) {
    throw new RangeError(
      `priority must be an integer from -9 to 9 (higher runs first, default 0), got ${
        String(priority)
      }`,
    );
  }
  return {
    retries: nonNegativeInt(options.retries, "retries", defaults.retries),
    retryDelay: duration(options.retryDelay, "retryDelay", defaults.retryDelay, true),
    retryOn: retryOn(options.retryOn, "retryOn", defaults.retryOn),
    timeout: options.timeout === undefined
      ? defaults.timeout
      : duration(options.timeout, "timeout", 0),
    priority,
  };
}

/** The extra stream entry fields of a policy (only those that differ from the defaults). */
export function policyFields(policy: TaskPolicy): string[] {
  const fields: string[] = [];
  if (policy.retries > 0) fields.push("retries", String(policy.retries));
  if (policy.retryDelay > 0) fields.push("retryDelay", String(Math.round(policy.retryDelay)));
  if (policy.retryOn !== "lost") fields.push("retryOn", policy.retryOn);
  if (policy.timeout !== undefined) fields.push("timeout", String(Math.round(policy.timeout)));
  if (policy.priority !== 0) fields.push("pri", String(policy.priority));
  return fields;
}

/**
 * When the tasks become runnable, for SUBMIT's `ARGV[8]`: `""` now, `"d<ms>"` after a delay
 * (counted on Redis' clock), `"a<epoch ms>"` at a time.
 */
export function dueSpec(options: { delay?: number; startAt?: Date }): string {
  if (options.delay !== undefined && options.startAt !== undefined) {
    throw new TypeError("pass either delay (ms from now) or startAt (a Date), not both");
  }
  if (options.delay !== undefined) {
    const delay = duration(options.delay, "delay", 0, true);
    return delay > 0 ? `d${Math.round(delay)}` : "";
  }
  if (options.startAt !== undefined) {
    const at = options.startAt;
    if (!(at instanceof Date) || Number.isNaN(at.getTime())) {
      throw new TypeError(`startAt must be a valid Date, got ${String(at)}`);
    }
    return `a${at.getTime()}`;
  }
  return "";
}

/** What dedupe needs: the material to hash, and how long to share a finished task (ms). */
export interface DedupeSpec {
  /** `undefined` when the call is not deduplicated. */
  key: string | undefined;
  ttl: number;
}

/** Checks `dedupe` / `dedupeKey` / `dedupeTtl`. `call` is the task name and encoded arguments. */
export function dedupeSpec(
  options: { dedupe?: boolean; dedupeKey?: string; dedupeTtl?: number },
  defaultTtl: number,
  call: () => string,
): DedupeSpec {
  const ttl = duration(options.dedupeTtl, "dedupeTtl", defaultTtl, true);
  if (options.dedupeKey !== undefined) {
    if (typeof options.dedupeKey !== "string" || options.dedupeKey.length === 0) {
      throw new TypeError(
        `dedupeKey must be a non-empty string, got ${JSON.stringify(options.dedupeKey)}`,
      );
    }
    return { key: `key\n${options.dedupeKey}`, ttl };
  }
  return { key: bool(options.dedupe, "dedupe", false) ? `call\n${call()}` : undefined, ttl };
}

/** Checks `onParentError`. */
export function onParentError(value: unknown): OnParentError {
  if (value === undefined) return "fail";
  if (value !== "fail" && value !== "pass") {
    throw new TypeError(
      `onParentError must be "fail" (a failed parent fails the task with DependencyError) or ` +
        `"pass" (the task gets the parent's error as the argument), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/**
 * The canonical form of encoded arguments for dedupe: the same JSON with object keys sorted, so
 * `{a, b}` and `{b, a}` are the same call (arrays, Map and Set keep their order).
 */
export function canonicalJson(text: string): string {
  const sort = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(sort);
    if (value !== null && typeof value === "object") {
      // A null prototype: a "__proto__" key stays an ordinary key.
      const out: Record<string, unknown> = Object.create(null);
      for (const key of Object.keys(value).sort()) {
        out[key] = sort((value as Record<string, unknown>)[key]);
      }
      return out;
    }
    return value;
  };
  return JSON.stringify(sort(JSON.parse(text)));
}

/** The hex SHA-256 of a string (dedupe keys). */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
