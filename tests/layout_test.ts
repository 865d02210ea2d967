import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { StreamFuturePool } from "../mod.ts";
import { CLIENT_ID_LENGTH, COMPACT_NOTICE_MARK, COMPACT_NOTICE_MAX, GROUP } from "../lib/_keys.ts";
import { FINISH } from "../lib/_lua/finish.ts";
import { START } from "../lib/_lua/start.ts";
import { TAKE } from "../lib/_lua/take.ts";
import { parseFlatEntries } from "../lib/_stream.ts";
import * as tasks from "../examples/tasks.ts";
import { startRedis, TASKS, type TestRedis, waitFor } from "./_redis.ts";
import { forceGc } from "./_gc.ts";
import type { RedisConnection } from "../lib/_redis.ts";

let redis: TestRedis;

/** The separator of the compact notices and of TAKE's packed entries. */
const NUL = "\u0000";

async function keysOf(c: RedisConnection, app: string): Promise<string[]> {
  return ((await c.sendCommand(["KEYS", `${app}:*`])) as string[]).sort();
}

async function hash(c: RedisConnection, key: string): Promise<Record<string, string>> {
  const reply = await c.sendCommand(["HGETALL", key]);
  if (Array.isArray(reply)) {
    const out: Record<string, string> = {};
    for (let i = 0; i < reply.length; i += 2) out[reply[i]] = reply[i + 1];
    return out;
  }
  return { ...(reply as Record<string, string>) };
}

/** The encoding Redis keeps a key in (`OBJECT ENCODING`). */
function encoding(c: RedisConnection, key: string): Promise<unknown> {
  return c.sendCommand(["OBJECT", "ENCODING", key]);
}

/** A pool with one local listener at `concurrency` that keeps its operations' hashes. */
function keepingPool(app: string, concurrency: number): StreamFuturePool {
  return new StreamFuturePool({
    url: redis.url,
    app,
    workers: 1,
    concurrency,
    tasks: TASKS,
    keep: true,
  });
}

