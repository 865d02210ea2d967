import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { CancelledError, RemoteTaskError, TaskNotFoundError } from "../mod.ts";
import type { StreamFuture } from "../mod.ts";
import type { ChildProcessHandle } from "../lib/_runtime.ts";
import { runChunk } from "../lib/_chunks.ts";
import { loadTasks } from "../lib/_tasks.ts";
import { startRedis, type TestRedis } from "./_redis.ts";
import {
  cleanTraces,
  faultPool,
  killAll,
  nextApp,
  readTrace,
  startWorker,
  traceFile,
  waitFor,
} from "./faults/_setup.ts";
import type { Trace } from "./faults/_tasks.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

describe("map and imap with chunksize: calls sent in chunks, one task per chunk", () => {
  before(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await killAll(children);
    await cleanTraces();
  });
  after(async () => {
    await redis.stop();
  });

  it("every call gets its own future and value, in input order; Redis holds one task per chunk", async () => {
    const app = nextApp("chunks");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const inputs = Array.from({ length: 25 }, (_, i) => [String(i)] as [string]);
    const futures = pool.map<string>("say", inputs, { chunksize: 10 });
    assert.equal(futures.length, 25);
    assert.deepEqual(await Promise.all(futures), inputs.map(([s]) => s));
    const op = futures[0].operationId;
    assert.ok(futures.every((f) => f.operationId === op));
    assert.deepEqual(futures.map((f) => f.id), inputs.map((_, i) => `${op}.${i.toString(36)}`));
    assert.ok(futures.every((f) => f.state === "finished" && f.attempt === 1));
    assert.ok(futures.every((f) => f.timings && f.timings.run >= 0), "timings of the chunk");
    const c = await redis.client();
    assert.deepEqual(
      (await c.sendCommand(["HKEYS", `${app}:${op}:status`]) as string[]).sort(),
      [`${op}.c_0_a`, `${op}.c_a_a`, `${op}.c_k_5`],
      "one task per chunk, named by its first call's index and its number of calls",
    );
    // results() gives each call's row, from its chunk's outcome list.
    const rows = await pool.results(op);
    assert.deepEqual(
      rows.map((r) => [r.taskId, r.status, r.value]),
      inputs.map(([v], i) => [`${op}.${i.toString(36)}`, "completed", v]),
    );
    for (const f of futures) await f[Symbol.asyncDispose]();
    assert.equal(await c.sendCommand(["EXISTS", `${app}:${op}:status`]), 0, "released");
  });

  it("a call that throws, or whose value cannot be sent, fails alone; the others complete", async () => {
    const app = nextApp("chunkerr");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const futures = pool.map<number>("tens", [[0], [1], [2], [3], [4], [6]], { chunksize: 6 });
    const settled = await Promise.allSettled(futures);
    const values = settled.map((s) => s.status === "fulfilled" ? s.value : undefined);
    assert.deepEqual(values, [0, undefined, 20, undefined, undefined, 60]);
    for (const i of [1, 3]) {
      const error = (settled[i] as PromiseRejectedResult).reason;
      assert.ok(error instanceof RemoteTaskError);
      assert.equal(error.remoteName, "RangeError");
      assert.equal(error.message, `odd: ${i}`);
      assert.equal(error.attempts, 1);
    }
    const symbol = (settled[4] as PromiseRejectedResult).reason;
    assert.ok(symbol instanceof RemoteTaskError);
    assert.equal(symbol.remoteName, "TypeError");
    assert.match(symbol.message, /symbol/i);
  });

  it("another client attaches to chunked calls by id, and reads them per call: future(), operation(), results()", async () => {
    const app = nextApp("chunkattach");
    const file = await traceFile();
    await using pool = faultPool(redis, app, { requireWorkers: false });
    // Chunks of 3: [0 1 2] [3 4 5] [6]; call 4 throws (tens of an odd number).
    const futures = pool.map<number>("tens", [[0], [2], [6], [8], [7], [10], [12]], {
      chunksize: 3,
    });
    const slow = pool.map<Trace>("nap", [[60_000, file], [60_000, file]], { chunksize: 2 });
    const op = futures[0].operationId;
    const c = await redis.client();
    const written = async (f: StreamFuture<unknown>, chunks: number) =>
      Number(await c.sendCommand(["HLEN", `${app}:${f.operationId}:status`])) === chunks;
    await waitFor(async () => await written(futures[0], 3) && await written(slow[0], 1), "sent");
    await using other = faultPool(redis, app, { requireWorkers: false });
    // Attached while queued: they settle when their chunk runs.
    const call4 = other.future(futures[4].id);
    const call6 = other.future(futures[6].id);
    const all = await other.operation<number>(op);
    assert.deepEqual(all.map((f) => f.id), futures.map((f) => f.id));
    assert.ok(all.every((f) => f.state === "pending"));
    const pendingRows = await other.results(op);
    assert.deepEqual(
      pendingRows.map((r) => [r.taskId, r.status]),
      futures.map((f) => [f.id, "pending"]),
    );
    children.push(await startWorker(redis, app));
    assert.equal(await call6, 120);
    const error = await call4.then(() => undefined, (e) => e);
    assert.ok(error instanceof RemoteTaskError, String(error));
    assert.equal(error.message, "odd: 7");
    const settled = await Promise.allSettled(all);
    assert.deepEqual(
      settled.map((r) => r.status === "fulfilled" ? r.value : (r.reason as Error).message),
      [0, 20, 60, 80, "odd: 7", 100, 120],
    );
    const rows = await other.results(op);
    assert.deepEqual(
      rows.map((r) => [r.taskId, r.status, r.value ?? r.error?.message]),
      futures.map((
        f,
        i,
      ) => [f.id, i === 4 ? "failed" : "completed", [0, 20, 60, 80, "odd: 7", 100, 120][i]]),
    );
    // A running chunk's call, attached: running, and cancelled with its chunk.
    await waitFor(() => slow[0].running(), "the slow chunk runs");
    const running = other.future(slow[1].id);
    await waitFor(() => running.running(), "the attached call is running");
    await Promise.all(slow.map((f) => f.cancel()));
    await assert.rejects(running, CancelledError);
    // A call id past the operation's chunks is no task.
    await assert.rejects(other.future(`${op}.z`), TaskNotFoundError);
  });

  it("refuses what it cannot do, before sending anything", async () => {
    const app = nextApp("chunkargs");
    await using pool = faultPool(redis, app, { requireWorkers: false });
    const calls = [["a"], ["b"]];
    assert.throws(() => pool.map("say", calls, { chunksize: 0 }), RangeError);
    assert.throws(() => pool.map("say", calls, { chunksize: 100_001 }), RangeError);
    assert.throws(() => pool.map("say", calls, { chunksize: 1.5 }), TypeError);
    assert.throws(
      () => pool.map("say", calls, { chunksize: "10" as unknown as number }),
      /chunksize must be a whole number/,
    );
    assert.throws(
      () => pool.map("say", calls, { chunksize: 2, retries: 2, retryOn: "error" }),
      /retryOn: "error" with retries cannot be combined with chunksize > 1/,
    );
    assert.throws(() => pool.imap("say", calls, { chunksize: 0 }), RangeError);
    const chunked = pool.map("say", calls, { chunksize: 2 });
    assert.throws(
      () => pool.submit("say", [chunked[0]]),
      /sent in a chunk .* cannot be a task argument/,
    );
    assert.equal(pool.pending, 1, "only the chunk of the one map that was accepted");
    await Promise.all(chunked.map((f) => f.cancel()));
    await assert.rejects(chunked[0], CancelledError);
  });

  it("cancelling every call of a queued chunk cancels its task; one call alone still runs with the others", async () => {
    const app = nextApp("chunkcancel");
    const file = await traceFile();
    await using pool = faultPool(redis, app, { requireWorkers: false });
    const futures = pool.map<Trace>("nap", [[1, file], [1, file], [1, file], [1, file]], {
      chunksize: 2,
    });
    const op = futures[0].operationId;
    const c = await redis.client();
    const status = (first: number) =>
      c.sendCommand(["HGET", `${app}:${op}:status`, `${op}.c_${first}_2`]);
    await waitFor(async () => (await status(2)) === "0", "both chunks queued");
    assert.equal(await futures[0].cancel(), true);
    assert.equal(futures[0].state, "cancelled");
    assert.equal(await status(0), "0", "the chunk's other call is still wanted");
    assert.equal(await futures[2].cancel(), true);
    assert.equal(await futures[1].cancel(), true);
    assert.equal(await status(0), "4", "no call of chunk 0 is wanted: its task is cancelled");
    children.push(await startWorker(redis, app));
    const last = await futures[3];
    assert.equal(last.taskId, `${op}.c_2_2`);
    await assert.rejects(futures[0], CancelledError);
    await assert.rejects(futures[1], CancelledError);
    await assert.rejects(futures[2], CancelledError);
    const starts = (await readTrace(file)).filter((t) => t.event === "start");
    assert.deepEqual(starts.map((t) => t.taskId), [`${op}.c_2_2`, `${op}.c_2_2`]);
  });

  it("cancelling the calls of a running chunk stops it on its worker; so does the map's signal", async () => {
    const app = nextApp("chunkrunning");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const futures = pool.map<Trace>("nap", [[60_000, file], [60_000, file]], { chunksize: 2 });
    await waitFor(async () => (await readTrace(file)).length > 0, "first call started");
    await waitFor(() => futures.every((f) => f.running()), "both calls running with their chunk");
    assert.deepEqual(await Promise.all(futures.map((f) => f.cancel())), [true, true]);
    for (const f of futures) await assert.rejects(f, CancelledError);
    await waitFor(
      async () => (await readTrace(file)).some((t) => t.event === "aborted"),
      "the running call aborted",
    );
    assert.equal((await readTrace(file)).filter((t) => t.event === "start").length, 1);

    const controller = new AbortController();
    const more = pool.map<Trace>("nap", [[60_000, file], [60_000, file], [60_000, file]], {
      chunksize: 2,
      signal: controller.signal,
    });
    await waitFor(
      async () => (await readTrace(file)).filter((t) => t.event === "start").length === 3,
      "both chunks running",
    );
    controller.abort();
    for (const f of more) await assert.rejects(f, CancelledError);
  });

  it("a chunk whose worker dies runs again on another worker (retries), every call with it", async () => {
    const app = nextApp("chunklost");
    const file = await traceFile();
    const one = await startWorker(redis, app);
    const two = await startWorker(redis, app);
    children.push(one, two);
    await using pool = faultPool(redis, app);
    const futures: StreamFuture<Trace>[] = pool.map<Trace>(
      "nap",
      [[1_000, file], [1, file], [1, file]],
      { chunksize: 3, retries: 1 },
    );
    const start = await waitFor(async () => (await readTrace(file))[0], "chunk started");
    const victim = start.pid === one.pid ? one : two;
    const survivor = victim === one ? two : one;
    victim.kill("SIGKILL");
    const traces = await Promise.all(futures);
    assert.deepEqual(traces.map((t) => [t.pid, t.attempt]), [
      [survivor.pid, 2],
      [survivor.pid, 2],
      [survivor.pid, 2],
    ]);
    assert.ok(futures.every((f) => f.attempt === 2));
  });

  it("a call with futures among its arguments is a task of its own: a parent's failure is its alone", async () => {
    const app = nextApp("chunkparents");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const good = pool.submit<string>("say", ["g"]);
    const bad = pool.submit<number>("tens", [1]);
    const futures = pool.map<string>("say", [[good], ["a"], [bad], ["b"], ["c"]], {
      chunksize: 4,
    });
    const settled = await Promise.allSettled(futures);
    assert.deepEqual(
      settled.map((r) => r.status === "fulfilled" ? r.value : (r.reason as Error).name),
      ["g", "a", "DependencyError", "b", "c"],
    );
    const op = futures[0].operationId;
    assert.deepEqual(
      (await pool.results(op)).map((r) => r.taskId),
      [0, 1, 2, 3, 4].map((i) => `${op}.${i}`),
    );

    const values: string[] = [];
    const input = [["x"], [bad], ["y"]] as unknown as [string][];
    await assert.rejects(async () => {
      for await (const v of pool.imap<string>("say", input, { chunksize: 3 })) values.push(v);
    }, (error) => (error as Error).name === "DependencyError");
    assert.deepEqual(values, ["x"], "imap: the call before the failed parent's child comes first");
  });

  it("results() lists an operation of many chunks in input order; failed chunks give their calls timings", async () => {
    const app = nextApp("chunkorder");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const futures = pool.map<string>("say", Array.from({ length: 300 }, (_, i) => [`${i}`]), {
      chunksize: 2,
    });
    await Promise.all(futures);
    const op = futures[0].operationId;
    const rows = await pool.results(op);
    assert.equal(rows.length, 300);
    assert.deepEqual(
      rows.map((r) => [r.taskId, r.value]),
      rows.map((_, i) => [`${op}.${i.toString(36)}`, `${i}`]),
    );

    const timedOut = pool.map<Trace>("nap", [[5_000], [5_000]], { chunksize: 2, timeout: 300 });
    for (const f of timedOut) {
      await assert.rejects(f, (e) => (e as Error).name === "TaskTimeoutError");
    }
    assert.ok(timedOut.every((f) => f.timings !== undefined), "the chunk's timings");
  });

  it("pool.progress counts calls already running when it is called, and stops counting them", async () => {
    const app = nextApp("chunkbar");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const futures = pool.map<Trace>("nap", Array.from({ length: 4 }, () => [300]), {
      chunksize: 2,
    });
    await waitFor(() => futures.every((f) => f.running()), "calls running");
    const frames: string[] = [];
    await pool.progress(futures, {
      stream: { isTTY: true, columns: 120, write: (chunk: string) => frames.push(chunk) },
    });
    assert.match(frames.join(""), /4\/4 \(0 failed, 0 running\)[^\n]*\n?$/);
  });

  it("each call's progress values reach its own future", async () => {
    const app = nextApp("chunkprogress");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    const futures = pool.map<number>("report", [[1], [2], [3]], { chunksize: 3 });
    const seen = await Promise.all(futures.map(async (f) => {
      const values: unknown[] = [];
      for await (const value of f.progress()) values.push(value);
      return values;
    }));
    assert.deepEqual(await Promise.all(futures), [1, 2, 3]);
    assert.deepEqual(seen, [[1, 10], [2, 20], [3, 30]]);
  });

  it("outcomes that would take the chunk's result over maxPayloadBytes fail alone", async () => {
    const app = nextApp("chunkresults");
    children.push(await startWorker(redis, app, ["--max-payload-bytes", "10000"]));
    await using pool = faultPool(redis, app);
    const futures = pool.map<string>("bigResult", [[3000], [3000], [3000], [3000], [10]], {
      chunksize: 5,
    });
    const settled = await Promise.allSettled(futures);
    assert.deepEqual(settled.map((s) => s.status), [
      "fulfilled",
      "fulfilled",
      "fulfilled",
      "rejected",
      "fulfilled",
    ]);
    const error = (settled[3] as PromiseRejectedResult).reason;
    assert.ok(error instanceof RemoteTaskError);
    assert.equal(error.remoteName, "RangeError");
    assert.match(error.message, /does not fit in its chunk's result/);
    assert.equal((settled[4] as PromiseFulfilledResult<string>).value.length, 10);
  });

  it("chunks are cut to keep their arguments within maxPayloadBytes", async () => {
    const app = nextApp("chunkbytes");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app, { maxPayloadBytes: 4_000 });
    const text = "x".repeat(500);
    const futures = pool.map<string>("say", Array.from({ length: 10 }, () => [text]), {
      chunksize: 10,
    });
    assert.deepEqual(await Promise.all(futures), Array(10).fill(text));
    // Each call's arguments are `["x...x"]`, 505 bytes with its comma: 7 fit in 4,000 bytes.
    const op = futures[0].operationId;
    const c = await redis.client();
    const chunks = await c.sendCommand(["HKEYS", `${app}:${op}:status`]) as string[];
    assert.deepEqual(
      chunks.sort(),
      [`${op}.c_0_7`, `${op}.c_7_3`],
      `${chunks.length} chunks for 10 calls of 505 bytes, 4,000 at most`,
    );
  });

  it("imap: yields every call's value in input order or as completed, within the window; releases each chunk once consumed", async () => {
    const app = nextApp("imapchunks");
    children.push(await startWorker(redis, app, ["--concurrency", "4"]));
    await using pool = faultPool(redis, app);
    let read = 0;
    let consumed = 0;
    let ahead = 0;
    function* input() {
      for (let i = 0; i < 1_000; i++) {
        read++;
        ahead = Math.max(ahead, read - consumed);
        yield [String(i)] as [string];
      }
    }
    const c = await redis.client();
    let most = 0;
    for await (const value of pool.imap<string>("say", input(), { chunksize: 30, window: 100 })) {
      assert.equal(value, String(consumed++));
      if (consumed % 100 === 0) {
        const keys = await c.sendCommand(["KEYS", `${app}:*:status`]) as string[];
        for (const key of keys) most = Math.max(most, Number(await c.sendCommand(["HLEN", key])));
      }
    }
    assert.equal(consumed, 1_000);
    assert.ok(ahead <= 101, `read ${ahead} inputs ahead of the consumer (window 100)`);
    // In flight: at most 100 calls, 4 chunks; consumed and not released yet: under 256 calls.
    assert.ok(most <= 4 + Math.ceil(256 / 30) + 1, `an operation hash held ${most} chunk tasks`);
    await waitFor(
      async () => ((await c.sendCommand(["KEYS", `${app}:*:status`])) as string[]).length === 0,
      "every chunk released",
    );

    const values: number[] = [];
    const unordered = pool.imap<number>("tens", [[2], [1], [0], [6]], {
      chunksize: 2,
      ordered: false,
    });
    await assert.rejects(async () => {
      for await (const v of unordered) values.push(v);
    }, (error) => error instanceof RemoteTaskError && error.message === "odd: 1");
    // Completion order: the other chunk may come first; within a chunk, calls settle in order.
    assert.ok(values.includes(20), `${values}: the call before the error in its chunk`);
    assert.ok(values.every((v) => [0, 20, 60].includes(v)), `${values}`);
  });

  it("imap: a slow async input does not hold back the calls read so far; an abort stops the chunks in flight", async () => {
    const app = nextApp("imapchunkslow");
    const file = await traceFile();
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    async function* input() {
      yield [1, file] as [number, string];
      yield [1, file] as [number, string];
      await gate; // the input stalls: the two calls read so far go out as a chunk of 2
      yield [60_000, file] as [number, string];
      yield [60_000, file] as [number, string];
    }
    const controller = new AbortController();
    const it = pool.imap<Trace>("nap", input(), { chunksize: 100, signal: controller.signal })[
      Symbol.asyncIterator
    ]();
    const first = it.next();
    await waitFor(
      async () => (await readTrace(file)).filter((t) => t.event === "done").length === 2,
      "the two calls read before the input stalled ran",
    );
    release();
    const a = await first;
    const b = await it.next();
    assert.equal(a.value!.taskId, b.value!.taskId, "one chunk");
    const pending = it.next();
    await waitFor(
      async () => (await readTrace(file)).filter((t) => t.event === "start").length === 3,
      "the second chunk running",
    );
    controller.abort();
    await assert.rejects(pending);
    await waitFor(
      async () => (await readTrace(file)).some((t) => t.event === "aborted"),
      "the running chunk stopped",
    );
  });
});

