/**
 * A client process for the DAG test: submits a slow parent and a child that depends on it,
 * prints "submitted", then waits to be killed.
 *
 *   deno run -A tests/composition/_dag_client.ts <redis-url> <app> <trace file>
 *
 * @module
 */

import process from "node:process";
import { StreamFuturePool } from "../../mod.ts";
import { TASKS } from "./_setup.ts";

const [url, app, file] = process.argv.slice(2);
const pool = new StreamFuturePool({ url, app, tasks: TASKS });
const parent = pool.submit("later", [800, "late world"]);
pool.submit("hello", [parent, file]);
await pool.ready();
await new Promise((resolve) => setTimeout(resolve, 100));
console.log("submitted");
setInterval(() => {}, 1 << 30);
