import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  DependencyError,
  NoWorkersError,
  type StreamFuture,
  StreamFuturePool,
} from "../mod.ts";
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

/**
 * Readies a test of cancels made while calls are on their way: cancels one task first, so that
 * CANCEL's library is in Redis (a first use would load it, and the round trips of loading it would
 * put the CANCEL calls under test after the SUBMITs), then has Redis hold every write for up to
 * 5 s: what the pool sends next waits there, unanswered, until `CLIENT UNPAUSE`.
 */
async function pauseWrites(c: RedisConnection, pool: StreamFuturePool, app: string) {
  const early = pool.submit(tasks.add, [0, 0]);
  await waitFor(async () => (await c.sendCommand(["XLEN", `${app}:queue:default`])) === 1, "");
  assert.equal(await early.cancel(), true);
  await c.sendCommand(["CLIENT", "PAUSE", "5000", "WRITE"]);
}

/** The `CLIENT LIST` line of the pool's command connection. */
async function poolClientLine(c: RedisConnection): Promise<string> {
  return String(await c.sendCommand(["CLIENT", "LIST"])).split("\n")
    .find((line) => line.includes("name=streamfutures-client ")) ?? "";
}

/**
 * Starts a worker and checks that every task of `futures` but the `picked` ones ran (task i adds
 * 1 to i).
 */
async function runTheRest(
  redis: TestRedis,
  app: string,
  futures: StreamFuture<number>[],
  picked: number[],
) {
  await using serving = new StreamFuturePool({ url: redis.url, app, workers: 1, tasks: TASKS });
  await serving.ready();
  const rest = futures.filter((_, i) => !picked.includes(i));
  assert.deepEqual(
    await Promise.all(rest),
    futures.map((_, i) => i + 1).filter((_, i) => !picked.includes(i)),
  );
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

  it("a parent cancelled before it was sent, or refused, fails its children with DependencyError naming it", async () => {
    await using pool = new StreamFuturePool({
      url: redis.url,
      app: "SoloUnsentParent",
      workers: 1,
      tasks: TASKS,
    });
    await pool.ready();
    const parent = pool.submit(tasks.add, [1, 2]);
    const child = pool.submit(tasks.echo, [parent]);
    const passed = pool.submit(tasks.echo, [parent], { onParentError: "pass" });
    assert.equal(await parent.cancel(), true);
    const error = await child.then(() => undefined, (e) => e);
    assert.ok(error instanceof DependencyError, String(error));
    assert.equal(error.parentId, parent.id);
    assert.ok(error.cause instanceof CancelledError, String(error.cause));
    assert.match(error.message, /was cancelled|failed: CancelledError/);
    const seen = await passed;
    assert.ok(seen instanceof Error);
    assert.equal(seen.name, "CancelledError");
    // Refused by the client (no live worker of its queue): the child names that error.
    const refused = pool.submit(tasks.add, [1, 2], { queue: "nobody" });
    const orphan = pool.submit(tasks.echo, [refused]);
    await assert.rejects(refused, NoWorkersError);
    const orphanError = await orphan.then(() => undefined, (e) => e);
    assert.ok(orphanError instanceof DependencyError, String(orphanError));
    assert.match(orphanError.message, /NoWorkersError/);
  });

  it("with no live worker every submit of the run fails with NoWorkersError", async () => {
    await using pool = new StreamFuturePool({ url: redis.url, app: "SoloNobody", tasks: TASKS });
    const futures = Array.from({ length: 5 }, (_, i) => pool.submit(tasks.add, [i, i]));
    for (const f of futures) await assert.rejects(f, NoWorkersError);
  });
});

