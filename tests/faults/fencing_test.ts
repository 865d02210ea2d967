import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import { GROUP } from "../../lib/_keys.ts";
import { FINISH } from "../../lib/_lua/finish.ts";
import { HEARTBEAT } from "../../lib/_lua/heartbeat.ts";
import { START } from "../../lib/_lua/start.ts";
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

describe("fencing: a worker presumed dead cannot overwrite the attempt that replaced it", () => {
  faultHooks(children, (r) => (redis = r));

  it("SIGSTOP a worker mid-task, let another attempt finish, SIGCONT it: the first result stands", async () => {
    const app = nextApp("fence");
    const file = await traceFile();
    const stale = await startWorker(redis, app);
    children.push(stale);
    await using pool = faultPool(redis, app, { keep: true });
    const f = pool.submit<Trace>("stubbornNap", [1_500, file], { retries: 1 });
    await waitFor(async () => (await readTrace(file)).length === 1, "attempt 1 started");
    // Stopped before the other worker starts: that can take longer than the task's 1.5 s on a
    // busy machine, and attempt 1 must not finish first.
    stale.kill("SIGSTOP");
    const fresh = await startWorker(redis, app);
    children.push(fresh);
    const result = await f;
    assert.equal(result.attempt, 2);
    assert.equal(result.pid, fresh.pid);
    const c = await redis.client();
    const stored = await c.sendCommand(["HGET", `${app}:${f.id}:results`, f.id]);
    assert.deepEqual(JSON.parse(String(stored)), result);

    stale.kill("SIGCONT");
    await waitFor(
      () =>
        /the outcome of task \S+ was not recorded|was given to another attempt/.test(
          stale.stderr(),
        ),
      "the resumed worker found out it had been replaced",
    );
    // Its outcome was discarded: the stored result is still the second attempt's.
    assert.equal(await c.sendCommand(["HGET", `${app}:${f.id}:status`, f.id]), "2");
    assert.equal(await c.sendCommand(["HGET", `${app}:${f.id}:results`, f.id]), stored);
    // The resumed worker goes on serving.
    await waitFor(async () => {
      const r = await pool.submit<Trace>("where", []);
      return r.pid === stale.pid || undefined;
    }, "the resumed worker takes work again");
  });

  it("the scripts: START, HEARTBEAT and FINISH refuse an entry that is no longer pending for the worker", async () => {
    const c = await redis.client();
    const app = nextApp("fencelua");
    const stream = `${app}:queue:default`;
    const op = "client-0";
    const reply = `${app}:replies:client`;
    await c.sendCommand(["XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"]);
    await c.sendCommand(["XADD", reply, "*", "init", "1"]);
    await c.sendCommand(["HSET", `${app}:${op}:status`, op, "0"]);
    const entry = String(
      await c.sendCommand([
        "XADD",
        stream,
        "*",
        "v",
        "1",
        "id",
        op,
        "op",
        op,
        "fn",
        "where",
        "args",
        "[]",
        "reply",
        reply,
        "attempt",
        "1",
      ]),
    );
    await c.sendCommand(["XREADGROUP", "GROUP", GROUP, "A", "COUNT", "1", "STREAMS", stream, ">"]);
    // Worker B may not start A's entry.
    const start = async (consumer: string) => {
      const args = [app, GROUP, consumer, entry, entry, entry, op, op];
      const reply_ = await START.run(c, [stream], args) as unknown[];
      return reply_.slice(2); // [Redis time, more after it, ...verdicts]
    };
    assert.deepEqual(await start("B"), ["x"]);
    assert.deepEqual(await start("A"), [1]);
    // Retrying the same START (a dropped connection) is harmless.
    assert.deepEqual(await start("A"), [1]);
    assert.equal(await c.sendCommand(["HGET", `${app}:${op}:status`, op]), "1");
    // Recovery hands the task on: the entry is no longer A's.
    await c.sendCommand(["XACK", stream, GROUP, entry]);
    assert.deepEqual(
      await HEARTBEAT.run(c, [], [app, GROUP, "A", stream, entry, op, op]),
      [1, "l"],
    );
    assert.deepEqual(
      await FINISH.run(c, [stream], [
        app,
        GROUP,
        "default",
        entry,
        op,
        op,
        reply,
        "c",
        '"stale"',
        "",
        "",
      ]),
      [0],
    );
    assert.equal(await c.sendCommand(["HGET", `${app}:${op}:status`, op]), "1");
    assert.equal(await c.sendCommand(["HGET", `${app}:${op}:results`, op]), null);
  });
});
