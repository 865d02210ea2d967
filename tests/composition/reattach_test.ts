import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { CancelledError, DependencyError, RemoteTaskError, TaskNotFoundError } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import { startRedis, type TestRedis } from "../_redis.ts";
import { cleanUp, nextApp, pool as makePool, startWorker, waitFor } from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

describe("re-attaching: pool.future(id) and pool.operation(id)", () => {
  before(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await cleanUp(children);
  });
  after(async () => {
    await redis.stop();
  });

  it("a live future for a task another client submitted: state, result, errors", async () => {
    const app = nextApp("attach");
    children.push(await startWorker(redis, app));
    await using submitter = makePool(redis, app);
    await using observer = makePool(redis, app);
    const original = submitter.submit<string>("later", [400, "done"]);
    await waitFor(() => original.running(), "running");
    const attached = observer.future<string>(original.id);
    await waitFor(() => attached.running(), "the attached future sees it running");
    assert.equal(await attached, "done");
    assert.equal(await original, "done");
    // A finished task: settled at once from Redis.
    assert.equal(await observer.future(original.id), "done");
    const failed = submitter.submit("fail", ["KeyError", "nope"]);
    await failed.catch(() => {});
    const error = await observer.future(failed.id).then(() => undefined, (e) => e);
    assert.ok(error instanceof RemoteTaskError);
    assert.equal(error.remoteName, "KeyError");
    assert.equal(error.message, "nope");
  });

  it("cancel() on an attached future cancels the task for everyone", async () => {
    const app = nextApp("attachcancel");
    children.push(await startWorker(redis, app));
    await using submitter = makePool(redis, app);
    await using observer = makePool(redis, app);
    const original = submitter.submit("later", [60_000, "never"]);
    await waitFor(() => original.running(), "running");
    const attached = observer.future(original.id);
    assert.equal(await attached.cancel(), true);
    await assert.rejects(original.result(), CancelledError);
    await assert.rejects(attached.result(), CancelledError);
  });

  it("disposing an attached future stops watching; the task goes on", async () => {
    const app = nextApp("attachdispose");
    children.push(await startWorker(redis, app));
    await using submitter = makePool(redis, app);
    await using observer = makePool(redis, app);
    const original = submitter.submit<string>("later", [400, "kept"]);
    await waitFor(() => original.running(), "running");
    {
      await using _attached = observer.future(original.id);
    }
    assert.equal(await original, "kept", "not cancelled by the observer's dispose");
    const c = await redis.client();
    assert.equal(await c.sendCommand(["HLEN", `${app}:watch`]), 0, "no watch record left");
  });

  it("a DependencyError read back from Redis keeps its parent and cause", async () => {
    const app = nextApp("attachdep");
    children.push(await startWorker(redis, app));
    await using submitter = makePool(redis, app);
    await using observer = makePool(redis, app);
    const parent = submitter.submit("fail", ["KeyError", "gone"]);
    const child = submitter.submit("hello", [parent]);
    await child.catch(() => {});
    const error = await observer.future(child.id).then(() => undefined, (e) => e);
    assert.ok(error instanceof DependencyError, String(error));
    assert.equal(error.parentId, parent.id);
    assert.ok(error.cause instanceof RemoteTaskError);
    assert.equal((error.cause as RemoteTaskError).remoteName, "KeyError");
  });

  it("pool.operation(id) gives every task of a map, in order", async () => {
    const app = nextApp("attachop");
    children.push(await startWorker(redis, app));
    await using submitter = makePool(redis, app);
    await using observer = makePool(redis, app);
    const originals = submitter.map<number>("sum", Array.from({ length: 40 }, (_, i) => [i, 1]));
    await originals[0];
    const attached = await observer.operation<number>(originals[0].operationId);
    assert.deepEqual(attached.map((f) => f.id), originals.map((f) => f.id));
    assert.deepEqual(await Promise.all(attached), originals.map((_, i) => i + 1));
  });

  it("the submitting pool finds its tasks right after submit: future(id), operation(op), results(op)", async () => {
    const app = nextApp("attachsame");
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    await pool.ready();
    for (let round = 0; round < 3; round++) {
      // In the same turn of the event loop as the submissions, which are sent a turn later.
      const one = pool.submit<string>("later", [200, "one"]);
      const many = pool.map<number>("sum", [[1, 2], [3, 4]]);
      const chunked = pool.map<number>("sum", [[5, 6], [7, 8], [9, 10]], { chunksize: 3 });
      const attached = pool.future<string>(one.id);
      const rows = pool.results(many[0].operationId);
      const operation = pool.operation<number>(many[0].operationId);
      const call = pool.future<number>(chunked[1].id);
      const chunkRows = pool.results(chunked[0].operationId);
      assert.deepEqual((await rows).map((r) => r.taskId), many.map((f) => f.id));
      assert.deepEqual((await chunkRows).map((r) => r.taskId), chunked.map((f) => f.id));
      assert.deepEqual(await Promise.all(await operation), [3, 7]);
      assert.equal(await attached, "one");
      assert.equal(await call, 15);
      assert.equal(await one, "one");
    }
  });

  it("parents: a call attached by id that was sent in a chunk, or a future of another app, is a TypeError", async () => {
    const app = nextApp("attachparent");
    children.push(await startWorker(redis, app));
    await using submitter = makePool(redis, app);
    await using observer = makePool(redis, app);
    const calls = submitter.map<number>("sum", [[1, 1], [2, 2], [3, 3]], { chunksize: 3 });
    await submitter.results(calls[0].operationId); // written
    // Used as a parent in the same turn as the attach (not known yet to be a chunk call)...
    const attached = observer.future<number>(calls[1].id);
    const child = observer.submit("sum", [attached, 1]);
    await assert.rejects(
      child.result(),
      /the future of call \S+, sent in a chunk .* cannot be a task argument/,
    );
    assert.equal(await attached, 4);
    // ... and once it is known.
    assert.throws(() => observer.submit("sum", [attached, 1]), TypeError);
    // A future of another app's pool: its task is not one of this app's.
    await using other = makePool(redis, nextApp("attachparentother"), { requireWorkers: false });
    const foreign = other.submit("sum", [1, 2]);
    assert.throws(
      () => observer.submit("sum", [foreign]),
      /belongs to app "attachparentother\d+", not "attachparent\d+"/,
    );
    await foreign.cancel();
  });

  it("unknown tasks and operations: TaskNotFoundError; bad ids: TypeError", async () => {
    const app = nextApp("attachmissing");
    await using pool = makePool(redis, app, { requireWorkers: false });
    await assert.rejects(pool.future("nosuchclient-9").result(), TaskNotFoundError);
    await assert.rejects(pool.operation("nosuchclient-9"), TaskNotFoundError);
    assert.throws(() => pool.future("a b"), TypeError);
  });
});
