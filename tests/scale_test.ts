import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { PoolClosedError, RemoteTaskError, TimeoutError } from "../mod.ts";
import type { ChildProcessHandle } from "../lib/_runtime.ts";
import { startRedis, type TestRedis, waitFor } from "./_redis.ts";
import {
  cleanUp,
  nextApp,
  pool as makePool,
  readTrace,
  startWorker,
  traceFile,
} from "./composition/_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

describe("scale: imap, progress, partial results, timings, results, join", () => {
  before(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await cleanUp(children);
  });
  after(async () => {
    await redis.stop();
  });

  it("imap: input order, bounded window, entries released as consumed", async () => {
    const app = nextApp("imap");
    children.push(await startWorker(redis, app, ["--concurrency", "16"]));
    await using pool = makePool(redis, app);
    let read = 0;
    let maxAhead = 0;
    let consumed = 0;
    function* input() {
      for (let i = 0; i < 2_000; i++) {
        read++;
        maxAhead = Math.max(maxAhead, read - consumed);
        yield [i, 1] as [number, number];
      }
    }
    const c = await redis.client();
    let maxFields = 0;
    let expected = 1;
    for await (const value of pool.imap<number>("sum", input(), { window: 50 })) {
      assert.equal(value, expected++);
      consumed++;
      if (consumed % 200 === 0) {
        const keys = await c.sendCommand(["KEYS", `${app}:*:status`]) as string[];
        for (const key of keys) {
          maxFields = Math.max(maxFields, Number(await c.sendCommand(["HLEN", key])));
        }
      }
    }
    assert.equal(consumed, 2_000);
    assert.ok(maxAhead <= 51, `read ${maxAhead} inputs ahead of the consumer (window 50)`);
    assert.ok(maxFields <= 50 + 256, `an operation hash held ${maxFields} fields`);
    await waitEmpty(c, app);
  });

  it("imap: completion order, async and endless input, early exit cancels the rest", async () => {
    const app = nextApp("imapunordered");
    children.push(await startWorker(redis, app, ["--concurrency", "8"]));
    await using pool = makePool(redis, app);
    async function* delays() {
      for (const ms of [300, 10, 200, 20]) yield [ms, ms] as [number, number];
    }
    const order: number[] = [];
    for await (const v of pool.imap<number>("later", delays(), { ordered: false })) order.push(v);
    assert.deepEqual(order, [10, 20, 200, 300]);

    let produced = 0;
    async function* endless() {
      for (;;) yield [produced++, 0] as [number, number];
    }
    let seen = 0;
    for await (const v of pool.imap<number>("sum", endless(), { window: 20 })) {
      assert.equal(v, seen++);
      if (seen === 100) break;
    }
    assert.ok(produced <= 100 + 21, `read ${produced} items of an endless input`);
  });

  for (const ordered of [true, false]) {
    it(`imap${ordered ? "" : " (ordered: false)"}: results are yielded while a slow input has not produced its next item`, async () => {
      const app = nextApp("imapslow");
      children.push(await startWorker(redis, app));
      await using pool = makePool(redis, app);
      // Each item after the first is produced only once the result of the one before was
      // yielded: an imap that waits for the input first never yields anything.
      const yielded: number[] = [];
      let released = () => {};
      async function* input() {
        for (let i = 0; i < 5; i++) {
          if (i > 0) {
            await new Promise<void>((resolve) => {
              released = resolve;
              if (yielded.length >= i) resolve();
            });
          }
          yield [i, 0] as [number, number];
        }
      }
      const loop = (async () => {
        for await (const v of pool.imap<number>("sum", input(), { ordered })) {
          yielded.push(v);
          released();
        }
      })();
      await waitFor(() => yielded.length === 5, "every result, one before each next item");
      await loop;
      assert.deepEqual(yielded, [0, 1, 2, 3, 4]);
    });
  }

  it("imap: an abort cancels the tasks in flight at once, even while the input is slow; a shutdown ends the loop", async () => {
    const app = nextApp("imapabort");
    children.push(await startWorker(redis, app, ["--concurrency", "8"]));
    await using pool = makePool(redis, app);
    const controller = new AbortController();
    let open!: () => void;
    const never = new Promise<void>((resolve) => (open = resolve));
    async function* stalling() {
      for (let i = 0; i < 3; i++) yield [60_000, i] as [number, number];
      await never; // the input's next item is a long time coming
    }
    let ended: unknown;
    (async () => {
      for await (const _ of pool.imap("later", stalling(), { signal: controller.signal })) {
        // no result comes before the abort
      }
    })().then(() => (ended = "no error"), (error) => (ended = error));
    await waitFor(() => pool.pending === 3, "three tasks in flight");
    controller.abort(new Error("enough"));
    await waitFor(() => ended, "the loop ended");
    assert.match(String(ended), /enough/);
    await waitFor(() => pool.pending === 0, "the tasks in flight cancelled");
    open();

    // Shut down while an imap reads its input: the loop ends with PoolClosedError, nothing is
    // submitted after the shutdown began, and the shutdown ends.
    const other = makePool(redis, app);
    let n = 0;
    async function* paced() {
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        yield [5, n++] as [number, number];
      }
    }
    let closed: unknown;
    let results = 0;
    (async () => {
      for await (const _ of other.imap("later", paced(), { window: 4 })) results++;
    })().then(() => (closed = "no error"), (error) => (closed = error));
    await waitFor(() => results >= 3, "some results");
    await other.shutdown();
    await waitFor(() => closed, "the loop ended");
    assert.ok(closed instanceof PoolClosedError, String(closed));
    assert.equal(other.pending, 0);
  });

  it("imap: a failed task throws from the iteration", async () => {
    const app = nextApp("imapfail");
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const input = [["KeyError", "x"], ["ValueError", "y"]] as [string, string][];
    await assert.rejects(async () => {
      for await (const _ of pool.imap("fail", input)) {
        // the first result throws
      }
    }, (e: unknown) => e instanceof RemoteTaskError && e.remoteName === "KeyError");
    assert.throws(() => pool.imap("sum", 5 as never), TypeError);
  });

  for (const [mode, args] of [["", []], [", inline executors", ["--executor-mode", "inline"]]]) {
    it(`progress() and stream(): values in order, each once, while await gives the final value${mode}`, async () => {
      await streamCase(args as string[]);
    });
  }

  async function streamCase(workerArgs: string[]): Promise<void> {
    const app = nextApp("stream");
    children.push(await startWorker(redis, app, workerArgs));
    await using pool = makePool(redis, app);
    const counting = pool.submit<string>("countTo", [50, 2]);
    const values: number[] = [];
    for await (const v of counting.stream()) values.push(v as number);
    assert.deepEqual(values, [...Array(50).keys()]);
    assert.equal(await counting, "done");
    assert.throws(() => counting.stream(), /can be iterated once/);

    const retried = pool.submit<number>("flakyCount", [6], { retries: 1, retryOn: "error" });
    const got: unknown[] = [];
    for await (const v of retried.stream()) got.push(v);
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5], "values of the retried attempt not repeated");
    assert.equal(await retried, 2);

    const working = pool.submit<string>("work", [10]);
    const percents: number[] = [];
    for await (const p of working.progress()) percents.push((p as { percent: number }).percent);
    assert.deepEqual(percents, [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    assert.equal(await working, "ok");

    const failing = pool.submit("flakyCount", [6]);
    await assert.rejects(async () => {
      for await (const _ of failing.stream()) {
        // three values, then the error
      }
    }, /first attempt breaks after 3 values/);

    // A yielded value that cannot be sent fails the task, and the generator is closed as a for-of
    // loop would close it: its finally block runs.
    const file = await traceFile();
    const bad = pool.submit("yieldBad", [file]);
    const seen: unknown[] = [];
    await assert.rejects(async () => {
      for await (const v of bad.stream()) seen.push(v);
    }, /yielded value 1: a function cannot be serialized/);
    assert.deepEqual(seen, [1]);
    assert.deepEqual((await readTrace(file)).map((t) => t.value), ["cleaned up"]);
  }

  it("a burst of 200,000 progress values and as many yielded values: all arrive, in order; the worker stays live", async () => {
    const app = nextApp("burst");
    children.push(await startWorker(redis, app));
    await using pool = makePool(redis, app);
    const n = 200_000;
    const f = pool.submit<number>("burst", [n]);
    const progress: unknown[] = [];
    const yielded: unknown[] = [];
    await Promise.all([
      (async () => {
        for await (const v of f.progress()) progress.push(v);
      })(),
      (async () => {
        for await (const v of f.stream()) yielded.push(v);
      })(),
    ]);
    assert.equal(await f, n);
    assert.equal(progress.length, n);
    assert.equal(yielded.length, n);
    assert.ok(progress.every((v, i) => v === i), "progress in order");
    assert.ok(yielded.every((v, i) => v === i), "yielded values in order");
    assert.equal(await pool.submit("echo", ["still here"]), "still here");
  });

  it("pool.progress draws done / failed / running on a terminal, nothing elsewhere", async () => {
    const app = nextApp("bar");
    children.push(await startWorker(redis, app, ["--concurrency", "4"]));
    await using pool = makePool(redis, app);
    const writes: string[] = [];
    const tty = { isTTY: true, columns: 120, write: (chunk: string) => void writes.push(chunk) };
    const futures = [
      ...pool.map("later", Array.from({ length: 12 }, (_, i) => [20 * (i % 4), i])),
      pool.submit("fail", ["KeyError", "x"]),
    ];
    await pool.progress(futures, { label: "work", stream: tty });
    const last = writes.filter((w) => w.includes("work")).at(-1)!;
    assert.match(last, /13\/13/);
    assert.match(last, /1 failed/);
    assert.match(last, /0 running/);
    const silent: string[] = [];
    await pool.progress(pool.map("sum", [[1, 1]]), {
      stream: { isTTY: false, write: (c: string) => void silent.push(c) },
    });
    assert.deepEqual(silent, []);
  });

  it("timings: { wait, run } of finished tasks", async () => {
    const app = nextApp("timings");
    children.push(await startWorker(redis, app, ["--concurrency", "1", "--executors", "1"]));
    await using pool = makePool(redis, app);
    const first = pool.submit("later", [300, 1]);
    const second = pool.submit("later", [100, 2]);
    await Promise.all([first, second]);
    const a = first.timings!;
    const b = second.timings!;
    assert.ok(a.run >= 290 && a.run < 1_000, `run ${a.run}`);
    assert.ok(b.run >= 90 && b.run < 800, `run ${b.run}`);
    assert.ok(b.wait >= 250, `the second waited for the first: wait ${b.wait}`);
    assert.ok(a.startedAt instanceof Date);
  });

  it("results(operationId) and join(futures, { timeout })", async () => {
    const app = nextApp("results");
    children.push(await startWorker(redis, app));
    await using submitter = makePool(redis, app);
    await using other = makePool(redis, app);
    const futures = submitter.map("fail", [["KeyError", "a"], ["ValueError", "b"]]);
    const good = submitter.map<number>("sum", [[1, 2], [3, 4], [5, 6]]);
    await submitter.join([...futures, ...good]);
    const results = await other.results(good[0].operationId);
    assert.deepEqual(results.map((r) => [r.taskId, r.status, r.value]), [
      [good[0].id, "completed", 3],
      [good[1].id, "completed", 7],
      [good[2].id, "completed", 11],
    ]);
    const failed = await other.results(futures[0].operationId);
    assert.deepEqual(failed.map((r) => r.status), ["failed", "failed"]);
    assert.equal((failed[0].error as RemoteTaskError).remoteName, "KeyError");
    const slow = submitter.map("later", [[2_000, 1], [10, 2]]);
    await assert.rejects(
      submitter.join(slow, { timeout: 300 }),
      (e: unknown) => e instanceof TimeoutError && /1 of 2 tasks unfinished/.test(e.message),
    );
    await submitter.join(slow);
  });
});

/** Waits until no operation hash of `app` has fields left (imap released them). */
async function waitEmpty(
  c: { sendCommand(args: string[]): Promise<unknown> },
  app: string,
): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const keys = await c.sendCommand(["KEYS", `${app}:*:results`]) as string[];
    if (keys.length === 0) return;
    if (Date.now() > deadline) throw new Error(`left in Redis: ${keys.join(", ")}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
