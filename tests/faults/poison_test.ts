import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ProtocolError } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import type { TestRedis } from "../_redis.ts";
import type { Trace } from "./_tasks.ts";
import { faultHooks, faultPool, nextApp, startWorker, waitFor } from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

/**
 * Keys and records written by something else (by hand, a buggy tool, another program): one of
 * them spoils its own task at most. A Lua script that failed half-way kept what it had written
 * (Redis does not roll scripts back), so one bad record lost a whole batch of others' tasks.
 */
describe("records tampered with in Redis: one bad record spoils its own task at most", () => {
  faultHooks(children, (r) => (redis = r));

  it("a garbage watch record: every task of the batch it is in is still recorded", async () => {
    const app = nextApp("poisonwatch");
    children.push(await startWorker(redis, app, ["--concurrency", "8"]));
    await using pool = faultPool(redis, app);
    const naps = pool.map<Trace>("nap", Array.from({ length: 6 }, () => [400]));
    await waitFor(() => naps.every((f) => f.running()), "all running");
    const c = await redis.client();
    // (Its task's outcome is followed up by the same FINISH call as the others'.)
    await c.sendCommand(["HSET", `${app}:watch`, `${naps[0].operationId}/${naps[0].id}`, "{oops"]);
    const results = await Promise.all(naps.map((f) => f.result({ timeout: 10_000 })));
    assert.equal(results.length, 6);
    const statuses = await c.sendCommand(["HVALS", `${app}:${naps[0].operationId}:status`]);
    assert.deepEqual(statuses, ["2", "2", "2", "2", "2", "2"]);
  });

  it("a status no version of this library writes: cancel() and attached futures settle with ProtocolError", async () => {
    const app = nextApp("poisonstatus");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    await using other = faultPool(redis, app);
    const f = pool.submit<Trace>("nap", [60_000]);
    await waitFor(() => f.running(), "running");
    const c = await redis.client();
    await c.sendCommand(["HSET", `${app}:${f.operationId}:status`, f.id, "banana"]);
    const attached = other.future(f.id);
    await assert.rejects(attached.result({ timeout: 10_000 }), ProtocolError);
    // Its notice never comes (nothing final was written): cancel() finds the status, and settles.
    assert.equal(await f.cancel(), false);
    await assert.rejects(f.result({ timeout: 1 }), /has the status "banana" in Redis/);
    await pool.shutdown({ cancelFutures: true }); // (it waited forever)
  });

  it("malformed members of a delayed set are dropped; the queue's delayed tasks and retries run", async () => {
    const app = nextApp("poisondelayed");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const c = await redis.client();
    const set = `${app}:delayed:default`;
    // Due first, each of them stopped every promotion of the queue.
    await c.sendCommand(["ZADD", set, "0", "no slash", "1", "[not json", "2", "op9/t9"]);
    await c.sendCommand(["HSET", `${app}:op9:delayed`, "t9", "{not json"]);
    const later = pool.submit<Trace>("nap", [1], { delay: 100 });
    const retried = pool.submit<Trace>("flaky", [1], {
      retries: 1,
      retryDelay: 100,
      retryOn: "error",
    });
    assert.equal((await later.result({ timeout: 10_000 })).attempt, 1);
    assert.equal((await retried.result({ timeout: 10_000 })).attempt, 2);
    assert.deepEqual(await c.sendCommand(["ZRANGE", set, "0", "-1"]), []);
  });

  it("a pending entry whose heartbeat key has the wrong type does not stop recovery of the others", async () => {
    const app = nextApp("poisonrecover");
    await using pool = faultPool(redis, app, { requireWorkers: false, keep: true });
    await pool.ready();
    const c = await redis.client();
    const stream = `${app}:queue:default`;
    const reply = `${app}:replies:${pool.clientId}`;
    await c.sendCommand(["XGROUP", "CREATE", stream, "workers", "0", "MKSTREAM"]);
    const entry = async (id: string) => {
      await c.sendCommand(["HSET", `${app}:${id}:status`, id, "1"]);
      await c.sendCommand([
        "XADD",
        stream,
        "*",
        "v",
        "1",
        "id",
        id,
        "op",
        id,
        "reply",
        reply,
        "fn",
        "nap",
        "args",
        "[1]",
      ]);
    };
    // Two running tasks whose worker is gone: the first with a heartbeat key that is no hash.
    await entry("poisoned");
    await c.sendCommand(["SET", `${app}:poisoned:heartbeat`, "not a hash"]);
    await entry("lost");
    await c.sendCommand(["HSET", `${app}:lost:heartbeat`, "lost", "1"]); // beat long ago
    await c.sendCommand(["XREADGROUP", "GROUP", "workers", "gone", "STREAMS", stream, ">"]);
    children.push(await startWorker(redis, app));
    await waitFor(
      async () => await c.sendCommand(["HGET", `${app}:lost:status`, "lost"]) === "3",
      "the lost task failed as lost (WorkerLostError) by recovery",
    );
    const line = await c.sendCommand(["HGET", `${app}:lost:results`, "lost"]);
    assert.match(String(line), /^WorkerLostError: /);
  });
});