describe("a large operation is written a few calls at a time", () => {
  let redis: TestRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });

  it("6,100 tasks of one map: 13 SUBMIT calls, every task in map order", async () => {
    const c = await redis.client();
    const app = "Window";
    await using pool = await waitingPool(redis, app);
    await c.sendCommand(["CONFIG", "RESETSTAT"]);
    try {
      const futures = pool.map(tasks.add, Array.from({ length: 6100 }, (_, i) => [i, 1]));
      const stream = `${app}:queue:default`;
      await waitFor(async () => (await c.sendCommand(["XLEN", stream])) === 6100, "6,100 entries");
      // A first call of 100 tasks, then calls of up to 500: one HEXISTS each.
      assert.equal((await calls(c)).get("hexists"), 13);
      assert.deepEqual(await streamIds(c, stream), futures.map((f) => f.id), "in map order");
      await using serving = new StreamFuturePool({ url: redis.url, app, workers: 1, tasks: TASKS });
      await serving.ready();
      assert.deepEqual(await Promise.all(futures), futures.map((_, i) => i + 1));
    } finally {
      await pool.shutdown({ cancelFutures: true });
    }
  });

  it("a future cancelled while its map is being written is cancelled, and its task never runs", async () => {
    const c = await redis.client();
    const app = "WindowCancel";
    await using pool = await waitingPool(redis, app);
    try {
      // The map's first call goes out and waits in Redis; the rest of the map waits for it.
      await pauseWrites(c, pool, app);
      const futures = pool.map(tasks.add, Array.from({ length: 6100 }, (_, i) => [i, 1]));
      await waitFor(async () => / flags=b /.test(await poolClientLine(c)), "first call held");
      // In the first call (sent, unanswered), and not taken into a call yet.
      const picked = [3, 99, 100, 2500, 4321, 6099];
      const cancelling = Promise.all(picked.map((i) => futures[i].cancel()));
      // Before the pause ends: the tasks not taken yet are cancelled (without Redis), or the
      // CANCEL calls wait in Redis behind the first call.
      await waitFor(async () => {
        if (picked.every((i) => i < 100 || futures[i].done())) return true;
        return Number(/ qbuf=(\d+)/.exec(await poolClientLine(c))?.[1] ?? 0) > 0;
      }, "the cancels made or sent");
      await c.sendCommand(["CLIENT", "UNPAUSE"]);
      const cancels = await cancelling;
      assert.deepEqual(cancels, picked.map(() => true), "every cancel() succeeds");
      for (const i of picked) assert.equal(futures[i].cancelled(), true);
      await runTheRest(redis, app, futures, picked);
      // A cancelled task that reached Redis is marked cancelled there, with no result; one that
      // had not been written yet never was.
      const op = futures[0].operationId;
      for (const i of picked) {
        const id = futures[i].id;
        const status = await c.sendCommand(["HGET", `${app}:${op}:status`, id]);
        assert.ok(status === null || status === "4", `task ${i}: status ${status}`);
        const result = await c.sendCommand(["HGET", `${app}:${op}:results`, id]);
        assert.ok(result === null || String(result).startsWith("CancelledError"), `task ${i}`);
      }
    } finally {
      await pool.shutdown({ cancelFutures: true });
    }
  });

  it("a submit of a large turn cancelled while the turn is being written is cancelled", async () => {
    const c = await redis.client();
    const app = "WindowSolo";
    await using pool = await waitingPool(redis, app);
    try {
      await pauseWrites(c, pool, app);
      // 2,600 submits in one turn: six calls, the last two sent once earlier ones are answered.
      const futures = Array.from({ length: 2600 }, (_, i) => pool.submit(tasks.add, [i, 1]));
      await waitFor(async () => / flags=b /.test(await poolClientLine(c)), "first calls held");
      const picked = [0, 499, 2100, 2599];
      const cancelling = Promise.all(picked.map((i) => futures[i].cancel()));
      await c.sendCommand(["CLIENT", "UNPAUSE"]);
      assert.deepEqual(await cancelling, picked.map(() => true));
      await runTheRest(redis, app, futures, picked);
      for (const i of picked) {
        const id = futures[i].id;
        assert.equal(await c.sendCommand(["HGET", `${app}:${id}:status`, id]), "4", `task ${i}`);
      }
    } finally {
      await pool.shutdown({ cancelFutures: true });
    }
  });
});
