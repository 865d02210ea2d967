import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  asCompleted,
  CancelledError,
  Listener,
  NoWorkersError,
  PoolClosedError,
  RemoteTaskError,
  StreamFuturePool,
  TimeoutError,
  wait,
} from "../mod.ts";
import type { ListenerOptions, PoolOptions, StreamFuture, SubmitOptions } from "../mod.ts";
import * as tasks from "../examples/tasks.ts";
import { startRedis, TASKS, type TestRedis, waitFor } from "./_redis.ts";

let redis: TestRedis;
let app = 0;
const nextApp = () => `pooltest${app++}`;
/** A pool with one local listener serving the example tasks, under a fresh app name. */
const localPool = (options: PoolOptions = {}) =>
  new StreamFuturePool({ url: redis.url, app: nextApp(), workers: 1, tasks: TASKS, ...options });

describe("StreamFuturePool with local listeners", () => {
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });

  it("submit and map give results in input order", async () => {
    await using pool = new StreamFuturePool({
      url: redis.url,
      app: nextApp(),
      workers: 2,
      tasks: TASKS,
    });
    const one = pool.submit(tasks.add, [3, 8]);
    assert.equal(one.id, one.operationId, "submit: operation id equals task id");
    assert.equal(await one, 11);
    assert.equal(one.state, "finished");
    assert.ok(one.done() && !one.running() && !one.cancelled());

    const args = Array.from({ length: 200 }, (_, i) => [i, i * 2] as [number, number]);
    const many = pool.map(tasks.add, args);
    assert.equal(new Set(many.map((f) => f.operationId)).size, 1, "map: one operation id");
    assert.equal(new Set(many.map((f) => f.id)).size, 200, "map: distinct task ids");
    assert.notEqual(many[0].operationId, one.operationId);
    assert.deepEqual(await Promise.all(many), args.map(([a, b]) => a + b));
    assert.deepEqual(pool.map(tasks.add, []), []);
  });

  it("submit by task name and currentTask() inside the task", async () => {
    await using pool = localPool();
    assert.equal(await pool.submit<number>("add", [1, 2]), 3);
    const f = pool.submit(tasks.whoami, []);
    assert.deepEqual(await f, { taskId: f.id, operationId: f.operationId, attempt: 1 });
  });

  it("a task that throws rejects with RemoteTaskError carrying name, message and stack", async () => {
    await using pool = localPool();
    const f = pool.submit(tasks.fail, ["bad input"]);
    const error = await f.then(() => undefined, (e) => e);
    assert.ok(error instanceof RemoteTaskError, String(error));
    assert.equal(error.name, "RemoteTaskError");
    assert.equal(error.remoteName, "RangeError");
    assert.equal(error.message, "bad input");
    assert.match(error.remoteStack ?? "", /RangeError: bad input[\s\S]*fail/);
    assert.equal(await f.exception(), error);
    assert.equal(f.state, "finished");

    const nonError = await pool.submit(tasks.throwString, ["oops"]).then(() => undefined, (e) => e);
    assert.ok(nonError instanceof RemoteTaskError);
    assert.equal(nonError.remoteName, "NonErrorThrown");
    assert.match(nonError.message, /oops/);

    const badResult = await pool.submit(tasks.returnFunction, []).then(() => undefined, (e) => e);
    assert.ok(badResult instanceof RemoteTaskError);
    assert.equal(badResult.remoteName, "TypeError");
    assert.match(badResult.message, /^result: a function cannot be serialized/);
    // The worker goes on.
    assert.equal(await pool.submit(tasks.add, [2, 2]), 4);
    assert.equal(await pool.submit(tasks.add, [2, 2]).exception(), undefined);
  });

  it("unknown tasks: TypeError at submit for functions, an error result for unknown names", async () => {
    await using pool = localPool();
    await pool.ready();
    const notATask = (a: number) => a;
    assert.throws(() => pool.submit(notATask, [1]), (e: unknown) => {
      assert.ok(e instanceof TypeError);
      assert.match(e.message, /notATask is not a task/);
      return true;
    });
    assert.throws(() => pool.map(notATask, [[1]]), TypeError);
    assert.throws(() => pool.submit(42 as never, []), /fn must be a task function or a task name/);
    const f = pool.submit("noSuchTask", []);
    const error = await f.then(() => undefined, (e) => e);
    assert.ok(error instanceof RemoteTaskError);
    assert.equal(error.remoteName, "UnknownTaskError");
    assert.match(error.message, /no task named "noSuchTask"/);
    assert.equal(await pool.submit(tasks.add, [1, 1]), 2);
  });

  it("an unknown function before the modules are loaded rejects the future with TypeError", async () => {
    await using pool = localPool();
    const f = pool.submit(function notATask() {}, []);
    await assert.rejects(f.result(), /notATask is not a task/);
  });

  it("values of every supported type round-trip through a worker", async () => {
    await using pool = localPool();
    const value = {
      u: undefined,
      d: new Date("2024-07-30T15:58:59.617Z"),
      n: -12345678901234567890n,
      m: new Map<unknown, unknown>([[1, "one"], [{ k: [1] }, new Set([NaN])]]),
      s: new Set(["a", undefined]),
      b: new Uint8Array([0, 1, 254, 255]),
      f: [NaN, Infinity, -Infinity, -0],
      nested: [[{ deep: [undefined, new Date(0)] }]],
      text: "ünïcødé ✓",
    };
    const back = await pool.submit(tasks.echo<typeof value>, [value]);
    assert.deepEqual(back, value);
    assert.ok(Object.hasOwn(back, "u"));
    assert.ok(Object.is(back.f[3], -0));
    assert.equal(await pool.submit(tasks.echo<undefined>, [undefined]), undefined);
  });

  it("unserializable arguments are a TypeError at submit naming the path", async () => {
    await using pool = localPool();
    assert.throws(() => pool.submit(tasks.echo, [{ a: [1, () => 1] }]), (e: unknown) => {
      assert.ok(e instanceof TypeError);
      assert.match(e.message, /^args\[0\]\.a\[1\]: a function cannot be serialized/);
      return true;
    });
    assert.throws(() => pool.submit(tasks.echo, [Symbol("x")]), /args\[0\]: a symbol/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => pool.submit(tasks.echo, [cyclic]), /args\[0\]\.self: a cyclic reference/);
    assert.throws(
      () => pool.map(tasks.echo, [[1], [() => 1]]),
      /^TypeError: argsList\[1\]\[0\]: a function/,
    );
    assert.throws(() => pool.submit(tasks.echo, "x" as never), /args must be an array/);
    assert.equal(pool.pending, 0, "nothing was submitted");
  });

  it("map mixes plain arguments, futures and tagged values; a too-large one is refused whole", async () => {
    await using pool = localPool({ maxPayloadBytes: 200 });
    const parent = pool.submit(tasks.add, [1, 2]);
    const mixed = pool.map(tasks.echo, [[1], [parent], [10n], [{ a: [parent] }], ["x"]]);
    assert.deepEqual(await Promise.all(mixed), [1, 3, 10n, { a: [3] }, "x"]);
    const pending = pool.pending;
    assert.throws(() => pool.map(tasks.echo, [["ok"], ["y".repeat(300)]]), (e: unknown) => {
      assert.ok(e instanceof RangeError);
      assert.match(e.message, /^encoded size of the arguments of argsList\[1\]: 30\d bytes/);
      return true;
    });
    assert.equal(pool.pending, pending, "nothing of the refused map was submitted");
  });

  it("asCompleted yields futures in completion order and times out", async () => {
    await using pool = localPool({ concurrency: 4 });
    const futures = pool.map(tasks.sleep, [[600], [10], [300]]);
    const order: number[] = [];
    for await (const f of asCompleted([...futures, futures[0]])) order.push(await f);
    assert.deepEqual(order, [10, 300, 600]);

    const failing = pool.submit(tasks.fail, ["x"]);
    const seen: unknown[] = [];
    for await (const f of asCompleted([failing])) seen.push(f);
    assert.equal(seen[0], failing, "yields the future itself, even a failed one");

    const slow = pool.submit(tasks.sleep, [800]);
    const iterate = async () => {
      for await (const _ of asCompleted([slow], { timeout: 50 })) { /* none */ }
    };
    await assert.rejects(iterate(), TimeoutError);
    assert.equal(await slow, 800, "the timeout left the task alone");
  });

  it("wait: FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED, timeout", async () => {
    await using pool = localPool({ concurrency: 4 });
    const [fast, slow] = pool.map(tasks.sleep, [[20], [500]]);
    let r = await wait([fast, slow], { returnWhen: "FIRST_COMPLETED" });
    assert.deepEqual([...r.done], [fast]);
    assert.deepEqual([...r.notDone], [slow]);

    const bad = pool.submit(tasks.fail, ["x"]);
    const slow2 = pool.submit(tasks.sleep, [700]);
    r = await wait([bad, slow2], { returnWhen: "FIRST_EXCEPTION" });
    assert.ok(r.done.has(bad) && r.notDone.has(slow2));

    r = await wait([slow, slow2], { returnWhen: "ALL_COMPLETED" });
    assert.equal(r.done.size, 2);
    assert.equal(r.notDone.size, 0);

    const slow3 = pool.submit(tasks.sleep, [400]);
    await assert.rejects(wait([slow3], { timeout: 30 }), (error: Error) => {
      assert.ok(error instanceof TimeoutError);
      assert.match(error.message, /1 of 1 futures not done/);
      return true;
    });
    r = await wait([slow3], { timeout: 30, onTimeout: "return" });
    assert.equal(r.notDone.size, 1, "as in Python, a timeout returns what is done");
    await assert.rejects(wait([slow3], { returnWhen: "SOMETIMES" as never }), TypeError);
    await assert.rejects(wait([slow3], { onTimeout: "never" as never }), TypeError);
    await slow3;
  });

  it("result({ timeout }) and an aborted wait signal leave the task alone", async () => {
    await using pool = localPool();
    const f = pool.submit(tasks.sleep, [300]);
    await assert.rejects(f.result({ timeout: 20 }), TimeoutError);
    const controller = new AbortController();
    const waiting = f.result({ signal: controller.signal });
    controller.abort(new Error("stop waiting"));
    await assert.rejects(waiting, /stop waiting/);
    assert.equal(await f.result({ timeout: 5_000 }), 300);
    assert.equal(f.state, "finished");
    // Done: its value, whatever the limits (Python's result(timeout=0)).
    assert.equal(await f.result({ timeout: 0, signal: controller.signal }), 300);
  });

  it("waits longer than a JavaScript timer holds (2^31 ms) last until the task is done", async () => {
    await using pool = localPool();
    const days30 = 30 * 86_400_000;
    const f = pool.submit(tasks.sleep, [200]);
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on("warning", onWarning);
    try {
      const [value, waited, , completed] = await Promise.all([
        f.result({ timeout: days30 }),
        wait([f], { timeout: days30 }),
        pool.join([f], { timeout: days30 }),
        (async () => {
          const yielded = [];
          for await (const done of asCompleted([f], { timeout: days30 })) yielded.push(done);
          return yielded;
        })(),
      ]);
      assert.equal(value, 200);
      assert.equal(waited.done.size, 1);
      assert.deepEqual(completed, [f]);
    } finally {
      process.off("warning", onWarning);
    }
    assert.deepEqual(warnings, [], "no TimeoutOverflowWarning");
  });

  it("durations Redis keeps are whole milliseconds: fractions round up, more than 100 years is refused", async () => {
    await using pool = localPool({ orphanTtl: 1_500.5, dedupeTtl: 0.5 });
    const f = pool.submit(tasks.add, [1, 2], { dedupe: true, delay: 0.4, retryDelay: 0.2 });
    assert.equal(await f.result({ timeout: 10_000 }), 3);
    assert.equal(await pool.submit(tasks.add, [2, 2], { dedupeTtl: 2.5 }), 4);
    for (const options of [{ dedupeTtl: 1e20 }, { delay: 1e20 }, { retryDelay: 4e12 }]) {
      assert.throws(
        () => pool.submit(tasks.add, [1, 1], options),
        /must be at most 3155760000000 milliseconds \(100 years\), got /,
        JSON.stringify(options),
      );
    }
    assert.throws(
      () => new StreamFuturePool({ orphanTtl: 1e20 }),
      /orphanTtl must be at most 3155760000000 milliseconds/,
    );
    await assert.rejects(
      pool.schedule("sched", "* * * * *", tasks.add, [1, 1], { keepResults: 1e20 }),
      /keepResults must be at most 3155760000000 milliseconds/,
    );
    assert.throws(
      () => pool.submit(tasks.add, [1, 1], { timeout: 30 * 86_400_000 }),
      /timeout must be at most 2147483647 milliseconds \(about 24.8 days\)/,
    );
    assert.throws(
      () => new StreamFuturePool({ heartbeatInterval: 1e12 }),
      /heartbeatInterval must be at most 2147483647 milliseconds/,
    );
  });

  it("cancel: a pending task never runs; a finished one cannot be cancelled", async () => {
    await using pool = localPool({ concurrency: 1, keep: true });
    const blocker = pool.submit(tasks.sleep, [400]);
    const queued = pool.submit(tasks.add, [1, 1]);
    await waitFor(() => blocker.running(), "blocker running");
    assert.equal(await queued.cancel(), true);
    assert.equal(queued.state, "cancelled");
    await assert.rejects(queued.result(), CancelledError);
    await assert.rejects(queued.exception(), CancelledError);
    assert.equal(await blocker, 400);
    const c = await redis.client();
    // Give the worker time to see the cancelled entry, then check it never ran.
    const after = pool.submit(tasks.add, [2, 2]);
    assert.equal(await after, 4);
    assert.equal(
      await c.sendCommand(["HGET", `${pool.app}:${queued.operationId}:status`, queued.id]),
      "4",
    );
    assert.match(
      String(await c.sendCommand(["HGET", `${pool.app}:${queued.operationId}:results`, queued.id])),
      /^CancelledError: /,
    );
    assert.equal(
      await c.sendCommand(["HEXISTS", `${pool.app}:${queued.operationId}:heartbeat`, queued.id]),
      0,
    );
    assert.equal(await blocker.cancel(), false, "finished futures cannot be cancelled");
    assert.equal(await queued.cancel(), true, "cancelling twice is fine");
  });

  it("aborting the submit signal cancels pending work; a pre-aborted signal never submits", async () => {
    await using pool = localPool({ concurrency: 1 });
    const blocker = pool.submit(tasks.sleep, [300]);
    const controller = new AbortController();
    const queued = pool.map(tasks.add, [[1, 1], [2, 2]], { signal: controller.signal });
    await waitFor(() => blocker.running(), "blocker running");
    controller.abort(new Error("user abort"));
    for (const f of queued) {
      const error = await f.then(() => undefined, (e) => e);
      assert.ok(error instanceof CancelledError, String(error));
      assert.match(String((error.cause as Error).message), /user abort/);
    }
    const pre = pool.submit(tasks.add, [1, 2], { signal: AbortSignal.abort() });
    assert.equal(pre.state, "cancelled");
    await assert.rejects(pre.result(), CancelledError);
    await blocker;
  });

  it("addDoneCallback runs on completion, and at once when already done", async () => {
    await using pool = localPool();
    const f = pool.submit(tasks.add, [1, 2]);
    const calls: string[] = [];
    f.addDoneCallback((done) => calls.push(`first ${done.state}`));
    f.addDoneCallback(() => {
      throw new Error("callback errors are reported, not thrown");
    });
    await f;
    f.addDoneCallback((done) => calls.push(`late ${done.state}`));
    assert.deepEqual(calls, ["first finished", "late finished"]);
  });

  it("NoWorkersError without a live listener; requireWorkers: false lets work wait", async () => {
    const name = nextApp();
    await using pool = new StreamFuturePool({ url: redis.url, app: name });
    const f = pool.submit("add", [1, 2]);
    const error = await f.then(() => undefined, (e) => e);
    assert.ok(error instanceof NoWorkersError, String(error));
    assert.match(error.message, /no live worker serves queue "default"/);
    await assert.rejects(Promise.all(pool.map("add", [[1, 2], [3, 4]])), NoWorkersError);

    await using waiting = new StreamFuturePool({
      url: redis.url,
      app: name,
      requireWorkers: false,
    });
    const later = waiting.submit<number>("add", [20, 22]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(later.state, "pending");
    await using serving = new StreamFuturePool({
      url: redis.url,
      app: name,
      workers: 1,
      tasks: TASKS,
    });
    await serving.ready();
    assert.equal(await later.result({ timeout: 10_000 }), 42);
  });

  it("a map larger than one submit chunk is refused whole or written whole", async () => {
    const name = nextApp();
    await using lonely = new StreamFuturePool({ url: redis.url, app: name });
    const refused = lonely.map("add", Array.from({ length: 1_200 }, (_, i) => [i, 1]));
    const outcomes = await Promise.allSettled(refused);
    assert.ok(outcomes.every((o) => o.status === "rejected" && o.reason instanceof NoWorkersError));
    const c = await redis.client();
    assert.equal(
      await c.sendCommand(["EXISTS", `${name}:queue:default`]),
      0,
      "nothing was written",
    );

    await using pool = new StreamFuturePool({
      url: redis.url,
      app: name,
      workers: 2,
      tasks: TASKS,
    });
    const args = Array.from({ length: 1_200 }, (_, i) => [i, 1] as [number, number]);
    assert.deepEqual(await Promise.all(pool.map(tasks.add, args)), args.map(([a]) => a + 1));
  });

  it("shutdown is safe twice, waits for futures, and refuses new work", async () => {
    const pool = localPool();
    const f = pool.submit(tasks.sleep, [150]);
    const first = pool.shutdown();
    const second = pool.shutdown();
    assert.throws(() => pool.submit(tasks.add, [1, 2]), PoolClosedError);
    await Promise.all([first, second]);
    assert.equal(f.state, "finished");
    assert.equal(await f, 150);
    await pool.shutdown();
    await pool[Symbol.asyncDispose]();
    // Reads after the shutdown closed the connection: PoolClosedError, not node-redis' error.
    await assert.rejects(pool.results(f.operationId), PoolClosedError);
    await assert.rejects(pool.kv.get("k"), PoolClosedError);
    await assert.rejects(pool.schedules(), PoolClosedError);
    await assert.rejects(pool.unschedule("s"), PoolClosedError);
  });

  it("shutdown({ cancelFutures: true }) cancels running and queued tasks", async () => {
    const pool = localPool({ concurrency: 1 });
    const running = pool.submit(tasks.sleep, [30_000]);
    const queued = pool.map(tasks.add, [[1, 1], [2, 2], [3, 3]]);
    await waitFor(() => running.running(), "first task running");
    const started = performance.now();
    await pool.shutdown({ cancelFutures: true });
    assert.ok(performance.now() - started < 10_000, "the 30 s task was stopped, not waited for");
    await assert.rejects(running.result(), CancelledError);
    for (const f of [running, ...queued]) assert.equal(f.state, "cancelled");
  });

  it("a graceful shutdown under way is escalated by shutdown({ cancelFutures: true })", async () => {
    const pool = localPool({ concurrency: 1 });
    const running = pool.submit(tasks.sleep, [30_000]);
    const queued = pool.submit(tasks.add, [1, 1]);
    await waitFor(() => running.running(), "first task running");
    const graceful = pool.shutdown();
    const started = performance.now();
    await pool.shutdown({ cancelFutures: true });
    await graceful;
    assert.ok(performance.now() - started < 10_000, "the 30 s task was stopped, not waited for");
    assert.equal(running.state, "cancelled");
    assert.equal(queued.state, "cancelled");
  });

  it("a CPU-bound task on a local listener does not stall the client", async () => {
    await using pool = localPool();
    await pool.ready();
    const spinning = pool.submit(tasks.spin, [700]);
    await waitFor(() => spinning.running(), "spin running");
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    await new Promise((resolve) => setTimeout(resolve, 300));
    clearInterval(timer);
    assert.ok(ticks >= 10, `the client's event loop ran ${ticks} ticks while a task spun`);
    assert.ok((await spinning) > 0);
  });

  it("bad options throw TypeError / RangeError naming the option", () => {
    assert.throws(
      () => new StreamFuturePool({ url: "http://x" }),
      /url must use the redis: or rediss: scheme/,
    );
    assert.throws(
      () => new StreamFuturePool({ workers: -1 }),
      /workers must be a non-negative integer/,
    );
    assert.throws(() => new StreamFuturePool({ workers: 1 }), /workers > 0 needs tasks/);
    assert.throws(() => new StreamFuturePool({ app: "a:b" }), /app must be a non-empty string/);
    assert.throws(() => new StreamFuturePool({ url: { port: 70000 } }), RangeError);
    assert.throws(
      () => new StreamFuturePool({ heartbeatInterval: 5000, heartbeatTimeout: 1000 }),
      /heartbeatTimeout \(1000 ms\) must be longer than heartbeatInterval/,
    );
    // A misspelt option is an error, not a silently ignored one.
    const unknown = (options: object) => options as PoolOptions;
    assert.throws(
      () => new StreamFuturePool(unknown({ worker: 4 })),
      (e: unknown) =>
        e instanceof TypeError &&
        e.message.startsWith(
          'unknown option "worker" of new StreamFuturePool() (did you mean "workers"?); the options are url, app, workers,',
        ),
    );
    assert.throws(
      () => new StreamFuturePool(unknown({ priority: 3 })),
      /unknown option "priority" of new StreamFuturePool\(\); the options are/,
    );
    assert.doesNotThrow(() => new StreamFuturePool(unknown({ nothing: undefined })).shutdown());
    assert.throws(() => new StreamFuturePool(unknown([])), /must be an object, got an array/);
    assert.throws(
      () => new Listener(unknown({ concurency: 3 }) as ListenerOptions),
      /unknown option "concurency" of new Listener\(\) \(did you mean "concurrency"\?\)/,
    );
    assert.throws(
      () => new Listener(undefined as unknown as ListenerOptions),
      /new Listener\(\) must be an object, got undefined|unknown|queues|tasks/,
    );
    assert.throws(() => new Listener({ id: "", tasks: TASKS }), /id must be a non-empty string/);
    // Connection options: the URL's path is a database number; the object's fields are typed.
    assert.throws(() => new StreamFuturePool({ url: "redis://h:7433/abc" }), /database number/);
    assert.throws(() => new StreamFuturePool({ url: "redis://h:0" }), RangeError);
    assert.throws(
      () => new StreamFuturePool({ url: { password: 5 as unknown as string } }),
      /url.password must be a string, got number 5/,
    );
    assert.throws(
      () => new StreamFuturePool({ url: { tls: "yes" as unknown as boolean } }),
      /url.tls must be true or false/,
    );
    assert.throws(
      () => new StreamFuturePool({ url: unknown({ hostt: "x" }) as PoolOptions["url"] }),
      /unknown option "hostt" of url \(did you mean "host"\?\)/,
    );
  });

  it("bad arguments of submit, map, waits and shutdown name what was wrong", async () => {
    await using pool = localPool();
    const unknown = (options: object) => options as never;
    assert.throws(
      () => pool.submit(tasks.add, [1, 2], unknown({ timout: 5 })),
      /unknown option "timout" of submit\(\) \(did you mean "timeout"\?\)/,
    );
    assert.throws(
      () => pool.submit(tasks.add, [1, 2], null as unknown as SubmitOptions),
      /the options of submit\(\) must be an object, got null/,
    );
    assert.throws(
      () => pool.submit(tasks.add, [1, 2], { signal: "x" as unknown as AbortSignal }),
      /signal must be an AbortSignal, got "x"/,
    );
    assert.throws(() => pool.map(tasks.add, [[1, 2]], unknown({ windw: 5 })), /of map\(\)/);
    assert.throws(() => pool.imap(tasks.add, [[1, 2]], unknown({ windw: 5 })), /"window"/);
    const f = pool.submit(tasks.add, [1, 2]);
    assert.throws(() => f.result(unknown({ timeuot: 5 })), /unknown option "timeuot" of result/);
    assert.throws(
      () => f.result({ signal: "x" as unknown as AbortSignal }),
      /signal must be an AbortSignal/,
    );
    await assert.rejects(
      wait([Promise.resolve(1)] as unknown as StreamFuture<number>[]),
      /wait\(\) takes futures of a StreamFuturePool; element 0 is an object \(\[object Promise\]\)/,
    );
    await assert.rejects(
      wait([f], unknown({ returnwhen: "FIRST_COMPLETED" })),
      /did you mean "returnWhen"/,
    );
    assert.throws(
      () => asCompleted([1] as unknown as StreamFuture<number>[]),
      /asCompleted\(\) takes futures of a StreamFuturePool; element 0 is number 1/,
    );
    await assert.rejects(
      pool.join(5 as unknown as StreamFuture<number>[]),
      /join\(\) takes an iterable of futures, got number 5/,
    );
    await assert.rejects(
      pool.schedule("s", "* * * * *", tasks.add, [1, 2], unknown({ keepresults: 5 })),
      /unknown option "keepresults" of schedule\(\) \(did you mean "keepResults"\?\)/,
    );
    await assert.rejects(pool.kv.set("k", 1, unknown({ tll: 5 })), /of kv.set\(\)/);
    assert.throws(() => pool.shutdown(unknown({ cancel: true })), /of shutdown\(\)/);
    // A value of the wrong type is a TypeError that shows its type.
    assert.throws(
      () => pool.submit(tasks.add, [1, 2], { priority: "5" as never }),
      /^TypeError: priority must be an integer from -9 to 9 .*, got "5"$/,
    );
    assert.throws(() => f.result({ timeout: "5" as never }), /^TypeError: timeout .* got "5"$/);
    assert.throws(
      () => pool.imap(tasks.add, [[1, 2]], { ordered: "no" as never }),
      /^TypeError: ordered must be true or false, got "no"$/,
    );
    assert.throws(
      () => pool.imap(tasks.add, [[1, 2]], { window: "5" as never }),
      /^TypeError: window must be a positive integer, got "5"$/,
    );
    // Progress bars.
    for (const bad of [5, {}, null]) {
      assert.throws(
        () => pool.map(tasks.add, [[1, 2]], { progress: bad as never }),
        /^TypeError: progress must be true, false or the bar's label \(a string\), got /,
      );
      assert.throws(
        () => pool.imap(tasks.add, [[1, 2]], { progress: bad as never }),
        /progress must be true, false or the bar's label/,
      );
    }
    await assert.rejects(
      pool.progress([f], unknown({ lable: "x" })),
      /unknown option "lable" of progress\(\); the options are label, stream/,
    );
    await assert.rejects(pool.progress([f], null as never), /the options of progress\(\) must be/);
    await assert.rejects(
      pool.progress([1, 2] as never),
      /progress\(\) takes futures of a StreamFuturePool; element 0 is number 1/,
    );
    await assert.rejects(pool.progress([f], { label: 5 as never }), /label must be a string/);
    await assert.rejects(
      pool.progress([f], { stream: {} as never }),
      /stream must be a writable stream/,
    );
    assert.equal(await f, 3);
  });
});
