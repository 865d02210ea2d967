import { Script } from "../_script.ts";

/**
 * Cancels a task that has not started. A running or finished task is left alone.
 *
 * KEYS[1] `<app>:<op>:status`
 * KEYS[2] `<app>:<op>:results`
 * KEYS[3] reply stream of the cancelling client (not created if it is gone)
 * ARGV[1] task id
 * ARGV[2] value for the results hash, e.g. "CancelledError: cancelled by the client"
 *
 * Returns 1 when the task is now cancelled (or already was), else its status ("" if none).
 */
export const CANCEL: Script = new Script(
  "cancel",
  `
local s = redis.call('HGET', KEYS[1], ARGV[1])
if s == '4' then return 1 end
if s ~= '0' then return s or '' end
redis.call('HSET', KEYS[1], ARGV[1], '4')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[3], 'NOMKSTREAM', '*', 't', ARGV[1], 's', '4')
return 1
`,
);
