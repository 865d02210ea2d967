import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { StreamFuturePool } from "../mod.ts";
import { Script } from "../lib/_script.ts";
import { LUA_COMMON } from "../lib/_lua/_common.ts";
import * as tasks from "../examples/tasks.ts";
import { connect, type RedisConnection } from "../lib/_redis.ts";
import { startRedis, TASKS, type TestRedis } from "./_redis.ts";

/** Calls per command since the last `CONFIG RESETSTAT`, from INFO commandstats. */
async function calls(c: RedisConnection): Promise<Map<string, number>> {
  const info = String(await c.sendCommand(["INFO", "commandstats"]));
  const out = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) out.set(m[1], Number(m[2]));
  return out;
}

/** The names of the function libraries Redis holds. */
async function libraries(c: RedisConnection): Promise<string[]> {
  const list = (await c.sendCommand(["FUNCTION", "LIST"])) as unknown[];
  return list.map((library) => {
    if (Array.isArray(library)) return String(library[library.indexOf("library_name") + 1]);
    return String((library as Record<string, unknown>).library_name);
  }).sort();
}

/**
 * A script on the shared helpers that records one hash field per argument, valued with the
 * number of hashes its deferred writes held before (0 unless a previous call's writes were left
 * over), and returns what the hash holds.
 */
const RECORD = new Script(
  "test_record",
  LUA_COMMON + `
local before = #HSET_KEYS
for i = 2, #ARGV do hset(KEYS[1], ARGV[i], tostring(before)) end
flush('none')
return redis.call('HGETALL', KEYS[1])
`,
);

/** Reads Redis' time twice in one call: the call's clock (milliseconds, heartbeat form, again). */
const CLOCKED = new Script(
  "test_clocked",
  LUA_COMMON + `
return {now_ms(), heartbeat_now(), now_ms()}
`,
);

/** Runs a small map on a pool with a local worker: every task's result, in order. */
async function mapOnce(url: string, app: string): Promise<number[]> {
  await using pool = new StreamFuturePool({ url, app, workers: 1, tasks: TASKS });
  return await Promise.all(pool.map(tasks.add, [[1, 2], [3, 4], [5, 6]]));
}

describe("scripts as Redis functions", () => {
  let redis: TestRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });

  it("run with FCALL, one library per script named after its source, loaded on first use and again after FUNCTION FLUSH", async () => {
    const c = await redis.client();
    await c.sendCommand(["CONFIG", "RESETSTAT"]);
    assert.deepEqual(await mapOnce(redis.url, "fn1"), [3, 7, 11]);
    const stats = await calls(c);
    assert.ok((stats.get("fcall") ?? 0) > 0, "scripts ran as functions");
    assert.equal(stats.get("evalsha") ?? 0, 0, "no EVALSHA");
    assert.equal(stats.get("eval") ?? 0, 0, "no EVAL");
    const names = await libraries(c);
    assert.ok(names.length >= 4, `libraries: ${names}`);
    for (const name of names) assert.match(name, /^sf_[a-z_]+_[0-9a-f]{40}$/);
    assert.ok(names.includes(await RECORD.functionName()) === false);

    // A Redis that lost its functions (FUNCTION FLUSH, a restart without persistence).
    await c.sendCommand(["FUNCTION", "FLUSH"]);
    assert.deepEqual(await mapOnce(redis.url, "fn2"), [3, 7, 11]);
    assert.deepEqual(await libraries(c), names, "the same libraries loaded again");
  });

  it("each call starts with empty deferred writes (the library keeps its locals between calls)", async () => {
    const c = await redis.client();
    const first = await RECORD.run(c, ["rec:a"], ["app", "x", "y"]);
    const second = await RECORD.run(c, ["rec:b"], ["app", "z"]);
    assert.deepEqual(first, ["x", "0", "y", "0"]);
    assert.deepEqual(second, ["z", "0"], "the second call wrote only its own field");
    assert.deepEqual({ ...(await c.sendCommand(["HGETALL", "rec:a"])) as object }, {
      x: "0",
      y: "0",
    });
    assert.ok((await libraries(c)).includes(await RECORD.functionName()));

    // Redis' time is read once per call, and afresh by the next call.
    const [ms, hb, again] = await CLOCKED.run(c, [], ["app"]) as [number, string, number];
    assert.equal(again, ms, "one instant per call");
    assert.equal(Math.floor(Number(hb) * 1000), ms);
    let later = ms;
    for (const end = Date.now() + 5000; later <= ms && Date.now() < end;) {
      later = (await CLOCKED.run(c, [], ["app"]) as number[])[0];
    }
    assert.ok(later > ms, `a later call reads a later time (${later} after ${ms})`);

    // Loading a library that is there already is fine.
    await RECORD.load(c);

    // Calls that find the library missing together load it once.
    await c.sendCommand(["FUNCTION", "DELETE", await RECORD.functionName()]);
    await c.sendCommand(["CONFIG", "RESETSTAT"]);
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => RECORD.run(c, [`rec:n${i}`], ["app", "f"])),
    );
    assert.deepEqual(replies, Array(20).fill(["f", "0"]));
    assert.equal((await calls(c)).get("function|load"), 1, "one FUNCTION LOAD");
  });

  it("a user not allowed FCALL gets the same results through EVALSHA", async () => {
    const c = await redis.client();
    await c.sendCommand(["ACL", "SETUSER", "nofn", "on", "nopass", "~*", "&*", "+@all", "-fcall"]);
    await c.sendCommand(["CONFIG", "RESETSTAT"]);
    const url = redis.url.replace("redis://", "redis://nofn:any@");
    const limited = await connect(url, "nofn");
    try {
      assert.deepEqual(await RECORD.run(limited, ["rec:c"], ["app", "w"]), ["w", "0"]);
      assert.deepEqual(await RECORD.run(limited, ["rec:c"], ["app", "v"]), ["w", "0", "v", "0"]);
    } finally {
      limited.close();
    }
    const stats = await calls(c);
    assert.equal(stats.get("evalsha"), 2, "both calls went through EVALSHA");
  });
});

describe("scripts on a Redis whose FCALL and FUNCTION are renamed away", () => {
  let redis: TestRedis;
  before(async () => {
    // FCALL and FUNCTION renamed away (as some hosted services do): "unknown command".
    redis = await startRedis({
      serverArgs: ["--rename-command", "FCALL", "", "--rename-command", "FUNCTION", ""],
    });
  });
  after(async () => {
    await redis.stop();
  });

  it("submit, run and results work through EVALSHA", async () => {
    const c = await redis.client();
    await c.sendCommand(["CONFIG", "RESETSTAT"]);
    assert.deepEqual(await mapOnce(redis.url, "nofn"), [3, 7, 11]);
    const stats = await calls(c);
    assert.ok((stats.get("evalsha") ?? 0) > 0, "scripts ran with EVALSHA");
    assert.equal(stats.get("fcall") ?? 0, 0);
    assert.deepEqual(await RECORD.run(c, ["rec:a"], ["app", "x"]), ["x", "0"]);
    assert.deepEqual(await RECORD.run(c, ["rec:b"], ["app", "y"]), ["y", "0"]);
  });
});
