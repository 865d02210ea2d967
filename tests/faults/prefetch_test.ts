import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CancelledError, Listener, StreamFuturePool } from "../../mod.ts";
import type { StreamFuture } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import type { TestRedis } from "../_redis.ts";
import type { Trace } from "./_tasks.ts";
import { startLossyProxy } from "./_proxy.ts";
import { START } from "../../lib/_lua/start.ts";
import { createHash } from "node:crypto";
import {
  BEAT,
  FAULT_TASKS,
  faultHooks,
  faultPool,
  killAll,
  nextApp,
  readTrace,
  startWorker,
  traceFile,
  waitFor,
} from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

/** How many of `futures` Redis has as running (status "1"): started or prefetched. */
async function claimed(app: string, futures: StreamFuture<unknown>[]): Promise<number> {
  const c = await redis.client();
  let n = 0;
  for (const f of futures) {
    const status = await c.sendCommand(["HGET", `${app}:${f.operationId}:status`, f.id]);
    if (status === "1") n++;
  }
  return n;
}

describe("prefetch: tasks claimed beyond concurrency", () => {
  faultHooks(children, (r) => (redis = r));

  it("claims up to concurrency + prefetch, never runs more than concurrency at once", async () => {
    const app = nextApp("pfrun");
    const file = await traceFile();
    children.push(await startWorker(redis, app, ["--concurrency", "2", "--prefetch", "3"]));
    await using pool = faultPool(redis, app);
    const futures = Array.from({ length: 12 }, () => pool.submit<Trace>("nap", [150, file]));
    // Two running and three waiting in the worker: five claimed, the rest still queued.
    const most = await waitFor(async () => {
      const n = await claimed(app, futures);
      return n === 5 ? n : undefined;
    }, "five tasks claimed");
    assert.equal(most, 5);
    const results = await Promise.all(futures);
    assert.ok(results.every((r) => r.attempt === 1));
    let running = 0;
    let peak = 0;
    for (const line of await readTrace(file)) {
      running += line.event === "start" ? 1 : line.event === "done" ? -1 : 0;
      peak = Math.max(peak, running);
    }
    assert.equal(peak, 2, "at most concurrency tasks ran at once");
    assert.equal((await readTrace(file)).filter((t) => t.event === "start").length, 12);
  });

  it("a prefetched task that is cancelled never runs", async () => {
    const app = nextApp("pfcancel");
    const file = await traceFile();
    const { existsSync } = await import("node:fs");
    children.push(await startWorker(redis, app, ["--concurrency", "1", "--prefetch", "2"]));
    await using pool = faultPool(redis, app);
    const blocker = pool.submit("nap", [60_000]);
    await waitFor(() => blocker.running(), "blocker running");
    const waiting = pool.submit("touch", [file, "ran"]);
    const next = pool.submit<Trace>("where", []);
    await waitFor(async () => await claimed(app, [waiting, next]) === 2, "both prefetched");
    assert.equal(waiting.running(), false, "a prefetched task is not reported as running");
    assert.equal(await waiting.cancel(), true);
    await assert.rejects(waiting.result(), CancelledError);
    assert.equal(await blocker.cancel(), true);
    assert.equal((await next).attempt, 1);
    assert.equal(existsSync(file), false, "the cancelled task never ran");
    // Its entry is acknowledged and deleted like any other.
    const c = await redis.client();
    await waitFor(async () => {
      const summary = await c.sendCommand(["XPENDING", `${app}:queue:default`, "workers"]);
      return Array.isArray(summary) && Number(summary[0]) === 0;
    }, "nothing left pending");
  });

  it("a stopping worker gives its prefetched tasks back unrun, same attempt", async () => {
    const app = nextApp("pfstop");
    const file = await traceFile();
    const first = await startWorker(redis, app, [
      "--concurrency",
      "1",
      "--prefetch",
      "2",
      "--grace",
      "0.2",
    ]);
    children.push(first);
    await using pool = faultPool(redis, app);
    const blocker = pool.submit("nap", [60_000]);
    await waitFor(() => blocker.running(), "blocker running");
    const waiting = [pool.submit<Trace>("nap", [1, file]), pool.submit<Trace>("nap", [1, file])];
    await waitFor(async () => await claimed(app, waiting) === 2, "both prefetched");
    first.kill("SIGTERM");
    assert.equal((await first.exited).code, 0);
    const second = await startWorker(redis, app);
    children.push(second);
    assert.match(first.stderr(), /giving 2 prefetched task\(s\) back to the queue/);
    await assert.rejects(blocker.result(), {
      name: "RemoteTaskError",
      remoteName: "WorkerInterrupted",
    });
    for (const result of await Promise.all(waiting)) {
      assert.equal(result.pid, second.pid);
      assert.equal(result.attempt, 1, "given back as the same attempt");
    }
    const ran = (await readTrace(file)).filter((t) => t.event === "start");
    assert.deepEqual(
      ran.map((t) => t.pid),
      [second.pid, second.pid],
      "they ran on the second only",
    );
  });

  it("prefetched tasks of a worker that dies are recovered like running ones", async () => {
    const app = nextApp("pfkill");
    const first = await startWorker(redis, app, ["--concurrency", "1", "--prefetch", "2"]);
    children.push(first);
    await using pool = faultPool(redis, app);
    const blocker = pool.submit("nap", [60_000]);
    await waitFor(() => blocker.running(), "blocker running");
    const waiting = [
      pool.submit<Trace>("where", [], { retries: 1 }),
      pool.submit<Trace>("where", [], { retries: 1 }),
    ];
    await waitFor(async () => await claimed(app, waiting) === 2, "both prefetched");
    first.kill("SIGKILL");
    await first.exited;
    const second = await startWorker(redis, app);
    children.push(second);
    for (const result of await Promise.all(waiting)) {
      assert.equal(result.pid, second.pid);
      assert.equal(result.attempt, 2, "a lost claim counts as an attempt");
    }
    await assert.rejects(blocker.result(), { name: "WorkerLostError" });
  });

  it("a worker frozen past its lease does not start the prefetched tasks recovery gave away", async () => {
    const app = nextApp("pffrozen");
    const file = await traceFile();
    const first = await startWorker(redis, app, ["--concurrency", "1", "--prefetch", "2"]);
    children.push(first);
    await using pool = faultPool(redis, app);
    const blocker = pool.submit<Trace>("nap", [1_500, file]);
    await waitFor(() => blocker.running(), "blocker running");
    const waiting = [0, 1].map(() => pool.submit<Trace>("nap", [50, file], { retries: 1 }));
    await waitFor(async () => await claimed(app, waiting) === 2, "both prefetched");
    const blockerEnded = (...events: string[]) => async () =>
      (await readTrace(file)).some((l) => events.includes(l.event) && l.taskId === blocker.id);
    await waitFor(blockerEnded("start"), "the blocker's nap started on its executor");
    // Frozen: recovery gives its tasks to the second worker.
    first.kill("SIGSTOP");
    const second = await startWorker(redis, app);
    children.push(second);
    for (const result of await Promise.all(waiting)) assert.equal(result.attempt, 2);
    await assert.rejects(blocker.result(), { name: "WorkerLostError" });
    // Deno's executors are processes, which go on while their worker is frozen: the blocker's
    // outcome waits for the worker, and on the thaw it frees the slot before any heartbeat has
    // told the worker that its prefetched tasks are gone. They must not start. (Node's executor
    // threads freeze with the worker: there the thaw's order of events is the runtime's.)
    const threads = !("Deno" in globalThis);
    if (!threads) await waitFor(blockerEnded("done"), "the blocker's nap ended");
    const c = await redis.client();
    const lastBeat = async () => {
      const entries = (await c.sendCommand(
        ["ZRANGE", `${app}:listeners:default`, "0", "-1", "WITHSCORES"],
      ) as unknown[]).flat().map(String);
      const i = entries.findIndex((id) => id.includes(`:${first.pid}:`));
      return i < 0 ? 0 : Number(entries[i + 1]);
    };
    const thawed = Date.now();
    first.kill("SIGCONT");
    await waitFor(blockerEnded("done", "aborted"), "the blocker's nap ended or was stopped");
    await waitFor(
      async () => await lastBeat() > thawed + 2 * BEAT,
      "two heartbeats after the thaw",
    );
    const starts = (await readTrace(file)).filter((l) => l.event === "start");
    for (const f of waiting) {
      assert.deepEqual(
        starts.filter((l) => l.taskId === f.id).map((l) => l.attempt),
        [2],
        `task ${f.id} started once, by the second worker`,
      );
    }
  });

  it("a pool's local listeners take the prefetch option and run every task", async () => {
    const app = nextApp("pflocal");
    await using pool = faultPool(redis, app, { workers: 1, concurrency: 2, prefetch: 3 });
    const results = await pool.map<Trace>("nap", Array.from({ length: 30 }, () => [5]));
    assert.equal(results.length, 30);
    assert.ok(results.every((r) => r.attempt === 1));
  });

  it("higher priority levels start first, whatever claim replies first", async () => {
    const app = nextApp("pfprio");
    const file = await traceFile();
    await using pool = faultPool(redis, app, { requireWorkers: false });
    // Queued before any worker: two low, then two high. A worker with two free slots and a
    // prefetch of two claims all four at once, the levels in separate calls.
    const low = [0, 1].map(() => pool.submit<Trace>("nap", [300, file]));
    const high = [0, 1].map(() => pool.submit<Trace>("nap", [300, file], { priority: 9 }));
    children.push(await startWorker(redis, app, ["--concurrency", "2", "--prefetch", "2"]));
    await Promise.all([...low, ...high]);
    const starts = (await readTrace(file)).filter((t) => t.event === "start");
    assert.equal(starts.length, 4);
    const highIds = new Set(high.map((f) => f.id));
    assert.deepEqual(
      starts.slice(0, 2).map((t) => highIds.has(t.taskId)),
      [true, true],
      "the two high-priority tasks started first",
    );
  });

  it("a slot freed by a claim that does not start goes to a prefetched task", async () => {
    const app = nextApp("pfstrand");
    const c = await redis.client();
    await START.load(c);
    const startSha = createHash("sha1").update(START.source).digest("hex");
    const proxy = await startLossyProxy(redis.port);
    // Not `await using`: were the tasks stranded, closing the pool must not wait for them.
    const pool = faultPool(redis, app, { requireWorkers: false });
    try {
      // Two high tasks, then two low ones cancelled while queued. A worker with two slots and a
      // prefetch of two reads both levels and claims each with a START; the replies are held
      // back so that both arrive together, after both reads: the high START first, then the low
      // one, which lets neither run.
      const high = [0, 1].map(() => pool.submit<Trace>("nap", [50], { priority: 9 }));
      const low = [0, 1].map(() => pool.submit<Trace>("nap", [50]));
      await waitFor(async () => {
        const lengths = await Promise.all(
          ["", ":p9"].map((level) => c.sendCommand(["XLEN", `${app}:queue:default${level}`])),
        );
        return lengths.every((n) => n === 2);
      }, "all four entries queued");
      for (const f of low) assert.equal(await f.cancel(), true);
      const held = proxy.delayReplyTo(startSha, 500);
      children.push(
        await startWorker({ ...redis, url: proxy.url }, app, [
          "--concurrency",
          "2",
          "--prefetch",
          "2",
        ]),
      );
      await held;
      for (const f of high) assert.equal((await f.result({ timeout: 5_000 })).attempt, 1);
    } finally {
      await pool.shutdown({ cancelFutures: true });
      await killAll(children);
      await proxy.close();
    }
  });

  it("rejects a prefetch that is not a non-negative integer", () => {
    // A number out of range is a RangeError, a value of another type a TypeError.
    for (
      const [prefetch, kind] of [[-1, RangeError], [1.5, RangeError], ["2", TypeError]] as const
    ) {
      assert.throws(
        () => new Listener({ tasks: FAULT_TASKS, prefetch: prefetch as number }),
        (e: Error) =>
          e instanceof kind && /prefetch must be a non-negative integer/.test(e.message),
      );
      assert.throws(
        () => new StreamFuturePool({ tasks: FAULT_TASKS, prefetch: prefetch as number }),
        kind,
      );
    }
  });
});
