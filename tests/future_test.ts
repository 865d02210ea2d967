// The future's own state machine, without Redis: a pure-logic test with stand-in hooks (the pool
// behind real futures is tested against Redis in pool_test.ts and the fault suites).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { futureControl, type FutureHooks, StreamFuture } from "../lib/future.ts";
import { CancelledError } from "../lib/errors.ts";
import { asCompleted } from "../lib/as_completed.ts";
import { wait } from "../lib/wait.ts";
import { forceGc } from "./_gc.ts";

const hooks: FutureHooks = {
  cancel: () => Promise.resolve(false),
  dispose: () => Promise.resolve(),
};

function newFuture(id = "op.0"): StreamFuture<unknown> {
  return new StreamFuture<unknown>(id, "op", hooks);
}

/** Runs `body`, lets pending promise jobs run, and returns the unhandled rejections seen. */
async function unhandledDuring(body: () => void | Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const onUnhandled = (reason: unknown) => seen.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    await body();
    // Unhandled rejections are reported after the microtask queue drains.
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setTimeout(resolve, 0));
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
  return seen;
}

describe("StreamFuture", () => {
  it("settled before anyone awaits it, gives its value or error when awaited later", async () => {
    const ok = newFuture();
    futureControl(ok).resolve({ n: 1 });
    assert.deepEqual(await ok, { n: 1 });
    assert.deepEqual(await ok.result(), { n: 1 });
    assert.equal(await ok.exception(), undefined);

    const failed = newFuture();
    const error = new RangeError("bad");
    futureControl(failed).reject(error);
    await assert.rejects(Promise.resolve(failed), (e) => e === error);
    await assert.rejects(failed.result(), (e) => e === error);
    assert.equal(await failed.exception(), error);
    assert.equal(await failed.catch((e) => `caught ${(e as Error).message}`), "caught bad");

    const cancelled = newFuture();
    futureControl(cancelled).cancel();
    await assert.rejects(Promise.resolve(cancelled), CancelledError);
    await assert.rejects(cancelled.exception(), CancelledError);
  });

  it("awaited before it settles, gets the value once it does, every awaiter the same", async () => {
    const f = newFuture();
    const first = f.then((v) => v);
    const second = f.result();
    let finallyRan = false;
    const third = f.finally(() => (finallyRan = true));
    assert.equal(f.done(), false);
    futureControl(f).resolve(42);
    assert.deepEqual(await Promise.all([first, second, third]), [42, 42, 42]);
    assert.equal(finallyRan, true);
    // A later settle is ignored.
    futureControl(f).reject(new Error("late"));
    assert.equal(await f, 42);
  });

  it("failing or cancelled with nobody awaiting it, or only result() called, is no unhandled rejection", async () => {
    const seen = await unhandledDuring(() => {
      futureControl(newFuture("a")).reject(new Error("nobody waits"));
      futureControl(newFuture("b")).cancel();
      const c = newFuture("c");
      void c.result(); // asked for, never awaited
      futureControl(c).reject(new Error("result() not awaited"));
      const d = newFuture("d");
      futureControl(d).reject(new Error("settled first"));
      void d.result();
    });
    assert.deepEqual(seen, []);
  });

  it("runs done callbacks once, in order, and at once when added after it is done", () => {
    const f = newFuture();
    const calls: string[] = [];
    f.addDoneCallback(() => calls.push("first"));
    f.addDoneCallback(() => calls.push("second"));
    futureControl(f).resolve(1);
    futureControl(f).resolve(2);
    assert.deepEqual(calls, ["first", "second"]);
    f.addDoneCallback(() => calls.push("late"));
    assert.deepEqual(calls, ["first", "second", "late"]);
  });

  it("moves between pending and running with the attempt, telling its observers", () => {
    const f = newFuture("op.1");
    const control = futureControl(f);
    const seen: string[] = [];
    control.observe((future) => seen.push(`${future.state}/${future.attempt}`));
    control.markRunning(1);
    control.markRunning(1); // no change, no notice
    control.markPending(2); // a retry
    control.markRunning(2);
    assert.equal(f.running(), true);
    control.markRunning(1); // a stale notice does not lower the attempt
    assert.equal(f.attempt, 2);
    control.timings("5,12.5,1700000000000");
    control.resolve(null);
    assert.deepEqual(seen, ["running/1", "pending/2", "running/2", "finished/2"]);
    assert.deepEqual(f.timings, { wait: 5, run: 12.5, startedAt: new Date(1700000000000) });
    assert.equal(control.failed(), false);
    control.rebind("shared.0", "shared");
    assert.equal(f.id, "shared.0");
    assert.equal(f.operationId, "shared");
  });

  it("delivers each progress value once across retries, in attempt and index order", async () => {
    const f = newFuture();
    const control = futureControl(f);
    control.event("p", 1, 0, "a0");
    control.event("p", 1, 0, "a0 again"); // the same event read twice
    control.event("p", 1, 1, "a1");
    control.event("p", 2, 0, "b0"); // the retry's first value
    control.event("p", 1, 2, "stale"); // a late value of the first attempt
    control.event("p", 2, 0, "b0 again");
    control.event("p", 2, 1, "b1");
    control.resolve("done");
    const values: unknown[] = [];
    for await (const value of f.progress()) values.push(value);
    assert.deepEqual(values, ["a0", "a1", "b0", "b1"]);
  });

  it("streams each yielded value once across retries; a replaced attempt's late values are dropped", async () => {
    const f = newFuture();
    const control = futureControl(f);
    control.event("y", 1, 0, "a0");
    control.event("y", 1, 1, "a1");
    control.markPending(2); // attempt 1's worker was presumed dead
    control.event("y", 1, 2, "a2 late"); // sent by that worker when it woke up
    control.markRunning(2);
    control.event("y", 2, 0, "b0"); // delivered already, as a0
    control.event("y", 2, 1, "b1");
    control.event("y", 2, 2, "b2");
    control.event("y", 1, 3, "a3 late");
    control.event("y", 2, 3, "b3");
    control.resolve("done");
    const values: unknown[] = [];
    for await (const value of f.stream()) values.push(value);
    assert.deepEqual(values, ["a0", "a1", "b2", "b3"]);
  });

  it("asCompleted: next() calls made at once each get their own future; return() ends a waiting next()", async () => {
    const [a, b, c] = [newFuture("op.a"), newFuture("op.b"), newFuture("op.c")];
    const it = asCompleted([a, b, c]);
    const both = Promise.all([it.next(), it.next()]);
    futureControl(b).resolve(2);
    futureControl(a).resolve(1);
    const [first, second] = await both;
    assert.deepEqual([first.value, second.value], [b, a]);
    const waiting = it.next();
    await it.return!();
    assert.deepEqual(await waiting, { value: undefined, done: true });
    assert.deepEqual(await it.next(), { value: undefined, done: true });
    futureControl(c).resolve(3);
  });

  it("waits that end before the future leave nothing on it (a polling loop does not grow)", async () => {
    const f = newFuture();
    const signals: WeakRef<AbortSignal>[] = [];
    const aborted = () => {
      const controller = new AbortController();
      signals.push(new WeakRef(controller.signal));
      setTimeout(() => controller.abort(new Error("stop waiting")), 0);
      return controller.signal;
    };
    // (Each round in a function of its own: the last round's locals would otherwise stay in the
    // test's frame.)
    const round = async () => {
      await assert.rejects(f.result({ signal: aborted() }), /stop waiting/);
      await assert.rejects(f.result({ signal: aborted(), timeout: 60_000 }), /stop waiting/);
      await assert.rejects(wait([f], { signal: aborted() }), /stop waiting/);
      await assert.rejects(asCompleted([f], { signal: aborted() }).next(), /stop waiting/);
      const left = asCompleted([f], { signal: aborted() });
      const next = left.next();
      await left.return!();
      await next;
    };
    for (let i = 0; i < 3; i++) await round();
    // (A WeakRef's target stays alive until the end of the job that made it.)
    await new Promise((resolve) => setTimeout(resolve, 10));
    forceGc();
    await new Promise((resolve) => setTimeout(resolve, 10));
    forceGc();
    const alive = signals.filter((ref) => ref.deref() !== undefined).length;
    assert.equal(alive, 0, `${alive} of ${signals.length} signals still held by the future`);
    futureControl(f).resolve(1);
    assert.equal(await f.result({ timeout: 10 }), 1);
  });

  it("every waiter is woken when the future settles: one that stops waiting then removes only itself", async () => {
    const f = newFuture();
    const waits = Promise.all([
      f.result({ timeout: 60_000 }),
      wait([f], { timeout: 60_000 }),
      f.result({ timeout: 60_000 }),
      wait([f], { timeout: 60_000 }),
    ]);
    futureControl(f).resolve(7);
    const [a, b, c, d] = await waits;
    assert.equal(a, 7);
    assert.equal(c, 7);
    assert.equal(b.done.size, 1);
    assert.equal(d.done.size, 1);
  });
});
