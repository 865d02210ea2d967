import { Script } from "../_script.ts";
import { LUA_COMMON } from "./_common.ts";

/**
 * A live worker looks for lost tasks in a queue, so that recovery does not depend on a client
 * being online. It scans the entries delivered longer ago than the heartbeat timeout (XPENDING
 * IDLE) — candidates only: a task is lost when its status is "1" and its heartbeat is older than
 * the timeout, however long it has been running. A lost task goes back to the queue (attempt + 1,
 * after the retry backoff) when retries remain, else fails with WorkerLostError and is
 * dead-lettered. An entry delivered but never started (its worker died between reading and
 * starting it) goes back to the queue as the same attempt. Entries of finished or released tasks
 * are acknowledged and deleted. A lock makes one worker per queue do this per period.
 *
 * KEYS[1] task stream `<app>:queue:<queue>`
 * KEYS[2] lock `<app>:recovering:<queue>`
 * ARGV[1] app prefix
 * ARGV[2] consumer group
 * ARGV[3] queue name
 * ARGV[4] heartbeat timeout, ms
 * ARGV[5] lock holder (worker id)
 * ARGV[6] lock time, ms
 * ARGV[7] maximum number of entries to examine
 *
 * Returns -1 when another worker holds the lock, else {examined, requeued, failed}.
 */
export const RECOVER: Script = new Script(
  "recover",
  LUA_COMMON + `
local stream, group, queue = KEYS[1], ARGV[2], ARGV[3]
local timeout = tonumber(ARGV[4])
if not redis.call('SET', KEYS[2], ARGV[5], 'NX', 'PX', ARGV[6]) then return -1 end
local now = now_ms()
local pending = redis.call('XPENDING', stream, group, 'IDLE', timeout, '-', '+', ARGV[7])
local requeued, failed = 0, 0
for _, p in ipairs(pending) do
  local id = p[1]
  local flat = entry_fields(stream, id)
  local op, tid, reply
  if flat then
    op, tid, reply = get_field(flat, 'op'), get_field(flat, 'id'), get_field(flat, 'reply')
  end
  if not (op and tid and reply) then
    ack(stream, id)
  else
    local s = redis.call('HGET', k_status(op), tid)
    if s == '1' then
      local hb = tonumber(redis.call('HGET', k_heartbeat(op), tid) or '0') or 0
      local age = now - hb * 1000
      if age > timeout then
        local verdict = lost(queue, stream, id, flat, op, tid, reply,
          'no heartbeat from worker ' .. p[2] .. ' for ' .. math.floor(age) .. ' ms (task ' ..
          tid .. ')')
        if verdict == 'r' then requeued = requeued + 1 else failed = failed + 1 end
      end
    elseif s == '0' then
      ack(stream, id)
      redis.call('XADD', stream, '*', unpack(flat))
      requeued = requeued + 1
    else
      ack(stream, id)
    end
  end
end
flush(group)
return {#pending, requeued, failed}
`,
);

/**
 * A client checks the tasks it saw start: one whose status is still "1" and whose heartbeat is
 * older than the timeout is lost, and is handled exactly as {@link RECOVER} does (another attempt
 * or WorkerLostError), provided its entry is still pending (else its worker finished or recovery
 * already acted).
 *
 * ARGV[1] app prefix
 * ARGV[2] consumer group
 * ARGV[3] heartbeat timeout, ms
 * ARGV[4..] quadruples: queue name, entry id, operation id, task id
 *
 * Returns the number of tasks found lost.
 */
export const RECOVER_TASKS: Script = new Script(
  "recover_tasks",
  LUA_COMMON + `
local group = ARGV[2]
local timeout = tonumber(ARGV[3])
local now = now_ms()
local found = 0
for i = 4, #ARGV, 4 do
  local queue, id, op, tid = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HGET', k_status(op), tid) == '1' then
    local hb = tonumber(redis.call('HGET', k_heartbeat(op), tid) or '0') or 0
    local age = now - hb * 1000
    if age > timeout then
      local stream = k_queue(queue)
      local flat = entry_fields(stream, id)
      local p = redis.call('XPENDING', stream, group, id, id, 1)
      if flat and #p == 1 and get_field(flat, 'id') == tid then
        lost(queue, stream, id, flat, op, tid, get_field(flat, 'reply'),
          'no heartbeat from worker ' .. p[1][2] .. ' for ' .. math.floor(age) .. ' ms (task ' ..
          tid .. ')')
        found = found + 1
      end
    end
  end
end
flush(group)
return found
`,
);
