/**
 * The per-task options of `submit` / `map` (and of schedules), checked in one place and turned
 * into what goes to Redis: extra stream entry fields, the due-time spec, the dedupe material.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  bool,
  describeValue,
  duration,
  MAX_STORED_MS,
  nonNegativeInt,
  type RetryOn,
  retryOn,
  storedDuration,
} from "./_options.ts";

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
  if (typeof priority !== "number") {
    throw new TypeError(
      `priority must be an integer from -9 to 9 (higher runs first, default 0), got ${
        describeValue(priority)
      }`,
    );
  }
  if (!Number.isInteger(priority) || priority < -9 || priority > 9) {
    throw new RangeError(
      `priority must be an integer from -9 to 9 (higher runs first, default 0), got ${
        String(priority)
      }`,
    );
  }
  return {
    retries: nonNegativeInt(options.retries, "retries", defaults.retries),
    retryDelay: storedDuration(options.retryDelay, "retryDelay", defaults.retryDelay, true),
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
    const delay = storedDuration(options.delay, "delay", 0, true);
    return delay > 0 ? `d${Math.round(delay)}` : "";
  }
  if (options.startAt !== undefined) {
    const at = options.startAt;
    if (!(at instanceof Date) || Number.isNaN(at.getTime())) {
      throw new TypeError(`startAt must be a valid Date, got ${String(at)}`);
    }
    if (at.getTime() > Date.now() + MAX_STORED_MS) {
      throw new RangeError(
        `startAt must be at most 100 years ahead (as delay), got ${at.toISOString()}`,
      );
    }
    return `a${at.getTime()}`;
  }
  return "";
}

/**
 * What dedupe needs: whether and how calls are identified, and how long a finished task is
 * shared (ms). `key` is set for `dedupeKey`; `call` for `dedupe: true` (the call is identified by
 * its task name and canonical arguments, known when it is sent: see {@link dedupeHash}).
 */
export interface DedupeSpec {
  key: string | undefined;
  call: boolean;
  ttl: number;
}

/** Checks `dedupe` / `dedupeKey` / `dedupeTtl`. */
export function dedupeSpec(
  options: { dedupe?: boolean; dedupeKey?: string; dedupeTtl?: number },
  defaultTtl: number,
): DedupeSpec {
  const ttl = storedDuration(options.dedupeTtl, "dedupeTtl", defaultTtl, true);
  if (options.dedupeKey !== undefined) {
    if (typeof options.dedupeKey !== "string" || options.dedupeKey.length === 0) {
      throw new TypeError(
        `dedupeKey must be a non-empty string, got ${JSON.stringify(options.dedupeKey)}`,
      );
    }
    return { key: options.dedupeKey, call: false, ttl };
  }
  return { key: undefined, call: bool(options.dedupe, "dedupe", false), ttl };
}

/**
 * The dedupe hash of a call: SHA-256 (hex) of `"key\n<dedupeKey>"`, or of
 * `"call\n<task name>\n<canonical arguments>"`; "" when the call is not deduplicated.
 */
export function dedupeHash(spec: DedupeSpec, task: string, args: string): string {
  if (spec.key !== undefined) return sha256Hex(`key\n${spec.key}`);
  if (spec.call) return sha256Hex(`call\n${task}\n${canonicalJson(args)}`);
  return "";
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

/** The hex SHA-256 of a string (dedupe keys), computed at once. */
export function sha256Hex(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}
