import { Script } from "../_script.ts";
import { LUA_COMMON } from "./_common.ts";

/**
 * Moves the entries of a queue's delayed set that are due (score <= Redis time) to their stream
 * (the queue's, or its priority level's), oldest first, in one atomic step: however many workers
 * run it at once, each entry is moved once. A member is a task ref "<op>/<taskId>" whose entry is
 * in `<app>:<op>:delayed` (see `delay` in `_common.ts`); one whose entry is gone (its operation
 * was released or expired) is dropped; a member that is a JSON array is an entry written by an
 * earlier version, moved as it is.
 *
 * KEYS[1] delayed set `<app>:delayed:<queue>`
 * ARGV[1] app prefix
 * ARGV[2] queue name
 * ARGV[3] the most entries to move in this call
 *
 * Returns {moved, due time of the next entry in ms or -1 when the set is empty, Redis time in ms}.
 */
export const PROMOTE: Script = new Script(
  "promote",
  LUA_COMMON + `
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
-- One due member; an error (its queue's stream of the wrong type, say) leaves it to the next call
-- and does not hold up the others. A member or record this library did not write is dropped.
local function promote_one(member)
  local flat, kd, tid = nil, nil, nil
  if string.sub(member, 1, 1) == '[' then
    -- Written by an earlier version: the entry itself.
    local ok, v = pcall(cjson.decode, member)
    if ok and type(v) == 'table' then flat = v end
  elseif string.find(member, '/', 1, true) then
    local op
    op, tid = split_ref(member)
    kd = k_delayed_entries(op)
    local record = redis.call('HGET', kd, tid)
    -- (No record: the operation's keys were released or expired; the task is dropped.)
    if record then
      local ok, v = pcall(cjson.decode, record)
      if ok and type(v) == 'table' and type(v[2]) == 'table' then flat = v[2] end
    end
  end
  if flat then redis.call('XADD', k_stream(ARGV[2], get_field(flat, 'pri')), '*', unpack(flat)) end
  if kd then redis.call('HDEL', kd, tid) end
  redis.call('ZREM', KEYS[1], member)
end
for _, member in ipairs(due) do guarded('promoting ' .. member, promote_one, member) end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local nxt = -1
if #head == 2 then nxt = tonumber(head[2]) end
return {#due, nxt, now}
`,
);
