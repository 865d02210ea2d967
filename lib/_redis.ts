/**
 * Connections to Redis (node-redis v6). Everything else talks to Redis through the small
 * {@link RedisCommander} interface with raw command arrays, so replies are exactly what Redis
 * sent and no client-side transformation runs on the hot path.
 *
 * @module
 */

import { ConnectionError } from "./errors.ts";
import { checkOptionNames, describeValue } from "./_options.ts";

/**
 * node-redis, loaded on first use: modules that only import this one for types or helpers (an
 * executor thread loading a task module that imports the library) do not pay for it.
 */
let redisModule: typeof import("redis") | undefined;
async function loadRedis(): Promise<typeof import("redis")> {
  return redisModule ??= await import("redis");
}

/** Where Redis is: a `redis://` / `rediss://` URL, or its parts. */
export type ConnectionOptions = string | {
  /** Host name (default `127.0.0.1`). */
  host?: string;
  /** Port (default 6379). */
  port?: number;
  /** Database number (default 0). */
  db?: number;
  /** ACL user name. */
  username?: string;
  /** Password. */
  password?: string;
  /** Use TLS. */
  tls?: boolean;
};

/** Every option name of the object form of {@link ConnectionOptions}. */
const CONNECTION_OPTIONS: Record<keyof Exclude<ConnectionOptions, string>, true> = {
  host: true,
  port: true,
  db: true,
  username: true,
  password: true,
  tls: true,
};

/** How a command's reply is read. */
export interface ReplyOptions {
  /**
   * Bulk strings as bytes (`Uint8Array`) instead of strings: a long value is then neither decoded
   * from UTF-8 nor copied into a string (the worker hands arguments stored beside their entries to
   * executor processes as the bytes Redis sent).
   */
  bytes?: boolean;
}

/** What this library needs of a Redis connection. */
export interface RedisCommander {
  /** Sends one command and resolves with Redis' raw reply. */
  sendCommand(args: readonly string[], options?: ReplyOptions): Promise<unknown>;
}

/** An open connection. */
export interface RedisConnection extends RedisCommander {
  /** Closes the connection; commands already written are dropped. */
  close(): void;
  /** When the connection was lost (epoch ms), or `undefined` while it is up. */
  readonly downSince: number | undefined;
}

/**
 * A connection dedicated to blocking reads. A read already written cannot be aborted, so
 * {@link BlockingReader.unblock} asks Redis (over another connection) to end it at once with
 * CLIENT UNBLOCK: the read returns as if it timed out, and nothing it was about to deliver is lost.
 */
export interface BlockingReader extends RedisConnection {
  /** Ends the reader's current blocking command, if any, using `via` to send CLIENT UNBLOCK. */
  unblock(via: RedisCommander): Promise<void>;
}

/** Opens a connection for blocking reads (see {@link BlockingReader}). */
export async function connectReader(
  options: ConnectionOptions,
  name?: string,
  deadline?: number,
): Promise<BlockingReader> {
  const connection = await connect(options, name, deadline);
  // The id changes when node-redis reconnects: ask again after every failed read.
  let id = String(await connection.sendCommand(["CLIENT", "ID"]));
  return {
    sendCommand: async (args, options) => {
      try {
        return await connection.sendCommand(args, options);
      } catch (error) {
        if (isConnectionError(error)) {
          void connection.sendCommand(["CLIENT", "ID"]).then((v) => (id = String(v)), () => {});
        }
        throw error;
      }
    },
    close: () => connection.close(),
    get downSince() {
      return connection.downSince;
    },
    unblock: async (via) => {
      await via.sendCommand(["CLIENT", "UNBLOCK", id]);
    },
  };
}

/**
 * Checks connection options and returns them in a structured-clonable form. A separate
 * `password` (e.g. from `STREAMFUTURES_PASSWORD`, to keep it out of URLs) replaces the URL's.
 */
