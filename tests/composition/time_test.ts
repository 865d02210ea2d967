import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import { FIRE, SCHEDULE } from "../../lib/_lua/schedule.ts";
import { startLossyProxy } from "../faults/_proxy.ts";
import { startRedis, type TestRedis } from "../_redis.ts";
import {
  cleanUp,
  nextApp,
  pool as makePool,
  readTrace,
  startWorker,
  traceFile,
  waitFor,
} from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

/** Redis' clock, ms. */
async function redisNow(): Promise<number> {
  const c = await redis.client();
  const [seconds, micros] = await c.sendCommand(["TIME"]) as string[];
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

describe("time: delay, startAt, cron", () => {
  before(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await cleanUp(children);
  });
  after(async () => {
    await redis.stop();
  });

  it("delay: the task becomes runnable at its time, not before (and promptly)", async () => {
    const app = nextApp("delay");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    await pool.ready();
    const lateness: number[] = [];
    for (const delay of [300, 500, 200]) {
      const submitted = Date.now();
      const label = `d${delay}`;
      await pool.submit("mark", [file, label], { delay });
      const ran = (await readTrace(file)).find((t) => t.value === label)!;
      const waited = ran.at - submitted;
      assert.ok(waited >= delay, `ran ${waited} ms after submit, before its delay of ${delay} ms`);
      lateness.push(waited - delay);
    }
    // "Within 50 ms on an idle loopback system"; the bound here leaves room for a busy CI box.
    assert.ok(Math.min(...lateness) <= 50, `late by ${lateness.join(", ")} ms`);
    assert.ok(Math.max(...lateness) <= 250, `late by ${lateness.join(", ")} ms`);
  });

  it("startAt: runnable at a given time", async () => {
    const app = nextApp("startat");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const at = new Date(await redisNow() + 400);
    await pool.submit("mark", [file, "at"], { startAt: at });
    const ran = (await readTrace(file))[0];
    assert.ok(ran.at >= at.getTime() - 5, `ran ${at.getTime() - ran.at} ms early`);
    assert.throws(
      () => pool.submit("mark", [file, "x"], { delay: 5, startAt: at }),
      /either delay .* or startAt/,
    );
    assert.throws(() => pool.submit("mark", [file, "x"], { delay: -1 }), RangeError);
    assert.throws(
      () => pool.submit("mark", [file, "x"], { startAt: new Date(8.64e15) }),
      /startAt must be at most 100 years ahead/,
    );
  });

  it("many delayed tasks, several workers racing: each runs once, none early", async () => {
    const app = nextApp("delayrace");
    const file = await traceFile();
    for (let i = 0; i < 3; i++) children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const submitted = Date.now();
    const futures = Array.from(
      { length: 150 },
      (_, i) => pool.submit("mark", [file, `t${i}`], { delay: (i % 10) * 60 }),
    );
    await Promise.all(futures);
    const trace = await readTrace(file);
    assert.equal(trace.length, 150, "each ran exactly once");
    assert.equal(new Set(trace.map((t) => t.value)).size, 150);
    for (const t of trace) {
      const i = Number(String(t.value).slice(1));
      assert.ok(t.at - submitted >= (i % 10) * 60 - 2, `${t.value} ran early`);
    }
    assert.ok(new Set(trace.map((t) => t.pid)).size >= 2, "the workers shared the work");
  });

  it("a cancelled delayed task leaves its queue's delayed set at once; the others still run", async () => {
    const app = nextApp("delaycancel");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    await pool.ready();
    const c = await redis.client();
    const set = `${app}:delayed:default`;
    // A day away, as one task and as a map of three; then one due soon.
    const far = pool.submit("mark", [file, "far"], { delay: 86_400_000 });
    const many = pool.map("mark", [[file, "m0"], [file, "m1"], [file, "m2"]], {
      delay: 86_400_000,
    });
    const soon = pool.submit("mark", [file, "soon"], { delay: 300 });
    await waitFor(async () => Number(await c.sendCommand(["ZCARD", set])) === 5, "five delayed");
    const entries = `${app}:${far.operationId}:delayed`;
    assert.equal(await c.sendCommand(["HLEN", entries]), 1);
    assert.ok(Number(await c.sendCommand(["PTTL", entries])) > 0, "expires with the operation");

    assert.equal(await far.cancel(), true);
    assert.equal(await many[1].cancel(), true);
    const members = await c.sendCommand(["ZRANGE", set, "0", "-1"]) as string[];
    assert.deepEqual(
      members.sort(),
      [
        `${many[0].operationId}/${many[0].id}`,
        `${many[2].operationId}/${many[2].id}`,
        `${soon.operationId}/${soon.id}`,
      ].sort(),
    );
    assert.equal(await c.sendCommand(["EXISTS", entries]), 0);
    assert.equal(await c.sendCommand(["HLEN", `${app}:${many[0].operationId}:delayed`]), 2);

    // The one due soon runs, and its entry goes with it.
    await soon;
    assert.deepEqual((await readTrace(file)).map((t) => t.value), ["soon"]);
    assert.equal(await c.sendCommand(["EXISTS", `${app}:${soon.operationId}:delayed`]), 0);
    for (const f of [many[0], many[2]]) await f.cancel();
    assert.equal(await c.sendCommand(["EXISTS", set]), 0);
    assert.equal(await c.sendCommand(["EXISTS", `${app}:${many[0].operationId}:delayed`]), 0);
  });

  it("a delayed entry written by an earlier version (the entry itself as the member) still runs", async () => {
    const app = nextApp("delayold");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    // Submitted far ahead, then its member turned into the old form, due now.
    const f = pool.submit("mark", [file, "old"], { delay: 86_400_000 });
    const c = await redis.client();
    const set = `${app}:delayed:default`;
    await waitFor(async () => Number(await c.sendCommand(["ZCARD", set])) === 1, "one delayed");
    const entries = `${app}:${f.operationId}:delayed`;
    const [, fields] = JSON.parse(await c.sendCommand(["HGET", entries, f.id]) as string);
    await c.sendCommand(["DEL", set, entries]);
    await c.sendCommand(["ZADD", set, String(await redisNow()), JSON.stringify(fields)]);
    await c.sendCommand(["PUBLISH", `${app}:control`, `w default ${await redisNow()}`]);
    await f;
    assert.deepEqual((await readTrace(file)).map((t) => t.value), ["old"]);
    assert.equal(await c.sendCommand(["EXISTS", set]), 0);
  });

  it("cron: each due time runs once however many workers are up", async () => {
    const app = nextApp("cron");
    const file = await traceFile();
    for (let i = 0; i < 3; i++) children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const next = await pool.schedule("tick", "* * * * * *", "mark", [file, "tick"]);
    assert.ok(next instanceof Date);
    await waitFor(async () => (await readTrace(file)).length >= 3, "three ticks", 10_000);
    assert.equal(await pool.unschedule("tick"), true);
    assert.equal(await pool.unschedule("tick"), false);
    const ticks = await readTrace(file);
    const ops = ticks.map((t) => t.operationId);
    assert.equal(new Set(ops).size, ops.length, "no due time ran twice");
    const dues = ops.map((op) => parseInt(op.slice(op.lastIndexOf("-") + 1), 36)).sort();
    for (let i = 1; i < dues.length; i++) assert.equal(dues[i] - dues[i - 1], 1000);
    for (const t of ticks) {
      const due = parseInt(t.operationId.slice(t.operationId.lastIndexOf("-") + 1), 36);
      assert.ok(t.at >= due - 5, "not before its due time");
      assert.ok(t.at - due < 1_000, `ran ${t.at - due} ms after its due time`);
    }
    // After unschedule nothing more runs (wait past one more due time).
    const count = (await readTrace(file)).length;
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    assert.ok((await readTrace(file)).length <= count + 1, "stopped after unschedule");
  });

  it("schedules() lists them; schedule() replaces by name; bad expressions are refused", async () => {
    const app = nextApp("cronlist");
    await using pool = makePool(redis, app, { requireWorkers: false });
    await pool.schedule("b-nightly", "30 2 * * *", "mark", ["/dev/null", "x"], {
      timezone: "Europe/Berlin",
      queue: "reports",
    });
    await pool.schedule("a-often", "*/5 * * * *", "mark", ["/dev/null", "y"]);
    await pool.schedule("a-often", "0 * * * *", "mark", ["/dev/null", "z"], { catchUp: true });
    const list = await pool.schedules();
    assert.deepEqual(list.map((s) => [s.name, s.cron, s.timezone, s.queue, s.catchUp, s.args]), [
      ["a-often", "0 * * * *", "UTC", "default", true, ["/dev/null", "z"]],
      ["b-nightly", "30 2 * * *", "Europe/Berlin", "reports", false, ["/dev/null", "x"]],
    ]);
    assert.ok(list.every((s) => s.nextRun instanceof Date && s.nextRun.getTime() > Date.now()));
    await assert.rejects(pool.schedule("bad", "* * *", "mark", []), /must have 5 fields/);
    await assert.rejects(
      pool.schedule("bad", "* * * * *", "mark", [], { timezone: "Mars/Base" }),
      RangeError,
    );
    await assert.rejects(pool.schedule("bad name", "* * * * *", "mark", []), TypeError);
  });

  it("missed due times while everything was down: skipped, or run once with catchUp", async () => {
    const app = nextApp("cronmissed");
    const skipped = await traceFile();
    const caught = await traceFile();
    await using pool = makePool(redis, app, { requireWorkers: false });
    await pool.schedule("skip", "0 * * * *", "mark", [skipped, "skip"]);
    await pool.schedule("catch", "0 * * * *", "mark", [caught, "catch"], { catchUp: true });
    // Everything was down for hours: the schedules' due times are long past.
    const c = await redis.client();
    const past = await redisNow() - 3 * 3600_000;
    await c.sendCommand([
      "ZADD",
      `${app}:schedule-due`,
      String(past),
      "skip",
      String(past),
      "catch",
    ]);
    children.push(await startWorker(redis, app));
    await waitFor(async () => (await readTrace(caught)).length === 1, "the catch-up run");
    await waitFor(async () => {
      const due = await c.sendCommand(["ZSCORE", `${app}:schedule-due`, "skip"]);
      return Number(due) > Date.now();
    }, "the skipped schedule moved on to its next due time");
    assert.equal((await readTrace(skipped)).length, 0, "missed ticks were skipped");
    assert.equal((await readTrace(caught)).length, 1, "caught up once, not once per missed tick");
  });

  /** The due time (ms) in a fired task's operation id, `cron-<hash>-<due in base 36>`. */
  function dueOf(operationId: string): number {
    return parseInt(operationId.slice(operationId.lastIndexOf("-") + 1), 36);
  }

  it("cron: a due time late from a backlog, with workers up all along, still runs", async () => {
    const app = nextApp("cronbacklog");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    await pool.schedule("late", "0 0 1 1 *", "mark", [file, "late"]); // next due: New Year
    const c = await redis.client();
    // Workers have looked at the schedules for a while: nothing counts as missed since.
    const seen = `${app}:schedule-seen`;
    await waitFor(async () => {
      const missed = await c.sendCommand(["HGET", seen, "missed"]);
      return missed !== null && Number(missed) < await redisNow() - 6_500;
    }, "the worker looking at the schedules for over a second");
    // A due time 6 s ago, over the 5 s grace, as if a backlog of due schedules had held it up.
    const due = await redisNow() - 6_000;
    await c.sendCommand(["ZADD", `${app}:schedule-due`, String(due), "late"]);
    await waitFor(async () => (await readTrace(file)).length === 1, "the late due time run");
    assert.equal(dueOf((await readTrace(file))[0].operationId), due);
    await pool.unschedule("late");
  });

  it("cron: after an outage, due times older than the grace are skipped, the later ones run", async () => {
    const app = nextApp("cronoutage");
    const file = await traceFile();
    await using pool = makePool(redis, app, { requireWorkers: false });
    await pool.schedule("every", "* * * * * *", "mark", [file, "every"]);
    // Every worker was down for 30 s: the last look at the schedules was then, and the schedule
    // has been due since 20 s ago.
    const c = await redis.client();
    const now = await redisNow();
    const first = Math.floor((now - 20_000) / 1000) * 1000;
    await c.sendCommand(["HSET", `${app}:schedule-seen`, "at", String(now - 30_000)]);
    await c.sendCommand(["ZADD", `${app}:schedule-due`, String(first), "every"]);
    children.push(await startWorker(redis, app));
    await waitFor(async () => (await readTrace(file)).length >= 4, "four runs");
    await pool.unschedule("every");
    const missed = Number(await c.sendCommand(["HGET", `${app}:schedule-seen`, "missed"]));
    const runs = (await readTrace(file)).map((t) => ({ due: dueOf(t.operationId), at: t.at }));
    assert.ok(runs.every((r) => r.due > missed), "no due time up to the outage's end was run");
    // The first look came 5 s (the grace) after `missed`: due times between ran, late.
    assert.ok(
      runs.some((r) => r.due <= missed + 5_000),
      `a due time within the grace of the first look ran (${
        JSON.stringify(runs)
      }, missed ${missed})`,
    );
    const dues = runs.map((r) => r.due);
    assert.equal(new Set(dues).size, dues.length, "none ran twice");
  });

  it("cron: keepResults counts from the fired task's outcome; a task running longer is not stopped", async () => {
    const app = nextApp("cronkeep");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const due = await pool.schedule("slow", "* * * * * *", "later", [2_500, "slow", file], {
      keepResults: 1_000,
    });
    await waitFor(
      async () => (await readTrace(file)).some((t) => t.label === "later:start"),
      "the first run started",
    );
    await pool.unschedule("slow");
    const op = (await readTrace(file)).find((t) => t.label === "later:start")!.operationId;
    assert.equal(dueOf(op), due!.getTime());
    const c = await redis.client();
    assert.equal(await c.sendCommand(["PTTL", `${app}:${op}:status`]), -1, "kept while it runs");
    // Past keepResults, it runs on and completes.
    assert.equal(await pool.future<string>(op).result({ timeout: 10_000 }), "slow");
    const ttl = Number(await c.sendCommand(["PTTL", `${app}:${op}:results`]));
    assert.ok(ttl > 0 && ttl <= 1_000, `kept keepResults after its outcome, PTTL ${ttl}`);
    await waitFor(
      async () => await c.sendCommand(["EXISTS", `${app}:${op}:status`]) === 0,
      "its keys gone keepResults after it finished",
    );
    assert.equal(await c.sendCommand(["HLEN", `${app}:watch`]), 0, "no watch record left");
  });

  it("cron: a due time read before unschedule and schedule again is not taken from the new schedule", async () => {
    const app = nextApp("cronrace");
    await using pool = makePool(redis, app, { requireWorkers: false });
    const c = await redis.client();
    // A worker read the due time `old` of "race", then the schedule was removed (its HGET finds
    // nothing), and created again with a new due time before the worker's FIRE arrived.
    const old = await redisNow() - 1_000;
    await c.sendCommand(["ZADD", `${app}:schedule-due`, String(old), "race"]);
    await pool.unschedule("race");
    const due = (await pool.schedule("race", "0 0 1 1 *", "mark", ["/dev/null", "x"]))!.getTime();
    const run = (args: string[]) => FIRE.run(c, [], [app, "race", ...args]);
    assert.equal(await run([String(old), "", "cron-x-1", "-1", "0"]), 0);
    assert.equal(Number(await c.sendCommand(["ZSCORE", `${app}:schedule-due`, "race"])), due);
    // A due time left over from a schedule that is gone is dropped.
    await c.sendCommand(["ZADD", `${app}:schedule-due`, String(old), "gone"]);
    assert.equal(await FIRE.run(c, [], [app, "gone", String(old), "", "cron-x-2", "-1", "0"]), 1);
    assert.equal(await c.sendCommand(["ZSCORE", `${app}:schedule-due`, "gone"]), null);
  });

  it("schedule(), unschedule() and schedules() go again when a reply is lost", async () => {
    const app = nextApp("cronlost");
    const proxy = await startLossyProxy(redis.port);
    try {
      await using pool = makePool(redis, app, { url: proxy.url, requireWorkers: false });
      await pool.schedule("warmup", "0 0 1 1 *", "mark", ["/dev/null", "x"]); // scripts loaded
      const sha = createHash("sha1").update(SCHEDULE.source).digest("hex");
      const lost = proxy.loseReplyTo(sha);
      const due = await pool.schedule("s", "0 0 1 1 *", "mark", ["/dev/null", "x"]);
      await lost;
      assert.ok(due instanceof Date && due.getTime() > Date.now());
      const listed = proxy.loseReplyTo("HGETALL");
      assert.deepEqual((await pool.schedules()).map((s) => s.name), ["s", "warmup"]);
      await listed;
      const removed = proxy.loseReplyTo("unschedule");
      assert.equal(await pool.unschedule("s"), true);
      await removed;
      assert.deepEqual((await pool.schedules()).map((s) => s.name), ["warmup"]);
    } finally {
      await proxy.close();
    }
  });
});
