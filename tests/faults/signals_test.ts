import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { NoWorkersError, RemoteTaskError } from "../../mod.ts";
import process from "node:process";
import { type ChildProcessHandle, spawnProcess, workerCommand } from "../../lib/_runtime.ts";
import type { TestRedis } from "../_redis.ts";
import type { Trace } from "./_tasks.ts";
import {
  faultHooks,
  faultPool,
  faultWorkerArgs,
  nextApp,
  readTrace,
  startWorker,
  traceFile,
  waitFor,
} from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

describe("signals", () => {
  faultHooks(children, (r) => (redis = r));

  it("SIGTERM: no new work at once; past --grace an interrupted task with retries goes to another worker", async () => {
    const app = nextApp("sigretry");
    const file = await traceFile();
    const first = await startWorker(redis, app, ["--grace", "0.5"]);
    children.push(first);
    await using pool = faultPool(redis, app);
    // Longer than the grace period, short enough for attempt 2 to finish soon.
    const f = pool.submit<Trace>("nap", [2_000, file], { retries: 1 });
    await waitFor(async () => (await readTrace(file)).length === 1, "attempt 1 started");
    first.kill("SIGTERM");
    // While it lets its task finish, the stopping worker is no longer live for new work.
    await waitFor(
      () =>
        pool.submit("where", []).then(
          () => false,
          (e) => e instanceof NoWorkersError,
        ),
      "NoWorkersError while the only worker is stopping",
    );
    const second = await startWorker(redis, app);
    children.push(second);
    const result = await f;
    assert.equal(result.attempt, 2);
    assert.equal(result.pid, second.pid);
    assert.equal((await first.exited).code, 0);
    const aborted = (await readTrace(file)).find((t) => t.event === "aborted");
    assert.equal(aborted?.reason, "WorkerInterrupted");
    assert.match(first.stderr(), /interrupting 1 task\(s\) \(SIGTERM\)/);
  });

  for (const [mode, args] of [["", []], [", inline executors", ["--executor-mode", "inline"]]]) {
    it(`SIGTERM: a task that finishes within the grace period completes normally${mode}`, async () => {
      const app = nextApp("siggrace");
      const worker = await startWorker(redis, app, ["--grace", "5", ...args]);
      children.push(worker);
      await using pool = faultPool(redis, app);
      const f = pool.submit<Trace>("nap", [400]);
      await waitFor(() => f.running(), "running");
      worker.kill("SIGTERM");
      assert.equal((await f).pid, worker.pid);
      assert.equal((await worker.exited).code, 0);
    });
  }

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`${signal} to the worker's whole process group (a terminal's Ctrl-C): running tasks still get --grace`, async () => {
      const app = nextApp("siggroup");
      // setsid: the worker leads a process group of its own, which its executors join.
      const worker = await spawnProcess("setsid", [
        ...workerCommand(),
        ...faultWorkerArgs(redis, app),
        "--grace",
        "20",
      ]);
      children.push(worker);
      await waitFor(() => worker.stderr().includes("streamfutures-worker: ready"), "ready", 30_000);
      await using pool = faultPool(redis, app);
      const futures = [pool.submit<Trace>("nap", [1_500]), pool.submit<Trace>("nap", [1_500])];
      await waitFor(() => futures.every((f) => f.running()), "both running");
      process.kill(-worker.pid, signal);
      for (const f of futures) assert.equal((await f).pid, worker.pid);
      assert.equal((await worker.exited).code, 0);
      assert.match(worker.stderr(), new RegExp(`${signal}`));
      assert.doesNotMatch(worker.stderr(), /executor \d+ died/);
    });
  }

  it("SIGINT past the grace period without retries: WorkerInterrupted, dead-lettered", async () => {
    const app = nextApp("sigint");
    const worker = await startWorker(redis, app, ["--grace", "0.2"]);
    children.push(worker);
    await using pool = faultPool(redis, app);
    const f = pool.submit("nap", [60_000]);
    await waitFor(() => f.running(), "running");
    worker.kill("SIGINT");
    const error = await f.then(() => undefined, (e) => e);
    assert.ok(error instanceof RemoteTaskError);
    assert.equal(error.remoteName, "WorkerInterrupted");
    assert.equal(error.message, "SIGINT");
    const c = await redis.client();
    const dead = await c.sendCommand(["XRANGE", `${app}:dead`, "-", "+"]) as [string, string[]][];
    const fields = dead[0][1];
    assert.equal(fields[fields.indexOf("reason") + 1], "interrupted");
  });

  it("a second SIGINT exits at once", async () => {
    const app = nextApp("sigtwice");
    const worker = await startWorker(redis, app, ["--grace", "60"]);
    children.push(worker);
    await using pool = faultPool(redis, app);
    const f = pool.submit("nap", [60_000]);
    await waitFor(() => f.running(), "running");
    worker.kill("SIGINT");
    // The first SIGINT has been handled once the worker left the registry.
    const c = await redis.client();
    await waitFor(
      async () => await c.sendCommand(["ZCARD", `${app}:listeners:default`]) === 0,
      "the first SIGINT handled",
    );
    const sent = performance.now();
    worker.kill("SIGINT");
    const status = await worker.exited;
    assert.equal(status.code, 130);
    assert.ok(performance.now() - sent < 2_000, "exited at once");
    await f.cancel();
  });
});
