/**
 * A client process for the fault tests that must kill a client: it submits one task, prints its
 * ids as a JSON line on stdout, and waits (forever) for the test to kill it.
 *
 *   deno run -A tests/faults/_client.ts <redis-url> <app> <json: {fn, args, options, pool}>
 *
 * @module
 */

import process from "node:process";
import { StreamFuturePool } from "../../mod.ts";
import { BEAT, FAULT_TASKS, LOST_AFTER } from "./_setup.ts";

const [url, app, json] = process.argv.slice(2);
const spec = JSON.parse(json) as {
  fn: string;
  args: unknown[];
  options?: Record<string, unknown>;
  pool?: Record<string, unknown>;
};
const pool = new StreamFuturePool({
  url,
  app,
  tasks: FAULT_TASKS,
  heartbeatInterval: BEAT,
  heartbeatTimeout: LOST_AFTER,
  ...spec.pool,
});
const future = pool.submit(spec.fn, spec.args, spec.options);
await pool.ready();
await new Promise((resolve) => setTimeout(resolve, 50));
console.log(JSON.stringify({ taskId: future.id, operationId: future.operationId }));
future.then(
  (value) => console.log(JSON.stringify({ value })),
  (error) => console.log(JSON.stringify({ error: String(error) })),
);
setInterval(() => {}, 1 << 30);
