import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
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

describe("dedupe (request coalescing)", () => {
  before(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await cleanUp(children);
  });
  after(async () => {
    await redis.stop();
  });

  it("identical calls in one client share one task; object key order does not matter", async () => {
    const app = nextApp("dedupe");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const calls = [
      pool.submit("later", [300, { a: 1, b: 2 }, file], { dedupe: true }),
      pool.submit("later", [300, { b: 2, a: 1 }, file], { dedupe: true }),
      pool.submit("later", [300, { a: 1, b: 2 }, file], { dedupe: true }),
    ];
    const other = pool.submit("later", [300, { a: 1, b: 3 }, file], { dedupe: true });
    const undeduped = pool.submit("later", [300, { a: 1, b: 2 }, file]);
    const values = await Promise.all(calls);
    assert.deepEqual(values, [{ a: 1, b: 2 }, { a: 1, b: 2 }, { a: 1, b: 2 }]);
    assert.equal(new Set(calls.map((f) => f.id)).size, 1, "one task id");
    await Promise.all([other, undeduped]);
    const starts = (await readTrace(file)).filter((t) => t.label === "later:start");
    assert.equal(starts.length, 3, "the shared call ran once, the others once each");
  });

  it("across processes: a second client gets a future for the same task, which runs once", async () => {
    const app = nextApp("dedupex");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    // Ready before the other client submits: the shared call must come while its task runs.
    await using pool = makePool(redis, app);
    await pool.ready();
    const client = await startScript(new URL("../faults/_client.ts", import.meta.url), [
      redis.url,
      app,
      JSON.stringify({
        fn: "later",
        args: [2000, "shared", file],
        options: { dedupe: true },
        pool: { tasks: new URL("./_tasks.ts", import.meta.url).href },
      }),
    ]);
    children.push(client);
    const { taskId } = JSON.parse(
      await waitFor(() => client.stdout().split("\n")[0], "the other client submitted", 30_000),
    );
    const mine = pool.submit("later", [2000, "shared", file], { dedupe: true });
    assert.equal(await mine, "shared");
    assert.equal(mine.id, taskId, "the same task");
    await waitFor(() => client.stdout().includes('"value":"shared"'), "the other client's result");
    const starts = (await readTrace(file)).filter((t) => t.label === "later:start");
    assert.equal(starts.length, 1);
  });

  it("dedupeTtl: a finished task is shared for that long, then a new call runs again", async () => {
    const app = nextApp("dedupettl");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const options = { dedupe: true, dedupeTtl: 700 };
    const first = pool.submit("mark", [file, "x"], options);
    await first;
    const second = pool.submit("mark", [file, "x"], options);
    assert.equal(await second, "x");
    assert.equal(second.id, first.id, "shared after it finished, within the ttl");
    assert.equal((await readTrace(file)).length, 1);
    await new Promise((resolve) => setTimeout(resolve, 800));
    const third = pool.submit("mark", [file, "x"], options);
    await third;
    assert.notEqual(third.id, first.id);
    assert.equal((await readTrace(file)).length, 2, "ran again after the ttl");
    // Without a ttl, a finished task is not shared.
    const fourth = pool.submit("mark", [file, "y"], { dedupe: true });
    await fourth;
    const fifth = pool.submit("mark", [file, "y"], { dedupe: true });
    await fifth;
    assert.notEqual(fifth.id, fourth.id);
  });

  it("a function and its task name are the same call; a deduplicated future works as a parent", async () => {
    const app = nextApp("dedupefn");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const tasks = await import("./_tasks.ts");
    const byName = pool.submit("later", [300, "w", file], { dedupe: true });
    const byFunction = pool.submit(tasks.later, [300, "w", file], { dedupe: true });
    // The child names the second future, which turns out to be the first call's task.
    const child = pool.submit<string>("hello", [byFunction]);
    assert.equal(await child, "hello w");
    assert.equal(byFunction.id, byName.id);
    assert.equal((await readTrace(file)).filter((t) => t.label === "later:start").length, 1);
  });

  it("dedupeKey: calls with the same key share a task whatever their arguments", async () => {
    const app = nextApp("dedupekey");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const a = pool.submit("later", [300, "first", file], { dedupeKey: "report:2026-11" });
    const b = pool.submit("later", [300, "second", file], { dedupeKey: "report:2026-11" });
    assert.deepEqual(await Promise.all([a, b]), ["first", "first"]);
    assert.equal((await readTrace(file)).filter((t) => t.label === "later:start").length, 1);
    assert.throws(() => pool.submit("mark", [file, "x"], { dedupeKey: "" }), TypeError);
    assert.throws(() => pool.map("mark", [[file, "x"]], { dedupe: true } as never), TypeError);
  });

  it("a cancelled task is not shared: an identical call after the cancel runs afresh", async () => {
    const app = nextApp("dedupecancel");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using alice = makePool(redis, app);
    await using bob = makePool(redis, app);
    const options = { dedupe: true, dedupeTtl: 60_000 };
    const running = alice.submit("later", [60_000, "r", file], options);
    await waitFor(() => running.running(), "running");
    assert.equal(await running.cancel(), true);
    const delayed = alice.submit("later", [10, "d", file], { ...options, delay: 60_000 });
    await alice.results(delayed.operationId); // written
    assert.equal(await delayed.cancel(), true);
    // Bob cancelled nothing: his identical calls run.
    assert.equal(await bob.submit("later", [10, "d", file], options), "d");
    const again = bob.submit("later", [60_000, "r", file], options);
    await waitFor(() => again.running(), "the identical call runs afresh");
    assert.notEqual(again.id, running.id);
    await again.cancel();
  });

  it("identical calls whose parents are one shared call are one call, in the same tick too", async () => {
    const app = nextApp("dedupechild");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const options = { dedupe: true };
    const p1 = pool.submit<number>("later", [1_000, 1, file], options);
    const c1 = pool.submit<string>("hello", [p1, file], options);
    await waitFor(() => p1.running(), "the parent running");
    // p2 turns out to be p1's task, once its submission is answered; c2 names p2.
    const p2 = pool.submit<number>("later", [1_000, 1, file], options);
    const c2 = pool.submit<string>("hello", [p2, file], options);
    assert.deepEqual(await Promise.all([c1, c2]), ["hello 1", "hello 1"]);
    assert.equal(p2.id, p1.id);
    assert.equal(c2.id, c1.id);
    assert.equal((await readTrace(file)).filter((t) => t.label === "hello").length, 1);
  });
});
