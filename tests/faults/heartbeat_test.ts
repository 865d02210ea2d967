import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { NoWorkersError, WorkerLostError } from "../../mod.ts";
import type { ChildProcessHandle } from "../../lib/_runtime.ts";
import type { TestRedis } from "../_redis.ts";
import type { Trace } from "./_tasks.ts";
import {
  BEAT,
  faultHooks,
  faultPool,
  LOST_AFTER,
  nextApp,
  readTrace,
  startScript,
  startWorker,
  traceFile,
  waitFor,
} from "./_setup.ts";

let redis: TestRedis;
const children: ChildProcessHandle[] = [];

describe("liveness by heartbeat", () => {
  faultHooks(children, (r) => (redis = r));

  it("a CPU-bound task keeps its heartbeat fresh and is not taken for lost", async () => {
    const app = nextApp("hbcpu");
    children.push(await startWorker(redis, app));
    await using pool = faultPool(redis, app, { keep: true });
    const f = pool.submit<Trace>("burn", [4 * LOST_AFTER]);
    await waitFor(() => f.running(), "task running");
    const c = await redis.client();
    const beat = async () =>
      Number(await c.sendCommand(["HGET", `${app}:${f.id}:heartbeat`, f.id]));
    const first = await beat();
    await waitFor(async () => (await beat()) > first + BEAT / 1000, "a later heartbeat", 3_000);
    const second = await beat();
    await waitFor(async () => (await beat()) > second, "another heartbeat", 3_000);
    const trace = await f;
    assert.equal(trace.attempt, 1, "ran once");
    assert.equal(await c.sendCommand(["HGET", `${app}:${f.id}:status`, f.id]), "2");
  });

  it("SIGKILL of the worker: its task fails with WorkerLostError, status 3, dead-lettered", async () => {
    const app = nextApp("hbkill");
    const worker = await startWorker(redis, app);
    children.push(worker);
    await using pool = faultPool(redis, app, { keep: true });
    const f = pool.submit("nap", [60_000]);
    await waitFor(() => f.running(), "task running");
    const killedAt = performance.now();
    worker.kill("SIGKILL");
    const error = await f.then(() => undefined, (e) => e);
    const took = performance.now() - killedAt;
    assert.ok(error instanceof WorkerLostError, String(error));
    assert.equal(error.attempts, 1);
    assert.match(error.message, /no heartbeat from worker .* for \d+ ms/);
    assert.ok(took >= LOST_AFTER - 100, `not declared lost before the timeout (${took} ms)`);
    assert.ok(took < LOST_AFTER + 3_000, `declared lost soon after the timeout (${took} ms)`);
    const c = await redis.client();
    assert.equal(await c.sendCommand(["HGET", `${app}:${f.id}:status`, f.id]), "3");
    assert.match(
      String(await c.sendCommand(["HGET", `${app}:${f.id}:results`, f.id])),
      /^WorkerLostError: no heartbeat from worker/,
    );
    const dead = await c.sendCommand(["XRANGE", `${app}:dead`, "-", "+"]) as [string, string[]][];
    assert.equal(dead.length, 1);
    const fields = dead[0][1];
    const field = (name: string) => fields[fields.indexOf(name) + 1];
    assert.equal(field("reason"), "lost");
    assert.equal(field("id"), f.id);
    assert.equal(field("fn"), "nap");
    assert.match(field("error"), /^WorkerLostError/);
  });

  it("with retries, a lost task runs again on another worker as attempt 2", async () => {
    const app = nextApp("hbretry");
    const file = await traceFile();
    const one = await startWorker(redis, app);
    const two = await startWorker(redis, app);
    children.push(one, two);
    await using pool = faultPool(redis, app);
    const f = pool.submit<Trace>("nap", [1_000, file], { retries: 1 });
    const start = await waitFor(async () => (await readTrace(file))[0], "task started");
    const victim = start.pid === one.pid ? one : two;
    const survivor = victim === one ? two : one;
    victim.kill("SIGKILL");
    const result = await f;
    assert.equal(result.attempt, 2);
    assert.equal(result.pid, survivor.pid);
    assert.equal(f.attempt, 2);
    const done = (await readTrace(file)).filter((t) => t.event === "done");
    assert.deepEqual(done.map((t) => [t.pid, t.attempt]), [[survivor.pid, 2]], "completed once");
  });

  it("live workers recover lost tasks without any client online", async () => {
    const app = nextApp("hbnoclient");
    const file = await traceFile();
    const one = await startWorker(redis, app);
    children.push(one);
    const client = await startScript(new URL("./_client.ts", import.meta.url), [
      redis.url,
      app,
      JSON.stringify({ fn: "nap", args: [60_000, file], options: { retries: 1 } }),
    ]);
    children.push(client);
    const { taskId } = JSON.parse(
      await waitFor(() => client.stdout().split("\n")[0], "the client submitted", 30_000),
    );
    await waitFor(async () => (await readTrace(file)).length === 1, "task started");
    const two = await startWorker(redis, app);
    children.push(two);
    client.kill("SIGKILL");
    one.kill("SIGKILL");
    const second = await waitFor(
      async () => (await readTrace(file)).find((t) => t.attempt === 2),
      "attempt 2 started by the surviving worker",
      15_000,
    );
    assert.equal(second.pid, two.pid);
    assert.equal(second.taskId, taskId);
    const c = await redis.client();
    assert.equal(await c.sendCommand(["HGET", `${app}:${taskId}:status`, taskId]), "1");
  });

  it("a dead worker's registry entry expires: NoWorkersError reflects live workers only", async () => {
    const app = nextApp("hbreg");
    const worker = await startWorker(redis, app);
    children.push(worker);
    await using pool = faultPool(redis, app);
    assert.equal((await pool.submit<{ pid: number }>("where", [])).pid, worker.pid);
    worker.kill("SIGKILL");
    await worker.exited;
    const c = await redis.client();
    const registry = `${app}:listeners:default`;
    await waitFor(async () => {
      const [seconds, micros] = await c.sendCommand(["TIME"]) as string[];
      const now = Number(seconds) * 1000 + Number(micros) / 1000;
      const live = await c.sendCommand(["ZCOUNT", registry, String(now - LOST_AFTER), "+inf"]);
      return live === 0;
    }, "the dead worker's heartbeat to be older than the timeout");
    await assert.rejects(pool.submit("where", []).result(), NoWorkersError);
    await waitFor(
      async () => await c.sendCommand(["EXISTS", `${app}:listeners:default`]) === 0,
      "the registry of a queue whose workers all died expires",
      LOST_AFTER * 6,
    );
  });
});
