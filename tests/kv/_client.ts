/**
 * A process of the key-value store's concurrency tests: connects on its own, prints "ready",
 * waits for a start token (`BLPOP` on the kv key "go"), then runs `count` operations on one key,
 * `window` at a time, and prints what each returned as one JSON line.
 *
 *   deno run -A tests/kv/_client.ts <redis-url> <app> <id> <append|incr|incr-float|pop> <key> <count> <window>
 *
 * For `pop`, `count` is ignored: it pops until the array is empty.
 *
 * @module
 */

import { getArgs } from "../../lib/_runtime.ts";
import { connect } from "../../lib/_redis.ts";
import { Keys } from "../../lib/_keys.ts";
import { KeyValueStore } from "../../lib/kv.ts";

const [url, app, id, mode, key, count, window] = getArgs();
const connection = await connect(url, `kv-test-${id}`);
const kv = new KeyValueStore(connection, app);
const blocking = await connect(url, `kv-test-${id}-start`);
console.log("ready");
await blocking.sendCommand(["BLPOP", new Keys(app).kv("go"), "30"]);
blocking.close();

const results: unknown[] = [];
let next = 0;
let done = false;
async function lane(): Promise<void> {
  while (!done) {
    switch (mode) {
      case "append": {
        if (next >= Number(count)) return;
        const i = next++;
        results.push([i, await kv.append(key, `${id}:${i}`)]);
        break;
      }
      case "incr":
      case "incr-float": {
        if (next >= Number(count)) return;
        next++;
        results.push(await kv.incr(key, mode === "incr" ? 1 : 0.25));
        break;
      }
      case "pop": {
        const value = await kv.pop(key);
        if (value === undefined) done = true;
        else results.push(value);
        break;
      }
      default:
        throw new Error(`unknown mode ${mode}`);
    }
  }
}
await Promise.all(Array.from({ length: Number(window) }, lane));
console.log(JSON.stringify(results));
connection.close();