export function checkConnectionOptions(
  options: ConnectionOptions | undefined,
  what = "url",
  separatePassword?: string,
): ConnectionOptions {
  if (separatePassword !== undefined) {
    if (typeof separatePassword !== "string") throw new TypeError("password must be a string");
    const checked = checkConnectionOptions(options, what);
    if (typeof checked !== "string") return { ...checked, password: separatePassword };
    const url = new URL(checked);
    url.password = encodeURIComponent(separatePassword);
    return url.href;
  }
  if (options === undefined) return "redis://127.0.0.1:6379";
  if (typeof options === "string") {
    let url: URL;
    try {
      url = new URL(options);
    } catch {
      throw new TypeError(
        `${what} must be a redis:// or rediss:// URL, got ${JSON.stringify(options)}`,
      );
    }
    if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
      throw new TypeError(
        `${what} must use the redis: or rediss: scheme, got ${JSON.stringify(url.protocol)}`,
      );
    }
    if (url.port === "0") throw new RangeError(`${what}: the port must be from 1 to 65535, got 0`);
    if (!/^\/?(?:\d+)?$/.test(url.pathname)) {
      throw new TypeError(
        `${what}: the path must be empty or a database number such as /3, got ${
          JSON.stringify(url.pathname)
        }`,
      );
    }
    return options;
  }
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `${what} must be a redis:// URL or an object { host, port, db, username, password, tls }`,
    );
  }
  checkOptionNames(options, CONNECTION_OPTIONS, what);
  const { host, port, db, username, password, tls } = options;
  for (const [name, value] of [["host", host], ["username", username], ["password", password]]) {
    if (value !== undefined && typeof value !== "string") {
      throw new TypeError(`${what}.${name} must be a string, got ${describeValue(value)}`);
    }
  }
  if (tls !== undefined && typeof tls !== "boolean") {
    throw new TypeError(`${what}.tls must be true or false, got ${describeValue(tls)}`);
  }
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
    throw new RangeError(`${what}.port must be an integer from 1 to 65535, got ${port}`);
  }
  if (db !== undefined && (!Number.isInteger(db) || db < 0)) {
    throw new RangeError(`${what}.db must be a non-negative integer, got ${db}`);
  }
  return { host, port, db, username, password, tls };
}

/**
 * How long to wait before reconnection attempt `retries` (0, 1, ...): exponential from 50 ms up
 * to 2 s, with ±50 % jitter so that many clients do not reconnect in lockstep.
 */
export function reconnectDelay(retries: number): number {
  return Math.round(Math.min(50 * 2 ** Math.min(retries, 6), 2000) * (0.5 + Math.random()));
}

/**
 * How long a command may wait for its reply (beyond its own `BLOCK` time) before it rejects with
 * node-redis' `TimeoutError`, ms: node-redis' default, which {@link connect} applies itself.
 */
export const COMMAND_TIMEOUT = 5_000;

async function createRedisClient(
  options: ConnectionOptions,
  name: string | undefined,
  commandOptions?: { timeout: number },
) {
  const { createClient } = await loadRedis();
  const socket = { reconnectStrategy: reconnectDelay };
  return typeof options === "string"
    ? createClient({ url: options, name, socket, commandOptions })
    : createClient({
      socket: {
        ...socket,
        host: options.host ?? "127.0.0.1",
        port: options.port ?? 6379,
        tls: options.tls === true,
      } as never,
      database: options.db,
      username: options.username,
      password: options.password,
      name,
      commandOptions,
    });
}

/** A command sent on a {@link connect}ion and not answered yet. */
interface Unanswered {
  /** When it times out (`Date.now()` scale). */
  readonly until: number;
  answered: boolean;
  readonly reject: (error: unknown) => void;
  /** For the message of its timeout error: the command's name, its wait (ms), sent while down. */
  readonly command: string;
  readonly wait: number;
  readonly down: boolean;
}

/**
 * The commands of one connection in the order they were sent, and the timer that fails the
 * oldest unanswered one once it has waited too long. node-redis' own per-command timeout makes an
 * `AbortSignal.timeout` for every command, which cost 20–35 µs of CPU per command on this
 * project's machine (a node-redis `PING` round trip: 80–84 µs of CPU with it, 48–61 µs without,
 * Deno and Node alike); instead, a look at the unanswered commands every 250 ms keeps the same
 * promise (a command fails with node-redis' `TimeoutError` once unanswered for
 * {@link COMMAND_TIMEOUT} ms beyond its `BLOCK` time, up to 250 ms later) for the price of an array
 * push, and the list stays short because Redis answers a connection's commands in order. While the
 * connection is down, node-redis queues new commands until it is back: they fail after
 * `downLimit`.
 */
class CommandWatch {
  #sent: Unanswered[] = [];
  #head = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  /**
   * `downLimit`: how long a command sent while the connection is down may wait for it to come
   * back (ms).
   */
  constructor(
    readonly timeoutError: (message: string) => Error,
    readonly downLimit: number,
  ) {}

  /**
   * Sends through `send`, failing the command if it stays unanswered too long: a blocking read
   * gets its `BLOCK` time on top. A command sent while the connection is `down` waits in
   * node-redis' queue, not in Redis, for at most `downLimit`.
   */
  run(
    args: readonly string[],
    send: (args: string[]) => Promise<unknown>,
    down: boolean,
  ): Promise<unknown> {
    let wait = down ? this.downLimit : COMMAND_TIMEOUT;
    if (!down && (args[0] === "XREAD" || args[0] === "XREADGROUP")) {
      const at = args.indexOf("BLOCK");
      if (at > 0) wait += Number(args[at + 1]) || 0;
    }
    return new Promise((resolve, reject) => {
      const entry: Unanswered = {
        until: Date.now() + wait,
        answered: false,
        reject,
        command: args[0],
        wait,
        down,
      };
      this.#sent.push(entry);
      send(args as string[]).then(
        (value) => {
          this.#answered(entry);
          resolve(value);
        },
        (error) => {
          this.#answered(entry);
          reject(error);
        },
      );
    });
  }

