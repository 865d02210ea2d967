import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { NoWorkersError, RemoteTaskError, StreamFuturePool } from "../mod.ts";
import * as tasks from "../examples/tasks.ts";
import { startRedis, startWorkerProcess, TASKS, type TestRedis, waitFor } from "./_redis.ts";
import { isDeno, spawnProcess, workerCommand, workerEntryUrl } from "../lib/_runtime.ts";
import { COMMAND_TIMEOUT } from "../lib/_redis.ts";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";

let redis: TestRedis;

const workerArgs = (app: string, ...extra: string[]) => [
  "--tasks",
  decodeURIComponent(TASKS.pathname),
  "--url",
  redis.url,
  "--app",
  app,
  ...extra,
];

describe("worker processes", () => {
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis.stop();
  });

  it("a separate worker process serves a pool with workers: 0", async () => {
    const app = "remote";
    const worker = await startWorkerProcess(workerArgs(app, "--concurrency", "4"));
    try {
      await using pool = new StreamFuturePool({ url: redis.url, app, tasks: TASKS });
      assert.equal(await pool.submit(tasks.add, [3, 8]), 11);
      const f = pool.submit(tasks.whoami, []);
      assert.equal((await f).taskId, f.id);
      const error = await pool.submit(tasks.fail, ["remote bad"]).then(() => null, (e) => e);
      assert.ok(error instanceof RemoteTaskError);
      assert.equal(error.remoteName, "RangeError");
      assert.deepEqual(await Promise.all(pool.map(tasks.add, [[1, 1], [2, 2], [3, 3]])), [2, 4, 6]);
    } finally {
      worker.kill("SIGTERM");
      assert.deepEqual(await worker.exited, { code: 0, signal: null });
    }
  });

  it("two workers sharing a queue both do work, and a busy worker takes no more than it can run", async () => {
    const app = "shared";
    const a = await startWorkerProcess(workerArgs(app, "--concurrency", "2", "--id", "worker-a"));
    const b = await startWorkerProcess(workerArgs(app, "--concurrency", "2", "--id", "worker-b"));
    try {
      await using pool = new StreamFuturePool({ url: redis.url, app, tasks: TASKS, keep: true });
      const c = await redis.client();
      const futures = pool.map(tasks.sleep, Array.from({ length: 12 }, () => [150] as [number]));
      // While they run, neither worker holds more than its concurrency of entries.
      let maxPending = 0;
      const done = Promise.all(futures);
      let settled = false;
      void done.finally(() => (settled = true));
      while (!settled) {
        const consumers = await c.sendCommand([
          "XINFO",
          "CONSUMERS",
          `${app}:queue:default`,
          "workers",
        ]);
        for (const consumer of consumers as unknown[]) {
          const pending = Array.isArray(consumer)
            ? Number(consumer[consumer.indexOf("pending") + 1])
            : Number((consumer as Record<string, unknown>).pending);
          maxPending = Math.max(maxPending, pending);
        }
        await new Promise((r) => setTimeout(r, 15));
      }
      await done;
      assert.ok(maxPending <= 2, `a worker held ${maxPending} entries with concurrency 2`);
      // Both workers ran tasks: four slots over 12 tasks of 150 ms take ~450 ms, not ~900.
      const byWorker = new Map<string, number>();
      const stats = await c.sendCommand(["CLIENT", "LIST"]);
      assert.ok(String(stats).includes("streamfutures-worker"));
      const results = pool.map(tasks.whoami, Array.from({ length: 40 }, () => []));
      await Promise.all(results);
      for (const worker of [a, b]) byWorker.set(String(worker.pid), 0);
      // Ask each worker's consumer how many entries it was delivered in total is not exposed by
      // Redis; instead count idle times: both consumers must have been active recently.
      const consumers = await c.sendCommand([
        "XINFO",
        "CONSUMERS",
        `${app}:queue:default`,
        "workers",
      ]);
      const names = (consumers as unknown[]).map((consumer) =>
        Array.isArray(consumer)
          ? String(consumer[consumer.indexOf("name") + 1])
          : String((consumer as Record<string, unknown>).name)
      ).sort();
      assert.deepEqual(names, ["worker-a", "worker-b"]);
      const idle = (consumers as unknown[]).map((consumer) =>
        Array.isArray(consumer)
          ? Number(consumer[consumer.indexOf("idle") + 1])
          : Number((consumer as Record<string, unknown>).idle)
      );
      for (const ms of idle) assert.ok(ms >= 0 && ms < 5_000, `a worker was inactive for ${ms} ms`);
    } finally {
      a.kill("SIGTERM");
      b.kill("SIGTERM");
      await Promise.all([a.exited, b.exited]);
    }
  });

  it("SIGTERM to an idle worker: it leaves the registry and exits 0", async () => {
    const app = "sigterm-idle";
    const worker = await startWorkerProcess(workerArgs(app, "--id", "idle-1"));
    const c = await redis.client();
    assert.notEqual(await c.sendCommand(["ZSCORE", `${app}:listeners:default`, "idle-1"]), null);
    const started = Date.now();
    worker.kill("SIGTERM");
    const exit = await worker.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(Date.now() - started < 5_000, "an idle worker stops promptly");
    assert.match(worker.stderr(), /stopped \(SIGTERM\)/);
    assert.equal(await c.sendCommand(["ZSCORE", `${app}:listeners:default`, "idle-1"]), null);
    await using pool = new StreamFuturePool({ url: redis.url, app });
    await assert.rejects(pool.submit("add", [1, 2]).result(), NoWorkersError);
  });

  it("SIGTERM to a busy worker lets its running task finish within the grace period", async () => {
    const app = "sigterm-busy";
    const worker = await startWorkerProcess(workerArgs(app, "--grace", "10"));
    await using pool = new StreamFuturePool({ url: redis.url, app, tasks: TASKS });
    const f = pool.submit(tasks.sleep, [500]);
    await waitFor(() => f.running(), "task running");
    worker.kill("SIGTERM");
    assert.equal(await f, 500);
    assert.deepEqual(await worker.exited, { code: 0, signal: null });
  });

  it("SIGTERM past the grace period marks the running task WorkerInterrupted", async () => {
    const app = "sigterm-grace";
    const worker = await startWorkerProcess(workerArgs(app, "--grace", "0.2"));
    await using pool = new StreamFuturePool({ url: redis.url, app, tasks: TASKS, keep: true });
    const f = pool.submit(tasks.sleep, [5_000]);
    await waitFor(() => f.running(), "task running");
    worker.kill("SIGTERM");
    assert.deepEqual(await worker.exited, { code: 0, signal: null });
    const error = await f.then(() => null, (e) => e);
    assert.ok(error instanceof RemoteTaskError, String(error));
    assert.equal(error.remoteName, "WorkerInterrupted");
    assert.equal(error.message, "SIGTERM");
    const c = await redis.client();
    assert.equal(await c.sendCommand(["HGET", `${app}:${f.operationId}:status`, f.id]), "3");
    assert.equal(
      await c.sendCommand(["HGET", `${app}:${f.operationId}:results`, f.id]),
      "WorkerInterrupted: SIGTERM",
    );
    assert.equal(
      await c.sendCommand(["XLEN", `${app}:queue:default`]),
      0,
      "its entry was acknowledged",
    );
  });

  it("malformed stream entries written by hand do not crash the worker", async () => {
    const app = "garbage";
    const worker = await startWorkerProcess(workerArgs(app));
    try {
      const c = await redis.client();
      const stream = `${app}:queue:default`;
      await c.sendCommand(["XADD", stream, "*", "hello", "world"]);
      await c.sendCommand([
        "XADD",
        stream,
        "*",
        "v",
        "1",
        "id",
        "../../x",
        "op",
        "o",
        "reply",
        "r",
      ]);
      // Well-formed ids but garbage payloads get an error result on their future.
      await using pool = new StreamFuturePool({ url: redis.url, app, tasks: TASKS, keep: true });
      const f = pool.submit(tasks.add, [1, 2]);
      await f;
      const replyKey = `${app}:replies:${pool.clientId}`;
      const op = "handmade-op";
      await c.sendCommand(["HSET", `${app}:${op}:status`, "t1", "0", "t2", "0", "t3", "0"]);
      const entry = (id: string, fields: string[]) =>
        c.sendCommand(["XADD", stream, "*", "id", id, "op", op, "reply", replyKey, ...fields]);
      await entry("t1", ["v", "1", "fn", "add", "args", "{not json"]);
      await entry("t2", ["v", "99", "fn", "add", "args", "[1,2]"]);
      await entry("t3", ["v", "1", "fn", "add", "args", '{"not":"an array"}']);
      const results = await waitFor(async () => {
        const r = await c.sendCommand(["HGETALL", `${app}:${op}:results`]) as Record<
          string,
          string
        >;
        return Object.keys(r).length === 3 ? r : undefined;
      }, "error results of hand-written entries");
      assert.match(results.t1, /^ProtocolError: the arguments of task t1 cannot be decoded/);
      assert.match(results.t2, /^ProtocolError: unsupported stream entry version "99"/);
      assert.match(results.t3, /^ProtocolError: the arguments of task t3 are not an array/);
      assert.equal(await pool.submit(tasks.add, [20, 22]), 42, "the worker goes on");
      assert.equal(await c.sendCommand(["XLEN", stream]), 0, "malformed entries were dropped");
    } finally {
      worker.kill("SIGTERM");
      assert.deepEqual(await worker.exited, { code: 0, signal: null });
    }
  });

  it("a worker serving two queues never holds more entries than its concurrency", async () => {
    const app = "twoqueues";
    const worker = await startWorkerProcess(
      workerArgs(app, "--queue", "a", "--queue", "b", "--concurrency", "1", "--id", "w2q"),
    );
    try {
      const c = await redis.client();
      await using pool = new StreamFuturePool({ url: redis.url, app, tasks: TASKS });
      const futures = [
        ...pool.map(tasks.sleep, [[80], [80], [80]], { queue: "a" }),
        ...pool.map(tasks.sleep, [[80], [80], [80]], { queue: "b" }),
      ];
      let settled = false;
      const all = Promise.all(futures).finally(() => (settled = true));
      let maxPending = 0;
      while (!settled) {
        // Both streams read in one atomic step (two separate reads could straddle a hand-over).
        const pending = Number(
          await c.sendCommand([
            "EVAL",
            "return redis.call('XPENDING', KEYS[1], 'workers')[1] + " +
            "redis.call('XPENDING', KEYS[2], 'workers')[1]",
            "2",
            `${app}:queue:a`,
            `${app}:queue:b`,
          ]),
        );
        maxPending = Math.max(maxPending, pending);
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.deepEqual(await all, [80, 80, 80, 80, 80, 80]);
      assert.ok(maxPending <= 1, `the worker held ${maxPending} entries with concurrency 1`);
    } finally {
      worker.kill("SIGTERM");
      await worker.exited;
    }
  });

  it("heartbeats advance while a task runs", async () => {
    const app = "beats";
    const worker = await startWorkerProcess(workerArgs(app, "--heartbeat-interval", "0.1"));
    try {
      const c = await redis.client();
      await using pool = new StreamFuturePool({ url: redis.url, app, tasks: TASKS });
      const f = pool.submit(tasks.sleep, [700]);
      await waitFor(() => f.running(), "task running");
      const key = `${app}:${f.operationId}:heartbeat`;
      const first = Number(await c.sendCommand(["HGET", key, f.id]));
      const later = await waitFor(async () => {
        const beat = Number(await c.sendCommand(["HGET", key, f.id]));
        return beat > first + 0.15 ? beat : 0;
      }, "a later heartbeat");
      assert.ok(later > first);
      await f;
    } finally {
      worker.kill("SIGTERM");
      await worker.exited;
    }
  });

  it("SIGTERM to a worker whose Redis is gone: it exits 0 without waiting out a command timeout per cleanup command", async () => {
    const own = await startRedis();
    const args = workerArgs("gone", "--concurrency", "4").map((a) => a === redis.url ? own.url : a);
    const worker = await startWorkerProcess(args);
    try {
      await own.kill();
      await waitFor(() => worker.stderr().includes("read failed"), "the worker sees Redis gone");
      const started = Date.now();
      worker.kill("SIGTERM");
      assert.deepEqual(await worker.exited, { code: 0, signal: null });
      const took = Date.now() - started;
      assert.match(
        worker.stderr(),
        /could not leave the registry: Redis is unreachable \(the entry lapses by itself\)/,
      );
      // Before, its three cleanup commands each waited out their timeout.
      assert.ok(took < 3 * COMMAND_TIMEOUT, `stopped after ${took} ms`);
    } finally {
      worker.kill("SIGKILL");
      await worker.exited;
      await own.stop();
    }
  });

  it("executor processes over pipes where no Unix socket can be made (Deno, no --allow-write)", {
    skip: !isDeno && "executor processes are Deno's",
  }, async () => {
    const app = "pipes";
    // A task module that prints: its output passes through the pipe to the worker's stdout.
    const dir = await mkdtemp(join(tmpdir(), "sf-pipes-"));
    const module = join(dir, "shout.ts");
    await writeFile(
      module,
      `export function shout(text: string): number {\n  console.log("said " + text);\n  return text.length;\n}\n`,
    );
    const worker = await spawnProcess(process.execPath, [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-run",
      "--allow-sys",
      decodeURIComponent(workerEntryUrl().pathname),
      ...workerArgs(app, "--concurrency", "8"),
      "--tasks",
      module,
    ]);
    try {
      await waitFor(() => worker.stderr().includes("streamfutures-worker: ready"), "worker ready");
      assert.match(worker.stderr(), /executors="2 process"/);
      await using pool = new StreamFuturePool({ url: redis.url, app, tasks: TASKS });
      assert.equal(await pool.submit(tasks.add, [3, 8]), 11);
      // Long arguments and results cross the pipes in many chunks.
      const long = "é".repeat(300_000);
      assert.equal(await pool.submit(tasks.echo, [long]), long);
      const sums = pool.map(
        tasks.add,
        Array.from({ length: 50 }, (_, i) => [i, i] as [number, number]),
      );
      assert.deepEqual(await Promise.all(sums), Array.from({ length: 50 }, (_, i) => 2 * i));
      const error = await pool.submit(tasks.fail, ["piped"]).then(() => null, (e) => e);
      assert.ok(error instanceof RemoteTaskError);
      assert.equal(await pool.submit<number>("shout", ["hello"]), 5);
      await waitFor(() => worker.stdout().includes("said hello\n"), "the task's output");
      // The messages themselves never reach the worker's stdout.
      assert.ok(!worker.stdout().includes("SF:"), worker.stdout().slice(0, 200));
    } finally {
      worker.kill("SIGTERM");
      await worker.exited;
      await rm(dir, { recursive: true, force: true });
    }
  });

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`${signal} while the worker starts (a task module that never finishes loading) ends it`, async () => {
      const dir = await mkdtemp(join(tmpdir(), "streamfutures-hang-"));
      try {
        const module = join(dir, "hangs.mjs");
        await writeFile(
          module,
          'console.error("hangs.mjs: loading");\nawait new Promise(() => {});\nexport const x = 1;\n',
        );
        const [exe, ...pre] = workerCommand();
        const worker = await spawnProcess(exe, [...pre, "--tasks", module, "--url", redis.url]);
        try {
          await waitFor(() => worker.stderr().includes("hangs.mjs: loading"), "the module loads");
          worker.kill(signal);
          assert.deepEqual(await worker.exited, { code: 0, signal: null });
          assert.match(worker.stderr(), new RegExp(`${signal} while starting; stopping`));
        } finally {
          worker.kill("SIGKILL");
          await worker.exited;
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  it("a task module that exports no functions stops the worker at start, naming what it exports", async () => {
    const dir = await mkdtemp(join(tmpdir(), "streamfutures-nofn-"));
    try {
      const module = join(dir, "constants.mjs");
      await writeFile(module, "export const answer = 42;\nexport default { add: 1 };\n");
      const [exe, ...pre] = workerCommand();
      const worker = await spawnProcess(exe, [...pre, "--tasks", module, "--url", redis.url]);
      assert.equal((await worker.exited).code, 1);
      assert.match(
        worker.stderr(),
        /cannot start: .*task module \S+constants\.mjs exports no functions \(exports: answer, default\)/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the worker entry runs when started through a symlinked directory (npm link, file: deps, pnpm)", async () => {
    const { symlink } = await import("node:fs/promises");
    const { basename, dirname } = await import("node:path");
    const dir = await mkdtemp(join(tmpdir(), "streamfutures-link-"));
    try {
      const entry = decodeURIComponent(workerEntryUrl().pathname);
      await symlink(dirname(entry), join(dir, "pkg"));
      const [exe, ...pre] = workerCommand();
      const run = await spawnProcess(exe, [
        ...pre.slice(0, -1),
        join(dir, "pkg", basename(entry)),
        "--help",
      ]);
      assert.deepEqual(await run.exited, { code: 0, signal: null });
      assert.match(run.stdout(), /streamfutures-worker/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("bad command-line arguments exit 2 with usage", async () => {
    const [exe, ...pre] = workerCommand();
    const child = await spawnProcess(exe, [...pre, "--concurrency", "lots", "--tasks", "x.ts"]);
    assert.equal((await child.exited).code, 2);
    assert.match(child.stderr(), /--concurrency must be a number/);
    assert.match(child.stderr(), /Usage: streamfutures-worker/);
    // A negative number reaches the check that says what is accepted.
    const negative = await spawnProcess(exe, [...pre, "--concurrency", "-1", "--tasks", "x.ts"]);
    assert.equal((await negative.exited).code, 2);
    assert.match(negative.stderr(), /concurrency must be a positive integer, got -1/);
    const help = await spawnProcess(exe, [...pre, "--help"]);
    assert.equal((await help.exited).code, 0);
    assert.match(help.stdout(), /--tasks <path\|url>/);
  });
});
