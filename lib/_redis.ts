/**
 * Connections to Redis (node-redis v6). Everything else talks to Redis through the small
 * {@link RedisCommander} interface with raw command arrays, so replies are exactly what Redis
 * sent and no client-side transformation runs on the hot path.
 *
 * @module
 */

import { createClient } from "redis";

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

/** What this library needs of a Redis connection. */
export interface RedisCommander {
  /** Sends one command and resolves with Redis' raw reply. */
  sendCommand(args: readonly string[]): Promise<unknown>;
}

/** An open connection. */
export interface RedisConnection extends RedisCommander {
  /** Closes the connection; commands already written are dropped. */
  close(): void;
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
): Promise<BlockingReader> {
  const connection = await connect(options, name);
  const id = String(await connection.sendCommand(["CLIENT", "ID"]));
  return {
    ...connection,
    unblock: async (via) => {
      await via.sendCommand(["CLIENT", "UNBLOCK", id]);
    },
  };
}

/** Checks connection options and returns them in a structured-clonable form. */
export function checkConnectionOptions(
  options: ConnectionOptions | undefined,
  what = "url",
): ConnectionOptions {
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
    return options;
  }
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `${what} must be a redis:// URL or an object { host, port, db, username, password, tls }`,
    );
  }
  const { host, port, db, username, password, tls } = options;
  if (host !== undefined && typeof host !== "string") {
    throw new TypeError(`${what}.host must be a string`);
  }
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
    throw new RangeError(`${what}.port must be an integer from 1 to 65535, got ${port}`);
  }
  if (db !== undefined && (!Number.isInteger(db) || db < 0)) {
    throw new RangeError(`${what}.db must be a non-negative integer, got ${db}`);
  }
  return { host, port, db, username, password, tls };
}

/** Opens a connection. */
export async function connect(options: ConnectionOptions, name?: string): Promise<RedisConnection> {
  const client = typeof options === "string" ? createClient({ url: options, name }) : createClient({
    socket: {
      host: options.host ?? "127.0.0.1",
      port: options.port ?? 6379,
      tls: options.tls === true,
    } as never,
    database: options.db,
    username: options.username,
    password: options.password,
    name,
  });
  // Errors are reported through command rejections; node-redis reconnects by itself.
  client.on("error", () => {});
  await client.connect();
  return {
    sendCommand: (args) => client.sendCommand(args as string[]) as Promise<unknown>,
    close: () => {
      try {
        client.destroy();
      } catch {
        // already closed
      }
    },
  };
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
