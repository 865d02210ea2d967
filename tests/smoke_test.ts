import { test } from "node:test";
import assert from "node:assert/strict";
import { StreamFuturePool } from "../mod.ts";
import * as tasks from "../examples/tasks.ts";
import { startRedis, TASKS } from "./_redis.ts";

test("smoke: submit and map with local workers", async () => {
  const redis = await startRedis();
  try {
    const pool = new StreamFuturePool({ url: redis.url, workers: 2, tasks: TASKS });
    const one = pool.submit(tasks.add, [3, 8]);
    assert.equal(await one, 11);
    const many = pool.map(tasks.add, [[0, 1], [2, 3]]);
    assert.deepEqual(await Promise.all(many), [1, 5]);
    await pool.shutdown();
  } finally {
    await redis.stop();
  }
});