  /** Replies come in order: the list empties as they arrive, without waiting for the check. */
  #answered(entry: Unanswered): void {
    entry.answered = true;
    const sent = this.#sent;
    if (sent[this.#head] !== entry) return;
    let head = this.#head + 1;
    while (head < sent.length && sent[head].answered) head++;
    if (head === sent.length) {
      sent.length = 0;
      head = 0;
    }
    this.#head = head;
  }

  /** Checks four times a second (without keeping the process alive), until {@link stop}. */
  async start(): Promise<void> {
    const timers = await import("node:timers");
    this.#timer = timers.setInterval(() => this.#check(), 250);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #check(): void {
    const sent = this.#sent;
    const now = Date.now();
    for (let i = this.#head; i < sent.length; i++) {
      const entry = sent[i];
      if (entry.answered || now <= entry.until) continue;
      // Its reply, if it ever comes, settles nothing.
      entry.answered = true;
      entry.reject(this.timeoutError(
        entry.down
          ? `${entry.command}: the connection to Redis was down and did not come back within ` +
            `${entry.wait} ms`
          : `${entry.command}: no reply from Redis within ${entry.wait} ms`,
      ));
    }
    let head = this.#head;
    while (head < sent.length && sent[head].answered) head++;
    if (head === sent.length) {
      sent.length = 0;
      head = 0;
    } else if (head > 1024) {
      sent.splice(0, head);
      head = 0;
    }
    this.#head = head;
  }
}

/** Arguments of at least this many characters go to node-redis as bytes (see below). */
const LONG_ARG = 4096;

/**
 * Returns a function that gives a command's arguments of {@link LONG_ARG} characters or more as
 * UTF-8 bytes (Buffers; the same bytes Redis receives). node-redis joins a command's string
 * arguments into one string before it writes it, so an `HSET` of a batch of long arguments or a
 * FINISH of long results was a string of megabytes, for which V8 maps fresh memory and which the
 * socket encodes into fresh memory again; it writes Buffers as they are. (100 KB arguments, a
 * Deno producer: 1,291-1,459 -> 918-980 µs of CPU and 78 -> 54 page faults per task; Node:
 * 1,714-2,122 -> 1,371-1,763 µs; docs/performance.md.)
 */
function longArgsAsBytes(
  Buffer: { from(text: string): Uint8Array },
): (args: string[]) => string[] {
  return (args) => {
    let out: string[] | undefined;
    for (let i = 0; i < args.length; i++) {
      const arg = args[i];
      if (typeof arg === "string" && arg.length >= LONG_ARG) {
        out ??= args.slice();
        out[i] = Buffer.from(arg) as unknown as string;
      }
    }
    return out ?? args;
  };
}

/**
 * Opens a connection. While Redis is unreachable node-redis keeps reconnecting (see
 * {@link reconnectDelay}); this rejects with `ConnectionError` if the first connection is not up
 * within `deadline` ms.
 */
export async function connect(
  options: ConnectionOptions,
  name?: string,
  deadline = 30_000,
): Promise<RedisConnection> {
  const client = await createRedisClient(options, name, { timeout: 0 });
  const { TimeoutError, RESP_TYPES } = await loadRedis();
  // While the connection is down, a command waits at most `deadline` (the caller's
  // reconnectDeadline) for it: its caller gives up then anyway.
  const watch = new CommandWatch(
    (message) => new TimeoutError(message),
    Math.min(COMMAND_TIMEOUT, deadline),
  );
  let downSince: number | undefined;
  let lastError: unknown;
  /** While connecting: ends the wait at once for an error that waiting cannot mend. */
  let refused: ((error: unknown) => void) | undefined;
  // Errors are reported through command rejections; node-redis reconnects by itself.
  client.on("error", (error: unknown) => {
    lastError = error;
    downSince ??= Date.now();
    if (refused && isSettingError(error)) refused(error);
  });
  client.on("ready", () => (downSince = undefined));
  const close = () => {
    watch.stop();
    try {
      client.destroy();
    } catch {
      // already closed
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => {
          reject(
            new ConnectionError(
              `cannot connect to ${describeConnection(options)} within ${deadline} ms`,
              { cause: lastError },
            ),
          );
        }, deadline);
        refused = (error) =>
          reject(
            new ConnectionError(
              `cannot connect to ${describeConnection(options)}: ${
                (error as Error).message
              } (a setting to fix, so not tried again)`,
              { cause: error },
            ),
          );
      }),
    ]);
  } catch (error) {
    close();
    throw error;
  } finally {
    clearTimeout(timer);
    refused = undefined;
  }
  await watch.start();
  const { Buffer } = await import("node:buffer");
  const encode = longArgsAsBytes(Buffer);
  const send = (args: string[]) => client.sendCommand(encode(args)) as Promise<unknown>;
  const asBytes = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };
  const sendBytes = (args: string[]) =>
    client.sendCommand(encode(args), asBytes) as Promise<unknown>;
  return {
    sendCommand: (args, options) =>
      watch.run(args, options?.bytes ? sendBytes : send, downSince !== undefined),
    close,
    get downSince() {
      return downSince;
    },
  };
}

