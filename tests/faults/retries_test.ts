import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { RemoteTaskError } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import type { TestRedis } from "../_redis.ts";
import type { Trace } from "./_tasks.ts";
import {
  faultHooks,
  faultPool,
  nextApp,
  readTrace,
  startWorker,
  traceFile,
  waitFor,
} from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

describe("retries and dead letters", () => {
  faultHooks(children, (r) => (redis = r));

  it("retryOn: error retries a throwing task with exponential backoff until it succeeds", async () => {
    const app = nextApp("rtok");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const f = pool.submit<Trace>("flaky", [2, file], {
      retries: 3,
      retryDelay: 150,
      retryOn: "error",
    });
    const result = await f;
    assert.equal(result.attempt, 3);
    assert.equal(f.attempt, 3);
    const starts = (await readTrace(file)).map((t) => t.at);
    assert.equal(starts.length, 3, "ran three times");
    const first = starts[1] - starts[0];
    const second = starts[2] - starts[1];
    assert.ok(first >= 140, `first retry after ${first} ms (retryDelay 150)`);
    assert.ok(second >= 290, `second retry after ${second} ms (2 x retryDelay)`);
  });

  it("a task that exhausts its attempts rejects with its last error and attempts, and is dead-lettered", async () => {
    const app = nextApp("rtdead");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const f = pool.submit("flaky", [10], { retries: 2, retryOn: "error" });
    const error = await f.then(() => undefined, (e) => e);
    assert.ok(error instanceof RemoteTaskError, String(error));
    assert.equal(error.attempts, 3);
    assert.equal(error.message, "attempt 3 fails on purpose");
    const c = await redis.client();
    const dead = await c.sendCommand(["XRANGE", `${app}:dead`, "-", "+"]) as [string, string[]][];
    assert.equal(dead.length, 1);
    const fields = dead[0][1];
    const field = (name: string) => fields[fields.indexOf(name) + 1];
    assert.equal(field("reason"), "error");
    assert.equal(field("attempts"), "3");
    assert.equal(field("error"), "Error: attempt 3 fails on purpose");
    assert.equal(field("id"), f.id);
    assert.equal(field("queue"), "default");
  });

  it("by default (retryOn: lost) a thrown error is not retried, and not dead-lettered", async () => {
    const app = nextApp("rtlost");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app, { retries: 5 });
    const error = await pool.submit("flaky", [1, file]).then(() => undefined, (e) => e);
    assert.ok(error instanceof RemoteTaskError);
    assert.equal(error.attempts, 1);
    assert.equal((await readTrace(file)).length, 1);
    const c = await redis.client();
    assert.equal(await c.sendCommand(["EXISTS", `${app}:dead`]), 0);
  });

  it("pool-level retry defaults apply, and submit options override them", async () => {
    const app = nextApp("rtdefaults");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app, { retries: 2, retryOn: "error" });
    assert.equal((await pool.submit<Trace>("flaky", [2])).attempt, 3);
    const error = await pool.submit("flaky", [2], { retries: 0 }).then(
      () => null,
      (e) => e as RemoteTaskError,
    );
    assert.equal(error?.attempts, 1);
    assert.throws(() => pool.submit("flaky", [1], { retries: -1 }), RangeError);
    assert.throws(() => pool.submit("flaky", [1], { retryOn: "always" as never }), TypeError);
  });

  it("a retried future goes back to pending between attempts", async () => {
    const app = nextApp("rtstate");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const f = pool.submit<Trace>("flaky", [1, file], {
      retries: 1,
      retryDelay: 1_000,
      retryOn: "error",
    });
    await waitFor(async () => (await readTrace(file)).length === 1, "first attempt ran");
    await waitFor(() => f.state === "pending" && f.attempt === 2, "pending for attempt 2");
    assert.equal((await f).attempt, 2);
  });

  it("a task cancelled while it waits out its backoff leaves the delayed set and never runs again", async () => {
    const app = nextApp("rtcancel");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const f = pool.submit<Trace>("flaky", [1, file], {
      retries: 1,
      retryDelay: 60_000,
      retryOn: "error",
    });
    const c = await redis.client();
    const set = `${app}:delayed:default`;
    const entries = `${app}:${f.operationId}:delayed`;
    await waitFor(async () => Number(await c.sendCommand(["ZCARD", set])) === 1, "in backoff");
    assert.deepEqual(await c.sendCommand(["ZRANGE", set, "0", "-1"]), [`${f.operationId}/${f.id}`]);
    const [queue, fields] = JSON.parse(await c.sendCommand(["HGET", entries, f.id]) as string);
    assert.equal(queue, "default");
    assert.equal(fields[fields.indexOf("attempt") + 1], "2");
    assert.ok(Number(await c.sendCommand(["PTTL", entries])) > 0, "expires with the operation");
    assert.equal(await f.cancel(), true);
    assert.equal(await c.sendCommand(["EXISTS", set]), 0);
    assert.equal(await c.sendCommand(["EXISTS", entries]), 0);
    assert.equal((await readTrace(file)).length, 1, "ran once");
  });
});