describe("the seed's Redis layout", () => {
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });

  it("status, heartbeat and results hashes read back with plain Redis commands (keep: true)", async () => {
    const c = await redis.client();
    const app = "MyApp";
    const pool = new StreamFuturePool({
      url: redis.url,
      app,
      workers: 1,
      concurrency: 1,
      tasks: TASKS,
      keep: true,
    });
    const ok = pool.submit(tasks.add, [3, 8]);
    const bad = pool.submit(tasks.fail, ["bad input"]);
    const mapped = pool.map(tasks.add, [[1, 2], [3, 4]]);
    await Promise.allSettled([ok, bad, ...mapped]);
    const blocker = pool.submit(tasks.sleep, [300]);
    const cancelled = pool.submit(tasks.add, [0, 0]);
    while (!blocker.running()) await new Promise((r) => setTimeout(r, 10));
    assert.equal(await cancelled.cancel(), true);
    await blocker;

    // submit: operation id == task id; map: one operation, one field per task.
    assert.equal(ok.operationId, ok.id);
    assert.deepEqual(await hash(c, `${app}:${ok.operationId}:status`), { [ok.id]: "2" });
    assert.deepEqual(await hash(c, `${app}:${ok.operationId}:results`), { [ok.id]: "11" });
    const beat = (await hash(c, `${app}:${ok.operationId}:heartbeat`))[ok.id];
    assert.match(beat, /^\d{10}\.\d{6}$/, "epoch seconds as a decimal string");
    assert.ok(Math.abs(Number(beat) - Date.now() / 1000) < 60);

    assert.deepEqual(await hash(c, `${app}:${bad.operationId}:status`), { [bad.id]: "3" });
    assert.deepEqual(await hash(c, `${app}:${bad.operationId}:results`), {
      [bad.id]: "RangeError: bad input",
    });

    const op = mapped[0].operationId;
    assert.deepEqual(await hash(c, `${app}:${op}:status`), {
      [mapped[0].id]: "2",
      [mapped[1].id]: "2",
    });
    assert.deepEqual(await hash(c, `${app}:${op}:results`), {
      [mapped[0].id]: "3",
      [mapped[1].id]: "7",
    });

    assert.equal(
      await c.sendCommand(["HGET", `${app}:${cancelled.operationId}:status`, cancelled.id]),
      "4",
    );

    await pool.shutdown();
    // keep: true leaves the operation hashes; the client's reply stream is gone.
    const keys = await keysOf(c, app);
    assert.ok(keys.includes(`${app}:${ok.operationId}:status`));
    assert.ok(!keys.some((k) => k.startsWith(`${app}:replies:`)), keys.join(" "));
  });

  it("a task not started has status 0 and an empty result", async () => {
    const c = await redis.client();
    const app = "PendingApp";
    await using pool = new StreamFuturePool({
      url: redis.url,
      app,
      requireWorkers: false,
      keep: true,
    });
    const f = pool.submit("add", [1, 2]);
    let status: Record<string, string> = {};
    for (let i = 0; i < 200 && !status[f.id]; i++) {
      status = await hash(c, `${app}:${f.operationId}:status`);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(status, { [f.id]: "0" });
    assert.deepEqual(await hash(c, `${app}:${f.operationId}:results`), { [f.id]: "" });
    assert.deepEqual(await hash(c, `${app}:${f.operationId}:heartbeat`), {});
    assert.equal(await f.cancel(), true);
  });

  it("a batch of 32 tasks or more writes hash tables at once (no quadratic listpack inserts), with no trace of how", async () => {
    const c = await redis.client();
    const app = "WideApp";
    await using pool = keepingPool(app, 50);
    const wide = pool.map(tasks.add, Array.from({ length: 200 }, (_, i) => [i, 1]));
    const narrow = pool.map(tasks.add, [[1, 1], [2, 2], [3, 3]]);
    assert.deepEqual(await Promise.all(wide), Array.from({ length: 200 }, (_, i) => i + 1));
    assert.deepEqual(await Promise.all(narrow), [2, 4, 6]);
    const op = wide[0].operationId;
    for (const name of ["status", "results", "heartbeat"]) {
      const key = `${app}:${op}:${name}`;
      assert.equal(await encoding(c, key), "hashtable", key);
      const fields = Object.keys(await hash(c, key));
      // Every field is a task id of the batch: the field that converted the hash is gone.
      assert.ok(fields.length > 0 && fields.length <= 200, `${key}: ${fields.length} fields`);
      const ids = new Set(wide.map((f) => f.id));
      assert.deepEqual(fields.filter((f) => !ids.has(f)), [], key);
    }
    assert.equal(Object.keys(await hash(c, `${app}:${op}:status`)).length, 200);
    assert.equal(Object.keys(await hash(c, `${app}:${op}:results`)).length, 200);
    // A small batch stays a compact listpack.
    assert.equal(await encoding(c, `${app}:${narrow[0].operationId}:status`), "listpack");
  });

  it("an operation's heartbeat hash, written a few tasks at a time, becomes a hash table at 32 fields", async () => {
    const c = await redis.client();
    const app = "GrowingHb";
    await using pool = keepingPool(app, 2);
    const small = pool.map(tasks.add, Array.from({ length: 20 }, (_, i) => [i, 1]));
    await Promise.all(small);
    const grown = pool.map(tasks.add, Array.from({ length: 40 }, (_, i) => [i, 1]));
    await Promise.all(grown);
    const key = `${app}:${grown[0].operationId}:heartbeat`;
    assert.equal(await encoding(c, key), "hashtable");
    assert.deepEqual(Object.keys(await hash(c, key)).sort(), grown.map((f) => f.id).sort());
    assert.equal(await encoding(c, `${app}:${small[0].operationId}:heartbeat`), "listpack");
  });

  it("a map with parents and the watch hash are hash tables from their first write, with no trace", async () => {
    const c = await redis.client();
    const app = "WideDeps";
    await using pool = keepingPool(app, 50);
    const gate = pool.submit(tasks.sleep, [200]);
    // 40 children wait on one running parent: SUBMIT_EX writes them one by one, and each
    // registers in the watch record of the parent.
    const children = pool.map<number>("add", Array.from({ length: 40 }, (_, i) => [gate, i]));
    await waitFor(
      async () => (await c.sendCommand(["HLEN", `${app}:watch`])) === 1,
      "the parent's watch record",
    );
    assert.equal(await encoding(c, `${app}:watch`), "hashtable");
    assert.deepEqual(Object.keys(await hash(c, `${app}:watch`)), [
      `${gate.operationId}/${gate.id}`,
    ]);
    assert.deepEqual(await Promise.all(children), Array.from({ length: 40 }, (_, i) => 200 + i));
    const op = children[0].operationId;
    for (const name of ["status", "results"]) {
      const key = `${app}:${op}:${name}`;
      assert.equal(await encoding(c, key), "hashtable", key);
      assert.deepEqual(
        Object.keys(await hash(c, key)).sort(),
        children.map((f) => f.id).sort(),
        `${key} holds the tasks' fields only`,
      );
    }
  });

  it("after the pool closes only the documented long-lived keys remain", async () => {
    const c = await redis.client();
    const app = "CleanApp";
    const pool = new StreamFuturePool({ url: redis.url, app, workers: 2, tasks: TASKS });
    await Promise.allSettled([
      pool.submit(tasks.add, [1, 2]),
      pool.submit(tasks.fail, ["x"]),
      ...pool.map(tasks.add, Array.from({ length: 50 }, (_, i) => [i, i])),
    ]);
    const during = await keysOf(c, app);
    assert.ok(during.some((k) => k.endsWith(":status")));
    await pool.shutdown();
    const left = await keysOf(c, app);
    assert.deepEqual(left, [`${app}:queue:default`], `left: ${left.join(", ")}`);
    // The task stream keeps no entries: every entry was acknowledged and deleted.
    assert.equal(await c.sendCommand(["XLEN", `${app}:queue:default`]), 0);
    const pending = await c.sendCommand([
      "XPENDING",
      `${app}:queue:default`,
      GROUP,
    ]) as unknown[];
    assert.equal(pending[0], 0);
  });

  it("acknowledged entries leave the task stream: trimmed behind the oldest pending entry, deleted one by one behind a long task", async () => {
    const c = await redis.client();
    const app = "TrimApp";
    const stream = `${app}:queue:default`;
    const pool = new StreamFuturePool({
      url: redis.url,
      app,
      workers: 1,
      concurrency: 4,
      tasks: TASKS,
    });
    const oldestPending = async (): Promise<{ count: number; idleMs: number }> => {
      const rows = await c.sendCommand(["XPENDING", stream, GROUP, "-", "+", "1"]) as [
        string,
        string,
        number,
        number,
      ][];
      const count = (await c.sendCommand(["XPENDING", stream, GROUP]) as [number])[0];
      return { count, idleMs: rows.length ? Number(rows[0][2]) : -1 };
    };
    const xlen = async () => Number(await c.sendCommand(["XLEN", stream]));
    try {
      const long = pool.submit(tasks.sleep, [60_000]);
      await waitFor(async () => (await oldestPending()).count === 1, "the long task to start");
      // The long task was delivered moments ago: the entries of the tasks done since stay in the
      // stream (a trim point held back for at most 2 s), acknowledged.
      const args = Array.from({ length: 30 }, (_, i): [number, number] => [i, 1]);
      assert.deepEqual(await Promise.all(pool.map(tasks.add, args)), args.map(([i]) => i + 1));
      const young = await oldestPending();
      assert.equal(young.count, 1, "only the long task is pending");
      const kept = await xlen();
      if (young.idleMs < 2000) assert.equal(kept, 31, "acknowledged entries wait for the trim");
      // Past 2 s the long task no longer holds entries back: the next ones are deleted at once.
      await waitFor(async () => (await oldestPending()).idleMs >= 2000, "the long task to age");
      assert.deepEqual(await Promise.all(pool.map(tasks.add, args)), args.map(([i]) => i + 1));
      assert.equal(await xlen(), kept, "entries acknowledged behind a long task were deleted");
      // Nothing pending any more: everything delivered goes, the held-back entries too.
      assert.equal(await long.cancel(), true);
      await waitFor(async () => (await oldestPending()).count === 0, "the long task to end");
      await waitFor(async () => (await xlen()) === 0, "an empty task stream");
    } finally {
      await pool.shutdown();
    }
  });

  it("FINISH sends a big batch's notices to a client in reply entries of at most 4,000 values, none split", async () => {
    const c = await redis.client();
    const app = "NoticeApp";
    const stream = `${app}:queue:default`;
    const op = "client-0";
    const reply = `${app}:replies:client`;
    const n = 700;
    await c.sendCommand(["XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"]);
    const init = String(await c.sendCommand(["XADD", reply, "*", "init", "1"]));
    const tids = Array.from({ length: n }, (_, i) => `${op}.${i}`);
    const entries: string[] = [];
    for (const tid of tids) {
      const fields = ["v", "1", "id", tid, "fn", "add", "args", "[]"];
      entries.push(String(await c.sendCommand(["XADD", stream, "*", ...fields])));
      await c.sendCommand(["HSET", `${app}:${op}:status`, tid, "1"]);
    }
    await c.sendCommand([
      "XREADGROUP",
      "GROUP",
      GROUP,
      "A",
      "COUNT",
      String(n),
      "STREAMS",
      stream,
      ">",
    ]);
    // Odd tasks carry timings ("m"): notices of 8 values and of 6, 4,900 values in all.
    const args = [app, GROUP, "default"];
    tids.forEach((tid, i) =>
      args.push(entries[i], op, tid, reply, "c", `${i}`, "", i % 2 ? "1,2,3" : "")
    );
    assert.deepEqual(await FINISH.run(c, [stream], args), tids.map(() => 1));
    // The same call again (its reply lost to a dropped connection): the entries are no longer
    // pending (XACK, FINISH's lease check, says 0), so nothing is recorded or sent twice.
    const again = args.map((v, i) => (i >= 3 && (i - 3) % 8 === 5 ? `${v}!` : v));
    assert.deepEqual(await FINISH.run(c, [stream], again), tids.map(() => 0));
    assert.equal(await c.sendCommand(["HGET", `${app}:${op}:results`, tids[0]]), "0");
    const written =
      (await c.sendCommand(["XRANGE", reply, `(${init}`, "+"]) as [string, string[]][])
        .map(([, flat]) => flat);
    assert.equal(written.length, 2, "two reply entries");
    const notices: string[][] = [];
    for (const flat of written) {
      assert.ok(flat.length <= 4000, `an entry of ${flat.length} values`);
      assert.equal(flat[0], "t", "every entry starts with a notice");
      for (const value of flat) {
        if (value === "t") notices.push([]);
        notices.at(-1)!.push(value);
      }
    }
    assert.deepEqual(
      notices,
      tids.map((tid, i) => ["t", tid, "s", "2", "p", `${i}`, ...(i % 2 ? ["m", "1,2,3"] : [])]),
    );
    assert.equal(await c.sendCommand(["HGET", `${app}:${op}:results`, tids[n - 1]]), `${n - 1}`);
    assert.equal(await c.sendCommand(["XLEN", stream]), 0, "every entry acknowledged and removed");
  });

  it("FINISH sends compact completion notices to clients that read them, classic ones to others", async () => {
    const c = await redis.client();
    const app = "CompactApp";
    const stream = `${app}:queue:default`;
    await c.sendCommand(["XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"]);
    const long = JSON.stringify("x".repeat(COMPACT_NOTICE_MAX));
    // A client of this version (11 characters, the last one the mark) and an earlier one (10).
    const clients = [`abcdefghij${COMPACT_NOTICE_MARK}`, "abcdefghij"];
    assert.equal(clients[0].length, CLIENT_ID_LENGTH);
    const notices: string[][] = [];
    for (const client of clients) {
      const op = `${client}-0`;
      const reply = `${app}:replies:${client}`;
      const init = String(await c.sendCommand(["XADD", reply, "*", "init", "1"]));
      const tids = [0, 1, 2].map((i) => `${op}.${i}`);
      const entries: string[] = [];
      for (const tid of tids) {
        const fields = ["v", "1", "id", tid, "fn", "add", "args", "[]"];
        entries.push(String(await c.sendCommand(["XADD", stream, "*", ...fields])));
        await c.sendCommand(["HSET", `${app}:${op}:status`, tid, "1"]);
      }
      await c.sendCommand(["XREADGROUP", "GROUP", GROUP, "A", "STREAMS", stream, ">"]);
      // A short value with timings, one without, and one too long for a compact notice.
      const outcomes: [string, string][] = [["7", "1,2.5,3"], ["[1,2]", ""], [long, "4,5,6"]];
      const args = [app, GROUP, "default"];
      tids.forEach((tid, i) =>
        args.push(entries[i], op, tid, reply, "c", outcomes[i][0], "", outcomes[i][1])
      );
      assert.deepEqual(await FINISH.run(c, [stream], args), [1, 1, 1]);
      const written = await c.sendCommand(["XRANGE", reply, `(${init}`, "+"]) as [
        string,
        string[],
      ][];
      assert.equal(written.length, 1);
      notices.push(written[0][1]);
      // The results hash holds the values either way.
      assert.equal(await c.sendCommand(["HGET", `${app}:${op}:results`, tids[2]]), long);
    }
    const [tid0, tid1, tid2] = [0, 1, 2].map((i) => `${clients[0]}-0.${i}`);
    assert.deepEqual(notices[0], [
      "c",
      `${tid0}${NUL}1,2.5,3${NUL}7`,
      "c",
      `${tid1}${NUL}${NUL}[1,2]`,
      ...["t", tid2, "s", "2", "p", long, "m", "4,5,6"],
    ]);
    const old = [0, 1, 2].map((i) => `${clients[1]}-0.${i}`);
    assert.deepEqual(notices[1], [
      ...["t", old[0], "s", "2", "p", "7", "m", "1,2.5,3"],
      ...["t", old[1], "s", "2", "p", "[1,2]"],
      ...["t", old[2], "s", "2", "p", long, "m", "4,5,6"],
    ]);
  });

  it("a pool reads compact and classic notices in one reply entry, and ignores a broken one", async () => {
    await using pool = new StreamFuturePool({
      url: redis.url,
      app: "MixedNotices",
      tasks: TASKS,
      requireWorkers: false,
    });
    assert.equal(pool.clientId.length, CLIENT_ID_LENGTH);
    assert.ok(pool.clientId.endsWith(COMPACT_NOTICE_MARK));
    const [a, b, d] = pool.map(tasks.add, [[1, 1], [2, 2], [3, 3]]);
    const c = await redis.client();
    await waitFor(
      async () => Number(await c.sendCommand(["XLEN", "MixedNotices:queue:default"])) === 3,
      "the tasks in their stream",
    );
    await c.sendCommand([
      "XADD",
      `MixedNotices:replies:${pool.clientId}`,
      "*",
      ...["c", `${a.id}${NUL}1,2.5,1722355139617${NUL}2`],
      ...["c", "no separators"],
      ...["t", b.id, "s", "2", "p", "4", "m", "0,1,1722355139618"],
      ...["c", `${d.id}${NUL}${NUL}"six"`],
    ]);
    assert.equal(await a, 2);
    assert.deepEqual(a.timings, { wait: 1, run: 2.5, startedAt: new Date(1722355139617) });
    assert.equal(await b, 4);
    assert.equal(await d, "six");
    assert.equal(d.timings, undefined);
  });

  it("TAKE reads and claims in one call: one flat reply, malformed entries and finished tasks acked", async () => {
    const c = await redis.client();
    const app = "TakeApp";
    const stream = `${app}:queue:default`;
    await c.sendCommand(["XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"]);
    const written: [string, string[]][] = [];
    const add = async (...fields: string[]) => {
      written.push([String(await c.sendCommand(["XADD", stream, "*", ...fields])), fields]);
    };
    const task = (id: string, ...more: string[]) => ["v", "1", "id", id, "fn", "add", ...more];
    // A repeated field name keeps its first value, in Lua and in the worker alike.
    const fieldsOf = (flat: string[]) =>
      Object.fromEntries(flat.flatMap((name, i) => i % 2 ? [] : [[name, flat[i + 1]]]).reverse());
    await c.sendCommand([
      "HSET",
      `${app}:opa-1:status`,
      "opa-1.0",
      "0",
      "opa-1.1",
      "4",
      "opa-1.3",
      "0",
      "opa-1.4",
      "0",
      "opa-1.5",
      "0",
    ]);
    await c.sendCommand(["HSET", `${app}:opb-2:status`, "opb-2.1", "0"]);
    await add(...task("opa-1.0", "args", "[]")); // runs
    await add(...task("opa-1.1", "args", "[]")); // cancelled while queued
    await add("v", "1", "fn", "add", "args", "[]"); // no id
    await add(...task("bad id!", "args", "[]")); // an id outside [A-Za-z0-9_.-]
    await add(...task("opb-2.0", "op", "opb-2", "reply", "elsewhere")); // not a reply stream
    await add(...task("opb-2.1", "op", "opb-2", "reply", `${app}:replies:opb`)); // runs
    await add(...task("opa-1.2", "args", "[]")); // no status: released or never submitted
    await add(...task("opa-1.3", "args", "[]", "id", "opa-1.2")); // two ids: the first counts
    const long = JSON.stringify(["x".repeat(300)]);
    await add(...task("opa-1.4", "args", long)); // runs; longer args than TAKE packs
    await add("v", "1", "id", "opa-1.5", "fn", `a${NUL}dd`, "args", "[]"); // runs; a NUL in fn
    const reply = await TAKE.run(c, [stream], [app, GROUP, "A", "100"]) as unknown[];
    assert.equal(typeof reply[0], "number", "Redis time first");
    assert.deepEqual(reply[1], [1, "4", "m", "m", "m", 1, "", 1, 1, 1]);
    assert.equal(reply[2], 0, "the stream is drained");
    assert.deepEqual(reply.slice(3, 5), [stream, written.length]);
    // An entry with exactly the standard fields comes packed in one value: entry id, id, fn and
    // args, NUL-separated.
    assert.deepEqual(reply.slice(5, 7), [
      `${written[0][0]}${NUL}opa-1.0${NUL}add${NUL}[]`,
      `${written[1][0]}${NUL}opa-1.1${NUL}add${NUL}[]`,
    ]);
    // Any other entry comes with its field names: here one without an id.
    assert.deepEqual(reply.slice(7, 15), [written[2][0], 6, "v", "1", "fn", "add", "args", "[]"]);
    // With args longer than 256 characters, or a NUL in fn, it comes short: 0, then the values
    // of id, fn, args.
    assert.deepEqual(reply.slice(-10, -5), [written[8][0], 0, "opa-1.4", "add", long]);
    assert.deepEqual(reply.slice(-5), [written[9][0], 0, "opa-1.5", `a${NUL}dd`, "[]"]);
    assert.deepEqual(
      parseFlatEntries(reply, 3).map(({ stream: s, id, fields }) => [s, id, { ...fields }]),
      written.map(([id, flat]) => [stream, id, fieldsOf(flat)]),
    );
    // The three tasks that run are started (status 1, a heartbeat) and stay pending for A.
    assert.equal(await c.sendCommand(["HGET", `${app}:opa-1:status`, "opa-1.0"]), "1");
    assert.equal(await c.sendCommand(["HGET", `${app}:opb-2:status`, "opb-2.1"]), "1");
    assert.ok(await c.sendCommand(["HGET", `${app}:opa-1:heartbeat`, "opa-1.0"]));
    const pending = await c.sendCommand(["XPENDING", stream, GROUP, "-", "+", "10"]) as string[][];
    assert.deepEqual(
      pending.map((p) => p[0]),
      [written[0][0], written[5][0], written[7][0], written[8][0], written[9][0]],
    );
    assert.equal(await c.sendCommand(["HGET", `${app}:opa-1:status`, "opa-1.3"]), "1");
    assert.equal(await c.sendCommand(["HGET", `${app}:opa-1:status`, "opa-1.1"]), "4");
  });

  it("TAKE and START say whether the stream holds more than they were given", async () => {
    const c = await redis.client();
    const app = "MoreApp";
    const stream = `${app}:queue:default`;
    await c.sendCommand(["XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"]);
    const tids = ["opm-1.0", "opm-1.1", "opm-1.2", "opm-1.3"];
    await c.sendCommand(["HSET", `${app}:opm-1:status`, ...tids.flatMap((tid) => [tid, "0"])]);
    const add = async (tid: string) =>
      String(await c.sendCommand(["XADD", stream, "*", "v", "1", "id", tid, "fn", "add"]));
    const ids = [await add(tids[0]), await add(tids[1]), await add(tids[2])];
    const take = async (count: number) => {
      const reply = await TAKE.run(c, [stream], [app, GROUP, "A", String(count)]) as unknown[];
      return { more: reply[2], ids: parseFlatEntries(reply, 3).map((e) => e.id) };
    };
    // Stopped by its count with an entry left: more. Its count exactly drains the stream: no more
    // (no empty TAKE needed to find that out). Nothing at all: no more.
    assert.deepEqual(await take(1), { more: 1, ids: [ids[0]] });
    assert.deepEqual(await take(2), { more: 0, ids: [ids[1], ids[2]] });
    assert.deepEqual(await take(5), { more: 0, ids: [] });
    // START (after a blocking read) looks past the largest id of its batch.
    const start = async (entry: string, tid: string) =>
      (await START.run(c, [stream], [
        app,
        GROUP,
        "B",
        entry,
        entry,
        entry,
        "opm-1",
        tid,
      ]) as unknown[]).slice(1);
    const fourth = await add(tids[3]);
    await c.sendCommand(["XREADGROUP", "GROUP", GROUP, "B", "COUNT", "1", "STREAMS", stream, ">"]);
    assert.deepEqual(await start(fourth, tids[3]), [0, 1], "nothing after it; it runs");
    const fifth = await add("opm-1.4");
    assert.deepEqual(await start(fourth, tids[3]), [1, 1], "an entry after it (a retried START)");
    await c.sendCommand(["XREADGROUP", "GROUP", GROUP, "B", "COUNT", "1", "STREAMS", stream, ">"]);
    assert.deepEqual(await start(fifth, "opm-1.4"), [0, ""], "no status: not run; none after");
  });

  it("url as an object { host, port, db } selects the database", async () => {
    const c = await redis.client();
    const app = "DbApp";
    await using pool = new StreamFuturePool({
      url: { host: "127.0.0.1", port: redis.port, db: 3 },
      app,
      workers: 1,
      tasks: TASKS,
      keep: true,
    });
    const f = pool.submit(tasks.add, [1, 2]);
    assert.equal(await f, 3);
    assert.equal(
      await c.sendCommand(["EXISTS", `${app}:${f.operationId}:status`]),
      0,
      "not in db 0",
    );
    await c.sendCommand(["SELECT", "3"]);
    assert.equal(await c.sendCommand(["HGET", `${app}:${f.operationId}:status`, f.id]), "2");
    await c.sendCommand(["SELECT", "0"]);
  });

  it("disposing a future removes its entries", async () => {
    const c = await redis.client();
    const app = "DisposeApp";
    await using pool = new StreamFuturePool({ url: redis.url, app, workers: 1, tasks: TASKS });
    const [a, b] = pool.map(tasks.add, [[1, 1], [2, 2]]);
    await Promise.all([a, b]);
    await a[Symbol.asyncDispose]();
    assert.deepEqual(Object.keys(await hash(c, `${app}:${a.operationId}:status`)), [b.id]);
    assert.deepEqual(Object.keys(await hash(c, `${app}:${a.operationId}:results`)), [b.id]);
    assert.deepEqual(Object.keys(await hash(c, `${app}:${a.operationId}:heartbeat`)), [b.id]);
  });

  it("a settled operation whose futures were dropped stays readable, even after a full garbage collection, until the pool closes", async () => {
    const c = await redis.client();
    const app = "DroppedApp";
    const pool = new StreamFuturePool({ url: redis.url, app, workers: 1, tasks: TASKS });
    const exists = async (op: string) =>
      Number(await c.sendCommand(["EXISTS", `${app}:${op}:status`, `${app}:${op}:results`]));
    // Futures made and dropped inside a function that has returned: only their ids are left.
    const dropped = async () => {
      const single = pool.submit(tasks.add, [1, 2]);
      const many = pool.map(tasks.add, [[1, 1], [2, 2], [3, 3]]);
      assert.deepEqual(await Promise.all([single, ...many]), [3, 2, 4, 6]);
      return { single: [single.operationId, single.id], many: many[0].operationId };
    };
    const ids = await dropped();
    forceGc();
    await new Promise((resolve) => setTimeout(resolve, 10));
    try {
      assert.equal(await exists(ids.single[0]), 2);
      assert.equal(await exists(ids.many), 2);
      const values = async (op: string) => (await pool.results(op)).map((r) => r.value);
      assert.deepEqual(await values(ids.many), [2, 4, 6]);
      assert.deepEqual(await values(ids.single[0]), [3]);
      assert.equal(await pool.future(ids.single[1]), 3);
    } finally {
      await pool.shutdown();
    }
    assert.equal(await exists(ids.single[0]), 0);
    assert.equal(await exists(ids.many), 0);
  });
});
