import { Script } from "../_script.ts";

/**
 * A worker refreshes the heartbeats of the tasks it runs: only fields of tasks whose status is
 * still "1" (running) are written, so a cancelled or released task is never resurrected.
 *
 * KEYS[1..n] `<app>:<op>:status`, one per task
 * KEYS[n+1..2n] `<app>:<op>:heartbeat`, one per task, in the same order
 * ARGV[1] heartbeat: epoch seconds as a decimal string
 * ARGV[2..n+1] task ids, in the order of the keys
 *
 * Returns the number of heartbeats written.
 */
export const HEARTBEAT: Script = new Script(
  "heartbeat",
  `
local n = #ARGV - 1
local written = 0
for i = 1, n do
  if redis.call('HGET', KEYS[i], ARGV[i + 1]) == '1' then
    redis.call('HSET', KEYS[n + i], ARGV[i + 1], ARGV[1])
    written = written + 1
  end
end
return written
`,
);
