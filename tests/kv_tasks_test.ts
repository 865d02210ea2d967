import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcessHandle } from "../lib/_runtime.ts";
import { startRedis, type TestRedis } from "./_redis.ts";
import { cleanUp, nextApp, pool as makePool, startWorker } from "./composition/_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

describe("currentTask().kv and pool.kv", () => {
  before(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await cleanUp(children);
  });
  after(async () => {
    await redis.stop();
  });

  it("concurrent appends from tasks on several worker processes: none lost", async () => {
    const app = nextApp("kvtasks");
    for (let i = 0; i < 3; i++) {
      children.push(await startWorker(redis, app, ["--concurrency", "10"]));
    }
    await using pool = makePool(redis, app);
    await pool.kv.set("hits", []);
    const futures = pool.map<number>(
      "appendMany",
      Array.from({ length: 30 }, (_, t) => ["hits", 100, `t${t}`]),
    );
    assert.equal((await Promise.all(futures)).reduce((a, b) => a + b, 0), 3_000);
    const hits = await pool.kv.get<string[]>("hits");
    assert.equal(hits!.length, 3_000);
    assert.equal(new Set(hits).size, 3_000, "no value lost or duplicated");
    assert.equal(await pool.kv.get("hits:count"), 3_000);
    // Tasks see what the pool wrote, and the other way round.
    await pool.kv.set("threshold", { level: 0.8, at: new Date(0) });
    assert.deepEqual(await pool.submit("readKey", ["threshold"]), {
      level: 0.8,
      at: new Date(0),
    });
    const keys: string[] = [];
    for await (const [key] of pool.kv.entries()) keys.push(key);
    assert.deepEqual(keys.sort(), ["hits", "hits:count", "threshold"]);
  });

  it("tasks on inline executors (the worker's own thread) share the store too", async () => {
    const app = nextApp("kvinline");
    for (let i = 0; i < 2; i++) {
      children.push(
        await startWorker(redis, app, ["--concurrency", "10", "--executor-mode", "inline"]),
      );
    }
    await using pool = makePool(redis, app);
    await pool.kv.set("hits", []);
    const futures = pool.map<number>(
      "appendMany",
      Array.from({ length: 20 }, (_, t) => ["hits", 50, `t${t}`]),
    );
    assert.equal((await Promise.all(futures)).reduce((a, b) => a + b, 0), 1_000);
    const hits = await pool.kv.get<string[]>("hits");
    assert.equal(new Set(hits).size, 1_000, "no value lost or duplicated");
    await pool.kv.set("threshold", 0.5);
    assert.equal(await pool.submit("readKey", ["threshold"]), 0.5);
  });
});
