/**
 * Shared set-up of the fault tests: worker processes and pools with short heartbeats (200 ms,
 * lost after 1 s) so that faults are detected quickly, trace files, and Redis helpers.
 *
 * @module
 */

import { after, afterEach, before } from "node:test";
import { StreamFuturePool } from "../../mod.ts";
import type { PoolOptions } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import {
  startRedis,
  startWorkerProcess,
  type TestRedis,
  type TestRedisOptions,
  waitFor,
} from "../_redis.ts";

export { waitFor };

/** The fault tests' task module. */
export const FAULT_TASKS: URL = new URL("./_tasks.ts", import.meta.url);

/** Heartbeat interval of the fault tests, ms. */
export const BEAT = 200;
/** Heartbeat timeout of the fault tests, ms. */
export const LOST_AFTER = 1000;

let apps = 0;
/** A fresh app name (key prefix) per test. */
export function nextApp(prefix: string): string {
  return `${prefix}${apps++}`;
}

/**
 * What every fault suite does around its tests, registered from inside its `describe`: a private
 * redis-server started before them (handed to `use`) and stopped after them; after each test, the
 * worker processes left in `children` are killed and the trace files removed.
 */
export function faultHooks(
  children: ChildProcessHandle[],
  use: (redis: TestRedis) => void,
  options?: TestRedisOptions,
): void {
  let redis: TestRedis | undefined;
  before(async () => {
    use(redis = await startRedis(options));
  });
  afterEach(async () => {
    await killAll(children);
    await cleanTraces();
  });
  after(async () => {
    await redis?.stop();
  });
}

/** The worker arguments that serve the fault tasks of `app` from `redis`. */
export function faultWorkerArgs(redis: TestRedis, app: string): string[] {
  return ["--tasks", FAULT_TASKS.href, "--url", redis.url, "--app", app];
}

/** Starts a worker process serving the fault tasks with short heartbeats. */
export function startWorker(
  redis: TestRedis,
  app: string,
  args: string[] = [],
  env?: Record<string, string>,
): Promise<ChildProcessHandle> {
  return startWorkerProcess(
    [
      ...faultWorkerArgs(redis, app),
      "--heartbeat-interval",
      String(BEAT / 1000),
      "--heartbeat-timeout",
      String(LOST_AFTER / 1000),
      "--task-grace",
      "0.5",
      ...args,
    ],
    undefined,
    env,
  );
}

/** A pool (no local listeners) for the fault tasks with the tests' heartbeat settings. */
export function faultPool(redis: TestRedis, app: string, options: PoolOptions = {}) {
  return new StreamFuturePool({
    url: redis.url,
    app,
    tasks: FAULT_TASKS,
    heartbeatInterval: BEAT,
    heartbeatTimeout: LOST_AFTER,
    ...options,
  });
}

/** A fresh trace file path in a temp dir (removed by {@link cleanTraces}). */
export async function traceFile(): Promise<string> {
  const { mkdtemp } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  traceDirs.push(await mkdtemp(join(tmpdir(), "streamfutures-trace-")));
  return join(traceDirs[traceDirs.length - 1], "trace.jsonl");
}
const traceDirs: string[] = [];

/** Removes the trace files' directories. */
export async function cleanTraces(): Promise<void> {
  const { rm } = await import("node:fs/promises");
  await Promise.all(traceDirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** One line of a trace file. */
export interface TraceLine {
  event: string;
  at: number;
  pid: number;
  attempt: number;
  taskId: string;
  reason?: string;
}

/** The lines of a trace file so far (none when it does not exist yet). */
export async function readTrace(file: string): Promise<TraceLine[]> {
  const { readFile } = await import("node:fs/promises");
  try {
    const text = await readFile(file, "utf8");
    return text.split("\n").filter(Boolean).map((line) => JSON.parse(line));
  } catch {
    return [];
  }
}

/** Kills worker processes still running at the end of a test. */
export async function killAll(children: ChildProcessHandle[]): Promise<void> {
  for (const child of children.splice(0)) {
    child.kill("SIGCONT");
    child.kill("SIGKILL");
    await child.exited;
  }
}

/** Starts a module of the tests as a process of this runtime (`deno run -A` or `node`). */
export async function startScript(module: URL, args: string[]): Promise<ChildProcessHandle> {
  const { isDeno, siblingUrl, spawnProcess } = await import("../../lib/_runtime.ts");
  const { fileURLToPath } = await import("node:url");
  const process = (await import("node:process")).default;
  const path = fileURLToPath(siblingUrl(module));
  return spawnProcess(process.execPath, isDeno ? ["run", "-A", path, ...args] : [path, ...args]);
}
