import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnProcess, workerCommand } from "../lib/_runtime.ts";
import { startRedis, type TestRedis, waitFor } from "./_redis.ts";
import { TASKS } from "./composition/_setup.ts";

let redis: TestRedis;
let dir: string;

/** Runs the worker CLI with `args` in `dir` with extra environment variables. */
async function worker(args: string[], env: Record<string, string> = {}) {
  const [exe, ...pre] = workerCommand();
  return await spawnProcess(exe, [...pre, ...args], { cwd: dir, env });
}

describe("configuration and logs of worker processes", () => {
  before(async () => {
    redis = await startRedis();
    const { mkdtemp } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    dir = await mkdtemp(join(tmpdir(), "streamfutures-config-"));
  });
  after(async () => {
    await redis.stop();
    const { rm } = await import("node:fs/promises");
    await rm(dir, { recursive: true, force: true });
  });

  it("--print-config: flags over environment over streamfutures.env, secrets masked", async () => {
    const { writeFile } = await import("node:fs/promises");
    await writeFile(
      `${dir}/streamfutures.env`,
      [
        "# worker settings",
        "STREAMFUTURES_URL=redis://:hunter2@db.example:6379/2",
        "STREAMFUTURES_CONCURRENCY=4",
        "STREAMFUTURES_GRACE=30s",
        "STREAMFUTURES_QUEUES=mrz,ocr",
      ].join("\n"),
    );
    const child = await worker(["--print-config", "--concurrency", "16", "--tasks", TASKS.href], {
      STREAMFUTURES_GRACE: "2s",
      STREAMFUTURES_LOG_LEVEL: "debug",
    });
    const status = await child.exited;
    assert.equal(status.code, 0, child.stderr());
    const out = child.stdout();
    assert.ok(!out.includes("hunter2"), out);
    assert.match(out, /^url\s+redis:\/\/:\*\*\*@db\.example:6379\/2\s+file STREAMFUTURES_URL$/m);
    assert.match(out, /^concurrency\s+16\s+explicit$/m);
    assert.match(out, /^grace\s+2s\s+env STREAMFUTURES_GRACE$/m);
    assert.match(out, /^queues\s+mrz,ocr\s+file STREAMFUTURES_QUEUES$/m);
    assert.match(out, /^logLevel\s+debug\s+env STREAMFUTURES_LOG_LEVEL$/m);
    const { rm } = await import("node:fs/promises");
    await rm(`${dir}/streamfutures.env`);
  });

  it("--print-config checks flag values as the worker does, and names REDIS_URL when the URL came from it", async () => {
    for (
      const [args, message] of [
        [["--prefetch", "-1"], /prefetch must be a non-negative integer, got -1/],
        [["--heartbeat-interval", "0"], /heartbeatInterval must be a positive finite number/],
        [["--app", "bad!"], /app must be a non-empty string of letters/],
        [["--grace", "1e3"], /--grace must be a duration: seconds, or a number with a unit/],
      ] as const
    ) {
      const child = await worker(["--print-config", ...args]);
      assert.equal((await child.exited).code, 2, args.join(" "));
      assert.match(child.stderr(), message);
      assert.equal(child.stdout(), "");
    }
    const fromEnv = await worker(["--print-config"], { REDIS_URL: "redis://db.example:6390/1" });
    assert.equal((await fromEnv.exited).code, 0, fromEnv.stderr());
    assert.match(fromEnv.stdout(), /^url\s+redis:\/\/db\.example:6390\/1\s+env REDIS_URL$/m);
  });

  it("an invalid value fails at start, naming the variable and the accepted values", async () => {
    const child = await worker(["--tasks", TASKS.href], { STREAMFUTURES_LOG_LEVEL: "loud" });
    assert.equal((await child.exited).code, 2);
    assert.match(child.stderr(), /STREAMFUTURES_LOG_LEVEL in the environment must be one of/);
    assert.match(child.stderr(), /debug, info, warn, error, silent/);
    const typo = await worker(["--print-config", "--tasks", TASKS.href], {
      STREAMFUTURES_CONCURENCY: "3",
    });
    await typo.exited;
    assert.match(typo.stderr(), /did you mean STREAMFUTURES_CONCURRENCY\?/);
  });

  it("settings from the environment alone; JSON logs: a line per task at debug, summaries", async () => {
    const { StreamFuturePool } = await import("../mod.ts");
    const child = await worker([], {
      STREAMFUTURES_URL: redis.url,
      STREAMFUTURES_APP: "envapp",
      STREAMFUTURES_TASKS: TASKS.href,
      STREAMFUTURES_LOG_LEVEL: "debug",
      STREAMFUTURES_LOG_FORMAT: "json",
      STREAMFUTURES_STATS_INTERVAL: "300ms",
    });
    try {
      await waitFor(() => child.stderr().includes("streamfutures-worker: ready"), "ready", 30_000);
      await using pool = new StreamFuturePool({ url: redis.url, app: "envapp", tasks: TASKS });
      assert.deepEqual(await Promise.all(pool.map("sum", [[1, 2], [3, 4]])), [3, 7]);
      const lines = () =>
        child.stderr().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
      await waitFor(() => lines().some((l) => l.msg === "summary"), "a summary line");
      const tasks = lines().filter((l) => l.msg === "task");
      assert.equal(tasks.length, 2);
      assert.equal(tasks[0].level, "debug");
      assert.equal(tasks[0].fn, "sum");
      assert.equal(tasks[0].outcome, "completed");
      assert.equal(typeof tasks[0].run_ms, "number");
      const summary = lines().find((l) => l.msg === "summary")!;
      assert.equal(summary.level, "info");
      assert.equal(summary.tasks, 2);
      assert.equal(summary.failed, 0);
      assert.equal(typeof summary.tasks_per_s, "number");
      assert.equal(typeof summary.mean_wait_ms, "number");
      assert.equal(typeof summary.mean_run_ms, "number");
    } finally {
      child.kill("SIGTERM");
      await child.exited;
    }
  });

  it("a pool reads STREAMFUTURES_* too (in a process of its own)", async () => {
    const script = new URL("./kv/_pool_env.ts", import.meta.url);
    const { isDeno, siblingUrl } = await import("../lib/_runtime.ts");
    const { fileURLToPath } = await import("node:url");
    const process = (await import("node:process")).default;
    const path = fileURLToPath(siblingUrl(script));
    const child = await spawnProcess(process.execPath, isDeno ? ["run", "-A", path] : [path], {
      cwd: dir,
      env: { STREAMFUTURES_URL: redis.url, STREAMFUTURES_APP: "poolenv" },
    });
    assert.equal((await child.exited).code, 0, child.stderr());
    assert.match(child.stdout(), /app=poolenv/);
  });
});
