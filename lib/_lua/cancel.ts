import { Script } from "../_script.ts";
import { LUA_KEYS } from "../_keys.ts";

/**
 * Cancels a task that has not completed. A task not started ("0") is cancelled and will never
 * run; a running one ("1") is cancelled too, and its worker is told at once on the control
 * channel to abort it (workers also see status "4" at their next heartbeat). A finished task is
 * left alone. The cancellation is final: a result the worker produces later is discarded.
 *
 * KEYS[1] `<app>:<op>:status`
 * KEYS[2] `<app>:<op>:results`
 * KEYS[3] reply stream of the task's client (not created if it is gone)
 * ARGV[1] app prefix
 * ARGV[2] task id
 * ARGV[3] value for the results hash, e.g. "CancelledError: cancelled by the client"
 * ARGV[4] operation id
 *
 * Returns 1 when the task is now cancelled (or already was), else its status ("" if none).
 */
export const CANCEL: Script = new Script(
  "cancel",
  LUA_KEYS + `
local s = redis.call('HGET', KEYS[1], ARGV[2])
if s == '4' then return 1 end
if s ~= '0' and s ~= '1' then return s or '' end
redis.call('HSET', KEYS[1], ARGV[2], '4')
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('XADD', KEYS[3], 'NOMKSTREAM', '*', 't', ARGV[2], 's', '4')
if s == '1' then redis.call('PUBLISH', k_control(), 'c ' .. ARGV[4] .. ' ' .. ARGV[2]) end
return 1
`,
);
