import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { RemoteTaskError } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import type { TestRedis } from "../_redis.ts";
import type { Trace } from "./_tasks.ts";
import { faultHooks, faultPool, nextApp, startWorker, waitFor } from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

/** The error a future rejects with. */
async function failure(f: PromiseLike<unknown>): Promise<RemoteTaskError> {
  const error = await Promise.resolve(f).then(() => undefined, (e) => e);
  assert.ok(error instanceof RemoteTaskError, `expected a RemoteTaskError, got ${error}`);
  return error;
}

describe("bad input: a clear error, the worker survives, nothing else is lost", () => {
  faultHooks(children, (r) => (redis = r));

  it("hand-written malformed entries: dropped or failed with ProtocolError; the rest runs", async () => {
    const app = nextApp("badentry");
    const worker = await startWorker(redis, app);
    children.push(worker);
    await using pool = faultPool(redis, app, { keep: true });
    await pool.ready();
    const c = await redis.client();
    const stream = `${app}:queue:default`;
    const reply = `${app}:replies:${pool.clientId}`;
    // Missing fields: nothing to report to, dropped with a log line.
    await c.sendCommand(["XADD", stream, "*", "garbage", "yes"]);
    await c.sendCommand(["XADD", stream, "*", "v", "1", "id", "x", "op", "x"]);
    // Well addressed but broken: each fails its task with a clear error.
    const hand = async (id: string, fields: string[]) => {
      await c.sendCommand(["HSET", `${app}:${id}:status`, id, "0"]);
      await c.sendCommand(["XADD", stream, "*", "id", id, "op", id, "reply", reply, ...fields]);
      await waitFor(async () => {
        const s = await c.sendCommand(["HGET", `${app}:${id}:status`, id]);
        return s === "3";
      }, `${id} failed`);
      return String(await c.sendCommand(["HGET", `${app}:${id}:results`, id]));
    };
    assert.match(
      await hand("garbagejson", ["v", "1", "fn", "where", "args", "{not json"]),
      /^ProtocolError: the arguments of task garbagejson cannot be decoded/,
    );
    assert.match(
      await hand("notarray", ["v", "1", "fn", "where", "args", '{"a":1}']),
      /^ProtocolError: the arguments of task notarray are not an array/,
    );
    assert.match(
      await hand("version9", ["v", "9", "fn", "where", "args", "[]"]),
      /^ProtocolError: unsupported stream entry version "9"/,
    );
    assert.match(
      await hand("noversion", ["fn", "where", "args", "[]"]),
      /^ProtocolError: unsupported stream entry version null/,
    );
    assert.match(
      await hand("nofn", ["v", "1", "args", "[]"]),
      /^UnknownTaskError: no task named ""/,
    );
    assert.match(worker.stderr(), /dropped malformed entry/);
    assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid, "the worker goes on");
  });

  it("unknown task names fail with UnknownTaskError listing the known ones", async () => {
    const app = nextApp("badname");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const error = await failure(pool.submit("noSuchTask", [1, 2]));
    assert.equal(error.remoteName, "UnknownTaskError");
    assert.match(error.message, /no task named "noSuchTask" \(known: .*where/);
  });

  it("arguments over maxPayloadBytes are refused at submit; results over the limit fail the task", async () => {
    const app = nextApp("badsize");
    const worker = await startWorker(redis, app, ["--max-payload-bytes", "1000"]);
    children.push(worker);
    await using pool = faultPool(redis, app, { maxPayloadBytes: 2_000 });
    assert.throws(
      () => pool.submit("size", ["é".repeat(1_500)]),
      (e: unknown) =>
        e instanceof RangeError &&
        /encoded size of the arguments: 3004 bytes, more than maxPayloadBytes \(2000\)/.test(
          e.message,
        ),
    );
    assert.throws(() => pool.map("size", [["ok"], ["x".repeat(5_000)]]), /argsList\[1\]/);
    assert.equal(await pool.submit("size", ["x".repeat(1_500)]), 1_500);
    const error = await failure(pool.submit("bigResult", [5_000]));
    assert.equal(error.remoteName, "RangeError");
    assert.match(
      error.message,
      /encoded size of the result: 5002 bytes, more than maxPayloadBytes/,
    );
    assert.equal((await pool.submit<Trace>("where", [])).pid, worker.pid, "the worker goes on");
  });

  it("a non-serializable result and a thrown non-Error get clear errors", async () => {
    const app = nextApp("badvalue");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const symbol = await failure(pool.submit("returnSymbol", []));
    assert.equal(symbol.remoteName, "TypeError");
    assert.match(symbol.message, /result: a symbol cannot be serialized/);
    const number = await failure(pool.submit("throwNumber", []));
    assert.equal(number.remoteName, "NonErrorThrown");
    assert.match(number.message, /a non-Error value was thrown: 42/);
    // Values whose description throws: still an error on the future, never a hung slot.
    const nullProto = await failure(pool.submit("throwOdd", ["nullProtoBigInt"]));
    assert.equal(nullProto.remoteName, "NonErrorThrown");
    assert.match(nullProto.message, /a non-Error value was thrown: \[object Object\]/);
    const getter = await failure(pool.submit("throwOdd", ["messageGetter"]));
    assert.equal(getter.remoteName, "Error");
    assert.equal(getter.message, "(the error's message cannot be read)");
    const noString = await failure(pool.submit("throwOdd", ["toStringThrows"]));
    assert.equal(noString.remoteName, "NonErrorThrown");
    assert.match(noString.message, /a non-Error value was thrown: \[object Object\]/);
    assert.equal((await pool.submit<Trace>("where", [])).attempt, 1);
  });

  it("a thrown error's cause chain, own properties and class come back as the RemoteTaskError's cause", async () => {
    const app = nextApp("richerr");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const check = (error: RemoteTaskError) => {
      assert.equal(error.remoteName, "HttpError");
      assert.equal(error.message, "upstream failed");
      const remote = error.cause as Error & { status: number; cause: unknown };
      assert.ok(remote instanceof Error);
      assert.equal(remote.name, "HttpError");
      assert.equal(remote.message, "upstream failed");
      assert.equal(remote.status, 503);
      assert.equal(remote.stack, error.remoteStack);
      const inner = remote.cause as TypeError & { code: string; at: Date; bytes: bigint };
      assert.ok(inner instanceof TypeError, String(inner));
      assert.equal(inner.message, "socket hang up");
      assert.equal(inner.code, "ECONNRESET");
      assert.deepEqual(inner.at, new Date(0));
      assert.equal(inner.bytes, 10n);
      assert.match(inner.stack ?? "", /TypeError: socket hang up\n\s+at throwRich/);
    };
    const f = pool.submit("throwRich", ["cause"]);
    check(await failure(f));
    // The same from a chunk's call.
    const calls = pool.map("throwRich", [["cause"], ["aggregate"]], { chunksize: 2 });
    check(await failure(calls[0]));

    const aggregate = await failure(calls[1]);
    assert.equal(aggregate.remoteName, "AggregateError");
    const remote = aggregate.cause as AggregateError;
    assert.ok(remote instanceof AggregateError);
    assert.ok(remote.errors[0] instanceof RangeError);
    assert.equal(remote.errors[0].message, "a");
    assert.equal(remote.errors[1], "b");

    const value = await failure(pool.submit("throwRich", ["value"]));
    assert.equal(value.remoteName, "NonErrorThrown");
    assert.deepEqual(value.cause, { code: 42, tags: new Set(["x"]) });

    // What the codec cannot serialize is left out; the rest comes.
    const fn = await failure(pool.submit("throwRich", ["function"]));
    const partial = fn.cause as Error & Record<string, unknown>;
    assert.equal(partial.code, "E_F");
    assert.equal("retry" in partial, false);

    // Attached after the task ended: rebuilt from the results line (name and message).
    await using other = faultPool(redis, app);
    const attached = await failure(other.future(f.id));
    assert.equal(attached.remoteName, "HttpError");
    assert.equal((attached.cause as Error).name, "HttpError");
    assert.equal((attached.cause as Error).message, "upstream failed");
    assert.equal((attached.cause as Error).stack, "HttpError: upstream failed");
    assert.equal((await pool.submit<Trace>("where", [])).attempt, 1);
  });
});
