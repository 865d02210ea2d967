/**
 * A pool's local listeners (`workers: N`): N listeners in the pool's own process. Their Redis
 * work (reads, heartbeats, recording outcomes) runs on the pool's event loop, which it barely
 * loads; their tasks run on executor threads they share (by default one per CPU), so a busy task
 * never stalls the client or the heartbeats. One set of threads, however many listeners: a
 * process holds few V8 heaps.
 *
 * @module
 */

import { executorMode, ExecutorPool } from "./_executor.ts";
import { Listener, type ListenerOptions } from "./listener.ts";
import { cpuCount, resolveModuleUrl } from "./_runtime.ts";
import { checkTaskModules } from "./_tasks.ts";
import { checkConnectionOptions } from "./_redis.ts";
import { keyName } from "./_options.ts";
import { checkLogFormat, checkLogLevel, createLogger } from "./_log.ts";

/** Local listeners that can be stopped gracefully. */
export interface LocalListeners {
  /** Stops every listener (as on SIGTERM: running tasks finish or are interrupted). */
  stop(): Promise<void>;
}

/**
 * Starts `count` listeners with `options`, sharing `executors` threads (default: the number of
 * CPUs, at most `count * concurrency`); resolves once all are live.
 */
export async function startLocalListeners(
  count: number,
  options: ListenerOptions,
  executors?: number,
): Promise<LocalListeners> {
  const modules = await Promise.all(checkTaskModules(options.tasks).map(resolveModuleUrl));
  const logger = createLogger({
    level: checkLogLevel(options.logLevel, "logLevel"),
    format: checkLogFormat(options.logFormat, "logFormat"),
    name: "executors",
    sink: options.log,
  });
  const pool = new ExecutorPool({
    modules,
    mode: executorMode(options.executorMode),
    url: checkConnectionOptions(options.url),
    app: keyName(options.app, "app", "streamfutures"),
    size: executors ?? Math.min(count * (options.concurrency ?? 8), await cpuCount()),
    maxPayloadBytes: options.maxPayloadBytes ?? 16 * 1024 * 1024,
    log: (line) => logger.warn(line),
  });
  await pool.start();
  const listeners: Listener[] = [];
  try {
    for (let i = 0; i < count; i++) {
      listeners.push(new Listener(options, { executors: pool }));
    }
    await Promise.all(listeners.map((l) => l.start()));
  } catch (error) {
    await Promise.all(listeners.map((l) => l.stop({ grace: 0 }).catch(() => {})));
    await pool.close();
    throw error;
  }
  return {
    stop: async () => {
      await Promise.all(listeners.map((l) => l.stop({ reason: "pool shutdown" })));
      // Interrupted tasks get up to taskGrace to see their aborted signal and return.
      await pool.idle(options.taskGrace ?? 2_000);
      await pool.close();
    },
  };
}
