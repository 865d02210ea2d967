import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { CancelledError, DependencyError, RemoteTaskError, TaskNotFoundError } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import { startRedis, type TestRedis } from "../_redis.ts";
import { startScript } from "../faults/_setup.ts";
import {
  cleanUp,
  nextApp,
  pool as makePool,
  readTrace,
  startWorker,
  traceFile,
  waitFor,
} from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

describe("futures as arguments (dependency graphs)", () => {
  before(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await cleanUp(children);
  });
  after(async () => {
    await redis.stop();
  });

  it("a future argument: hello runs after world, with world's result in its place", async () => {
    const app = nextApp("dag");
    const file = await traceFile();
    children.push(await startWorker(redis, app), await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const world = pool.submit<string>("later", [300, "world", file]);
    const hello = pool.submit<string>("hello", [world, file]);
    assert.equal(await hello, "hello world");
    const trace = await readTrace(file);
    const ended = trace.find((t) => t.label === "later:end")!;
    const greeted = trace.find((t) => t.label === "hello")!;
    assert.ok(greeted.at >= ended.at, "the child started after its parent finished");
    assert.equal(greeted.who, "world");
  });

  it("fan-in, a parent shared by many children, futures nested in lists: each child runs once", async () => {
    const app = nextApp("dagfan");
    const file = await traceFile();
    children.push(
      await startWorker(redis, app),
      await startWorker(redis, app),
      await startWorker(redis, app),
    );
    await using pool = makePool(redis, app);
    const parents = [1, 2, 3, 4, 5].map((n) => pool.submit<number>("later", [n * 40, n]));
    const fanIn = pool.submit<number>("total", [parents, file]);
    const shared = pool.submit<number>("later", [200, 10]);
    const kids = pool.map<number>("sum", Array.from({ length: 20 }, (_, i) => [shared, i]));
    const grandchild = pool.submit<number>("sum", [fanIn, kids[19]]);
    assert.equal(await fanIn, 15);
    assert.deepEqual(await Promise.all(kids), Array.from({ length: 20 }, (_, i) => 10 + i));
    assert.equal(await grandchild, 15 + 29);
    const totals = (await readTrace(file)).filter((t) => t.label === "total");
    assert.equal(totals.length, 1, "the fan-in child ran exactly once");
    assert.deepEqual(totals[0].values, [1, 2, 3, 4, 5]);
  });

  it("a parent shared by thousands of children: each child is one cheap write, and all run once", async () => {
    const app = nextApp("dagfanout");
    children.push(await startWorker(redis, app, ["--concurrency", "50"]));
    await using pool = makePool(redis, app);
    const parent = pool.submit<number>("gate", ["open", 7]);
    const many = pool.map<number>("sum", Array.from({ length: 3_000 }, (_, i) => [parent, i]));
    const c = await redis.client();
    const waiting = `${app}:children:${parent.operationId}:${parent.id}`;
    try {
      await pool.results(many[0].operationId); // written
      // The children wait in a sorted set of the parent's; its watch record stays a few bytes
      // (it held them all, and every child rewrote it: quadratic, seconds of Redis time).
      const ref = `${parent.operationId}/${parent.id}`;
      const record = await c.sendCommand(["HGET", `${app}:watch`, ref]) as string | null;
      assert.ok(record !== null && record.length < 64, record?.slice(0, 100));
      assert.equal(await c.sendCommand(["ZCARD", waiting]), 3_000);
    } finally {
      await pool.kv.set("open", true);
    }
    const values = await Promise.all(many);
    assert.deepEqual(values, Array.from({ length: 3_000 }, (_, i) => 7 + i));
    assert.equal(await c.sendCommand(["EXISTS", waiting]), 0);
    assert.equal(await c.sendCommand(["HLEN", `${app}:watch`]), 0);
  });

  it("two futures of one call shared by dedupe, as parents of one child: it runs once, after it", async () => {
    const app = nextApp("dagdupparents");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const a = pool.submit<number>("later", [200, 5, file], { dedupe: true });
    const b = pool.submit<number>("later", [200, 5, file], { dedupe: true });
    const child = pool.submit<number>("sum", [a, b]);
    try {
      assert.equal(await child.result({ timeout: 10_000 }), 10); // (it waited forever)
    } finally {
      await child.cancel(); // (no-op once done; the pool's shutdown would wait for it)
    }
    assert.equal(a.id, b.id);
    assert.equal((await readTrace(file)).filter((t) => t.label === "later:start").length, 1);
  });

  it("a parent that finished before the child was submitted", async () => {
    const app = nextApp("dagdone");
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const world = pool.submit<string>("world", []);
    await world;
    assert.equal(await pool.submit<string>("hello", [world]), "hello world");
  });

  it("a failed or cancelled parent fails the child with DependencyError, down the graph", async () => {
    const app = nextApp("dagfail");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const bad = pool.submit("fail", ["ValueError", "bad parent"]);
    const child = pool.submit("hello", [bad, file]);
    const grandchild = pool.submit("hello", [child, file]);
    const error = await child.then(() => undefined, (e) => e);
    if (!(error instanceof DependencyError)) throw new Error(`not a DependencyError: ${error}`);
    assert.equal(error.parentId, bad.id);
    assert.ok(error.cause instanceof RemoteTaskError);
    assert.equal((error.cause as RemoteTaskError).remoteName, "ValueError");
    assert.equal((error.cause as RemoteTaskError).message, "bad parent");
    assert.match(error.message, /parent task \S+ failed: ValueError: bad parent/);
    const deeper = await grandchild.then(() => undefined, (e) => e);
    if (!(deeper instanceof DependencyError)) throw new Error(`not a DependencyError: ${deeper}`);
    assert.equal(deeper.parentId, child.id);
    assert.ok(deeper.cause instanceof DependencyError);

    const slow = pool.submit("later", [60_000, 1]);
    const waiting = pool.submit("hello", [slow, file]);
    await waitFor(() => slow.running(), "parent running");
    await slow.cancel();
    const cancelled = await waiting.then(() => undefined, (e) => e);
    assert.ok(cancelled instanceof DependencyError, String(cancelled));
    assert.ok(cancelled.cause instanceof CancelledError);
    assert.deepEqual((await readTrace(file)).filter((t) => t.label === "hello"), [], "never ran");
  });

  it("a deep chain whose root fails: every level names the root, messages do not grow", async () => {
    const app = nextApp("dagdeep");
    await using pool = makePool(redis, app, { workers: 1, executorMode: "inline" });
    await pool.ready();
    // The gate keeps the root waiting until the whole chain is registered: the cascade then runs
    // through every level at the root's failure, in Redis.
    const gate = pool.submit("later", [300, 0]);
    const root = pool.submit("fail", ["ValueError", "root broke", gate]);
    const chain = [root];
    for (let i = 0; i < 300; i++) chain.push(pool.submit("echo", [chain[chain.length - 1]]));
    const started = Date.now();
    const errors = await Promise.all(chain.map((f) => f.then(() => undefined, (e: unknown) => e)));
    assert.ok(Date.now() - started < 10_000, `settled after ${Date.now() - started} ms`);
    assert.ok(errors[0] instanceof RemoteTaskError, String(errors[0]));
    const check = (error: unknown, i: number, parentId: string) => {
      if (!(error instanceof DependencyError)) throw new Error(`level ${i}: ${error}`);
      assert.equal(error.parentId, parentId);
      assert.ok(error.message.length < 1024, `level ${i}: ${error.message.length} characters`);
      assert.ok(error.message.includes("ValueError: root broke"), error.message);
      if (i === 1) {
        assert.equal(error.message, `parent task ${root.id} failed: ValueError: root broke`);
        assert.ok(error.cause instanceof RemoteTaskError);
        return;
      }
      assert.equal(
        error.message,
        `parent task ${parentId} failed: DependencyError: root task ${root.id} failed: ` +
          "ValueError: root broke",
      );
      // The parent's error, summed up by the root failure; its cause is the root's error.
      const cause = error.cause;
      assert.ok(cause instanceof DependencyError, String(cause));
      assert.equal(cause.message, `root task ${root.id} failed: ValueError: root broke`);
      assert.equal(cause.parentId, undefined);
      assert.ok(cause.cause instanceof RemoteTaskError, String(cause.cause));
      assert.equal((cause.cause as RemoteTaskError).remoteName, "ValueError");
      assert.equal((cause.cause as RemoteTaskError).message, "root broke");
    };
    for (let i = 1; i < chain.length; i++) check(errors[i], i, chain[i - 1].id);
    // The same from the stored results line (a future attached later), and from SUBMIT_EX (a
    // child submitted after its parent failed).
    const last = chain[chain.length - 1];
    await using observer = makePool(redis, app);
    check(
      await observer.future(last.id).then(() => undefined, (e: unknown) => e),
      300,
      chain[299].id,
    );
    const late = pool.submit("echo", [last]);
    check(await late.then(() => undefined, (e: unknown) => e), 301, last.id);
    const c = await redis.client();
    const sizes = await c.sendCommand(["HSTRLEN", `${app}:${last.operationId}:results`, last.id]);
    assert.ok(Number(sizes) < 1024, `stored line of ${sizes} bytes`);
  });

  it("a parent's long error line is cut in the child's DependencyError (whole characters)", async () => {
    const app = nextApp("daglong");
    await using pool = makePool(redis, app, { workers: 1, executorMode: "inline" });
    const message = "x" + "é".repeat(3000); // 6,001 bytes in UTF-8; "ValueError: " adds 12
    const bad = pool.submit("fail", ["ValueError", message]);
    const child = pool.submit("echo", [bad]);
    const grandchild = pool.submit("echo", [child]);
    const error = await child.then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof DependencyError, String(error));
    assert.ok(error.message.endsWith("… (truncated: 6013 bytes in all)"), error.message.slice(-60));
    assert.ok(!error.message.includes("\ufffd"), "no broken UTF-8 sequence");
    const cut = new TextEncoder().encode(error.message).length;
    assert.ok(cut < 2200, `${cut} bytes`);
    const deeper = await grandchild.then(() => undefined, (e: unknown) => e);
    assert.ok(deeper instanceof DependencyError, String(deeper));
    assert.ok(deeper.message.endsWith("… (truncated: 6013 bytes in all)"), deeper.message);
    assert.ok(deeper.message.includes(`root task ${bad.id} failed: ValueError: xéé`));
  });

  it("a parent whose entries vanish: recovery fails its waiting children", async () => {
    const app = nextApp("dagvanish");
    children.push(
      await startWorker(redis, app, ["--heartbeat-timeout", "1", "--heartbeat-interval", "0.2"]),
    );
    await using pool = makePool(redis, app);
    const parent = pool.submit("later", [60_000, 1]);
    const child = pool.submit("hello", [parent]);
    await waitFor(() => parent.running(), "parent running");
    const c = await redis.client();
    // As if the parent's client had died long ago and its keys had expired.
    await c.sendCommand(["DEL", `${app}:${parent.operationId}:status`]);
    const error = await child.then(() => undefined, (e) => e);
    assert.ok(error instanceof DependencyError, String(error));
    assert.match(error.message, /TaskNotFoundError/);
    // The parent's own future learns that its task vanished (no hang).
    await assert.rejects(parent.result(), TaskNotFoundError);
  });

  it("onParentError: pass gives the child the parent's error as an Error", async () => {
    const app = nextApp("dagpass");
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const bad = pool.submit("fail", ["ValueError", "bad parent"]);
    const good = pool.submit("world", []);
    const seen = await pool.submit("inspect", [bad], { onParentError: "pass" });
    assert.deepEqual(seen, { error: true, name: "ValueError", message: "bad parent" });
    // A parent that failed with a DependencyError: its name and message (naming the root failure).
    const child = pool.submit("hello", [bad]);
    const grandchild = await pool.submit("inspect", [child], { onParentError: "pass" });
    assert.deepEqual(grandchild, {
      error: true,
      name: "DependencyError",
      message: `parent task ${bad.id} failed: ValueError: bad parent`,
    });
    assert.deepEqual(await pool.submit("inspect", [good], { onParentError: "pass" }), {
      error: false,
      value: "world",
    });
  });

  it("the client does not have to stay online: the last parent releases the child in Redis", async () => {
    const app = nextApp("dagoffline");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    const script = new URL("./_dag_client.ts", import.meta.url);
    const client = await startScript(script, [redis.url, app, file]);
    children.push(client);
    await waitFor(() => client.stdout().includes("submitted"), "the client submitted", 30_000);
    client.kill("SIGKILL");
    await client.exited;
    const line = await waitFor(
      async () => (await readTrace(file)).find((t) => t.label === "hello"),
      "the child ran after its client died",
      15_000,
    );
    assert.equal(line.who, "late world");
  });
});
