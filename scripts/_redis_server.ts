/**
 * A private, throw-away `redis-server` for the demo and the benchmark: a free port on 127.0.0.1,
 * a temp dir, no persistence. Deno only (scripts are not part of the published package).
 *
 * @module
 */

/** A running private redis-server. */
export interface RedisServer {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** Stops the server and removes its directory. Safe to call more than once. */
  stop(): Promise<void>;
}

/** `redis-server` is not on PATH. */
export class RedisNotInstalledError extends Error {
  constructor() {
    super(
      "redis-server is not installed (or not on PATH).\n" +
        "Install it with `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` " +
        "(macOS), or set REDIS_URL to a Redis you may write to.",
    );
    this.name = "RedisNotInstalledError";
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Sends a raw `PING` and returns true on `+PONG` (no client library, no retries). */
async function rawPing(port: number): Promise<boolean> {
  let conn: Deno.TcpConn | undefined;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buf = new Uint8Array(64);
    const n = await conn.read(buf);
    return n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("+PONG");
  } catch {
    return false;
  } finally {
    conn?.close();
  }
}

/** Starts a private redis-server and waits (up to 10 s) until it answers PING. */
export async function startRedisServer(): Promise<RedisServer> {
  const dir = await Deno.makeTempDir({ prefix: "streamfutures-script-redis-" });
  const port = freePort();
  const logfile = `${dir}/redis.log`;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("redis-server", {
      args: [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
        "--logfile",
        logfile,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    if (error instanceof Deno.errors.NotFound) throw new RedisNotInstalledError();
    throw error;
  }
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    await status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const deadline = Date.now() + 10_000;
  while (!(await rawPing(port))) {
    if (exited || Date.now() > deadline) {
      const log = await Deno.readTextFile(logfile).catch(() => "");
      await stop();
      throw new Error(
        `redis-server on port ${port} did not start${exited ? " (it exited)" : ""}:\n${log}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { url: `redis://127.0.0.1:${port}`, port, stop };
}
