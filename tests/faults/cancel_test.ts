import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CancelledError, type StreamFuturePool } from "../../mod.ts";
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

/**
 * Runs `loopForever`, cancels it, and waits until the worker has terminated the executor stuck in
 * it; then checks that the worker serves on.
 */
async function cancelLoop(
  pool: StreamFuturePool,
  worker: ChildProcessHandle,
  file: string,
): Promise<void> {
  const f = pool.submit("loopForever", [file]);
  await waitFor(async () => (await readTrace(file)).length === 1, "loop started");
  assert.equal(await f.cancel(), true);
  await waitFor(
    () => worker.stderr().includes("terminating its executor"),
    "the executor terminated after the task grace period",
  );
  assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid);
}

describe("cancellation across the stream", () => {
  faultHooks(children, (r) => (redis = r));

  it("cancel() of a running task aborts its signal on the worker within 100 ms", async () => {
    const app = nextApp("cxrun");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app, { keep: true });
    const c = await redis.client();
    for (let round = 0; round < 3; round++) {
      const file = await traceFile();
      const f = pool.submit<Trace>("nap", [60_000, file]);
      await waitFor(async () => (await readTrace(file)).length === 1, "task started");
      const asked = Date.now();
      assert.equal(await f.cancel(), true);
      const aborted = await waitFor(
        async () => (await readTrace(file)).find((t) => t.event === "aborted"),
        "the task saw its signal abort",
      );
      assert.equal(aborted.reason, "CancelledError");
      assert.ok(aborted.at - asked <= 100, `aborted ${aborted.at - asked} ms after cancel()`);
      await assert.rejects(f.result(), CancelledError);
      assert.equal(f.state, "cancelled");
      assert.equal(await c.sendCommand(["HGET", `${app}:${f.id}:status`, f.id]), "4");
      assert.match(
        String(await c.sendCommand(["HGET", `${app}:${f.id}:results`, f.id])),
        /^CancelledError: /,
      );
    }
  });

  it("a pending task never runs; a finished task cannot be cancelled", async () => {
    const app = nextApp("cxpend");
    const file = await traceFile();
    children.push(await startWorker(redis, app, ["--concurrency", "1"]));
    await using pool = faultPool(redis, app);
    const blocker = pool.submit("nap", [300]);
    await waitFor(() => blocker.running(), "blocker running");
    const queued = pool.submit("touch", [file, "ran"]);
    assert.equal(await queued.cancel(), true);
    await assert.rejects(queued.result(), CancelledError);
    await blocker;
    const done = pool.submit<Trace>("where", []);
    await done;
    assert.equal(await done.cancel(), false);
    assert.equal(done.state, "finished");
    assert.deepEqual(await readTrace(file), [], "the cancelled task never ran");
    const { existsSync } = await import("node:fs");
    assert.equal(existsSync(file), false);
  });

  it("a task that ignores its signal is terminated after the grace period; the worker goes on", async () => {
    const app = nextApp("cxloop");
    const file = await traceFile();
    const worker = await startWorker(redis, app, ["--executors", "1"]);
    children.push(worker);
    await using pool = faultPool(redis, app);
    // The worker gets a new executor and goes on serving; what its tasks print is its output.
    await cancelLoop(pool, worker, file);
    assert.equal(await pool.submit("say", ["printed by a task"]), "printed by a task");
    await waitFor(() => worker.stdout().includes("printed by a task\n"), "the task's output");
    const ignoring = await traceFile();
    const g = pool.submit("stubbornNap", [60_000, ignoring]);
    await waitFor(async () => (await readTrace(ignoring)).length === 1, "stubborn task started");
    await g.cancel();
    await waitFor(
      async () => (await readTrace(ignoring)).some((t) => t.event === "aborted"),
      "the stubborn task saw the abort",
    );
    assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid);
    assert.equal(
      (await readTrace(ignoring)).filter((t) => t.event === "done").length,
      0,
      "the stubborn task was stopped, not left running",
    );
  });

  it("executor processes without a Unix socket (a temp dir too long for one) talk over pipes", async () => {
    // Where Unix sockets are not available (Windows, or a TMPDIR too long for a socket path), an
    // executor process gets its messages on stdin / stdout instead. Deno only: Node's executors
    // are threads.
    if (!("Deno" in globalThis)) return;
    const { mkdtemp, mkdir, readdir, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const base = await mkdtemp(join(tmpdir(), "sf-long-"));
    const long = join(base, "d".repeat(120));
    await mkdir(long);
    try {
      const app = nextApp("cxpipe");
      const file = await traceFile();
      const worker = await startWorker(redis, app, ["--executors", "1"], { TMPDIR: long });
      children.push(worker);
      await using pool = faultPool(redis, app);
      assert.deepEqual(
        (await Promise.all(pool.map<Trace>("where", [[], [], []]))).map((t) => t.pid),
        [worker.pid, worker.pid, worker.pid],
      );
      assert.equal(await pool.submit("say", ["printed over a pipe"]), "printed over a pipe");
      await waitFor(() => worker.stdout().includes("printed over a pipe\n"), "the task's output");
      await cancelLoop(pool, worker, file);
      assert.deepEqual(await readdir(long), [], "no socket directory left behind");
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it("an aborted submit signal and disposing a future cancel running tasks too", async () => {
    const app = nextApp("cxsig");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const file = await traceFile();
    const controller = new AbortController();
    const fs = pool.map("nap", [[60_000, file], [60_000, file]], { signal: controller.signal });
    await waitFor(async () => (await readTrace(file)).length === 2, "both started");
    controller.abort(new Error("user pressed stop"));
    for (const f of fs) {
      const error = await f.then(() => undefined, (e) => e);
      assert.ok(error instanceof CancelledError);
      assert.equal((error.cause as Error).message, "user pressed stop");
    }
    await waitFor(
      async () => (await readTrace(file)).filter((t) => t.event === "aborted").length === 2,
      "both aborted on the worker",
    );

    const other = await traceFile();
    {
      await using _f = pool.submit("nap", [60_000, other]);
      await waitFor(async () => (await readTrace(other)).length === 1, "started");
    }
    await waitFor(
      async () => (await readTrace(other)).some((t) => t.event === "aborted"),
      "disposing the future aborted the task",
    );
  });
});
