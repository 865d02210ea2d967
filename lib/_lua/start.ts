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
 * Returns Redis' time in ms (when the tasks started, for their timings); 1 if the stream holds
 * entries after the batch's largest id, else 0 (after a read that filled its count, the worker
 * claims on with TAKE only when there is more: a worker at concurrency 1 would otherwise make an
 * empty TAKE after every task); then one verdict per task: 1 = run it, "x" = not ours, else the
 * status it had ("" if none).
 */
export const START: Script = new Script(
  "start",
  LUA_COMMON + `
local stream, group = KEYS[1], ARGV[2]
local n = (#ARGV - 5) / 3
local owned = owned_set(stream, group, ARGV[3], ARGV[4], ARGV[5], n + 16)
local hb = heartbeat_now()
local verdicts = {now_ms(), more_after(stream, ARGV[5]) and 1 or 0}
local by_op, ops = {}, {}
for i = 1, n do
  local b = 5 + (i - 1) * 3
  if owned[ARGV[b + 1]] then
    local l = list_in(by_op, ops, ARGV[b + 2])
    l[#l + 1] = i
  else
    verdicts[i + 2] = 'x'
  end
end
local started_ops = {}
for _, op in ipairs(ops) do
  local idx = by_op[op]
  local tids, ids = {}, {}
  for j, i in ipairs(idx) do
    local b = 5 + (i - 1) * 3
    ids[j] = ARGV[b + 1]
    tids[j] = ARGV[b + 3]
  end
  local out, started = start_tasks(stream, op, tids, ids, hb)
  for j, i in ipairs(idx) do verdicts[i + 2] = out[j] end
  if started then started_ops[#started_ops + 1] = op end
end
flush(group)
expire_heartbeats(started_ops)
return verdicts
`,
);
