/**
 * Shared set-up of the composition tests: worker processes serving their task module, pools,
 * trace files.
 *
 * @module
 */

import { StreamFuturePool } from "../../mod.ts";
import type { PoolOptions } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import { startWorkerProcess, type TestRedis, waitFor } from "../_redis.ts";

export { waitFor };

/** The composition tests' task module. */
export const TASKS: URL = new URL("./_tasks.ts", import.meta.url);

let apps = 0;
/** A fresh app name (key prefix) per test. */
export function nextApp(prefix: string): string {
  return `${prefix}${apps++}`;
}

/** Starts a worker process serving the composition tasks. */
export function startWorker(
  redis: TestRedis,
  app: string,
  args: string[] = [],
): Promise<ChildProcessHandle> {
  return startWorkerProcess(["--tasks", TASKS.href, "--url", redis.url, "--app", app, ...args]);
}

/** A pool (no local listeners) for the composition tasks. */
export function pool(redis: TestRedis, app: string, options: PoolOptions = {}) {
  return new StreamFuturePool({ url: redis.url, app, tasks: TASKS, ...options });
}

const dirs: string[] = [];
/** A fresh trace file path. */
export async function traceFile(): Promise<string> {
  const { mkdtemp } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  dirs.push(await mkdtemp(join(tmpdir(), "streamfutures-trace-")));
  return join(dirs[dirs.length - 1], "trace.jsonl");
}

/** One line of a trace file. */
export interface TraceLine {
  label: string;
  at: number;
  pid: number;
  taskId: string;
  operationId: string;
  queue: string;
  value?: unknown;
  who?: string;
  values?: number[];
}

/** The lines of a trace file (none when it does not exist yet). */
export async function readTrace(file: string): Promise<TraceLine[]> {
  const { readFile } = await import("node:fs/promises");
  try {
    return (await readFile(file, "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l));
  } catch {
    return [];
  }
}

/** Kills worker processes and removes trace files at the end of a test. */
export async function cleanUp(children: ChildProcessHandle[]): Promise<void> {
  const { rm } = await import("node:fs/promises");
  for (const child of children.splice(0)) {
    child.kill("SIGKILL");
    await child.exited;
  }
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}
