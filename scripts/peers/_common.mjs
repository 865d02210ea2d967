/**
 * What the benchmark's peer drivers (bullmq.mjs, bee_queue.mjs) share: option parsing, deadlines,
 * memory figures, the driver's start gate, latency summaries and the role dispatch.
 */

import process from "node:process";

/** The non-negative integer option `--<name>` of `values` (from `parseArgs`). */
export function intOption(values, name) {
  const text = values[name];
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new TypeError(`--${name} must be a non-negative integer, got ${JSON.stringify(text)}`);
  }
  return n;
}

/** Rejects after `ms` with a clear message unless `promise` settles first. */
export async function deadline(promise, ms, what) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** RSS and V8 heap in use (bytes), after a full GC when node runs with --expose-gc. */
export function memory() {
  if (typeof globalThis.gc === "function") {
    for (let i = 0; i < 3; i++) globalThis.gc();
  }
  const usage = process.memoryUsage();
  return { rss: usage.rss, heap: usage.heapUsed };
}

/** With `--gate`: says "ready" and waits for a line on stdin (the driver's "go"). */
export async function gate(values) {
  console.error("ready");
  if (!values.gate) return;
  await new Promise((resolve, reject) => {
    process.stdin.once("data", resolve);
    process.stdin.once("end", () => reject(new Error("stdin closed before the go line")));
  });
  process.stdin.pause();
}

/** p50, p99 (nearest rank) and mean of round-trip times in ms. */
export function summarize(times) {
  const sorted = [...times].sort((a, b) => a - b);
  const pct = (p) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
  return {
    p50Ms: pct(50),
    p99Ms: pct(99),
    meanMs: times.reduce((a, b) => a + b, 0) / times.length,
    samples: times.length,
  };
}

/**
 * Runs the role named by the only positional argument and exits (a worker keeps running until its
 * signal handler exits): 2 on a bad command line, 1 when the role fails.
 */
export async function runRole(script, roles, positionals, log) {
  const role = roles[positionals[0]];
  if (!role || positionals.length !== 1) {
    console.error(`usage: node ${script} (${Object.keys(roles).join("|")}) --url U --queue Q ...`);
    process.exit(2);
  }
  try {
    await role();
    if (positionals[0] !== "worker") process.exit(0);
  } catch (error) {
    log("failed:", error?.stack ?? error);
    process.exit(1);
  }
}