/**
 * True for a connection error that trying again cannot mend: wrong credentials, a user without
 * the rights to connect, a database number the server does not have.
 */
function isSettingError(error: unknown): boolean {
  const message = String((error as Error)?.message ?? "");
  return /^(WRONGPASS|NOAUTH|NOPERM)\b|^ERR (DB index is out of range|invalid password)/.test(
    message,
  );
}

/**
 * Subscribes to a pub/sub channel on a connection of its own (node-redis subscribes again after a
 * reconnect). Returns a function that closes the connection.
 */
export async function subscribe(
  options: ConnectionOptions,
  channel: string,
  onMessage: (message: string) => void,
  name?: string,
  deadline = 30_000,
): Promise<() => void> {
  const client = await createRedisClient(options, name);
  client.on("error", () => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new ConnectionError(`cannot subscribe within ${deadline} ms`)),
          deadline,
        );
      }),
    ]);
    await client.subscribe(channel, (message: string) => onMessage(message));
  } catch (error) {
    client.destroy();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return () => {
    try {
      client.destroy();
    } catch {
      // already closed
    }
  };
}

/** Error replies of a Redis that is not ready yet but soon will be (loading its data, ...). */
const TRANSIENT_REPLY = /^(LOADING|BUSY|TRYAGAIN|MASTERDOWN|CLUSTERDOWN)\b/;

/**
 * True for errors worth retrying: of the connection (lost, timed out, closed), or a transient
 * error reply such as `LOADING` (Redis restarted and is reading its data back). False for other
 * error replies.
 */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (!(redisModule && error instanceof redisModule.ErrorReply)) return true;
  return TRANSIENT_REPLY.test(error.message);
}

/**
 * Runs `command`, retrying it with backoff and jitter while it fails for connection reasons,
 * until `deadline` ms have passed since the connection went down (or since the first failure);
 * then rejects with `ConnectionError`. Only for idempotent commands: a command that failed with a
 * lost connection may have run. Redis error replies are rethrown at once.
 */
export async function withReconnect<T>(
  connection: RedisConnection,
  command: () => Promise<T>,
  deadline: number,
  what: string,
  closed?: () => boolean,
): Promise<T> {
  let since: number | undefined;
  for (let retries = 0;; retries++) {
    try {
      return await command();
    } catch (error) {
      if (!isConnectionError(error) || closed?.()) throw error;
      since ??= Math.min(Date.now(), connection.downSince ?? Infinity);
      const waited = Date.now() - since;
      if (waited >= deadline) {
        throw new ConnectionError(
          `${what}: Redis unreachable for ${waited} ms (reconnectDeadline ${deadline} ms): ${
            (error as Error).message
          }`,
          { cause: error },
        );
      }
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(reconnectDelay(retries), deadline - waited))
      );
    }
  }
}

/** A human-readable description of where a connection goes, with the password masked. */
export function describeConnection(options: ConnectionOptions): string {
  if (typeof options === "string") {
    const url = new URL(options);
    if (url.password) url.password = "***";
    return url.href;
  }
  return `redis://${options.host ?? "127.0.0.1"}:${options.port ?? 6379}/${options.db ?? 0}`;
}

/**
 * The field/value (or member/score) pairs of a reply, whatever its shape: a flat array (RESP2:
 * `HGETALL`, `ZRANGE ... WITHSCORES`), an array of pairs (RESP3 `WITHSCORES`), a `Map` or an
 * object (RESP3 maps). Values are strings.
 */
export function replyPairs(reply: unknown): [string, string][] {
  if (reply === null || reply === undefined) return [];
  if (Array.isArray(reply)) {
    if (reply.length > 0 && Array.isArray(reply[0])) {
      return reply.map((pair) => [String(pair[0]), String(pair[1])]);
    }
    return Array.from(
      { length: Math.floor(reply.length / 2) },
      (_, i) => [String(reply[2 * i]), String(reply[2 * i + 1])],
    );
  }
  if (reply instanceof Map) return [...reply].map(([k, v]) => [String(k), String(v)]);
  return Object.entries(reply as Record<string, unknown>).map(([k, v]) => [k, String(v)]);
}
