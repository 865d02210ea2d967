import { Script } from "../_script.ts";
import { LUA_COMMON } from "./_common.ts";

/**
 * A worker claims a batch of tasks it read from one stream. A task may run only if its entry is
 * still pending for this worker (its lease: recovery has not given it to someone else) and its
 * status is "0" — or "1" when this very call is being retried after a dropped connection (at most
 * one entry of a task is ever pending, so a pending entry of ours with status "1" was started by
 * us). Started tasks get status "1", a heartbeat (Redis time) and a `started` notice to their
 * client; any other task is acknowledged and deleted without running; an entry that is not ours
 * any more is left alone.
 *
 * KEYS[1] task stream `<app>:queue:<queue>`
 * ARGV[1] app prefix
 * ARGV[2] consumer group
 * ARGV[3] consumer (worker id)
 * ARGV[4] smallest entry id of the batch
 * ARGV[5] largest entry id of the batch
 * ARGV[6..] quintuples: entry id, operation id, task id, reply stream, attempt
 *
 * Returns Redis' time in ms (when the tasks started, for their timings), then one verdict per
 * task: 1 = run it, "x" = not ours, else the status it had ("" if none).
 */
export const START: Script = new Script(
  "start",
  LUA_COMMON + `
local stream, group = KEYS[1], ARGV[2]
local n = (#ARGV - 5) / 5
local owned = owned_set(stream, group, ARGV[3], ARGV[4], ARGV[5], n + 16)
local hb = heartbeat_now()
local verdicts = {}
local now = now_ms()
local by_op, ops = {}, {}
for i = 1, n do
  local b = 5 + (i - 1) * 5
  if owned[ARGV[b + 1]] then
    local op = ARGV[b + 2]
    if not by_op[op] then
      by_op[op] = {}
      ops[#ops + 1] = op
    end
    local l = by_op[op]
    l[#l + 1] = i
  else
    verdicts[i] = 'x'
  end
end
local started_ops = {}
for _, op in ipairs(ops) do
  local idx = by_op[op]
  local tids = {}
  for j, i in ipairs(idx) do tids[j] = ARGV[5 + (i - 1) * 5 + 3] end
  local st = redis.call('HMGET', k_status(op), unpack(tids))
  for j, i in ipairs(idx) do
    local b = 5 + (i - 1) * 5
    local s = st[j]
    if s == '0' or s == '1' then
      verdicts[i] = 1
      hset(k_status(op), tids[j], '1')
      hset(k_heartbeat(op), tids[j], hb)
      notice(ARGV[b + 4], 't', tids[j], 's', '1', 'e', ARGV[b + 1], 'a', ARGV[b + 5])
      started_ops[op] = true
    else
      verdicts[i] = s or ''
      ack(stream, ARGV[b + 1])
    end
  end
end
flush(group)
table.insert(verdicts, 1, now)
-- The heartbeat hash expires with the operation's other keys (orphan expiry).
for op in pairs(started_ops) do
  local at = redis.call('PEXPIRETIME', k_status(op))
  if at > 0 then redis.call('PEXPIREAT', k_heartbeat(op), at) end
end
return verdicts
`,
);
