import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import { Listener } from "../../lib/listener.ts";
import { startRedis, type TestRedis } from "../_redis.ts";
import {
  cleanUp,
  nextApp,
  pool as makePool,
  readTrace,
  startWorker,
  TASKS,
  traceFile,
  waitFor,
} from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

describe("named queues and priorities", () => {
  before(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await cleanUp(children);
  });
  after(async () => {
    await redis.stop();
  });

  it("a worker with one free slot and several streams takes a task from any of them at once", async () => {
    // A blocking read of a minute: a task on a stream the read does not cover would wait for it.
    const app = nextApp("oneslot");
    const listener = new Listener({
      url: redis.url,
      app,
      tasks: TASKS,
      queues: ["a", "b"],
      concurrency: 1,
      executors: 1,
      executorMode: "inline",
      block: 60_000,
      logLevel: "warn",
    });
    await listener.start();
    try {
      await using pool = makePool(redis, app, { queue: "a" });
      const limits = { timeout: 20_000 };
      for (
        const [queue, priority] of [["a", 0], ["b", 0], ["b", 0], ["a", 3], ["a", 0], ["a", -2]]
      ) {
        const f = pool.submit("echo", [`${queue}${priority}`], {
          queue: queue as string,
          priority: priority as number,
        });
        assert.equal(await f.result(limits), `${queue}${priority}`);
      }
    } finally {
      await listener.stop();
    }
  });

  it("a worker serves only its queues; one serving several takes from each", async () => {
    const app = nextApp("queues");
    const file = await traceFile();
    const mrz = await startWorker(redis, app, ["--queue", "mrz"]);
    const ocr = await startWorker(redis, app, ["--queue", "ocr"]);
    const both = await startWorker(redis, app, ["--queue", "mrz", "--queue", "ocr"]);
    children.push(mrz, ocr, both);
    await using pool = makePool(redis, app, { queue: "mrz" });
    const a = pool.map("mark", Array.from({ length: 30 }, (_, i) => [file, `m${i}`]));
    const b = pool.map("mark", Array.from({ length: 30 }, (_, i) => [file, `o${i}`]), {
      queue: "ocr",
    });
    await Promise.all([...a, ...b]);
    const trace = await readTrace(file);
    for (const t of trace) {
      const queue = String(t.value).startsWith("m") ? "mrz" : "ocr";
      assert.equal(t.queue, queue);
      const allowed = queue === "mrz" ? [mrz.pid, both.pid] : [ocr.pid, both.pid];
      assert.ok(allowed.includes(t.pid), `${t.value} ran on a worker that does not serve ${queue}`);
    }
  });

  it("FIFO within a queue", async () => {
    const app = nextApp("fifo");
    const file = await traceFile();
    children.push(await startWorker(redis, app, ["--concurrency", "1", "--executors", "1"]));
    await using pool = makePool(redis, app);
    const blocker = pool.submit("later", [300, 0]);
    await waitFor(() => blocker.running(), "blocker running");
    const futures = [];
    for (let i = 0; i < 25; i++) futures.push(pool.submit("mark", [file, i]));
    await Promise.all(futures);
    assert.deepEqual((await readTrace(file)).map((t) => t.value), [...Array(25).keys()]);
  });

  it("priority: higher levels first, FIFO among equals; the default level is 0", async () => {
    const app = nextApp("priority");
    const file = await traceFile();
    children.push(await startWorker(redis, app, ["--concurrency", "1", "--executors", "1"]));
    await using pool = makePool(redis, app);
    const blocker = pool.submit("later", [500, 0]);
    await waitFor(() => blocker.running(), "blocker running");
    const plan: [string, number][] = [
      ["a", 0],
      ["b", 0],
      ["c", 5],
      ["d", -3],
      ["e", 5],
      ["f", 9],
      ["g", 0],
      ["h", -3],
    ];
    const futures = plan.map(([label, priority]) =>
      pool.submit("mark", [file, label], { priority })
    );
    await Promise.all(futures);
    assert.deepEqual(
      (await readTrace(file)).map((t) => t.value),
      ["f", "c", "e", "a", "b", "g", "d", "h"],
    );
    assert.throws(() => pool.submit("mark", [file, "x"], { priority: 10 }), RangeError);
    // A cron schedule with a priority level no submit used yet is read too.
    await pool.schedule("urgent", "* * * * * *", "mark", [file, "cron"], { priority: 7 });
    await waitFor(
      async () => (await readTrace(file)).some((t) => t.value === "cron"),
      "the prioritized cron task ran",
    );
    await pool.unschedule("urgent");
    assert.throws(() => pool.submit("mark", [file, "x"], { priority: 1.5 }), RangeError);
  });
});
