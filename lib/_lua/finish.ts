import { Script } from "../_script.ts";

/**
 * A worker records the outcome of a task it ran and pushes it to the client. The write happens
 * only while the task is still running (status "1"): a task that was cancelled or released
 * meanwhile keeps its state. The stream entry is acknowledged and deleted either way.
 *
 * KEYS[1] `<app>:<op>:status`
 * KEYS[2] `<app>:<op>:results`
 * KEYS[3] reply stream of the submitting client (not created if it is gone)
 * KEYS[4] task stream
 * ARGV[1] task id
 * ARGV[2] final status: "2" complete or "3" error
 * ARGV[3] value for the results hash: the result's JSON, or "<ErrorName>: <message>"
 * ARGV[4] reply payload: the result's JSON, or a JSON {name, message, stack}
 * ARGV[5] consumer group
 * ARGV[6] stream entry id
 *
 * Returns 1 when the outcome was recorded, 0 when the task was no longer running.
 */
export const FINISH: Script = new Script(
  "finish",
  `
redis.call('XACK', KEYS[4], ARGV[5], ARGV[6])
redis.call('XDEL', KEYS[4], ARGV[6])
if redis.call('HGET', KEYS[1], ARGV[1]) ~= '1' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[3], 'NOMKSTREAM', '*', 't', ARGV[1], 's', ARGV[2], 'p', ARGV[4])
return 1
`,
);
