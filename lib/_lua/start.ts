import { Script } from "../_script.ts";
import { LUA_COMMON } from "./_common.ts";

/**
 * A worker claims a batch of tasks it read from one stream. A task may run only if its entry is
 * still pending for this worker (its lease: recovery has not given it to someone else) and its
 * status is "0" — or "1" when this very call is being retried after a dropped connection (at most
 * one entry of a task is ever pending, so a pending entry of ours with status "1" was started by
 * us). Started tasks get status "1" and a heartbeat (Redis time); any other task is acknowledged
 * and deleted without running; an entry that is not ours any more is left alone. (The `started`
 * notice to the client is sent by the worker itself, only for tasks still running a little
 * later: a task that finishes at once costs its client one notice, not two.)
 *
 * KEYS[1] task stream `<app>:queue:<queue>`
 * ARGV[1] app prefix
 * ARGV[2] consumer group
 * ARGV[3] consumer (worker id)
 * ARGV[4] smallest entry id of the batch
 * ARGV[5] largest entry id of the batch
 * ARGV[6..] triples: entry id, operation id, task id
 *
 * Returns Redis' time in ms (when the tasks started, for their timings), then one verdict per
 * task: 1 = run it, "x" = not ours, else the status it had ("" if none).
 */
export const START: Script = new Script(
  "start",
  LUA_COMMON + `
local stream, group = KEYS[1], ARGV[2]
local n = (#ARGV - 5) / 3
local owned = owned_set(stream, group, ARGV[3], ARGV[4], ARGV[5], n + 16)
local hb = heartbeat_now()
local verdicts = {now_ms()}
local by_op, ops = {}, {}
for i = 1, n do
  local b = 5 + (i - 1) * 3
  if owned[ARGV[b + 1]] then
    local op = ARGV[b + 2]
    local l = by_op[op]
    if not l then
      l = {}
      by_op[op] = l
      ops[#ops + 1] = op
    end
    l[#l + 1] = i
  else
    verdicts[i + 1] = 'x'
  end
end
for _, op in ipairs(ops) do
  local idx = by_op[op]
  local tids = {}
  for j, i in ipairs(idx) do tids[j] = ARGV[5 + (i - 1) * 3 + 3] end
  local ks = k_status(op)
  local st = redis.call('HMGET', ks, unpack(tids))
  local ls, lh = hset_list(ks), hset_list(k_heartbeat(op))
  local started = false
  for j, i in ipairs(idx) do
    local s = st[j]
    if s == '0' or s == '1' then
      verdicts[i + 1] = 1
      ls[#ls + 1] = tids[j]
      ls[#ls + 1] = '1'
      lh[#lh + 1] = tids[j]
      lh[#lh + 1] = hb
      started = true
    else
      verdicts[i + 1] = s or ''
      ack(stream, ARGV[5 + (i - 1) * 3 + 1])
    end
  end
  if started then idx.started = true end
end
flush(group)
-- The heartbeat hash expires with the operation's other keys (orphan expiry).
for _, op in ipairs(ops) do
  if by_op[op].started then
    local at = redis.call('PEXPIRETIME', k_status(op))
    if at > 0 then redis.call('PEXPIREAT', k_heartbeat(op), at) end
  end
end
return verdicts
`,
);
