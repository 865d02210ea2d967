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
import { exit, getArgs, getEnv, isMainModule, onSignal, onUncaught } from "./lib/_runtime.ts";
import {
  CONFIG_OPTIONS,
  formatConfig,
  loadConfig,
  type LoadedConfig,
  parseConfigValue,
} from "./lib/_config.ts";

export { Listener } from "./lib/listener.ts";
export type { ListenerOptions } from "./lib/listener.ts";

/** The `--help` text. */
export const USAGE: string = `Usage: streamfutures-worker --tasks <module> [options]

Serves the exported functions of task modules as tasks, from a Redis stream.

Options (durations: seconds, or a number with a unit: 500ms, 10s, 2m, 1h):
  --tasks <path|url>        task module (repeatable; required)
  --url <redis-url>         Redis URL (default redis://127.0.0.1:6379)
  --app <name>              application key prefix (default streamfutures)
  --queue <name>            queue to serve (repeatable; default "default")
  --concurrency <n>         tasks run at once (default 8)
  --executors <n>           executors the tasks run on (default: CPUs, at most concurrency)
  --executor-mode <mode>    thread, process or inline (default: thread on Node, process on Deno,
                            whose threads cannot be stopped in a synchronous loop); inline runs
                            tasks on the worker's own thread: fastest, for asynchronous tasks
                            only (one that ignores its abort signal cannot be stopped, and a
                            synchronous one holds up heartbeats)
  --prefetch <n>            tasks claimed beyond concurrency, started as soon as a slot frees
                            (default 0; for short tasks; they count as running while they wait)
  --task-timeout <time>     time limit of tasks submitted without a timeout (default: none)
  --task-grace <time>       how long a task whose signal was aborted (cancel, timeout) may run on
                            before its executor is terminated (default 2)
  --max-payload-bytes <n>   largest encoded result, bytes or 16mb-style (default 16mb)
  --reconnect-deadline <t>  how long Redis may be unreachable before a result is given up
                            (default 30)
  --grace <time>            on SIGINT/SIGTERM, how long running tasks may finish (default 10)
  --heartbeat-interval <t>  heartbeat period (default 1)
  --heartbeat-timeout <t>   heartbeat age after which this worker, or a task it runs, counts as
                            dead (default 5); also how long delivered entries wait before
                            recovery examines them
  --log-level <level>       debug, info, warn, error or silent (default info; debug logs a line
                            per task)
  --log-format <format>     text or json (default text)
  --stats-interval <time>   how often to log a summary at info (default 60; 0: never)
  --id <id>                 listener id (default host:pid:random)
  --print-config            print the effective configuration (secrets masked) and exit
  -h, --help                show this help

Every option can also come from the environment (STREAMFUTURES_<NAME>, e.g. STREAMFUTURES_URL,
STREAMFUTURES_CONCURRENCY, STREAMFUTURES_LOG_LEVEL; durations in ms or with a unit) or from a
streamfutures.env file in the working directory. Flags win over the environment, the environment
over the file. REDIS_URL is read when no URL is set otherwise; STREAMFUTURES_PASSWORD keeps the
password out of the URL.
`;

/** What the command line asked for: options (those given), or help, or printing the config. */
export interface WorkerArgs {
  /** Options given on the command line (the environment and env file fill in the rest). */
  options: Partial<ListenerOptions>;
  /** `--help`. */
  help: boolean;
  /** `--print-config`. */
  printConfig: boolean;
}

/** A duration flag: seconds, or a number with a unit (`500ms`, `10s`, `2m`, `1h`), in ms. */
function seconds(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const option = CONFIG_OPTIONS.find((o) => o.name === "grace")!;
  try {
    return parseConfigValue(option, text, `--${name}`) as number;
  } catch {
    // (The variables' message says that a bare number is milliseconds; on a flag it is seconds.)
    throw new RangeError(
      `--${name} must be a duration: seconds, or a number with a unit ms, s, m or h such as ` +
        `250ms, 10s or 1.5m, got ${JSON.stringify(value)}`,
    );
  }
}

/**
 * `--name -1` as `--name=-1`: `parseArgs` takes a value that starts with "-" for an option of its
 * own ("argument is ambiguous"), so a negative number would not reach the check that says what
 * the option accepts.
 */
