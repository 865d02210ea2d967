import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  RemoteTaskError,
  type StreamFuturePool,
  TaskTimeoutError,
  WorkerLostError,
} from "../../mod.ts";
import { type ChildProcessHandle, isDeno } from "../../lib/_runtime.ts";
import type { TestRedis } from "../_redis.ts";
import type { Trace } from "./_tasks.ts";
import { faultHooks, faultPool, nextApp, startWorker, waitFor } from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];
const pools: StreamFuturePool[] = [];

/** Keeps a pool to shut down after the test without waiting for its futures (a failed test). */
function open(pool: StreamFuturePool): StreamFuturePool {
  pools.push(pool);
  return pool;
}

/** The error a future rejects with. */
async function failure(f: PromiseLike<unknown>): Promise<unknown> {
  const error = await Promise.resolve(f).then(() => undefined, (e) => e);
  assert.ok(error, "expected the future to fail");
  return error;
}

/** The ways a task can end its executor here, in each executor mode that has one of its own. */
const exits: [mode: string, how: string][] = [
  ["thread", "process"],
  ...(isDeno ? [["thread", "deno"], ["process", "process"], ["process", "deno"]] : []) as [
    string,
    string,
  ][],
];

describe("executors that exit or fail to start: the task fails, the worker goes on", () => {
  faultHooks(children, (r) => (redis = r));
  afterEach(async () => {
    for (const pool of pools.splice(0)) {
      await pool.shutdown({ cancelFutures: true }).catch(() => {});
    }
  });

  for (const [mode, how] of exits) {
    it(`${how}.exit() in a task on a ${mode} executor: WorkerLostError, the executor is replaced`, async () => {
      const app = nextApp(`exit${mode}${how}`);
      const worker = await startWorker(redis, app, ["--executor-mode", mode, "--executors", "1"]);
      children.push(worker);
      const pool = open(faultPool(redis, app));
      assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid);
      const error = await failure(
        pool.submit("exitExecutor", [how, 3]).result({ timeout: 15_000 }),
      );
      assert.ok(error instanceof WorkerLostError, `expected a WorkerLostError, got ${error}`);
      assert.match((error as Error).message, /executor/);
      // The replacement runs what comes next, in the same worker.
      const after = await Promise.all(
        Array.from(
          { length: 4 },
          () => pool.submit<Trace>("where", []).result({ timeout: 15_000 }),
        ),
      );
      for (const trace of after) assert.equal(trace.pid, worker.pid, "the worker goes on");
      assert.match(worker.stderr(), /executor 0 died .*exited \(code 3/);
    });
  }

  const restarts = (isDeno ? ["thread", "process"] : ["thread"]).flatMap((mode) =>
    [1, 2].map((executors) => [mode, executors] as const)
  );
  for (const [mode, executors] of restarts) {
    it(`a ${mode} executor whose restart fails is tried again (${executors} executor(s)); no task hangs`, async () => {
      const app = nextApp(`restart${mode}${executors}`);
      const { mkdtemp, rm, writeFile } = await import("node:fs/promises");
      const { tmpdir } = await import("node:os");
      const { join } = await import("node:path");
      const dir = await mkdtemp(join(tmpdir(), "streamfutures-flag-"));
      try {
        const flag = join(dir, "fail-load");
        const worker = await startWorker(
          redis,
          app,
          ["--executor-mode", mode, "--executors", String(executors)],
          { STREAMFUTURES_TEST_FAIL_LOAD: flag },
        );
        children.push(worker);
        const pool = open(faultPool(redis, app));
        assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid);
        // From now on a new executor cannot load the task modules. A task that ignores its time
        // limit has its executor terminated and replaced.
        await writeFile(flag, "x");
        const error = await failure(
          pool.submit("stubbornNap", [60_000], { timeout: 200 }).result({ timeout: 15_000 }),
        );
        assert.ok(error instanceof TaskTimeoutError, `expected a TaskTimeoutError, got ${error}`);
        await waitFor(
          () => /could not restart executor 0 .*fail to load on purpose/.test(worker.stderr()),
          "a failed restart",
        );
        // Meanwhile: with another executor ready, tasks run there; with none, they fail (lost)
        // rather than wait forever for an executor that does not come.
        const meanwhile = await Promise.all(
          Array.from(
            { length: 4 },
            () =>
              pool.submit<Trace>("where", []).result({ timeout: 15_000 }).then(
                (trace) => trace.pid,
                (e) => e,
              ),
          ),
        );
        for (const outcome of meanwhile) {
          if (executors > 1) assert.equal(outcome, worker.pid);
          else assert.ok(outcome instanceof WorkerLostError, `expected lost, got ${outcome}`);
        }
        // Once the modules load again, the executor comes back.
        await rm(flag);
        await waitFor(
          async () => {
            const traces = await Promise.all(
              Array.from({ length: 4 }, () => pool.submit<Trace>("where", []).result()),
            );
            return traces.every((t) => t.pid === worker.pid);
          },
          "tasks running again",
          20_000,
        );
        // Every executor serves again: tasks submitted together spread over all of them.
        await waitFor(
          async () => {
            const threads = await Promise.all(
              Array.from(
                { length: 2 * executors },
                () => pool.submit<string>("napExecutor", [300]).result(),
              ),
            );
            return new Set(threads).size === executors;
          },
          `tasks on all ${executors} executor(s)`,
          20_000,
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  it("a huge error message is cut with a marker; the worker goes on", async () => {
    const app = nextApp("hugeerror");
    const worker = await startWorker(redis, app, ["--executors", "1"]);
    children.push(worker);
    const pool = open(faultPool(redis, app));
    const chars = 5 * 1024 * 1024;
    const error = await failure(pool.submit("throwHuge", [chars]).result({ timeout: 15_000 }));
    assert.ok(error instanceof RemoteTaskError, `expected a RemoteTaskError, got ${error}`);
    assert.equal(error.remoteName, "Error");
    assert.ok(error.message.length < 70_000, `message of ${error.message.length} characters`);
    assert.ok(error.message.startsWith("m".repeat(1000)));
    assert.ok(
      error.message.endsWith(`… (truncated: ${chars} characters in all)`),
      error.message.slice(-100),
    );
    // The stack is cut too, and keeps its frames.
    const stack = error.remoteStack ?? "";
    assert.ok(stack.length < 70_000, `stack of ${stack.length} characters`);
    assert.ok(
      /^Error: m+… \(truncated: 5242880 characters in all\)\n\s+at /.test(stack),
      stack.slice(0, 100) + " ... " + stack.slice(-300),
    );
    // Redis holds the short form only.
    const c = await redis.client();
    let bytes = 0;
    for (const key of (await c.sendCommand(["KEYS", `${app}:*`])) as string[]) {
      bytes += Number(await c.sendCommand(["MEMORY", "USAGE", key]));
    }
    assert.ok(bytes < 1_000_000, `the app's keys take ${bytes} bytes in Redis`);
    assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid, "the worker goes on");
  });
});
