/**
 * Inline executors (`--executor-mode inline`, `executorMode: "inline"`): tasks run on the
 * listener's own thread. What they still do (outcomes, retries, long arguments, cancellation and
 * timeouts of tasks that heed their signal, a graceful stop: that one is in signals_test.ts) and
 * what they cannot (stop a task that ignores its signal: it is given up, and the worker goes on).
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CancelledError, RemoteTaskError, StreamFuturePool, TaskTimeoutError } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import type { TestRedis } from "../_redis.ts";
import type { Trace } from "./_tasks.ts";
import {
  FAULT_TASKS,
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

async function inlineWorker(app: string, args: string[] = []): Promise<ChildProcessHandle> {
  const worker = await startWorker(redis, app, ["--executor-mode", "inline", ...args]);
  children.push(worker);
  return worker;
}

describe("inline executors", () => {
  faultHooks(children, (r) => (redis = r));

  it("run tasks on the worker's main thread, with outcomes, retries and long arguments", async () => {
    const app = nextApp("inl");
    const worker = await inlineWorker(app, ["--concurrency", "20"]);
    await using pool = faultPool(redis, app);
    assert.deepEqual(await pool.submit("whichThread", []), { pid: worker.pid, main: true });
    const long = "é".repeat(30_000); // set aside in Redis (docs/protocol.md, Long arguments)
    const [naps, sizes] = await Promise.all([
      Promise.all(pool.map<Trace>("nap", Array.from({ length: 100 }, (_, i) => [i % 7]))),
      Promise.all(pool.map<number>("size", [[long], ["short"], [long + long]])),
    ]);
    assert.equal(naps.length, 100);
    assert.ok(naps.every((t) => t.pid === worker.pid));
    assert.deepEqual(sizes, [30_000, 5, 60_000]);
    assert.equal(
      (await pool.submit<Trace>("flaky", [2], { retries: 2, retryOn: "error" })).attempt,
      3,
    );
    assert.equal((await pool.submit<string>("bigResult", [200_000])).length, 200_000);
    // A child task whose argument is its parent's future gets the parent's value.
    const parent = pool.submit<string>("bigResult", [12]);
    assert.equal(await pool.submit("size", [parent]), 12);
    const thrown = await pool.submit("throwNumber", []).then(() => undefined, (e) => e);
    assert.ok(thrown instanceof RemoteTaskError);
    const symbol = await pool.submit("returnSymbol", []).then(() => undefined, (e) => e);
    assert.ok(symbol instanceof RemoteTaskError, String(symbol));
    assert.match(symbol.message, /symbol/i);
    assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid);
  });

  it("cancel() of a running task that heeds its signal ends it at once", async () => {
    const app = nextApp("inlcx");
    const worker = await inlineWorker(app);
    await using pool = faultPool(redis, app);
    const file = await traceFile();
    const f = pool.submit("nap", [60_000, file]);
    await waitFor(async () => (await readTrace(file)).length === 1, "task started");
    assert.equal(await f.cancel(), true);
    await assert.rejects(f.result(), CancelledError);
    const aborted = await waitFor(
      async () => (await readTrace(file)).find((t) => t.event === "aborted"),
      "the task saw its signal abort",
    );
    assert.equal(aborted.reason, "CancelledError");
    assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid);
    assert.doesNotMatch(worker.stderr(), /cannot be stopped/);
  });

  it("a task that ignores its signal is given up after the task grace; the worker goes on", async () => {
    const app = nextApp("inlstub");
    const worker = await inlineWorker(app, ["--concurrency", "2"]);
    await using pool = faultPool(redis, app);
    const file = await traceFile();
    const f = pool.submit("stubbornNap", [3_000, file]);
    await waitFor(async () => (await readTrace(file)).length === 1, "task started");
    assert.equal(await f.cancel(), true);
    await assert.rejects(f.result(), CancelledError);
    await waitFor(
      () => worker.stderr().includes("runs inline and cannot be stopped: it was given up"),
      "the worker said it gave the task up",
    );
    // Its slot is free again: two tasks run at once while the stubborn one still sleeps.
    const both = await Promise.all([pool.submit<Trace>("nap", [50]), pool.submit("nap", [50])]);
    assert.equal(both[0].pid, worker.pid);
    assert.equal((await readTrace(file)).some((t) => t.event === "done"), false);
    // When it ends at last, its outcome is dropped: the future stays cancelled, nothing breaks.
    await waitFor(async () => (await readTrace(file)).some((t) => t.event === "done"), "it ended");
    assert.equal(f.state, "cancelled");
    assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid);
    assert.doesNotMatch(worker.stderr(), /escaped a task/);
  });

  it("a time limit ends a task that ignores its signal with TaskTimeoutError", async () => {
    const app = nextApp("inlto");
    const worker = await inlineWorker(app);
    await using pool = faultPool(redis, app);
    const f = pool.submit("stubbornNap", [3_000], { timeout: 200 });
    const error = await f.then(() => undefined, (e) => e);
    assert.ok(error instanceof TaskTimeoutError, String(error));
    assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid);
  });

  it("an error that escapes a task is logged, and the worker goes on", async () => {
    const app = nextApp("inlesc");
    const worker = await inlineWorker(app);
    await using pool = faultPool(redis, app);
    assert.equal(await pool.submit("strayThrow", []), "ok");
    await waitFor(
      () => worker.stderr().includes("an error escaped a task and was ignored"),
      "the stray error was logged",
    );
    assert.match(worker.stderr(), /thrown by a stray timer/);
    assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid);
  });

  it("a synchronous task past the heartbeat timeout: another worker runs it, the late outcome is refused", async () => {
    const app = nextApp("inlsync");
    const blocked = await inlineWorker(app);
    await using pool = faultPool(redis, app);
    const file = await traceFile();
    const f = pool.submit<Trace>("burn", [2_500, file], { retries: 1 });
    await waitFor(async () => (await readTrace(file)).length === 1, "running on the inline worker");
    const other = await startWorker(redis, app);
    children.push(other);
    const result = await f;
    assert.equal(result.pid, other.pid);
    assert.equal(result.attempt, 2);
    assert.equal(f.attempt, 2);
    // The blocked worker comes back, and serves on.
    await waitFor(
      () =>
        /outcome of task \S+ was not recorded .* no longer this worker's/.test(blocked.stderr()),
      "the blocked worker's late outcome refused",
    );
    await waitFor(
      () =>
        /event loop was held up: two heartbeats were \d+ ms apart \(due every \d+ ms/.test(
          blocked.stderr(),
        ),
      "the blocked worker said why its heartbeats were late",
    );
    assert.match(blocked.stderr(), /tasks run inline, on this thread: run CPU-bound tasks on/);
    const pids = new Set(
      (await Promise.all(Array.from({ length: 20 }, () => pool.submit<Trace>("nap", [20])))).map(
        (t) => t.pid,
      ),
    );
    assert.ok(pids.has(blocked.pid), "the formerly blocked worker runs tasks again");
  });

  it("SIGTERM past the grace period: a stubborn task does not keep the worker alive", async () => {
    const app = nextApp("inlsig2");
    const worker = await inlineWorker(app, ["--grace", "0.2"]);
    await using pool = faultPool(redis, app);
    const f = pool.submit("stubbornNap", [60_000]);
    await waitFor(() => f.running(), "running");
    worker.kill("SIGTERM");
    assert.equal((await worker.exited).code, 0);
    const error = await f.then(() => undefined, (e) => e);
    assert.ok(error instanceof RemoteTaskError, String(error));
    assert.equal(error.remoteName, "WorkerInterrupted");
  });

  it("a pool's local listeners run tasks on the pool's own thread", async () => {
    const app = nextApp("inlpool");
    await using pool = new StreamFuturePool({
      url: redis.url,
      app,
      tasks: FAULT_TASKS,
      workers: 2,
      executorMode: "inline",
    });
    const { pid } = await import("node:process");
    assert.deepEqual(await pool.submit("whichThread", []), { pid, main: true });
    const naps = await Promise.all(pool.map<Trace>("nap", Array.from({ length: 50 }, () => [1])));
    assert.ok(naps.every((t) => t.pid === pid));
  });

  it("an unknown executorMode is refused with the modes there are", () => {
    assert.throws(
      () => new StreamFuturePool({ url: redis.url, executorMode: "fiber" as "inline" }),
      {
        name: "TypeError",
        message: 'executorMode must be "thread", "process" or "inline", got "fiber"',
      },
    );
  });
});
