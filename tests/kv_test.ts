import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { KeyValueStore } from "../lib/kv.ts";
import { ConnectionError, ProtocolError } from "../lib/errors.ts";
import { KV_INCR } from "../lib/_lua/kv_incr.ts";
import { StreamFuturePool } from "../mod.ts";
import { startLossyProxy } from "./faults/_proxy.ts";
import type { RedisConnection } from "../lib/_redis.ts";
import { type ChildProcessHandle, isDeno, siblingUrl, spawnProcess } from "../lib/_runtime.ts";
import { startRedis, type TestRedis, waitFor } from "./_redis.ts";

const CLIENT = new URL("./kv/_client.ts", import.meta.url);

let redis: TestRedis;
let c: RedisConnection;
let apps = 0;
const children: ChildProcessHandle[] = [];

/** A store of a fresh app, and its app name. */
function store(options?: { scanCount?: number }): KeyValueStore {
  return new KeyValueStore(c, `kv${apps++}`, options);
}

/** Starts tests/kv/_client.ts as a process of this runtime (`deno run -A` or `node`). */
async function startClient(args: string[]): Promise<ChildProcessHandle> {
  const path = fileURLToPath(siblingUrl(CLIENT));
  const child = await spawnProcess(
    process.execPath,
    isDeno ? ["run", "-A", path, ...args] : [path, ...args],
  );
  children.push(child);
  return child;
}

/**
 * Runs `n` client processes (each with its own connection) of one mode at the same time: waits
 * until all are connected, releases them together, and returns what each printed.
 */
async function runClients(
  kv: KeyValueStore,
  n: number,
  mode: string,
  key: string,
  count: number,
  window = 16,
): Promise<unknown[][]> {
  const started = await Promise.all(
    Array.from(
      { length: n },
      (_, i) => startClient([redis.url, kv.app, `p${i}`, mode, key, String(count), String(window)]),
    ),
  );
  await waitFor(
    () => started.every((child) => child.stdout().startsWith("ready\n")),
    "client processes connected",
    30_000,
  );
  // One start token each, in one command: they all start at once.
  await kv.append("go", ...started.map(() => 1));
  return await Promise.all(started.map(async (child) => {
    const status = await child.exited;
    assert.equal(status.code, 0, `client failed:\n${child.stderr()}`);
    const lines = child.stdout().trim().split("\n");
    return JSON.parse(lines[lines.length - 1]) as unknown[];
  }));
}

async function raw(args: string[]): Promise<unknown> {
  return await c.sendCommand(args);
}

