/**
 * Long arguments are stored beside their entries (`<app>:<op>:args`, the entry's `args` field
 * `"@"`), so that no script reads them: written before the entry, read by the worker that claims
 * the task, deleted once the task has its final outcome, put back into a dead-letter entry.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { NoWorkersError, RemoteTaskError, StreamFuturePool } from "../mod.ts";
import * as tasks from "../examples/tasks.ts";
import { startRedis, TASKS, type TestRedis, waitFor } from "./_redis.ts";
import { ARGS_ASIDE, ARGS_ASIDE_MIN } from "../lib/_keys.ts";
import type { RedisConnection } from "../lib/_redis.ts";

/** Each entry of a stream as `{id, args}`. */
async function entryArgs(
  c: RedisConnection,
  key: string,
): Promise<{ id: string; args: string }[]> {
  const entries = await c.sendCommand(["XRANGE", key, "-", "+"]) as [string, string[]][];
  return entries.map(([, f]) => ({ id: f[f.indexOf("id") + 1], args: f[f.indexOf("args") + 1] }));
}

describe("long arguments stored beside the entry", () => {
  let redis: TestRedis;
  let c: RedisConnection;
  before(async () => {
    redis = await startRedis();
    c = await redis.client();
  });
  after(async () => {
    await redis.stop();
  });

  const long = (ch: string, n = ARGS_ASIDE_MIN) => ch.repeat(n);
  /** A pool that lets work wait for a worker. */
  const waiting = (app: string) =>
    new StreamFuturePool({ url: redis.url, app, requireWorkers: false, tasks: TASKS });
  /** A pool with a local worker, ready. */
  const serving = async (app: string) => {
    const pool = new StreamFuturePool({ url: redis.url, app, workers: 1, tasks: TASKS });
    await pool.ready();
    return pool;
  };

  it("a map: long arguments go to the operation's args hash, short ones stay in the entry; each is read by the worker and deleted once done", async () => {
    const app = "AsideMap";
    await using pool = waiting(app);
    const values = [long("a"), "short", long("é", ARGS_ASIDE_MIN * 4), { list: [long("b")] }];
    const futures = pool.map(tasks.echo, values.map((v) => [v]));
    const op = futures[0].operationId;
    const stream = `${app}:queue:default`;
    await waitFor(async () => (await c.sendCommand(["XLEN", stream])) === 4, "4 entries");
    const entries = await entryArgs(c, stream);
    assert.deepEqual(entries.map((e) => e.id), futures.map((f) => f.id));
    assert.deepEqual(
      entries.map((e) => e.args === ARGS_ASIDE),
      [true, false, true, true],
      "only the long arguments are set aside",
    );
    assert.equal(entries[1].args, JSON.stringify(["short"]));
    const key = `${app}:${op}:args`;
    const stored = await c.sendCommand(["HGETALL", key]) as Record<string, string>;
    assert.deepEqual(
      Object.keys(stored).sort(),
      [futures[0].id, futures[2].id, futures[3].id].sort(),
    );
    assert.deepEqual(JSON.parse(stored[futures[2].id]), [values[2]]);
    assert.ok(Number(await c.sendCommand(["PTTL", key])) > 0, "the args hash expires");

    await using _worker = await serving(app);
    assert.deepEqual(await Promise.all(futures), values);
    await waitFor(async () => (await c.sendCommand(["EXISTS", key])) === 0, "args deleted");
  });

  it("lone submits: each operation its own args hash; a run of them in one turn", async () => {
    const app = "AsideSolo";
    await using pool = await serving(app);
    const values = Array.from({ length: 5 }, (_, i) => (i % 2 ? `small ${i}` : long(`${i}`)));
    const futures = values.map((v) => pool.submit(tasks.echo, [v]));
    assert.deepEqual(await Promise.all(futures), values);
    for (const f of futures) {
      const key = `${app}:${f.operationId}:args`;
      await waitFor(async () => (await c.sendCommand(["EXISTS", key])) === 0, `${key} deleted`);
    }
  });

  it("a task retried after failing reads its arguments again; dead-lettered, its entry has them back", async () => {
    const app = "AsideDead";
    await using pool = await serving(app);
    const message = long("m");
    const f = pool.submit(tasks.fail, [message], { retries: 1, retryOn: "error" });
    const error = await f.then(() => undefined, (e) => e);
    assert.ok(error instanceof RemoteTaskError, String(error));
    assert.equal(error.attempts, 2);
    assert.equal(error.message, message, "the second attempt had the arguments too");
    const dead = await c.sendCommand(["XRANGE", `${app}:dead`, "-", "+"]) as [string, string[]][];
    assert.equal(dead.length, 1);
    const fields = dead[0][1];
    assert.equal(fields[fields.indexOf("args") + 1], JSON.stringify([message]));
    const key = `${app}:${f.operationId}:args`;
    await waitFor(async () => (await c.sendCommand(["EXISTS", key])) === 0, "args deleted");
  });

  it("a child whose long arguments hold its parent's future gets the parent's value in their place", async () => {
    const app = "AsideChild";
    await using pool = waiting(app);
    const parent = pool.submit(tasks.echo, [long("p")]);
    const child = pool.submit(tasks.echo, [[long("c"), parent]]);
    const key = `${app}:${child.operationId}:args`;
    await waitFor(
      async () => (await c.sendCommand(["HEXISTS", key, child.id])) === 1,
      "the child's arguments set aside",
    );
    await using _worker = await serving(app);
    assert.deepEqual(await child, [long("c"), long("p")]);
    await waitFor(async () => (await c.sendCommand(["EXISTS", key])) === 0, "args deleted");
  });

  it("arguments gone from Redis: the task fails with a ProtocolError that says so, and the worker goes on", async () => {
    const app = "AsideGone";
    await using pool = waiting(app);
    const f = pool.submit(tasks.echo, [long("g")]);
    const key = `${app}:${f.operationId}:args`;
    await waitFor(async () => (await c.sendCommand(["EXISTS", key])) === 1, "args stored");
    await waitFor(
      async () => (await c.sendCommand(["XLEN", `${app}:queue:default`])) === 1,
      "entry written",
    );
    await c.sendCommand(["DEL", key]);
    await using _worker = await serving(app);
    const error = await f.then(() => undefined, (e) => e);
    assert.ok(error instanceof RemoteTaskError, String(error));
    assert.equal(error.remoteName, "ProtocolError");
    assert.match(error.message, /arguments of task .* are gone/);
    assert.equal(await pool.submit(tasks.echo, [long("h")]), long("h"), "the worker goes on");
  });

  it("arguments altered in Redis: a NUL fails its task with a ProtocolError, bytes that are not UTF-8 read as U+FFFD, and the tasks beside them are unharmed", async () => {
    // With executor processes (Deno's default) the worker hands these bytes over as Redis sent
    // them; elsewhere as strings. Both must end the same way.
    const app = "AsideBytes";
    await using pool = waiting(app);
    const futures = pool.map(tasks.echo, ["a", "b", "c", "d"].map((ch) => [long(ch)]));
    const key = `${app}:${futures[0].operationId}:args`;
    await waitFor(
      async () => (await c.sendCommand(["XLEN", `${app}:queue:default`])) === 4,
      "entries written",
    );
    await c.sendCommand(["HSET", key, futures[1].id, `["${long("x")}\u0000"]`]);
    const notUtf8 = Buffer.concat([
      Buffer.from('["'),
      Buffer.from([0xff, 0xc3]), // a byte no UTF-8 has; a lead byte without its continuation
      Buffer.from(`${long("y")}"]`),
    ]);
    await c.sendCommand(["HSET", key, futures[2].id, notUtf8 as unknown as string]);
    await using _worker = await serving(app);
    assert.equal(await futures[0], long("a"));
    const error = await futures[1].then(() => undefined, (e) => e);
    assert.ok(error instanceof RemoteTaskError, String(error));
    assert.equal(error.remoteName, "ProtocolError");
    assert.match(error.message, /contains a NUL character/);
    assert.equal(await futures[2], `\ufffd\ufffd${long("y")}`);
    assert.equal(await futures[3], long("d"));
    assert.equal(await pool.submit(tasks.echo, [long("h")]), long("h"), "the worker goes on");
  });

  it("a connection writes long arguments as their UTF-8 bytes, and reads replies as bytes when asked", async () => {
    // Arguments of 4,096 characters or more go to node-redis as Buffers (lib/_redis.ts).
    const value = "é€😀x".repeat(2000);
    await c.sendCommand(["HSET", "ConnBytes", "long", value, "short", "ß"]);
    assert.deepEqual(await c.sendCommand(["HMGET", "ConnBytes", "long", "short"]), [value, "ß"]);
    assert.equal(
      await c.sendCommand(["HSTRLEN", "ConnBytes", "long"]),
      new TextEncoder().encode(value).length,
    );
    const bytes = await c.sendCommand(["HMGET", "ConnBytes", "long", "short", "none"], {
      bytes: true,
    }) as unknown[];
    assert.ok(bytes[0] instanceof Uint8Array && bytes[1] instanceof Uint8Array);
    assert.equal(new TextDecoder().decode(bytes[0]), value);
    assert.equal(new TextDecoder().decode(bytes[1]), "ß");
    assert.equal(bytes[2], null);
    await c.sendCommand(["DEL", "ConnBytes"]);
  });

  it("refused for want of a worker: the stored arguments are deleted", async () => {
    const app = "AsideRefused";
    await using pool = new StreamFuturePool({ url: redis.url, app, tasks: TASKS });
    const solo = pool.submit(tasks.echo, [long("r")]);
    const [mapped] = pool.map(tasks.echo, [[long("s")], [long("t")]]);
    for (const f of [solo, mapped]) {
      await assert.rejects(f, NoWorkersError);
      const key = `${app}:${f.operationId}:args`;
      await waitFor(async () => (await c.sendCommand(["EXISTS", key])) === 0, `${key} deleted`);
    }
  });
});
