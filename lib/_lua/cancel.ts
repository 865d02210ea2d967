import { Script } from "../_script.ts";
import { LUA_COMMON } from "./_common.ts";

/**
 * Cancels a task that has not completed. A task not started ("0") is cancelled and will never
 * run (a task waiting for its parents is dropped from the waiting set, a delayed one from its
 * queue's delayed set); a running one ("1") is
 * cancelled too, and its worker is told at once on the control channel to abort it (workers also
 * see status "4" at their next heartbeat). A finished task is left alone. The cancellation is
 * final: a result the worker produces later is discarded. The cancelling client, the task's own
 * client (when another one cancels) and anyone watching the task get a notice.
 *
 * KEYS[1] `<app>:<op>:status`
 * KEYS[2] `<app>:<op>:results`
 * KEYS[3] reply stream of the cancelling client (not created if it is gone)
 * KEYS[4] reply stream of the task's client, when it is another one (else the same as KEYS[3])
 * ARGV[1] app prefix
 * ARGV[2] task id
 * ARGV[3] value for the results hash, e.g. "CancelledError: cancelled by the client"
 * ARGV[4] operation id
 *
 * Returns 1 when the task is now cancelled (or already was), else its status ("" if none).
 */
export const CANCEL: Script = new Script(
  "cancel",
  LUA_COMMON + `
local tid, op = ARGV[2], ARGV[4]
local s = redis.call('HGET', KEYS[1], tid)
if s == '4' then return 1 end
if s ~= '0' and s ~= '1' then return s or '' end
if s == '0' then undelay(op, tid) end
hset(KEYS[1], tid, '4')
hset(KEYS[2], tid, ARGV[3])
notice(KEYS[3], 't', tid, 's', '4')
if KEYS[4] ~= KEYS[3] then notice(KEYS[4], 't', tid, 's', '4') end
if s == '1' then redis.call('PUBLISH', k_control(), 'c ' .. op .. ' ' .. tid) end
redis.call('DEL', k_deps(op, tid))
on_final(op, tid, '4', ARGV[3], nil)
flush('')
return 1
`,
);
