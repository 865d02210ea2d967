/**
 * A TCP proxy in front of a test Redis that can lose or hold back a reply on purpose: once armed
 * with a marker, the first request that contains it is passed on to Redis — which runs it — and
 * either the client's side of that connection is closed at once, so the client never sees the
 * reply, or what Redis sends on that connection is held back for a while. It can also count the
 * requests that contain a marker (a script's SHA1 marks its EVALSHA calls).
 *
 * @module
 */

import { connect, createServer, type Server, type Socket } from "node:net";
import { Buffer } from "node:buffer";

/** A running proxy. */
export interface LossyProxy {
  /** `redis://127.0.0.1:<port>` of the proxy. */
  readonly url: string;
  /** Loses the reply of the next request that contains `marker`; resolves once it did. */
  loseReplyTo(marker: string): Promise<void>;
  /**
   * Holds back for `ms` what Redis sends on the connection of the next request that contains
   * `marker` (its reply and what follows); resolves once that request went to Redis.
   */
  delayReplyTo(marker: string, ms: number): Promise<void>;
  /** Counts from now on the times `marker` is sent to Redis; returns a reader of the count. */
  count(marker: string): () => number;
  /** Closes the proxy and every connection through it. */
  close(): Promise<void>;
}

/** Starts a proxy to `127.0.0.1:<port>`. */
export async function startLossyProxy(port: number): Promise<LossyProxy> {
  const sockets = new Set<Socket>();
  let armed: { marker: Buffer; delay: number | undefined; done: () => void } | undefined;
  const counters: { marker: Buffer; n: number }[] = [];
  const server: Server = createServer((client) => {
    const upstream = connect(port, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    let held: Buffer[] | undefined;
    // The end of the last request chunk, so that a marker split between two chunks is counted.
    let tail = Buffer.alloc(0);
    client.on("data", (chunk: Buffer) => {
      if (counters.length > 0) {
        const text = Buffer.concat([tail, chunk]);
        for (const counter of counters) {
          for (
            let i = text.indexOf(counter.marker);
            i >= 0;
            i = text.indexOf(counter.marker, i + 1)
          ) {
            if (i + counter.marker.length > tail.length) counter.n++;
          }
        }
        const keep = Math.max(...counters.map((c) => c.marker.length)) - 1;
        tail = text.subarray(Math.max(0, text.length - keep));
      }
      if (armed && chunk.includes(armed.marker)) {
        const { delay, done } = armed;
        armed = undefined;
        if (delay === undefined) {
          upstream.write(chunk);
          // Redis still reads and runs what it got before it sees the end of the connection.
          client.destroy();
          upstream.end();
        } else {
          held = [];
          upstream.write(chunk);
          setTimeout(() => {
            for (const part of held ?? []) if (!client.destroyed) client.write(part);
            held = undefined;
          }, delay);
        }
        done();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (held) held.push(chunk);
      else if (!client.destroyed) client.write(chunk);
    });
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", () => upstream.end());
    upstream.on("close", closeBoth);
    client.on("error", closeBoth);
    upstream.on("error", closeBoth);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port: own } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${own}`,
    loseReplyTo: (marker) =>
      new Promise<void>((resolve) =>
        armed = { marker: Buffer.from(marker), delay: undefined, done: resolve }
      ),
    delayReplyTo: (marker, ms) =>
      new Promise<void>((resolve) =>
        armed = { marker: Buffer.from(marker), delay: ms, done: resolve }
      ),
    count: (marker) => {
      const counter = { marker: Buffer.from(marker), n: 0 };
      counters.push(counter);
      return () => counter.n;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
