/**
 * Prints the app of a pool created without options (for the configuration test: it comes from
 * STREAMFUTURES_APP), after a round trip through its key-value store.
 *
 * @module
 */

import { StreamFuturePool } from "../../mod.ts";

const pool = new StreamFuturePool({ requireWorkers: false });
await pool.kv.set("probe", 1);
console.log(`app=${pool.app} probe=${await pool.kv.get("probe")}`);
await pool.shutdown();
