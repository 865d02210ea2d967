import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CancelledError, ConnectionError, StreamFuturePool } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import { startRedis, startWorkerProcess, type TestRedis } from "../_redis.ts";
import type { Trace } from "./_tasks.ts";
import { startLossyProxy } from "./_proxy.ts";
import { TAKE } from "../../lib/_lua/take.ts";
import { COMMAND_TIMEOUT, connect, isConnectionError } from "../../lib/_redis.ts";
import { TimeoutError as RedisTimeoutError } from "redis";
import { SUBMIT_SOLO } from "../../lib/_lua/submit.ts";
import { createHash } from "node:crypto";
import {
  FAULT_TASKS,
  faultHooks,
  faultPool,
  faultWorkerArgs,
  nextApp,
  readTrace,
  startScript,
  startWorker,
  traceFile,
  waitFor,
} from "./_setup.ts";

const children: ChildProcessHandle[] = [];

describe("Redis faults", () => {
  let redis: TestRedis;

  /**
   * Loads TAKE into the test Redis; returns its SHA1, which marks the worker's calls of it (its
   * function's name holds it).
   */
  async function loadTake(): Promise<string> {
    await TAKE.load(await redis.client());
    return createHash("sha1").update(TAKE.source).digest("hex");
  }
  faultHooks(children, (r) => (redis = r), { aof: true });

  it("a map running across a Redis restart (AOF, appendfsync always) completes with zero lost tasks", async () => {
    const app = nextApp("aof");
    // Heartbeats tolerant of the outage: a restart must not look like dead workers.
    const args = (
      id: string,
    ) => [...faultWorkerArgs(redis, app), "--id", id, "--concurrency", "16"];
    children.push(await startWorkerProcess(args("w1")), await startWorkerProcess(args("w2")));
    await using pool = new StreamFuturePool({ url: redis.url, app, tasks: FAULT_TASKS });
    const n = 3_000;
    const futures = pool.map<Trace>("nap", Array.from({ length: n }, (_, i) => [(i % 7) * 3]));
    let done = 0;
    for (const f of futures) f.addDoneCallback(() => done++);
    await waitFor(() => done >= n / 4, "a quarter done", 30_000);
    await redis.restart("SIGKILL");
    const settled = await Promise.allSettled(futures);
    const failed = settled.filter((s) => s.status === "rejected");
    assert.equal(failed.length, 0, `failed: ${failed.slice(0, 3).map((s) => String(s.reason))}`);
    assert.equal(new Set(futures.map((f) => f.id)).size, n);
    assert.ok(done === n);
  });

  it("workers SIGKILLed and replaced and Redis SIGKILLed twice, all during one map: every future gets its own task's result", async () => {
    const app = nextApp("chaos");
    const workers: ChildProcessHandle[] = [];
    for (let i = 0; i < 3; i++) {
      workers.push(await startWorker(redis, app, ["--concurrency", "10"]));
    }
    children.push(...workers);
    await using pool = faultPool(redis, app, { retries: 20 });
    // Enough work that the run outlasts the faults however fast the workers are: each fault takes
    // a worker's start or a Redis restart (up to a second or so) while the rest go on.
    const n = 6_000;
    const futures = pool.map<Trace>("nap", Array.from({ length: n }, (_, i) => [10 + (i % 20)]));
    let done = 0;
    for (const f of futures) f.addDoneCallback(() => done++);
    /** Kills worker `i` with SIGKILL and starts a replacement. */
    const replace = async (i: number) => {
      workers[i].kill("SIGKILL");
      await workers[i].exited;
      workers[i] = await startWorker(redis, app, ["--concurrency", "10"]);
      children.push(workers[i]);
    };
    // Each fault once the run is far enough along that it strikes tasks in every state.
    const faults: [number, () => Promise<void>][] = [
      [0.05, () => replace(0)],
      [0.15, () => redis.restart("SIGKILL")],
      [0.25, () => replace(1)],
      [0.3, () => replace(2)],
      [0.4, () => redis.restart("SIGKILL")],
      [0.5, () => replace(0)],
    ];
    for (const [share, fault] of faults) {
      await waitFor(() => done >= n * share, `${share * 100} % settled`, 60_000);
      assert.ok(done < n, "the run ended before its faults");
      await fault();
    }
    const settled = await Promise.allSettled(futures);
    const failed = settled.filter((s) => s.status === "rejected");
    assert.equal(failed.length, 0, `failed: ${failed.slice(0, 3).map((s) => String(s.reason))}`);
    settled.forEach((s, i) => {
      assert.equal((s as PromiseFulfilledResult<Trace>).value.taskId, futures[i].id);
    });
    assert.ok(
      settled.some((s) => (s as PromiseFulfilledResult<Trace>).value.attempt > 1),
      "some task ran again after a fault",
    );
  });

  it("Redis down longer than reconnectDeadline: futures and submits fail with ConnectionError", async () => {
    const app = nextApp("down");
    children.push(await startWorker(redis, app));
    const pool = faultPool(redis, app, { reconnectDeadline: 1_000 });
    const f = pool.submit("nap", [60_000]);
    await waitFor(() => f.running(), "running");
    await redis.kill();
    const started = performance.now();
    const error = await f.then(() => undefined, (e) => e);
    const took = performance.now() - started;
    assert.ok(error instanceof ConnectionError, String(error));
    // Within reconnectDeadline and a little: commands sent while Redis is down wait at most that.
    assert.ok(took >= 900 && took < 2_500, `failed after ${took} ms`);
    const submitted = performance.now();
    await assert.rejects(pool.submit("where", []).result(), ConnectionError);
    const submitTook = performance.now() - submitted;
    assert.ok(submitTook < 2_500, `the submit failed after ${submitTook} ms`);
    await redis.start();
    // Back up: the same pool works again.
    await waitFor(
      async () => {
        const r = await pool.submit<Trace>("where", []).result({ timeout: 2_000 });
        return r.attempt === 1;
      },
      "the pool works again after Redis came back",
      20_000,
    );
    await pool.shutdown({ cancelFutures: true });
  });

  it("the consumer group is re-created when it goes missing", async () => {
    const app = nextApp("nogroup");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app, { requireWorkers: false });
    assert.equal((await pool.submit<Trace>("where", [])).attempt, 1);
    const c = await redis.client();
    await c.sendCommand(["DEL", `${app}:queue:default`]);
    await waitFor(async () => {
      const groups = await c.sendCommand(["XINFO", "GROUPS", `${app}:queue:default`]);
      return Array.isArray(groups) && groups.length === 1;
    }, "the worker re-created stream and group");
    assert.equal((await pool.submit<Trace>("where", [])).attempt, 1);
  });

  it("Redis back without its data: lost futures fail with TaskNotFoundError, new work is answered, shutdown ends", async () => {
    const app = nextApp("dataloss");
    const worker = await startWorker(redis, app);
    children.push(worker);
    const pool = faultPool(redis, app, { requireWorkers: false });
    const running = pool.submit("nap", [60_000]);
    const delayed = pool.submit("where", [], { delay: 60_000 });
    await waitFor(() => running.running(), "running");
    // A restart that lost everything (persistence files gone).
    await redis.kill("SIGKILL");
    const { rm } = await import("node:fs/promises");
    const { join } = await import("node:path");
    await rm(join(redis.dir, "appendonlydir"), { recursive: true, force: true });
    await redis.start();
    // The running task's future learns it from its started-task check, the other from the
    // check that follows an outage.
    await assert.rejects(running.result({ timeout: 20_000 }), { name: "TaskNotFoundError" });
    await assert.rejects(delayed.result({ timeout: 20_000 }), {
      name: "TaskNotFoundError",
      message: /is gone from Redis: its keys vanished while Redis was unreachable/,
    });
    assert.equal(
      (await pool.submit<Trace>("where", []).result({ timeout: 20_000 })).pid,
      worker.pid,
    );
    // A flush without a disconnect: the next submit makes the reply stream again; a cancel of a
    // task Redis no longer knows settles it, so shutdown with cancelFutures ends.
    const vanishing = pool.submit("where", [], { delay: 60_000 });
    await pool.submit("where", []);
    const c = await redis.client();
    await c.sendCommand(["FLUSHALL"]);
    assert.equal(
      (await pool.submit<Trace>("where", []).result({ timeout: 20_000 })).pid,
      worker.pid,
    );
    await pool.shutdown({ cancelFutures: true });
    assert.ok(vanishing.cancelled());
  });

  it("a read whose reply is lost: the tasks it took are claimed and run once, none is lost", async () => {
    const app = nextApp("lostreply");
    const file = await traceFile();
    // The proxy loses the reply to the worker's first TAKE (read and claim) while work waits.
    const sha = await loadTake();
    const proxy = await startLossyProxy(redis.port);
    try {
      const worker = await startWorker(
        { ...redis, url: proxy.url },
        app,
        ["--concurrency", "4", "--log-level", "info"],
      );
      children.push(worker);
      await using pool = faultPool(redis, app); // no retries: a lost task would fail
      const lost = proxy.loseReplyTo(sha);
      const futures = pool.map<Trace>("nap", Array.from({ length: 100 }, () => [5, file]));
      await lost;
      const results = await Promise.all(futures);
      assert.equal(results.length, 100);
      const starts = new Map<string, number>();
      for (const line of await readTrace(file)) {
        if (line.event === "start") starts.set(line.taskId, (starts.get(line.taskId) ?? 0) + 1);
      }
      assert.equal(starts.size, 100);
      assert.deepEqual([...new Set(starts.values())], [1], "every task ran exactly once");
      assert.match(worker.stderr(), /claiming \d+ task\(s\) read by a call whose reply was lost/);
    } finally {
      await proxy.close();
    }
  });

  it("submits whose reply is lost: the call goes again and writes nothing twice", async () => {
    const app = nextApp("lostsubmit");
    const file = await traceFile();
    const proxy = await startLossyProxy(redis.port);
    try {
      children.push(await startWorker(redis, app, ["--concurrency", "8"]));
      await using pool = faultPool({ ...redis, url: proxy.url }, app);
      await pool.ready(); // the submit scripts are loaded: the marker now means a call
      const sha = createHash("sha1").update(SUBMIT_SOLO.source).digest("hex");
      const calls = proxy.count(sha);
      const lost = proxy.loseReplyTo(sha);
      const futures = Array.from({ length: 50 }, () => pool.submit<Trace>("nap", [5, file]));
      await lost;
      const results = await Promise.all(futures);
      assert.equal(results.length, 50);
      // The results may arrive (on the reply stream) before the call goes again.
      await waitFor(() => calls() >= 2, "the call to go again");
      // Submitted after the repeated call, so queued behind anything it could have written twice.
      const marker = await pool.submit<Trace>("nap", [1]);
      const starts = new Map<string, number>();
      for (const line of await readTrace(file)) {
        if (line.event === "start") starts.set(line.taskId, (starts.get(line.taskId) ?? 0) + 1);
      }
      assert.ok(!starts.has(marker.taskId));
      assert.deepEqual([...starts.keys()].sort(), futures.map((f) => f.id).sort());
      assert.deepEqual([...new Set(starts.values())], [1], "every task ran exactly once");
    } finally {
      await proxy.close();
    }
  });

  it("one task at a time: a blocking read each, no TAKE; a backlog: TAKE after the first, none empty", async () => {
    const app = nextApp("takes");
    const sha = await loadTake();
    const proxy = await startLossyProxy(redis.port);
    try {
      children.push(await startWorker({ ...redis, url: proxy.url }, app, ["--concurrency", "1"]));
      await using pool = faultPool(redis, app);
      const takes = proxy.count(sha);
      // Each read fills its count of one, but START finds nothing after the task: the worker
      // blocks again rather than asking TAKE first.
      for (let i = 0; i < 20; i++) assert.equal((await pool.submit<Trace>("nap", [0])).attempt, 1);
      assert.equal(takes(), 0, "no TAKE for tasks that come one at a time");
      // 20 tasks at once: the first by the blocking read (whose START sees more), the other 19
      // by one TAKE each; the last TAKE drains the stream and says so (no empty TAKE after it).
      const results = await Promise.all(
        pool.map<Trace>("nap", Array.from({ length: 20 }, () => [0])),
      );
      assert.equal(results.length, 20);
      assert.equal(takes(), 19);
    } finally {
      await proxy.close();
    }
  });

  it("a cancel that arrives while the read that starts the task is in flight stops it at once", async () => {
    const app = nextApp("cxtake");
    const file = await traceFile();
    const sha = await loadTake();
    const proxy = await startLossyProxy(redis.port);
    try {
      // Heartbeats 10 s apart: only the cancel notice can stop the task soon after it starts.
      const worker = await startWorker({ ...redis, url: proxy.url }, app, [
        "--concurrency",
        "1",
        "--heartbeat-interval",
        "10",
        "--heartbeat-timeout",
        "60",
      ]);
      children.push(worker);
      await using pool = faultPool(redis, app, { heartbeatTimeout: 60_000 });
      // The first task comes by a blocking read; the second by TAKE once the first is done,
      // whose reply is held back while the second is cancelled.
      const held = proxy.delayReplyTo(sha, 1_500);
      const [first, second] = pool.map<Trace>("nap", [[200], [60_000, file]]);
      await first;
      await held;
      assert.equal(await second.cancel(), true);
      await assert.rejects(second.result(), CancelledError);
      const trace = await waitFor(async () => {
        const lines = await readTrace(file);
        return lines.some((t) => t.event === "aborted") ? lines : undefined;
      }, "the task saw its signal abort");
      const start = trace.find((t) => t.event === "start")!;
      const aborted = trace.find((t) => t.event === "aborted")!;
      assert.equal(aborted.reason, "CancelledError");
      assert.ok(
        aborted.at - start.at <= 500,
        `aborted ${aborted.at - start.at} ms after it started`,
      );
    } finally {
      await proxy.close();
    }
  });

  it("Redis paused (SIGSTOP) for a moment: work resumes and completes", async () => {
    const app = nextApp("pause");
    children.push(await startWorker(redis, app, ["--heartbeat-timeout", "5"]));
    await using pool = faultPool(redis, app, { heartbeatTimeout: 5_000 });
    const futures = pool.map<Trace>("nap", Array.from({ length: 200 }, () => [5]));
    redis.pause();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    redis.resume();
    const results = await Promise.all(futures);
    assert.equal(results.length, 200);
  });

  it("Redis paused longer than the command timeout: each unanswered command fails with node-redis' TimeoutError, then the connection works again", async () => {
    const c = await connect(redis.url, "watch-test");
    try {
      assert.equal(await c.sendCommand(["PING"]), "PONG");
      redis.pause();
      const started = Date.now();
      const errors = await Promise.all(
        [c.sendCommand(["PING"]), c.sendCommand(["ECHO", "x"])].map((p) =>
          p.then(() => undefined, (e) => e)
        ),
      );
      const took = Date.now() - started;
      redis.resume();
      for (const error of errors) {
        assert.ok(error instanceof RedisTimeoutError, String(error));
        assert.ok(isConnectionError(error), "retried like a lost connection");
      }
      // The message says which command waited, and how long (a log line quotes it).
      assert.deepEqual(errors.map((e) => e.message), [
        `PING: no reply from Redis within ${COMMAND_TIMEOUT} ms`,
        `ECHO: no reply from Redis within ${COMMAND_TIMEOUT} ms`,
      ]);
      assert.ok(
        took >= COMMAND_TIMEOUT && took < COMMAND_TIMEOUT + 1_500,
        `failed after ${took} ms`,
      );
      // The late replies to the failed commands settle nothing; a new command gets its own.
      assert.equal(await c.sendCommand(["ECHO", "after"]), "after");
    } finally {
      redis.resume();
      c.close();
    }
  });

  it("orphans: the keys of a client that died expire", async () => {
    const app = nextApp("orphan");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    const client = await startScript(new URL("./_client.ts", import.meta.url), [
      redis.url,
      app,
      JSON.stringify({ fn: "nap", args: [60_000, file], pool: { orphanTtl: 1_500 } }),
    ]);
    children.push(client);
    const { operationId } = JSON.parse(
      await waitFor(() => client.stdout().split("\n")[0], "the client submitted", 30_000),
    );
    await waitFor(async () => (await readTrace(file)).length === 1, "task running");
    const c = await redis.client();
    const keys = async () => await c.sendCommand(["KEYS", `${app}:*`]) as string[];
    assert.ok((await keys()).includes(`${app}:${operationId}:heartbeat`));
    assert.ok((await keys()).includes(`${app}:replies:${operationId.split("-")[0]}`));
    client.kill("SIGKILL");
    // Only the long-lived keys remain (stream, registry, recovery lock and cursor).
    await waitFor(
      async () => {
        const remaining = (await keys()).filter((k) =>
          !/:(queue|listeners|recovering):|:watch-cursor$/.test(k)
        );
        if (remaining.length > 0) throw new Error(`still there: ${remaining.join(", ")}`);
        return true;
      },
      "the dead client's keys to expire",
      10_000,
    );
    // The worker noticed the task was gone and stopped it.
    await waitFor(
      async () => (await readTrace(file)).some((t) => t.event === "aborted"),
      "the orphaned task was stopped",
    );
  });
});

describe("Redis settings that waiting cannot mend", () => {
  it("a wrong password or a database Redis does not have fails at once, not after reconnectDeadline", async () => {
    const secured = await startRedis();
    try {
      await (await secured.client()).sendCommand(["CONFIG", "SET", "requirepass", "secret"]);
      const port = secured.port;
      for (
        const [url, why] of [
          [`redis://:wrong@127.0.0.1:${port}`, /WRONGPASS/],
          [`redis://127.0.0.1:${port}`, /NOAUTH/],
          [`redis://:secret@127.0.0.1:${port}/99`, /DB index is out of range/],
        ] as const
      ) {
        const pool = new StreamFuturePool({ url, reconnectDeadline: 60_000 });
        const started = Date.now();
        await assert.rejects(pool.ready(), (error: unknown) => {
          assert.ok(error instanceof ConnectionError, String(error));
          assert.match(error.message, why);
          assert.match(error.message, /a setting to fix, so not tried again/);
          return true;
        });
        assert.ok(Date.now() - started < 30_000, `${url}: failed after ${Date.now() - started} ms`);
        await pool.shutdown();
      }
    } finally {
      await secured.stop();
    }
  });
});