function negativeValuesJoined(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const next = args[i + 1];
    if (/^--[a-z-]+$/.test(args[i]) && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${args[i]}=${next}`);
      i++;
    } else {
      out.push(args[i]);
    }
  }
  return out;
}

/** Parses worker command-line arguments (throws `TypeError` / `RangeError` on bad input). */
export function parseWorkerArgs(args: readonly string[]): WorkerArgs {
  const { values } = parseArgs({
    args: negativeValuesJoined(args),
    options: {
      tasks: { type: "string", multiple: true },
      url: { type: "string" },
      app: { type: "string" },
      queue: { type: "string", multiple: true },
      concurrency: { type: "string" },
      executors: { type: "string" },
      prefetch: { type: "string" },
      "executor-mode": { type: "string" },
      "task-timeout": { type: "string" },
      "task-grace": { type: "string" },
      "max-payload-bytes": { type: "string" },
      "reconnect-deadline": { type: "string" },
      grace: { type: "string" },
      "heartbeat-interval": { type: "string" },
      "heartbeat-timeout": { type: "string" },
      "log-level": { type: "string" },
      "log-format": { type: "string" },
      "stats-interval": { type: "string" },
      id: { type: "string" },
      "print-config": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  const int = (name: string, value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n)) {
      throw new TypeError(`--${name} must be a number, got ${JSON.stringify(value)}`);
    }
    return n;
  };
  const bytes = (value: string | undefined): number | undefined => {
    if (value === undefined) return undefined;
    const option = CONFIG_OPTIONS.find((o) => o.name === "maxPayloadBytes")!;
    return parseConfigValue(option, value, "--max-payload-bytes") as number;
  };
  const options: Partial<ListenerOptions> = {
    tasks: values.tasks,
    url: values.url,
    app: values.app,
    queues: values.queue,
    concurrency: int("concurrency", values.concurrency),
    executors: int("executors", values.executors),
    prefetch: int("prefetch", values.prefetch),
    executorMode: values["executor-mode"] as ListenerOptions["executorMode"],
    taskTimeout: seconds("task-timeout", values["task-timeout"]),
    taskGrace: seconds("task-grace", values["task-grace"]),
    maxPayloadBytes: bytes(values["max-payload-bytes"]),
    reconnectDeadline: seconds("reconnect-deadline", values["reconnect-deadline"]),
    grace: seconds("grace", values.grace),
    heartbeatInterval: seconds("heartbeat-interval", values["heartbeat-interval"]),
    heartbeatTimeout: seconds("heartbeat-timeout", values["heartbeat-timeout"]),
    logLevel: values["log-level"] as ListenerOptions["logLevel"],
    logFormat: values["log-format"] as ListenerOptions["logFormat"],
    statsInterval: seconds("stats-interval", values["stats-interval"]),
    id: values.id,
  };
  return { options, help: values.help === true, printConfig: values["print-config"] === true };
}

/**
 * The effective worker options: the command line's, then `STREAMFUTURES_*` variables, then the
 * `streamfutures.env` file (`REDIS_URL` when no URL is set at all).
 */
export async function workerConfig(
  explicit: Partial<ListenerOptions>,
): Promise<LoadedConfig> {
  const loaded = await loadConfig("worker", explicit as Record<string, unknown>);
  if (loaded.options.url === undefined && getEnv("REDIS_URL")) {
    loaded.options.url = getEnv("REDIS_URL");
    loaded.origin.url = "env REDIS_URL";
  }
  return loaded;
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
/** How long a stop signal received while starting waits for the stop before exiting. */
const START_STOP_MS = 5_000;

export async function main(args: readonly string[]): Promise<number> {
  let listener: Listener;
  let inline = false;
  try {
    const parsed = parseWorkerArgs(args);
    if (parsed.help) {
      console.log(USAGE);
      return 0;
    }
    const { options, origin, warnings } = await workerConfig(parsed.options);
    for (const warning of warnings) console.error(`streamfutures-worker: ${warning}`);
    if (parsed.printConfig) {
      // The values are checked as the worker would check them (none is used: nothing starts).
      const tasks = options.tasks as unknown[] | undefined;
      new Listener({ ...options, tasks: tasks?.length ? tasks : ["unused.ts"] } as ListenerOptions);
      console.log(formatConfig(options, origin, "worker"));
      return 0;
    }
    if (!(options.tasks as unknown[] | undefined)?.length) {
      throw new TypeError(
        "--tasks <module> is required (repeatable), or STREAMFUTURES_TASKS=<module>,<module>",
      );
    }
    listener = new Listener(options as unknown as ListenerOptions);
    inline = options.executorMode === "inline";
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
  // A stop signal while starting (Redis unreachable, a task module still loading) ends the start:
  // nothing runs yet, so nothing is waited for beyond a bounded stop.
  const start = listener.start().then(() => undefined, (error: unknown) => error ?? "failed");
  const first = await Promise.race([
    start.then((error) => ({ error })),
    stopped.then((signal) => ({ signal })),
  ]);
  if ("signal" in first) {
    console.error(`streamfutures-worker: ${first.signal} while starting; stopping`);
    await Promise.race([
      listener.stop({ grace: 0, reason: first.signal }).catch(() => {}),
      new Promise((resolve) => setTimeout(resolve, START_STOP_MS)),
    ]);
    return 0;
  }
  if (first.error !== undefined) {
    console.error(
      `streamfutures-worker: cannot start: ${(first.error as Error)?.message ?? first.error}`,
    );
    await listener.stop({ grace: 0, reason: "start failed" }).catch(() => {});
    return 1;
  }
  if (inline) {
    // Tasks run on this thread: an error one of them leaves where nobody catches it (a stray
    // timer's callback, an unhandled rejection) must not end the worker.
    onUncaught((error) => {
      console.error(
        `streamfutures-worker: an error escaped a task and was ignored: ${
          (error as Error)?.stack ?? String(error)
        }`,
      );
    });
  }
  console.error("streamfutures-worker: ready");
  const signal = await stopped;
  await listener.stop({ reason: signal });
  return 0;
}

if (isMainModule(import.meta)) {
  exit(await main(getArgs()));
}