describe("chunks on the worker (pure logic)", () => {
  it("runChunk: outcomes per call; a generator call fails alone; an aborted signal stops the chunk", async () => {
    const controller = new AbortController();
    function* gen() {
      yield 1;
    }
    const fn = (n: number) => n === 2 ? gen() : n;
    const text = await runChunk(fn, [[1], [2], [3]], controller.signal, 1_000);
    const outcomes = JSON.parse(text);
    assert.deepEqual(outcomes[0], [1, 1]);
    assert.equal(outcomes[1][0], 0);
    assert.equal(outcomes[1][1], "TypeError");
    assert.match(outcomes[1][2], /generator task cannot run in a chunk/);
    assert.deepEqual(outcomes[2], [1, 3]);
    const big = JSON.parse(await runChunk(() => "y".repeat(2_000), [[]], controller.signal, 1_000));
    assert.equal(big[0][0], 0, "a value over maxPayloadBytes fails its call");
    await assert.rejects(runChunk(fn, [1], controller.signal, 1_000), TypeError);
    controller.abort(new CancelledError("stop"));
    await assert.rejects(runChunk(fn, [[1]], controller.signal, 1_000), /stop/);
  });

  it("runChunk: synchronous calls let the event loop turn, so an abort stops the chunk between calls", async () => {
    const controller = new AbortController();
    let ran = 0;
    const busy = () => {
      const end = performance.now() + 5;
      while (performance.now() < end) { /* a synchronous call */ }
      return ++ran;
    };
    setTimeout(() => controller.abort(new CancelledError("stopped")), 30);
    const calls = Array.from({ length: 400 }, () => []);
    await assert.rejects(runChunk(busy, calls, controller.signal, 1e6), /stopped/);
    assert.ok(ran < 400, `${ran} of 400 calls ran`);
  });

  it("runChunk: tells which call runs; keeps the outcomes within the limit, one short error per call that does not fit", async () => {
    const order: number[] = [];
    const text = await runChunk(
      (n: number) => "z".repeat(n),
      [[100], [300], [100]],
      new AbortController().signal,
      450,
      (i) => order.push(i),
    );
    assert.deepEqual(order, [0, 1, 2]);
    const outcomes = JSON.parse(text);
    assert.ok(text.length <= 450, `${text.length} bytes`);
    assert.deepEqual(outcomes[0], [1, "z".repeat(100)]);
    assert.equal(outcomes[1][0], 0);
    assert.match(outcomes[1][2], /does not fit/);
    assert.deepEqual(outcomes[2], [1, "z".repeat(100)]);
  });

  it("task modules may not export names starting with chunk:", async () => {
    const { mkdtemp, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { pathToFileURL } = await import("node:url");
    const dir = await mkdtemp(join(tmpdir(), "streamfutures-chunk-"));
    try {
      const file = join(dir, "tasks.mjs");
      await writeFile(file, 'function f() {}\nexport { f as "chunk:f" };\n');
      await assert.rejects(loadTasks([pathToFileURL(file)]), /reserved for chunks/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
