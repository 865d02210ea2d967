/**
 * The soak test of the fault-tolerance work: thousands of tasks of random duration across
 * several worker processes while a chaos loop SIGKILLs and restarts workers every few seconds
 * and restarts Redis once (AOF, `appendfsync always`).
 *
 *   deno task soak
 *   node npm/scripts/soak.js ...   (the npm build, `deno task build:npm`, under Node)
 *   deno run -A scripts/soak.ts [--tasks 5000] [--workers 4] [--seed 1] [--max-ms 200]
 *     [--prefetch 0] [--sigterm] [--executor-mode thread|process|inline] [--payload 0]
 *
 * `--prefetch N` gives the workers that prefetch; `--sigterm` makes every other chaos stop a
 * graceful one (SIGTERM: running tasks finish, prefetched ones go back to the queue) instead of a
 * SIGKILL; `--executor-mode` is the workers' (default: theirs); `--payload N` gives every task an
 * argument of about N characters of its own (with multi-byte characters, quotes, backslashes and
 * line breaks), which it returns: from 4,096 characters on, arguments are set aside beside their
 * entries and travel as bytes and pieces, and results as pieces (docs/protocol.md), so the run
 * checks those paths under the same chaos.
 *
 * It ends by printing `submitted, completed, failed, lost, duplicated-completions` (and with
 * `--payload`, `corrupted-payloads`) and exits non-zero unless lost = 0, duplicated-completions =
 * 0, corrupted-payloads = 0 and every future settled:
 *
 * - completed / failed: futures that resolved / rejected (failed = out of retries, reported with
 *   their errors);
 * - lost: futures that did not settle within the deadline after the chaos stopped;
 * - duplicated-completions: tasks whose stored result is not the one their future received —
 *   a second final write that overwrote the first (fencing broken). Executions that ran to the
 *   end but were not recorded (a worker killed after running, a fenced stale attempt) are counted
 *   separately as `discarded-executions`: they are the expected price of at-least-once retries;
 * - corrupted-payloads: completed tasks whose result does not carry back, character for
 *   character, the payload their own call was given.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { StreamFuturePool } from "../mod.ts";
import type { ChildProcessHandle } from "../lib/_runtime.ts";
import { startRedis, startWorkerProcess, type TestRedis } from "../tests/_redis.ts";
import type { SoakResult } from "./_soak_tasks.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    tasks: { type: "string", default: "5000" },
    workers: { type: "string", default: "4" },
    seed: { type: "string", default: String(Date.now() % 100_000) },
    "max-ms": { type: "string", default: "200" },
    "chaos-every": { type: "string", default: "3" },
    prefetch: { type: "string", default: "0" },
    sigterm: { type: "boolean", default: false },
    "executor-mode": { type: "string" },
    payload: { type: "string", default: "0" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(
    "usage: deno run -A scripts/soak.ts [--tasks 5000] [--workers 4] [--seed N] [--max-ms 200] " +
      "[--chaos-every 3 (seconds)] [--prefetch 0] [--sigterm] " +
      "[--executor-mode thread|process|inline] [--payload 0 (characters)]",
  );
  process.exit(0);
}
const EXECUTOR_MODE = values["executor-mode"];
if (EXECUTOR_MODE !== undefined && !["thread", "process", "inline"].includes(EXECUTOR_MODE)) {
  throw new RangeError(
    `--executor-mode must be thread, process or inline, got ${JSON.stringify(EXECUTOR_MODE)}`,
  );
}
const PAYLOAD = Number(values.payload);
if (!Number.isSafeInteger(PAYLOAD) || PAYLOAD < 0) {
  throw new RangeError(
    `--payload must be a whole number of characters >= 0, got ${values.payload}`,
  );
}
const TASKS = Number(values.tasks);
const WORKERS = Number(values.workers);
const MAX_MS = Number(values["max-ms"]);
const CHAOS_EVERY = Number(values["chaos-every"]) * 1000;
const PREFETCH = Number(values.prefetch);
let seed = Number(values.seed);
/** A small seeded generator (mulberry32), so a run can be repeated. */
function random(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const MODULE = new URL("./_soak_tasks.ts", import.meta.url);
const APP = "soak";
const HEARTBEAT = ["--heartbeat-interval", "0.25", "--heartbeat-timeout", "2"];
const log = (line: string) =>
  console.error(`[soak ${new Date().toISOString().slice(11, 23)}] ${line}`);

const redis: TestRedis = await startRedis({ aof: true });
const workers: ChildProcessHandle[] = [];
let workerCount = 0;
async function startWorker(): Promise<ChildProcessHandle> {
  const child = await startWorkerProcess([
    "--tasks",
    MODULE.href,
    "--url",
    redis.url,
    "--app",
    APP,
    "--concurrency",
    "8",
    "--id",
    `soak-worker-${++workerCount}`,
    "--prefetch",
    String(PREFETCH),
    ...(EXECUTOR_MODE ? ["--executor-mode", EXECUTOR_MODE] : []),
    ...HEARTBEAT,
  ]);
  workers.push(child);
  return child;
}

const traceLog = join(redis.dir, "executions.jsonl");
/** A unit of the payloads: multi-byte characters (2, 3 and 4 bytes), what JSON escapes. */
const PAYLOAD_UNIT = 'soak é € 😀 "quoted" \\ tab\t line\n;';
/** Task i's payload: its index, then whole units up to about `PAYLOAD` characters. */
function payloadOf(i: number): string {
  const head = `${i}|`;
  const units = Math.max(0, Math.round((PAYLOAD - head.length) / PAYLOAD_UNIT.length));
  return head + PAYLOAD_UNIT.repeat(units);
}
const chaos = { workerKills: 0, workerStops: 0, workerStarts: 0, redisRestarts: 0, givenBack: 0 };
let exitCode = 1;
try {
  for (let i = 0; i < WORKERS; i++) await startWorker();
  log(`redis ${redis.url} (AOF always), ${WORKERS} workers, ${TASKS} tasks, seed ${values.seed}`);
  const pool = new StreamFuturePool({
    url: redis.url,
    app: APP,
    tasks: MODULE,
    heartbeatInterval: 250,
    heartbeatTimeout: 2_000,
    retries: 10,
    retryDelay: 50,
    reconnectDeadline: 60_000,
  });
  const started = performance.now();
  const argsList = Array.from(
    { length: TASKS },
    (_, i) =>
      PAYLOAD > 0
        ? [Math.round(random() * MAX_MS), traceLog, payloadOf(i)]
        : [Math.round(random() * MAX_MS), traceLog],
  );
  const futures = pool.map<SoakResult>("work", argsList as [number, string][]);
  let settled = 0;
  for (const f of futures) f.addDoneCallback(() => settled++);

  // The chaos loop: kill a random worker and start a replacement every few seconds; restart
  // Redis once, when about 40 % of the tasks are done.
  let chaosOn = true;
  const chaosLoop = (async () => {
    while (chaosOn) {
      await new Promise((resolve) => setTimeout(resolve, CHAOS_EVERY * (0.5 + random())));
      if (!chaosOn) break;
      if (chaos.redisRestarts === 0 && settled >= TASKS * 0.4) {
        log(`restarting Redis (SIGKILL) at ${settled}/${TASKS} settled`);
        await redis.restart("SIGKILL");
        chaos.redisRestarts++;
        continue;
      }
      const victim = workers.splice(Math.floor(random() * workers.length), 1)[0];
      const signal = values.sigterm && (chaos.workerKills + chaos.workerStops) % 2 === 1
        ? "SIGTERM"
        : "SIGKILL";
      victim.kill(signal);
      await victim.exited;
      if (signal === "SIGKILL") chaos.workerKills++;
      else chaos.workerStops++;
      // A stopped worker's prefetched tasks went back to the queue (its log says how many).
      for (const m of victim.stderr().matchAll(/giving (\d+) prefetched task/g)) {
        chaos.givenBack += Number(m[1]);
      }
      log(`${signal}ed worker pid ${victim.pid} at ${settled}/${TASKS} settled; starting another`);
      await startWorker();
      chaos.workerStarts++;
    }
  })();

  const deadline = Date.now() + Math.max(120_000, TASKS * MAX_MS / (WORKERS * 8) * 20);
  while (settled < TASKS && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    if (settled >= TASKS) break;
  }
  chaosOn = false;
  await chaosLoop;
  // After the chaos, give stragglers (retries of the last kills) their time.
  const quiet = Date.now() + 30_000;
  while (settled < TASKS && Date.now() < quiet) {
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const seconds = (performance.now() - started) / 1000;

  const outcomes = await Promise.allSettled(futures.map((f) => f.result({ timeout: 1 })));
  let completed = 0;
  let failed = 0;
  let lost = 0;
  let corrupted = 0;
  const errors = new Map<string, number>();
  const results = new Map<string, SoakResult>();
  outcomes.forEach((o, i) => {
    if (futures[i].state === "finished" && o.status === "fulfilled") {
      completed++;
      results.set(futures[i].id, o.value);
      if (PAYLOAD > 0 && o.value.payload !== payloadOf(i)) corrupted++;
    } else if (futures[i].done()) {
      failed++;
      const reason = String((o as PromiseRejectedResult).reason).slice(0, 80);
      errors.set(reason, (errors.get(reason) ?? 0) + 1);
    } else lost++;
  });

  // Duplicated completions: the stored result must be the one the future received.
  const { connect, replyPairs } = await import("../lib/_redis.ts");
  const c = await connect(redis.url);
  let duplicated = 0;
  const op = futures[0].operationId;
  const storedMap = new Map(replyPairs(await c.sendCommand(["HGETALL", `${APP}:${op}:results`])));
  for (const [id, value] of results) {
    const text = storedMap.get(id);
    if (text === undefined || JSON.parse(text).nonce !== value.nonce) duplicated++;
  }
  c.close();
  const executions = (await readFile(traceLog, "utf8").catch(() => "")).split("\n").filter(Boolean)
    .length;
  const retried = futures.filter((f) => f.attempt > 1).length;
  await pool.shutdown({ cancelFutures: true });

  console.log(
    `submitted=${TASKS} completed=${completed} failed=${failed} lost=${lost} ` +
      `duplicated-completions=${duplicated}` +
      (PAYLOAD > 0 ? ` corrupted-payloads=${corrupted}` : ""),
  );
  console.log(
    `seconds=${seconds.toFixed(1)} executions=${executions} ` +
      `discarded-executions=${executions - completed} retried-tasks=${retried} ` +
      `worker-kills=${chaos.workerKills} worker-stops=${chaos.workerStops} ` +
      `redis-restarts=${chaos.redisRestarts} prefetch=${PREFETCH} given-back=${chaos.givenBack}` +
      ` executor-mode=${EXECUTOR_MODE ?? "default"} payload=${PAYLOAD}`,
  );
  for (const [reason, count] of errors) console.log(`  failed ${count}x: ${reason}`);
  exitCode = lost === 0 && duplicated === 0 && corrupted === 0 && completed + failed === TASKS
    ? 0
    : 1;
} catch (error) {
  console.error(`soak failed: ${(error as Error)?.stack ?? error}`);
} finally {
  for (const w of workers) {
    w.kill("SIGKILL");
    await w.exited;
  }
  await redis.stop();
}
process.exit(exitCode);