describe("KeyValueStore (lib/kv.ts)", () => {
  before(async () => {
    redis = await startRedis();
    c = await redis.client();
  });
  afterEach(async () => {
    for (const child of children.splice(0)) {
      child.kill("SIGKILL");
      await child.exited;
    }
  });
  after(async () => {
    await redis.stop();
  });

  describe("get / set", () => {
    it("values of every codec type round-trip; plain JSON is stored as its JSON text", async () => {
      const kv = store();
      const values: Record<string, unknown> = {
        string: "héllo 😀 \u2028",
        number: 5,
        float: -1.5,
        null: null,
        bool: false,
        object: { a: 1, b: [true, { c: "x" }] },
        date: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)),
        bigint: 2n ** 70n,
        map: new Map<unknown, unknown>([["k", 1], [2, new Set([3n])]]),
        set: new Set(["a", "b"]),
        bytes: new Uint8Array([0, 1, 255]),
        nan: NaN,
        negZero: -0,
        infinity: -Infinity,
        nested: { when: [new Date(0)], big: { n: -3n }, u: undefined },
      };
      for (const [key, value] of Object.entries(values)) await kv.set(key, value);
      for (const [key, value] of Object.entries(values)) {
        assert.deepStrictEqual(await kv.get(key), value, key);
      }
      assert.equal(await raw(["GET", `${kv.app}:kv:number`]), "5");
      assert.equal(
        await raw(["GET", `${kv.app}:kv:object`]),
        '{"a":1,"b":[true,{"c":"x"}]}',
      );
      assert.equal(await raw(["TYPE", `${kv.app}:kv:string`]), "string");
    });

    it("get of a missing key is undefined; undefined itself can be stored", async () => {
      const kv = store();
      assert.equal(await kv.get("missing"), undefined);
      await kv.set("u", undefined);
      assert.equal(await kv.get("u"), undefined);
      assert.equal(await raw(["EXISTS", `${kv.app}:kv:u`]), 1);
      assert.equal(await kv.delete("u"), true);
    });

    it("an array is a Redis list, one codec JSON element per item; [] is the string []", async () => {
      const kv = store();
      const list = [1, "two", new Date(0), [3, 4], { five: 5n }, undefined];
      await kv.set("list", list);
      assert.equal(await raw(["TYPE", `${kv.app}:kv:list`]), "list");
      assert.deepStrictEqual(await raw(["LRANGE", `${kv.app}:kv:list`, "0", "-1"]), [
        "1",
        '"two"',
        '{"$sf":"Date","v":"1970-01-01T00:00:00.000Z"}',
        "[3,4]",
        '{"five":{"$sf":"BigInt","v":"5"}}',
        '{"$sf":"undefined"}',
      ]);
      assert.deepStrictEqual(await kv.get("list"), list);
      // Sparse arrays: holes are undefined, as in the codec.
      // deno-lint-ignore no-sparse-arrays
      await kv.set("sparse", [1, , 3]);
      assert.deepStrictEqual(await kv.get("sparse"), [1, undefined, 3]);

      await kv.set("empty", []);
      assert.equal(await raw(["GET", `${kv.app}:kv:empty`]), "[]");
      assert.deepStrictEqual(await kv.get("empty"), []);
      // The string "[]" is not an empty array.
      await kv.set("text", "[]");
      assert.equal(await kv.get("text"), "[]");
      await assert.rejects(kv.append("text", 1), TypeError);
    });

    it("set replaces a value of the other kind (list <-> string) and a list by a shorter one", async () => {
      const kv = store();
      await kv.set("k", [1, 2, 3]);
      await kv.set("k", "now a string");
      assert.equal(await kv.get("k"), "now a string");
      await kv.set("k", [4]);
      assert.deepStrictEqual(await kv.get("k"), [4]);
      await kv.set("k", [1, 2, 3]);
      await kv.set("k", [9, 8]);
      assert.deepStrictEqual(await kv.get("k"), [9, 8]);
      await kv.set("k", []);
      assert.deepStrictEqual(await kv.get("k"), []);
      await kv.set("k", { a: 1 });
      assert.deepStrictEqual(await kv.get("k"), { a: 1 });
      // A key of another Redis type (written by something else) is replaced too.
      await raw(["HSET", `${kv.app}:kv:h`, "f", "v"]);
      await kv.set("h", [1]);
      assert.deepStrictEqual(await kv.get("h"), [1]);
    });

    it("set is atomic: a reader never sees the key missing or a list half-written", async () => {
      const kv = store();
      const other = await redis.client();
      const reader = new KeyValueStore(other, kv.app);
      const list = Array.from({ length: 10_000 }, (_, i) => i);
      await kv.set("k", list);
      let stop = false;
      let reads = 0;
      const reading = (async () => {
        while (!stop) {
          const value = await reader.get("k");
          reads++;
          if (Array.isArray(value)) assert.equal(value.length, list.length);
          else assert.equal(value, "string");
        }
      })();
      for (let i = 0; i < 40; i++) await kv.set("k", i % 2 ? list : "string");
      stop = true;
      await reading;
      assert.ok(reads > 0);
      other.close();
    });

    it("reads run no script: Redis' Lua would hash every byte of the value", async () => {
      const kv = store();
      const big = "x".repeat(1 << 20);
      await kv.set("big", big);
      await kv.set("bigs", [big, big]);
      await raw(["CONFIG", "RESETSTAT"]);
      assert.equal(await kv.get("big"), big);
      assert.deepEqual(await kv.get("bigs"), [big, big]);
      assert.equal(await kv.get("nothing"), undefined);
      const read = new Map<string, unknown>();
      for await (const [key, value] of kv.entries("big")) read.set(key, value);
      assert.deepEqual(read, new Map<string, unknown>([["big", big], ["bigs", [big, big]]]));
      const stats = String(await raw(["INFO", "commandstats"]));
      assert.doesNotMatch(stats, /cmdstat_(fcall|evalsha|eval):/, "no script ran");
      assert.match(stats, /cmdstat_mget:calls=1,/, "entries reads strings with MGET");
    });

    it("a key that keeps changing type between the plain reads is read by a script at last", async () => {
      const app = `kv${apps++}`;
      const name = `${app}:kv:flip`;
      await raw(["HSET", name, "f", "1"]);
      // Whenever the store asks for the key's type, the key is a string for that moment only:
      // GET and LRANGE both find a hash, TYPE a string, and so on, until the store gives up.
      const commander = {
        sendCommand: async (args: string[]) => {
          if (args[0] !== "TYPE") return await c.sendCommand(args);
          await raw(["SET", name, '"now a string"']);
          const reply = await c.sendCommand(args);
          await raw(["DEL", name]);
          await raw(["HSET", name, "f", "1"]);
          return reply;
        },
      };
      const kv = new KeyValueStore(commander, app);
      await raw(["CONFIG", "RESETSTAT"]);
      await assert.rejects(kv.get("flip"), { name: "ProtocolError", message: /a Redis hash/ });
      const stats = String(await raw(["INFO", "commandstats"]));
      assert.match(stats, /cmdstat_get:calls=10,/, "ten plain reads");
      // (FCALL, once more after loading the library if this Redis had not run it yet.)
      assert.match(stats, /cmdstat_(fcall|evalsha|eval):calls=\d+,/, "read by script at last");
    });

    it("values the codec rejects throw its TypeError naming the path; nothing is written", async () => {
      const kv = store();
      await assert.rejects(kv.set("f", { ok: 1, f: () => 1 }), {
        name: "TypeError",
        message: /^value\.f: a function cannot be serialized/,
      });
      await assert.rejects(kv.set("f", [1, { s: Symbol("x") }]), {
        name: "TypeError",
        message: /^value\[1\]\.s: a symbol cannot be serialized/,
      });
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      await assert.rejects(kv.set("f", cyclic), { name: "TypeError", message: /cyclic/ });
      await assert.rejects(kv.append("f", 1, new WeakMap()), {
        name: "TypeError",
        message: /^values\[1\]: a WeakMap cannot be serialized/,
      });
      assert.equal(await raw(["EXISTS", `${kv.app}:kv:f`]), 0);
    });

    it("a large list: 100,000 elements set, read, appended to and popped", async () => {
      const kv = store();
      const list = Array.from({ length: 100_000 }, (_, i) => ({ i }));
      await kv.set("big", list);
      assert.equal(await raw(["LLEN", `${kv.app}:kv:big`]), 100_000);
      const read = await kv.get<{ i: number }[]>("big");
      assert.equal(read?.length, 100_000);
      assert.deepStrictEqual(read?.[99_999], { i: 99_999 });
      const more = Array.from({ length: 20_000 }, (_, i) => 100_000 + i);
      assert.equal(await kv.append("big", ...more), 120_000);
      assert.equal(await kv.pop("big"), 119_999);
      assert.equal(await raw(["LLEN", `${kv.app}:kv:big`]), 119_999);
    });
  });

  describe("append", () => {
    it("creates the array, appends one or several values and returns the new length", async () => {
      const kv = store();
      assert.equal(await kv.append("a", "x"), 1);
      assert.equal(await kv.append("a", 2, new Date(0), undefined), 4);
      assert.equal(await kv.append("a"), 4, "no values: the length");
      assert.equal(await kv.append("none"), 0);
      assert.equal(await raw(["EXISTS", `${kv.app}:kv:none`]), 0, "no values: nothing created");
      assert.deepStrictEqual(await kv.get("a"), ["x", 2, new Date(0), undefined]);
      await kv.set("l", [1]);
      assert.equal(await kv.append("l", 2), 2);
      assert.deepStrictEqual(await kv.get("l"), [1, 2]);
    });

    it("works on an empty array (stored as the string []) and keeps its time to live", async () => {
      const kv = store();
      await kv.set("e", []);
      assert.equal(await kv.append("e"), 0);
      assert.equal(await kv.append("e", "a", "b"), 2);
      assert.deepStrictEqual(await kv.get("e"), ["a", "b"]);
      assert.equal(await raw(["PTTL", `${kv.app}:kv:e`]), -1);

      await kv.set("t", [], { ttl: 60_000 });
      assert.equal(await kv.append("t", 1), 1);
      const ttl = Number(await raw(["PTTL", `${kv.app}:kv:t`]));
      assert.ok(ttl > 50_000 && ttl <= 60_000, String(ttl));
    });

    it("keeps the time to live of a list", async () => {
      const kv = store();
      await kv.set("l", [1], { ttl: 60_000 });
      await kv.append("l", 2, 3);
      const ttl = Number(await raw(["PTTL", `${kv.app}:kv:l`]));
      assert.ok(ttl > 50_000 && ttl <= 60_000, String(ttl));
    });

    it("TypeError naming the key on a value that is not an array; the value is unchanged", async () => {
      const kv = store();
      await kv.set("n", 5);
      await assert.rejects(kv.append("n", 1), {
        name: "TypeError",
        message: 'kv.append("n"): the key holds a value that is not an array; append works ' +
          "on arrays and missing keys",
      });
      assert.equal(await kv.get("n"), 5);
      await kv.set("obj", { length: 0 });
      await assert.rejects(kv.append("obj"), TypeError, "even with no values");
      await raw(["HSET", `${kv.app}:kv:h`, "f", "v"]);
      await assert.rejects(kv.append("h", 1), {
        name: "TypeError",
        message: /^kv\.append\("h"\): the key holds a Redis hash/,
      });
    });
  });

  describe("pop", () => {
    it("removes and returns the last element, like Array.prototype.pop", async () => {
      const kv = store();
      await kv.set("s", [1, new Date(0), { a: 2n }]);
      assert.deepStrictEqual(await kv.pop("s"), { a: 2n });
      assert.deepStrictEqual(await kv.pop("s"), new Date(0));
      assert.deepStrictEqual(await kv.get("s"), [1]);
      assert.equal(await kv.pop("s"), 1);
      // The last pop leaves an empty array, not a missing key.
      assert.deepStrictEqual(await kv.get("s"), []);
      assert.equal(await kv.pop("s"), undefined);
      assert.equal(await kv.pop("missing"), undefined);
      assert.equal(await raw(["EXISTS", `${kv.app}:kv:missing`]), 0);
      assert.equal(await kv.append("s", "again"), 1);
      assert.equal(await kv.pop("s"), "again");
    });

    it("an element that is undefined is popped as undefined (and removed)", async () => {
      const kv = store();
      await kv.set("u", [1, undefined]);
      assert.equal(await kv.pop("u"), undefined);
      assert.deepStrictEqual(await kv.get("u"), [1]);
    });

    it("popping the last element keeps the key's time to live", async () => {
      const kv = store();
      await kv.set("t", ["x"], { ttl: 60_000 });
      assert.equal(await kv.pop("t"), "x");
      assert.deepStrictEqual(await kv.get("t"), []);
      const ttl = Number(await raw(["PTTL", `${kv.app}:kv:t`]));
      assert.ok(ttl > 50_000 && ttl <= 60_000, String(ttl));
      await kv.set("p", ["x"]);
      await kv.pop("p");
      assert.equal(await raw(["PTTL", `${kv.app}:kv:p`]), -1);
    });

    it("TypeError naming the key on a value that is not an array; the value is unchanged", async () => {
      const kv = store();
      await kv.set("str", "abc");
      await assert.rejects(kv.pop("str"), {
        name: "TypeError",
        message: 'kv.pop("str"): the key holds a value that is not an array; pop works on ' +
          "arrays and missing keys",
      });
      assert.equal(await kv.get("str"), "abc");
      await raw(["SADD", `${kv.app}:kv:set`, "m"]);
      await assert.rejects(kv.pop("set"), { name: "TypeError", message: /a Redis set/ });
    });
  });

  describe("incr", () => {
    it("integers (INCRBY), missing keys count as 0, default step 1, negative steps", async () => {
      const kv = store();
      assert.equal(await kv.incr("n"), 1);
      assert.equal(await kv.incr("n"), 2);
      assert.equal(await kv.incr("n", 10), 12);
      assert.equal(await kv.incr("n", -20), -8);
      assert.equal(await kv.incr("n", 0), -8);
      assert.equal(await kv.get("n"), -8);
      assert.equal(await raw(["GET", `${kv.app}:kv:n`]), "-8");
      await kv.set("m", 40);
      assert.equal(await kv.incr("m", 2), 42);
      assert.equal(await kv.incr("big", Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER);
      // Exact in Redis beyond 2^53 (the JavaScript result rounds, the stored text does not).
      await raw(["SET", `${kv.app}:kv:exact`, "9007199254740993"]);
      assert.equal(await kv.incr("exact"), 9007199254740994);
      assert.equal(await raw(["GET", `${kv.app}:kv:exact`]), "9007199254740994");
    });

    it("fractions (INCRBYFLOAT): fractional steps, fractional values, back to integers", async () => {
      const kv = store();
      assert.equal(await kv.incr("f", 0.1), 0.1);
      assert.equal(await kv.incr("f", 0.2), 0.3, "extended precision, 17 digits");
      assert.equal(await kv.get("f"), 0.3);
      assert.equal(await kv.incr("f", 1), 1.3, "integer step on a fractional value");
      assert.equal(await kv.incr("f", 0.7), 2);
      assert.equal(await raw(["GET", `${kv.app}:kv:f`]), "2");
      assert.equal(await kv.incr("f", 1), 3, "an integer again: INCRBY");
      await kv.set("g", 1.5);
      assert.equal(await kv.incr("g", -3), -1.5);
      assert.equal(await kv.incr("tiny", 1e-7), 1e-7);
      assert.equal(await kv.incr("huge", 1e21), 1e21, "an unsafe integer step");
      assert.equal(await kv.incr("huge", 1), 1e21 + 1);
      await kv.set("exp", 1e21);
      assert.equal(await kv.incr("exp", 1), 1e21);
    });

    it("keeps the time to live", async () => {
      const kv = store();
      await kv.set("n", 1, { ttl: 60_000 });
      await kv.incr("n");
      await kv.incr("n", 0.5);
      const ttl = Number(await raw(["PTTL", `${kv.app}:kv:n`]));
      assert.ok(ttl > 50_000 && ttl <= 60_000, String(ttl));
      assert.equal(await kv.get("n"), 2.5);
    });

    it("-0 (stored as the codec's tag, not plain JSON) counts as 0, keeping the time to live", async () => {
      const kv = store();
      await kv.set("z", -0);
      assert.equal(await raw(["GET", `${kv.app}:kv:z`]), '{"$sf":"Number","v":"-0"}');
      assert.ok(Object.is(await kv.get("z"), -0));
      assert.equal(await kv.incr("z"), 1);
      assert.equal(await kv.get("z"), 1);
      await kv.set("f", -0, { ttl: 60_000 });
      assert.equal(await kv.incr("f", 0.5), 0.5, "INCRBYFLOAT");
      assert.equal(await raw(["GET", `${kv.app}:kv:f`]), "0.5");
      const ttl = Number(await raw(["PTTL", `${kv.app}:kv:f`]));
      assert.ok(ttl > 50_000 && ttl <= 60_000, String(ttl));
      await kv.set("n", -0);
      assert.equal(await kv.incr("n", -3), -3);
      await kv.set("b", -0);
      assert.equal(await kv.incr("b", Number.MAX_VALUE), Number.MAX_VALUE);
      // Other tagged numbers are still refused, unchanged.
      await kv.set("nan", NaN);
      await assert.rejects(kv.incr("nan"), { name: "TypeError", message: /not a number/ });
      assert.ok(Number.isNaN(await kv.get("nan")));
    });

    it("TypeError on an array or a value that is not a number; the value is unchanged", async () => {
      const kv = store();
      await kv.set("l", [1]);
      await assert.rejects(kv.incr("l"), {
        name: "TypeError",
        message: 'kv.incr("l"): the key holds an array; incr works on numbers and missing keys',
      });
      await kv.set("e", []);
      await assert.rejects(kv.incr("e", 0.5), { name: "TypeError", message: /holds an array/ });
      for (const value of ["5", "abc", 5n, NaN, { n: 1 }, true, null]) {
        await kv.set("v", value);
        await assert.rejects(kv.incr("v"), {
          name: "TypeError",
          message: 'kv.incr("v"): the key holds a value that is not a number; incr works on ' +
            "numbers and missing keys",
        }, String(value));
        await assert.rejects(kv.incr("v", 0.5), TypeError);
        assert.deepStrictEqual(await kv.get("v"), value);
      }
      await raw(["HSET", `${kv.app}:kv:h`, "f", "1"]);
      await assert.rejects(kv.incr("h"), { name: "TypeError", message: /a Redis hash/ });
    });

    it("RangeError when the result would not be finite; the value is unchanged", async () => {
      const kv = store();
      await kv.set("max", Number.MAX_VALUE);
      await assert.rejects(kv.incr("max", Number.MAX_VALUE), {
        name: "RangeError",
        message: /the result would not be a finite number; the value is unchanged/,
      });
      assert.equal(await kv.get("max"), Number.MAX_VALUE);
      await assert.rejects(
        kv.incr("new", -Number.MAX_VALUE * 0.9).then(() => {
          return kv.incr("new", -Number.MAX_VALUE * 0.9);
        }),
        RangeError,
      );
      assert.equal(await kv.get("new"), -Number.MAX_VALUE * 0.9);
    });

    it("checks its step: TypeError for a non-number, RangeError for NaN / Infinity", async () => {
      const kv = store();
      await assert.rejects(kv.incr("n", "1" as unknown as number), {
        name: "TypeError",
        message: 'by must be a finite number, got "1"',
      });
      await assert.rejects(kv.incr("n", 1n as unknown as number), TypeError);
      await assert.rejects(kv.incr("n", NaN), { name: "RangeError", message: /got NaN/ });
      await assert.rejects(kv.incr("n", Infinity), RangeError);
      assert.equal(await kv.get("n"), undefined);
    });
  });

  describe("delete", () => {
    it("returns whether the key existed, for values and arrays", async () => {
      const kv = store();
      await kv.set("s", "x");
      await kv.set("l", [1, 2]);
      await kv.set("e", []);
      assert.equal(await kv.delete("s"), true);
      assert.equal(await kv.delete("s"), false);
      assert.equal(await kv.delete("l"), true);
      assert.equal(await kv.delete("e"), true);
      assert.equal(await kv.delete("never"), false);
      assert.equal(await kv.get("l"), undefined);
      assert.equal(await kv.append("l", 3), 1, "a deleted array starts over");
    });
  });

  describe("time to live", () => {
    it("a value set with ttl expires; so does a list", async () => {
      const kv = store();
      await kv.set("s", "soon gone", { ttl: 150 });
      await kv.set("l", [1, 2], { ttl: 150 });
      await kv.set("keep", "stays");
      const pttl = Number(await raw(["PTTL", `${kv.app}:kv:s`]));
      assert.ok(pttl > 0 && pttl <= 150, String(pttl));
      assert.equal(await kv.get("s"), "soon gone");
      await waitFor(async () => await kv.get("s") === undefined, "the value to expire");
      await waitFor(async () => await kv.get("l") === undefined, "the list to expire");
      assert.equal(await kv.get("keep"), "stays");
      assert.equal(await kv.pop("l"), undefined);
      assert.equal(await kv.incr("s"), 1, "an expired key counts as missing");
    });

    it("set without ttl removes an earlier time to live; fractions round up", async () => {
      const kv = store();
      await kv.set("k", 1, { ttl: 60_000 });
      await kv.set("k", 2);
      assert.equal(await raw(["PTTL", `${kv.app}:kv:k`]), -1);
      await kv.set("l", [1], { ttl: 60_000 });
      await kv.set("l", [2]);
      assert.equal(await raw(["PTTL", `${kv.app}:kv:l`]), -1);
      await kv.set("f", 1, { ttl: 0.2 });
      await waitFor(async () => await kv.get("f") === undefined, "a 1 ms ttl to expire");
      await kv.set("u", 1, { ttl: undefined });
      assert.equal(await raw(["PTTL", `${kv.app}:kv:u`]), -1);
    });

    it("ttl must be a positive finite number of milliseconds", async () => {
      const kv = store();
      for (const ttl of [0, -1, -0.5, NaN, Infinity, Number.MAX_SAFE_INTEGER + 2]) {
        await assert.rejects(kv.set("k", 1, { ttl }), {
          name: "RangeError",
          message: /^ttl must be /,
        }, String(ttl));
      }
      await assert.rejects(kv.set("k", [1], { ttl: 0 }), RangeError);
      await assert.rejects(
        kv.set("k", 1, { ttl: "100" as unknown as number }),
        {
          name: "TypeError",
          message: 'ttl must be a positive finite number of milliseconds, got "100"',
        },
      );
      await assert.rejects(kv.set("k", 1, null as unknown as object), TypeError);
      await assert.rejects(kv.set("k", 1, 100 as unknown as object), TypeError);
      assert.equal(await raw(["EXISTS", `${kv.app}:kv:k`]), 0);
    });
  });

  describe("call order", () => {
    it("calls not awaited take effect in the order they were made, also while the scripts load", async () => {
      for (const round of [1, 2]) {
        // A Redis without the store's scripts, and a connection that has not loaded them.
        await raw(["FUNCTION", "FLUSH"]);
        await raw(["SCRIPT", "FLUSH"]);
        const fresh = await redis.client();
        {
          const kv = new KeyValueStore(fresh, `kvorder${round}`);
          const calls = [
            kv.incr("n"),
            kv.set("n", 100),
            kv.append("list", 1),
            kv.set("list", "final"),
            kv.set("swap", [1]),
            kv.set("swap", "b"),
            kv.set("stack", [1, 2]),
            kv.pop("stack"),
            kv.get("stack"),
            kv.delete("n"),
            kv.incr("n", 5),
          ];
          const results = await Promise.all(calls);
          assert.deepEqual(results, [
            1,
            undefined,
            1,
            undefined,
            undefined,
            undefined,
            undefined,
            2,
            [
              1,
            ],
            true,
            5,
          ], `round ${round}`);
          assert.equal(await kv.get("list"), "final");
          assert.equal(await kv.get("swap"), "b");
        }
      }
    });
  });

  describe("keys", () => {
    it("any non-empty string is a key, and comes back unchanged from entries()", async () => {
      const kv = store();
      const keys = ["a:b:c", "with space", "*", "[x]", "a\\b", "ü😀", "kv:nested", " ", "\n"];
      for (const [i, key] of keys.entries()) await kv.set(key, i);
      for (const [i, key] of keys.entries()) assert.equal(await kv.get(key), i, key);
      const seen = new Map<string, unknown>();
      for await (const [key, value] of kv.entries()) seen.set(key, value);
      assert.deepStrictEqual(
        [...seen].sort(),
        keys.map((key, i) => [key, i] as [string, number]).sort(),
      );
    });

    it("TypeError for an empty or non-string key, or one with a lone surrogate", async () => {
      const kv = store();
      for (const key of ["", undefined, null, 5, {}]) {
        for (
          const call of [
            () => kv.get(key as string),
            () => kv.set(key as string, 1),
            () => kv.append(key as string, 1),
            () => kv.pop(key as string),
            () => kv.incr(key as string),
            () => kv.delete(key as string),
          ]
        ) {
          await assert.rejects(call(), {
            name: "TypeError",
            message: /^kv\.\w+: key must be a non-empty string, got /,
          });
        }
      }
      await assert.rejects(kv.set("a\ud800", 1), {
        name: "TypeError",
        message: /lone UTF-16 surrogate/,
      });
      assert.throws(() => kv.entries(5 as unknown as string), TypeError);
    });

    it("the constructor checks the app name and the commander", () => {
      assert.throws(() => new KeyValueStore(c, "bad app"), {
        name: "TypeError",
        message: /^app must be a non-empty string of letters/,
      });
      assert.throws(() => new KeyValueStore(c, "a:b"), TypeError);
      assert.throws(() => new KeyValueStore(c, undefined as unknown as string), TypeError);
      assert.throws(() => new KeyValueStore({} as RedisConnection, "app"), TypeError);
      assert.throws(() => new KeyValueStore(c, "app", { scanCount: 0 }), RangeError);
    });
  });

  describe("namespacing", () => {
    it("two apps do not see each other's keys; entries() skips the app's other keys", async () => {
      const a = new KeyValueStore(c, "nsA");
      const b = new KeyValueStore(c, "nsA2");
      await a.set("shared", "from A");
      await b.set("shared", "from B");
      await a.append("list", 1);
      assert.equal(await a.get("shared"), "from A");
      assert.equal(await b.get("shared"), "from B");
      assert.equal(await b.get("list"), undefined);
      assert.equal(await raw(["GET", "nsA:kv:shared"]), '"from A"');
      // Other keys of the app, and look-alikes, are not part of the store.
      await raw(["SET", "nsA:queue:kv", "x"]);
      await raw(["SET", "nsA:kvx", "x"]);
      await raw(["SET", "nsA:KV:y", "x"]);
      const entries = async (kv: KeyValueStore) => {
        const out: [string, unknown][] = [];
        for await (const entry of kv.entries()) out.push(entry);
        return out.sort();
      };
      assert.deepStrictEqual(await entries(a), [["list", [1]], ["shared", "from A"]]);
      assert.deepStrictEqual(await entries(b), [["shared", "from B"]]);
      assert.equal(await b.delete("list"), false);
      assert.equal(await a.delete("shared"), true);
      assert.equal(await b.get("shared"), "from B");
    });
  });

  describe("entries", () => {
    it("walks thousands of keys in pages, each once, with their values", async () => {
      const kv = store({ scanCount: 50 });
      const n = 2_500;
      await Promise.all(
        Array.from({ length: n }, (_, i) => kv.set(`k${i}`, i % 3 ? i : [i, new Date(i)])),
      );
      const seen = new Map<string, unknown>();
      for await (const [key, value] of kv.entries()) {
        assert.ok(!seen.has(key), `${key} twice`);
        seen.set(key, value);
      }
      assert.equal(seen.size, n);
      for (let i = 0; i < n; i++) {
        assert.deepStrictEqual(seen.get(`k${i}`), i % 3 ? i : [i, new Date(i)]);
      }
    });

    it("with a prefix: only keys starting with it, glob characters taken literally", async () => {
      const kv = store();
      for (const key of ["user:1", "user:2", "users", "use", "a*b", "a*", "aXb", "[ab]", "a"]) {
        await kv.set(key, key);
      }
      const keysOf = async (prefix?: string) => {
        const out: string[] = [];
        for await (const [key, value] of kv.entries(prefix)) {
          assert.equal(value, key);
          out.push(key);
        }
        return out.sort();
      };
      assert.deepStrictEqual(await keysOf("user:"), ["user:1", "user:2"]);
      assert.deepStrictEqual(await keysOf("user"), ["user:1", "user:2", "users"]);
      assert.deepStrictEqual(await keysOf("a*"), ["a*", "a*b"]);
      assert.deepStrictEqual(await keysOf("[a"), ["[ab]"]);
      assert.deepStrictEqual(await keysOf("nothing"), []);
      assert.equal((await keysOf()).length, 9);
      assert.equal((await keysOf("")).length, 9);
    });

    it("an empty store yields nothing; an iterator can be left early", async () => {
      const kv = store();
      for await (const _ of kv.entries()) assert.fail("nothing expected");
      for (let i = 0; i < 10; i++) await kv.set(`k${i}`, i);
      let count = 0;
      for await (const _ of kv.entries()) if (++count === 3) break;
      assert.equal(count, 3);
    });
  });

  describe("data the store did not write", () => {
    it("ProtocolError naming the key for text that is not codec JSON, or another Redis type", async () => {
      const kv = store();
      await raw(["SET", `${kv.app}:kv:bad`, "not json"]);
      await assert.rejects(kv.get("bad"), (error: Error) => {
        assert.ok(error instanceof ProtocolError);
        assert.match(
          error.message,
          /^kv key "bad" \(Redis key "kv\d+:kv:bad"\) holds "not json", which the key-value store did not write/,
        );
        assert.ok(error.cause instanceof SyntaxError);
        return true;
      });
      await raw(["SET", `${kv.app}:kv:tag`, '{"$sf":"Nope"}']);
      await assert.rejects(kv.get("tag"), ProtocolError);
      await raw(["RPUSH", `${kv.app}:kv:list`, "1", "{oops"]);
      await assert.rejects(kv.get("list"), { name: "ProtocolError", message: /"\{oops"/ });
      await assert.rejects(kv.pop("list"), ProtocolError);
      assert.equal(await kv.pop("list"), 1, "the bad element was removed all the same");
      await raw(["HSET", `${kv.app}:kv:hash`, "f", "v"]);
      await assert.rejects(kv.get("hash"), { name: "ProtocolError", message: /a Redis hash/ });
      await assert.rejects(async () => {
        for await (const _ of kv.entries("hash")) { /* the error comes first */ }
      }, ProtocolError);
      // The store keeps working around them, and set / delete replace them.
      await kv.set("bad", "fixed");
      assert.equal(await kv.get("bad"), "fixed");
      assert.equal(await kv.delete("hash"), true);
    });
  });

  describe("concurrency (separate processes, each with its own connection)", () => {
    it("3 processes x 2,000 concurrent appends: all 6,000 values kept, none lost or duplicated", async () => {
      const kv = store();
      const outputs = await runClients(kv, 3, "append", "log", 2_000);
      const list: string[] = (await kv.get<string[]>("log")) ?? [];
      assert.equal(list.length, 6_000);
      assert.equal(new Set(list).size, 6_000, "no duplicates");
      for (let p = 0; p < 3; p++) {
        // Each process' values are all there, in the order it appended them.
        const mine: string[] = list.filter((v) => v.startsWith(`p${p}:`));
        assert.deepStrictEqual(mine, Array.from({ length: 2_000 }, (_, i) => `p${p}:${i}`));
      }
      // Every append saw a distinct length: each was one atomic step.
      const lengths = outputs.flat().map((r) => (r as [number, number])[1]).sort((x, y) => x - y);
      assert.deepStrictEqual(lengths, Array.from({ length: 6_000 }, (_, i) => i + 1));
      // The processes really overlapped: the values interleave.
      assert.ok(!list.slice(0, 2_000).every((v) => v.startsWith(list[0].slice(0, 3))));
    });

    it("3 processes x 1,000 concurrent incr: the sum is exact, every result distinct", async () => {
      const kv = store();
      const outputs = await runClients(kv, 3, "incr", "n", 1_000);
      assert.equal(await kv.get("n"), 3_000);
      const results = (outputs.flat() as number[]).sort((x, y) => x - y);
      assert.deepStrictEqual(results, Array.from({ length: 3_000 }, (_, i) => i + 1));

      await runClients(kv, 3, "incr-float", "f", 1_000);
      assert.equal(await kv.get("f"), 750);
    });

    it("3 processes popping one array of 6,000: each element popped exactly once", async () => {
      const kv = store();
      const values = Array.from({ length: 6_000 }, (_, i) => `v${i}`);
      await kv.set("work", values);
      const outputs = await runClients(kv, 3, "pop", "work", 0);
      const popped = outputs.flat() as string[];
      assert.equal(popped.length, 6_000);
      assert.deepStrictEqual([...popped].sort(), [...values].sort());
      assert.ok(outputs.every((o) => o.length > 0), "every process got some");
      assert.deepStrictEqual(await kv.get("work"), []);
    });
  });

  it("a pool's store sends a call again over a lost connection, except append, pop and incr", async () => {
    const proxy = await startLossyProxy(redis.port);
    try {
      await using pool = new StreamFuturePool({
        url: proxy.url,
        app: `kv${apps++}`,
        requireWorkers: false,
      });
      await pool.kv.set("k", { a: 1 }); // (scripts loaded)
      await pool.kv.incr("n");
      const lostGet = proxy.loseReplyTo("GET");
      assert.deepEqual(await pool.kv.get("k"), { a: 1 });
      await lostGet;
      const lostSet = proxy.loseReplyTo("SET");
      await pool.kv.set("k", 2);
      await lostSet;
      assert.equal(await pool.kv.get("k"), 2);
      const name = await KV_INCR.functionName();
      const lostIncr = proxy.loseReplyTo(name.slice(name.lastIndexOf("_") + 1));
      await assert.rejects(pool.kv.incr("n"), (error: unknown) => {
        assert.ok(error instanceof ConnectionError, String(error));
        assert.match(error.message, /may or may not have been applied/);
        return true;
      });
      await lostIncr;
      assert.equal(await pool.kv.get("n"), 2, "it was applied, once: not sent again");
    } finally {
      await proxy.close();
    }
  });
});
