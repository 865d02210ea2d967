/**
 * `deno task bench:million`: a million no-op tasks through `pool.imap` with 4 local listeners,
 * on a private redis-server. Prints the client's peak RSS (the whole process: client, listeners
 * and, in thread mode, executor threads), the executor processes' peak RSS (their sum, in process
 * mode, Deno's default), Redis' peak `used_memory`, and the throughput; exits non-zero when the
 * client's peak RSS reaches 300 MB or Redis' used_memory 200 MB.
 *
 *   deno task bench:million
 *   deno run -A scripts/bench_million.ts [--tasks 1000000] [--window 5000] [--workers 4]
 *     [--concurrency 100] [--ordered] [--chunksize 1]
 *
 * @module
 */

import { parseArgs } from "node:util";
import process from "node:process";
import { StreamFuturePool } from "../mod.ts";
import * as tasks from "../examples/tasks.ts";
import { connect } from "../lib/_redis.ts";
import { RedisNotInstalledError, type RedisServer, startRedisServer } from "./_redis_server.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tasks: { type: "string", default: "1000000" },
    window: { type: "string", default: "5000" },
    workers: { type: "string", default: "4" },
    concurrency: { type: "string", default: "100" },
    executors: { type: "string" },
    ordered: { type: "boolean", default: false },
    chunksize: { type: "string", default: "1" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(
    "usage: deno run -A scripts/bench_million.ts [--tasks N] [--window N] [--workers N] " +
      "[--concurrency N] [--ordered] [--chunksize N]",
  );
  Deno.exit(0);
}
const N = Number(values.tasks);
const RSS_LIMIT = 300 * 1024 * 1024;
const REDIS_LIMIT = 200 * 1024 * 1024;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** The summed RSS of this process' children (executor processes; the Redis server is not one). */
function childrenRss(): number {
  let total = 0;
  let entries: Iterable<Deno.DirEntry>;
  try {
    entries = Deno.readDirSync("/proc");
  } catch {
    return 0; // not Linux
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const status = Deno.readTextFileSync(`/proc/${entry.name}/status`);
      if (Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]) !== Deno.pid) continue;
      if (/^Name:\s+redis/m.test(status)) continue;
      total += Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

function* input(): Generator<[]> {
  for (let i = 0; i < N; i++) yield [];
}

let server: RedisServer | undefined;
let exitCode = 1;
try {
  server = await startRedisServer();
  const info = await connect(server.url);
  let peakRss = 0;
  let peakExecutors = 0;
  let peakRedis = 0;
  const sample = async () => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    peakExecutors = Math.max(peakExecutors, childrenRss());
    const text = String(await info.sendCommand(["INFO", "memory"]));
    const used = Number(/used_memory:(\d+)/.exec(text)?.[1] ?? 0);
    peakRedis = Math.max(peakRedis, used);
  };
  const sampler = setInterval(() => void sample().catch(() => {}), 200);
  const pool = new StreamFuturePool({
    url: server.url,
    app: "million",
    workers: Number(values.workers),
    concurrency: Number(values.concurrency),
    executors: values.executors === undefined ? undefined : Number(values.executors),
    tasks: new URL("../examples/tasks.ts", import.meta.url),
  });
  await pool.ready();
  await sample();
  const startRss = peakRss;
  console.error(
    `[bench:million] ${N} tasks, window ${values.window}, ${values.workers} local listeners x ` +
      `concurrency ${values.concurrency}, ${values.ordered ? "ordered" : "unordered"}, ` +
      `chunksize ${values.chunksize}; ` +
      `RSS after start ${mb(startRss)}`,
  );
  const started = performance.now();
  let count = 0;
  let lastReport = started;
  for await (
    const _ of pool.imap(tasks.noop, input(), {
      window: Number(values.window),
      ordered: values.ordered,
      chunksize: Number(values.chunksize),
    })
  ) {
    count++;
    if (count % 100_000 === 0) {
      const now = performance.now();
      console.error(
        `[bench:million] ${count} done, ${
          Math.round(100_000 / ((now - lastReport) / 1000))
        } tasks/s, RSS peak ${mb(peakRss)}, main heap ${
          mb(process.memoryUsage().heapUsed)
        }, Redis peak ${mb(peakRedis)}`,
      );
      lastReport = now;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  await sample();
  clearInterval(sampler);
  await pool.shutdown();
  info.close();
  const ok = count === N && peakRss < RSS_LIMIT && peakRedis < REDIS_LIMIT;
  console.log(`| metric | value | limit |`);
  console.log(`| --- | --- | --- |`);
  console.log(`| tasks | ${count} | ${N} |`);
  console.log(
    `| throughput | ${Math.round(count / seconds)} tasks/s (${seconds.toFixed(1)} s) | |`,
  );
  console.log(`| client peak RSS | ${mb(peakRss)} (after start: ${mb(startRss)}) | 300 MB |`);
  console.log(`| executor processes' peak RSS (sum) | ${mb(peakExecutors)} | |`);
  console.log(`| Redis peak used_memory | ${mb(peakRedis)} | 200 MB |`);
  console.log(ok ? "PASS" : "FAIL");
  exitCode = ok ? 0 : 1;
} catch (error) {
  if (error instanceof RedisNotInstalledError) console.error(error.message);
  else console.error(`bench:million failed: ${(error as Error)?.stack ?? error}`);
} finally {
  await server?.stop();
}
Deno.exit(exitCode);
