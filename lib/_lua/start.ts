import { Script } from "../_script.ts";

/**
 * A worker claims a task it read from the stream: only a task whose status is still "0" (not
 * started) may run. A task that was cancelled, released or already taken is acknowledged and
 * dropped from the stream instead.
 *
 * KEYS[1] `<app>:<op>:status`
 * KEYS[2] `<app>:<op>:heartbeat`
 * KEYS[3] reply stream of the submitting client (not created if it is gone)
 * KEYS[4] task stream
 * ARGV[1] task id
 * ARGV[2] heartbeat: epoch seconds as a decimal string
 * ARGV[3] consumer group
 * ARGV[4] stream entry id
 *
 * Returns 1 when the task may run, else the status it had ("" when it has none).
 */
export const START: Script = new Script(
  "start",
  `
local s = redis.call('HGET', KEYS[1], ARGV[1])
if s ~= '0' then
  redis.call('XACK', KEYS[4], ARGV[3], ARGV[4])
  redis.call('XDEL', KEYS[4], ARGV[4])
  return s or ''
end
redis.call('HSET', KEYS[1], ARGV[1], '1')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[3], 'NOMKSTREAM', '*', 't', ARGV[1], 's', '1')
return 1
`,
);
