/**
 * The far end of the benchmark's round-trip floor (scripts/bench.ts): a process blocked in
 * `XREAD` on `<prefix>:ping` that answers each entry with an `XADD` of the same `n` to
 * `<prefix>:pong`, until an entry whose `n` is `stop`. With the benchmark blocked in `XREAD` on
 * the pong stream, one round is the two wakes every design whose producer and worker processes
 * meet only through Redis pays, with no work of its own in between.
 *
 *   deno run -A scripts/_echo.ts <redis url> <key prefix>
 *
 * Says "ready" on stderr once connected (it reads the ping stream from its start, so nothing
 * written before its first read is missed); exits 0 after `stop`, 1 on an error.
 *
 * @module
 */

import { connect } from "../lib/_redis.ts";
import { parseStreamReply } from "../lib/_stream.ts";

/** How long one blocking read waits before it is renewed, ms. */
const BLOCK_MS = 1000;

async function echo(url: string, prefix: string): Promise<void> {
  const reader = await connect(url, "streamfutures-bench-echo-reader");
  const writer = await connect(url, "streamfutures-bench-echo-writer");
  try {
    console.error("ready");
    let last = "0-0";
    for (;;) {
      const reply = await reader.sendCommand([
        "XREAD",
        "COUNT",
        "1",
        "BLOCK",
        String(BLOCK_MS),
        "STREAMS",
        `${prefix}:ping`,
        last,
      ]);
      for (const entry of parseStreamReply(reply)) {
        last = entry.id;
        const n = entry.fields.n ?? "";
        if (n === "stop") return;
        await writer.sendCommand(["XADD", `${prefix}:pong`, "*", "n", n]);
      }
    }
  } finally {
    reader.close();
    writer.close();
  }
}

if (import.meta.main) {
  const [url, prefix] = Deno.args;
  if (!url || !prefix) {
    console.error("usage: deno run -A scripts/_echo.ts <redis url> <key prefix>");
    Deno.exit(2);
  }
  try {
    await echo(url, prefix);
  } catch (error) {
    console.error("echo failed:", error);
    Deno.exit(1);
  }
}
