import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { existsSync, readFileSync } from "node:fs";
import { asCompleted, TaskTimeoutError, TimeoutError, wait } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import type { TestRedis } from "../_redis.ts";
import type { Trace } from "./_tasks.ts";
import {
  faultHooks,
  faultPool,
  nextApp,
  readTrace,
  startWorker,
  traceFile,
  waitFor,
} from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

describe("timeouts", () => {
  faultHooks(children, (r) => (redis = r));

  it("a task past its timeout sees a TimeoutError on its signal; the future rejects with TaskTimeoutError", async () => {
    const app = nextApp("tonap");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app, { keep: true });
    const started = performance.now();
    const f = pool.submit("nap", [60_000, file], { timeout: 300 });
    const error = await f.then(() => undefined, (e) => e);
    const took = performance.now() - started;
    assert.ok(error instanceof TaskTimeoutError, String(error));
    assert.equal(error.attempts, 1);
    assert.match(error.message, /ran longer than its timeout of 300 ms/);
    assert.ok(took >= 300 && took < 3_000, `rejected after ${took} ms`);
    const aborted = (await readTrace(file)).find((t) => t.event === "aborted");
    assert.equal(aborted?.reason, "TimeoutError");
    const c = await redis.client();
    assert.equal(await c.sendCommand(["HGET", `${app}:${f.id}:status`, f.id]), "3");
    assert.match(
      String(await c.sendCommand(["HGET", `${app}:${f.id}:results`, f.id])),
      /^TaskTimeoutError: /,
    );
  });

  it("a synchronous infinite loop is stopped by force; its executor is replaced and the worker goes on", async () => {
    const app = nextApp("toloop");
    const worker = await startWorker(redis, app, ["--executors", "1"]);
    children.push(worker);
    await using pool = faultPool(redis, app);
    const f = pool.submit("loopForever", [], { timeout: 200 });
    await assert.rejects(f.result(), TaskTimeoutError);
    assert.match(worker.stderr(), /terminating its executor/);
    const results = await Promise.all(pool.map<Trace>("where", [[], [], []]));
    assert.deepEqual(results.map((r) => r.pid), [worker.pid, worker.pid, worker.pid]);
  });

  it("the stopped loop really stops: it no longer runs once its executor is terminated", async () => {
    const app = nextApp("toreally");
    const file = await traceFile();
    const worker = await startWorker(redis, app);
    children.push(worker);
    await using pool = faultPool(redis, app);
    await assert.rejects(
      pool.submit("loopTicking", [file], { timeout: 200 }).result(),
      TaskTimeoutError,
    );
    const { stat } = await import("node:fs/promises");
    const size = async () => (await stat(file)).size;
    // Give a surviving loop every chance to show itself.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const before = await size();
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal(await size(), before, "the loop still runs after its executor was terminated");
  });

  it("a worker killed with SIGKILL takes its executors with it, even one stuck in a loop", async () => {
    const app = nextApp("toorphan");
    const file = await traceFile();
    const worker = await startWorker(redis, app);
    children.push(worker);
    const pool = faultPool(redis, app);
    let runner = 0;
    // Alive: exists and is not a zombie (an orphan's zombie may never be reaped in a container).
    const alive = (pid: number) => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
      } catch {
        if (existsSync("/proc/self/stat")) return false;
      }
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      pool.submit("loopTicking", [file]).catch(() => {});
      const { readFile } = await import("node:fs/promises");
      const lines = async () => (await readFile(file, "utf8")).split("\n");
      runner = Number(
        await waitFor(
          async () => (await lines()).length > 2 && (await lines())[0],
          "the loop ticks",
        ),
      );
      // (Not `await worker.exited`: that also waits for the worker's output pipes, which a
      // surviving executor would hold open.)
      worker.kill("SIGKILL");
      await waitFor(
        () => !alive(runner),
        `the process running the loop (${runner}) is gone`,
        5_000,
      );
    } finally {
      if (runner && alive(runner)) process.kill(runner, "SIGKILL");
      await pool.shutdown({ wait: false, cancelFutures: true });
    }
  });

  it("the worker's --task-timeout applies to tasks submitted without a timeout", async () => {
    const app = nextApp("todefault");
    children.push(await startWorker(redis, app, ["--task-timeout", "0.3"]));
    await using pool = faultPool(redis, app);
    await assert.rejects(pool.submit("nap", [60_000]).result(), TaskTimeoutError);
    assert.equal((await pool.submit<Trace>("nap", [10])).attempt, 1);
    // An explicit timeout wins over the worker's.
    assert.equal((await pool.submit<Trace>("nap", [600], { timeout: 5_000 })).attempt, 1);
  });

  it("a timed-out task is retried with retryOn: error", async () => {
    const app = nextApp("toretry");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const f = pool.submit("nap", [60_000, file], { timeout: 200, retries: 1, retryOn: "error" });
    const error = await f.then(() => undefined, (e) => e);
    assert.ok(error instanceof TaskTimeoutError);
    assert.equal(error.attempts, 2);
    const starts = (await readTrace(file)).filter((t) => t.event === "start");
    assert.deepEqual(starts.map((t) => t.attempt), [1, 2]);
  });

  it("client-side waits reject with TimeoutError and leave the task alone", async () => {
    const app = nextApp("towait");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const f = pool.submit<Trace>("nap", [700, file]);
    await assert.rejects(f.result({ timeout: 50 }), TimeoutError);
    await assert.rejects(wait([f], { timeout: 50 }), TimeoutError);
    await assert.rejects(async () => {
      for await (const _ of asCompleted([f], { timeout: 50 })) {
        // none completes in time
      }
    }, TimeoutError);
    assert.equal((await f).attempt, 1, "the task went on and completed");
    assert.deepEqual((await readTrace(file)).map((t) => t.event), ["start", "done"]);
  });
});
