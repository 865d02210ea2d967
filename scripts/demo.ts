/**
 * The project's main job in a few seconds: a pool with 4 local listeners runs `add`, a batch of
 * `sleep`s and `add`s (printed in completion order with `asCompleted`), and one failing task.
 *
 * Uses `REDIS_URL` when it is set and answers PING within 1 s; otherwise starts a private
 * redis-server on a free port and stops it at the end. All keys live under the app "demo".
 *
 *   deno task demo
 *   REDIS_URL=redis://127.0.0.1:6379/5 deno task demo
 *
 * @module
 */

import { createClient } from "redis";
import { asCompleted, RemoteTaskError, type StreamFuture, StreamFuturePool } from "../mod.ts";
import * as tasks from "../examples/tasks.ts";
import { RedisNotInstalledError, type RedisServer, startRedisServer } from "./_redis_server.ts";

const TASKS = new URL("../examples/tasks.ts", import.meta.url);

/** True when `url` answers PING within `timeoutMs` (one attempt, no reconnects). */
async function reachable(url: string, timeoutMs = 1000): Promise<boolean> {
  const client = createClient({
    url,
    socket: { connectTimeout: timeoutMs, reconnectStrategy: false },
  });
  client.on("error", () => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("timeout")), timeoutMs);
    });
    await Promise.race([client.connect().then(() => client.ping()), timeout]);
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    try {
      client.destroy();
    } catch {
      // never connected
    }
  }
}

function mask(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.href;
  } catch {
    return url;
  }
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`demo check failed: ${what}`);
}

async function demo(url: string): Promise<void> {
  const t0 = performance.now();
  await using pool = new StreamFuturePool({ url, app: "demo", workers: 4, tasks: TASKS });
  await pool.ready();
  console.log(`pool ready: 4 local listeners in ${(performance.now() - t0).toFixed(0)} ms\n`);

  const start = performance.now();
  const ms = () => (performance.now() - start).toFixed(0).padStart(4) + " ms";
  let count = 0;

  // One call.
  const sum = await pool.submit(tasks.add, [3, 8]);
  count++;
  check(sum === 11, `add(3, 8) returned ${sum}`);
  console.log(`${ms()}  add(3, 8) = ${sum}`);

  // A batch, printed as each task completes.
  const sleeps = Array.from({ length: 20 }, () => [50 + Math.floor(Math.random() * 251)]);
  const adds = Array.from({ length: 5 }, (_, i) => [i, i * i]);
  const labels = new Map<StreamFuture<number>, string>();
  const expected = new Map<StreamFuture<number>, number>();
  pool.map(tasks.sleep, sleeps as [number][]).forEach((f, i) => {
    labels.set(f, `sleep(${sleeps[i][0]})`);
    expected.set(f, sleeps[i][0]);
  });
  pool.map(tasks.add, adds as [number, number][]).forEach((f, i) => {
    labels.set(f, `add(${adds[i][0]}, ${adds[i][1]})`);
    expected.set(f, adds[i][0] + adds[i][1]);
  });
  console.log(`${ms()}  map: submitted ${sleeps.length} × sleep(50–300 ms) + ${adds.length} × add`);
  for await (const done of asCompleted(labels.keys(), { timeout: 10_000 })) {
    // asCompleted yields the futures themselves, but TypeScript types a `for await` variable as
    // Awaited<T>, i.e. as the futures' value type (they are thenables): restore the real type.
    const future = done as unknown as StreamFuture<number>;
    const value = await future;
    count++;
    check(value === expected.get(future), `${labels.get(future)} returned ${value}`);
    console.log(`${ms()}    ${labels.get(future)!.padEnd(11)} = ${value}`);
  }

  // A task that throws on the worker.
  try {
    await pool.submit(tasks.fail, ["bad input"]);
    throw new Error("demo check failed: fail() did not throw");
  } catch (error) {
    if (!(error instanceof RemoteTaskError)) throw error;
    count++;
    check(error.remoteName === "RangeError", `remoteName is ${error.remoteName}`);
    console.log(
      `${ms()}  fail("bad input") threw ${error.name} (remoteName ${error.remoteName}): ${error.message}`,
    );
  }

  const seconds = (performance.now() - start) / 1000;
  console.log(
    `\n${count} tasks in ${seconds.toFixed(2)} s (${
      (count / seconds).toFixed(0)
    } tasks/s; the sleeps run concurrently)`,
  );
}

async function main(): Promise<number> {
  let url: string | undefined;
  let server: RedisServer | undefined;
  const envUrl = Deno.env.get("REDIS_URL");
  if (envUrl) {
    if (await reachable(envUrl)) url = envUrl;
    else console.log(`REDIS_URL ${mask(envUrl)} is not reachable; using a private redis-server`);
  }
  if (!url) {
    try {
      server = await startRedisServer();
    } catch (error) {
      if (error instanceof RedisNotInstalledError) {
        console.error(error.message);
        return 1;
      }
      throw error;
    }
    url = server.url;
  }
  console.log(
    `streamfutures demo — Redis ${mask(url)}${server ? " (private redis-server)" : " (REDIS_URL)"}`,
  );
  try {
    await demo(url);
  } finally {
    await server?.stop();
  }
  return 0;
}

Deno.exit(await main());
