/**
 * A full garbage collection on demand, for tests of what the pool does when futures are dropped:
 * `--expose-gc` set from inside the process (Deno and Node both honour it for a fresh context).
 *
 * @module
 */

import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Runs a full garbage collection (FinalizationRegistry callbacks follow in a later task). */
export function forceGc(): void {
  gc();
}
