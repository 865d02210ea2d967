/**
 * Test harness: a private redis-server on a free port in a temp dir, which tests may kill,
 * restart and pause. Never touches the shared instance on 6379.
 *
 * @module
 */

import { type ChildProcessHandle, spawnProcess, workerCommand } from "../lib/_runtime.ts";
import { connect, type RedisConnection } from "../lib/_redis.ts";

/** `redis-server` is not installed (or not on PATH). */
export class RedisNotInstalledError extends Error {
  constructor(options?: { cause?: unknown }) {
    super(
      "redis-server is not installed (or not on PATH).\n" +
        "Install it with `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` " +
        "(macOS), or set REDIS_URL to a Redis you may write to.",
      options,
    );
    this.name = "RedisNotInstalledError";
  }
}

/** A private redis-server. */
export interface TestRedis {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** The server process id (changes with {@link restart}). */
  readonly pid: number;
  /** A command connection (closed by `stop`). */
  client(): Promise<RedisConnection>;
  /** Kills the server (SIGKILL by default) and waits until it has exited. */
  kill(signal?: string): Promise<void>;
  /** Starts the server again on the same port and directory (after {@link kill}). */
  start(): Promise<void>;
  /** {@link kill}, then {@link start}. */
  restart(signal?: string): Promise<void>;
  /** Freezes the server (SIGSTOP): connections stay open, nothing is answered. */
  pause(): void;
  /** Thaws a paused server (SIGCONT). */
  resume(): void;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

/** Options of {@link startRedis}. */
export interface TestRedisOptions {
  /** Persist every write with AOF, `appendfsync always` (default false: no persistence). */
  aof?: boolean;
  /** More `redis-server` arguments, e.g. `["--rename-command", "FCALL", ""]`. */
  serverArgs?: string[];
}

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 10_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ""}`,
  );
}

/** Starts a private redis-server. */
export async function startRedis(options: TestRedisOptions = {}): Promise<TestRedis> {
  const { mkdtemp, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = await mkdtemp(join(tmpdir(), "streamfutures-redis-"));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--save",
    "",
    "--logfile",
    "redis.log",
    ...(options.aof ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]),
    ...(options.serverArgs ?? []),
  ];
  let server: ChildProcessHandle | undefined;
  let exited = true;
  const launch = async () => {
    try {
      server = await spawnProcess("redis-server", args);
    } catch (error) {
      const code = error as { code?: string; name?: string };
      if (code.code === "ENOENT" || code.name === "NotFound") {
        throw new RedisNotInstalledError({ cause: error });
      }
      throw error;
    }
    exited = false;
    const current = server;
    void current.exited.then(() => {
      if (server === current) exited = true;
    });
    await waitFor(async () => {
      if (exited) throw new Error(`redis-server on port ${port} exited`);
      const c = await connect(url, undefined, 2_000);
      try {
        // LOADING while the AOF is read back: not ready yet.
        return await c.sendCommand(["PING"]) === "PONG";
      } finally {
        c.close();
      }
    }, `redis-server on port ${port}`);
  };
  try {
    await launch();
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const clients: RedisConnection[] = [];
  const kill = async (signal = "SIGKILL") => {
    if (!server || exited) return;
    server.kill(signal);
    await server.exited;
  };
  return {
    port,
    url,
    dir,
    get pid() {
      return server?.pid ?? -1;
    },
    async client() {
      const c = await connect(url);
      clients.push(c);
      return c;
    },
    kill,
    start: launch,
    async restart(signal) {
      await kill(signal);
      await launch();
    },
    pause() {
      server?.kill("SIGSTOP");
    },
    resume() {
      server?.kill("SIGCONT");
    },
    async stop() {
      for (const c of clients) c.close();
      server?.kill("SIGCONT");
      await kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A worker process (`deno run -A worker.ts ...` or `node worker.js ...`). */
export async function startWorkerProcess(
  args: string[],
  readyText = "streamfutures-worker: ready",
  env?: Record<string, string>,
): Promise<ChildProcessHandle> {
  const [exe, ...pre] = workerCommand();
  const child = await spawnProcess(exe, [...pre, ...args], {
    env,
    echo: (await import("../lib/_runtime.ts")).getEnv("STREAMFUTURES_TEST_ECHO")
      ? "worker"
      : undefined,
  });
  await waitFor(
    () => child.stderr().includes(readyText) || child.stderr().includes("cannot start"),
    "worker ready",
    30_000,
  );
  if (!child.stderr().includes(readyText)) {
    throw new Error(`worker failed to start:\n${child.stderr()}`);
  }
  return child;
}

/** The examples task module URL. */
export const TASKS: URL = new URL("../examples/tasks.ts", import.meta.url);
