#!/usr/bin/env -S deno run -A
/**
 * The streamfutures worker: serves the tasks of one or more task modules from Redis.
 *
 * ```sh
 * deno run -A worker.ts --tasks ./tasks.ts [--tasks more.ts] --url redis://127.0.0.1:6379/3 \
 *   --app MyApp --queue default --concurrency 8
 * ```
 *
 * On Node (npm build): `npx streamfutures-worker --tasks ./tasks.js ...`.
 *
 * SIGINT / SIGTERM: stop taking work, let running tasks finish within `--grace` seconds, then
 * abort them and record them as interrupted (or put them back in the queue when they have retries
 * left) and exit 0. A second SIGINT exits at once (130).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Listener, type ListenerOptions } from "./lib/listener.ts";
import { exit, getArgs, getEnv, isMainModule, onSignal } from "./lib/_runtime.ts";

export { Listener } from "./lib/listener.ts";
export type { ListenerOptions } from "./lib/listener.ts";

/** The `--help` text. */
export const USAGE: string = `Usage: streamfutures-worker --tasks <module> [options]

Serves the exported functions of task modules as tasks, from a Redis stream.

Options:
  --tasks <path|url>        task module (repeatable; required)
  --url <redis-url>         Redis URL (default $STREAMFUTURES_URL or redis://127.0.0.1:6379)
  --app <name>              application key prefix (default $STREAMFUTURES_APP or streamfutures)
  --queue <name>            queue to serve (repeatable; default "default")
  --concurrency <n>         tasks run at once (default 8)
  --executors <n>           executor threads the tasks run on (default: CPUs, at most concurrency)
  --task-timeout <seconds>  time limit of tasks submitted without a timeout (default: none)
  --task-grace <seconds>    how long a task whose signal was aborted (cancel, timeout) may run on
                            before its executor thread is terminated (default 2)
  --max-payload-bytes <n>   largest encoded result; larger ones fail the task (default 16777216)
  --reconnect-deadline <s>  how long Redis may be unreachable before a result is given up
                            (default 30)
  --grace <seconds>         on SIGINT/SIGTERM, how long running tasks may finish (default 10)
  --heartbeat-interval <s>  heartbeat period in seconds (default 1)
  --heartbeat-timeout <s>   heartbeat age after which this listener counts as dead (default 5;
                            clients judge liveness by their own heartbeatTimeout)
  --id <id>                 listener id (default host:pid:random)
  -h, --help                show this help
`;

/** Parses worker command-line arguments into listener options (throws `TypeError` on bad input). */
export function parseWorkerArgs(args: readonly string[]): ListenerOptions | "help" {
  const { values } = parseArgs({
    args: [...args],
    options: {
      tasks: { type: "string", multiple: true },
      url: { type: "string" },
      app: { type: "string" },
      queue: { type: "string", multiple: true },
      concurrency: { type: "string" },
      executors: { type: "string" },
      "task-timeout": { type: "string" },
      "task-grace": { type: "string" },
      "max-payload-bytes": { type: "string" },
      "reconnect-deadline": { type: "string" },
      grace: { type: "string" },
      "heartbeat-interval": { type: "string" },
      "heartbeat-timeout": { type: "string" },
      id: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  if (!values.tasks?.length) throw new TypeError("--tasks <module> is required (repeatable)");
  const num = (name: string, value: string | undefined, scale = 1): number | undefined => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n)) {
      throw new TypeError(`--${name} must be a number, got ${JSON.stringify(value)}`);
    }
    return n * scale;
  };
  return {
    tasks: values.tasks,
    url: values.url ?? getEnv("STREAMFUTURES_URL") ?? getEnv("REDIS_URL"),
    app: values.app ?? getEnv("STREAMFUTURES_APP"),
    queues: values.queue,
    concurrency: num("concurrency", values.concurrency),
    executors: num("executors", values.executors),
    taskTimeout: num("task-timeout", values["task-timeout"], 1000),
    taskGrace: num("task-grace", values["task-grace"], 1000),
    maxPayloadBytes: num("max-payload-bytes", values["max-payload-bytes"]),
    reconnectDeadline: num("reconnect-deadline", values["reconnect-deadline"], 1000),
    grace: num("grace", values.grace, 1000),
    heartbeatInterval: num("heartbeat-interval", values["heartbeat-interval"], 1000),
    heartbeatTimeout: num("heartbeat-timeout", values["heartbeat-timeout"], 1000),
    id: values.id,
  };
}

/**
 * Runs a worker until SIGINT / SIGTERM, then stops it gracefully. Resolves with the exit code.
 *
 * @example
 * ```ts ignore
 * import { main } from "@x/streamfutures/worker";
 * Deno.exit(await main(["--tasks", "./tasks.ts", "--concurrency", "4"]));
 * ```
 */
export async function main(args: readonly string[]): Promise<number> {
  let options: ListenerOptions | "help";
  let listener: Listener;
  try {
    options = parseWorkerArgs(args);
    if (options === "help") {
      console.log(USAGE);
      return 0;
    }
    listener = new Listener(options);
  } catch (error) {
    console.error(`streamfutures-worker: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  let signals = 0;
  const stopped = new Promise<string>((resolve) => {
    const handler = (signal: "SIGINT" | "SIGTERM") => () => {
      signals++;
      if (signals > 1 && signal === "SIGINT") {
        console.error("streamfutures-worker: second SIGINT, exiting at once");
        exit(130);
      }
      resolve(signal);
    };
    onSignal("SIGINT", handler("SIGINT"));
    onSignal("SIGTERM", handler("SIGTERM"));
  });
  try {
    await listener.start();
  } catch (error) {
    console.error(`streamfutures-worker: cannot start: ${(error as Error).message}`);
    await listener.stop({ grace: 0, reason: "start failed" }).catch(() => {});
    return 1;
  }
  console.error("streamfutures-worker: ready");
  const signal = await stopped;
  await listener.stop({ reason: signal });
  return 0;
}

if (isMainModule(import.meta)) {
  exit(await main(getArgs()));
}
