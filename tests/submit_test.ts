import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { NoWorkersError, StreamFuturePool } from "../mod.ts";
import * as tasks from "../examples/tasks.ts";
import { startRedis, TASKS, type TestRedis, waitFor } from "./_redis.ts";
import type { RedisConnection } from "../lib/_redis.ts";

/** Calls per command since the last `CONFIG RESETSTAT` (commands run by scripts included). */
async function calls(c: RedisConnection): Promise<Map<string, number>> {
  const info = String(await c.sendCommand(["INFO", "commandstats"]));
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) out.set(m[1], Number(m[2]));
  return out;
}

/** The task ids of a stream's entries, in stream order. */
async function streamIds(c: RedisConnection, key: string): Promise<string[]> {
  const entries = await c.sendCommand(["XRANGE", key, "-", "+"]) as [string, string[]][];
  return entries.map(([, fields]) => fields[fields.indexOf("id") + 1]);
}

/**
 * A connected pool that lets work wait for workers. (Tests shut it down with its futures
 * cancelled, so that a failed check does not wait for tasks no worker runs.)
 */
async function waitingPool(redis: TestRedis, app: string): Promise<StreamFuturePool> {
  const pool = new StreamFuturePool({ url: redis.url, app, requireWorkers: false, tasks: TASKS });
  await pool.ready();
  return pool;
}

describe("submit calls of one turn go out together", () => {
  let redis: TestRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });

  it("1,200 submits in one turn: 3 Redis calls, each task its own operation with the seed's keys", async () => {
    const c = await redis.client();
    const app = "Solo";
    await using pool = await waitingPool(redis, app);
    const unsettled = () => pool.shutdown({ cancelFutures: true });
    await c.sendCommand(["CONFIG", "RESETSTAT"]);
    try {
      const futures = Array.from({ length: 1200 }, (_, i) => pool.submit(tasks.add, [i, 1]));
      const stream = `${app}:queue:default`;
      await waitFor(async () => (await c.sendCommand(["XLEN", stream])) === 1200, "1,200 entries");
      // Every SUBMIT call checks whether its first task was written already: one HEXISTS per call.
      assert.equal((await calls(c)).get("hexists"), 3, "calls of up to 500 tasks");
      assert.deepEqual(await streamIds(c, stream), futures.map((f) => f.id), "in submission order");
      for (const f of [futures[0], futures[777], futures[1199]]) {
        assert.equal(f.operationId, f.id);
        const status = `${app}:${f.id}:status`;
        const results = `${app}:${f.id}:results`;
        assert.deepEqual(await c.sendCommand(["HGETALL", status]), { [f.id]: "0" });
        assert.deepEqual(await c.sendCommand(["HGETALL", results]), { [f.id]: "" });
        for (const key of [status, results]) {
          assert.ok(
            Number(await c.sendCommand(["PEXPIRETIME", key])) > Date.now(),
            `${key} expires`,
          );
        }
      }
      // A worker runs them all.
      await using serving = new StreamFuturePool({ url: redis.url, app, workers: 1, tasks: TASKS });
      await serving.ready();
      assert.deepEqual(await Promise.all(futures), futures.map((_, i) => i + 1));
    } finally {
      await unsettled();
    }
  });

  it("different queues and settings split a turn's submits into runs, each in submission order", async () => {
    const c = await redis.client();
    const app = "SoloRuns";
    await using pool = await waitingPool(redis, app);
    const unsettled = () => pool.shutdown({ cancelFutures: true });
    await c.sendCommand(["CONFIG", "RESETSTAT"]);
    try {
      const a = pool.submit(tasks.add, [1, 1]);
      const b = pool.submit(tasks.add, [2, 2], { retries: 2 });
      const c1 = pool.submit(tasks.add, [3, 3]);
      const d = pool.submit(tasks.add, [4, 4], { queue: "other" });
      const e = pool.submit(tasks.add, [5, 5], { queue: "other" });
      const m = pool.map(tasks.add, [[6, 6]]);
      const f = pool.submit(tasks.add, [7, 7]);
      const g = pool.submit(tasks.add, [8, 8]);
      await waitFor(
        async () => (await c.sendCommand(["XLEN", `${app}:queue:default`])) === 6,
        "six entries in the default queue",
      );
      assert.deepEqual(
        await streamIds(c, `${app}:queue:default`),
        [a.id, b.id, c1.id, m[0].id, f.id, g.id],
      );
      await waitFor(
        async () => (await c.sendCommand(["XLEN", `${app}:queue:other`])) === 2,
        "two entries in queue other",
      );
      assert.deepEqual(await streamIds(c, `${app}:queue:other`), [d.id, e.id]);
      // Runs: [a], [b] (retries), [c1], [d, e] (queue other), then the map, then [f, g].
      assert.equal((await calls(c)).get("hexists"), 6);
      const entry = await c.sendCommand(["XRANGE", `${app}:queue:default`, "-", "+", "COUNT", "2"]);
      assert.ok(JSON.stringify(entry).includes('"retries","2"'), "b keeps its retry policy");
      await using serving = new StreamFuturePool({ url: redis.url, app, workers: 1, tasks: TASKS });
      await using servingOther = new StreamFuturePool({
        url: redis.url,
        app,
        queue: "other",
        workers: 1,
        tasks: TASKS,
      });
      await Promise.all([serving.ready(), servingOther.ready()]);
      assert.deepEqual(await Promise.all([a, b, c1, d, e, ...m, f, g]), [
        2,
        4,
        6,
        8,
        10,
        12,
        14,
        16,
      ]);
    } finally {
      await unsettled();
    }
  });

  it("a submit whose argument is the future of a submit of the same turn runs after it", async () => {
    await using pool = new StreamFuturePool({
      url: redis.url,
      app: "SoloParents",
      workers: 1,
      tasks: TASKS,
    });
    const first = pool.submit(tasks.add, [1, 2]);
    const second = pool.submit(tasks.add, [3, 4]);
    const sum = pool.submit<number>("add", [first, second]);
    const after = pool.submit<number>("add", [sum, 100]);
    assert.deepEqual(await Promise.all([first, second, sum, after]), [3, 7, 10, 110]);
  });

  it("with no live worker every submit of the run fails with NoWorkersError", async () => {
    await using pool = new StreamFuturePool({ url: redis.url, app: "SoloNobody", tasks: TASKS });
    const futures = Array.from({ length: 5 }, (_, i) => pool.submit(tasks.add, [i, i]));
    for (const f of futures) await assert.rejects(f, NoWorkersError);
  });
});
