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
 * On its first page it also cleans one page of the watch records (`<app>:watch`, resuming at the
 * cursor in `<app>:watch-cursor`): a record of a task whose status is gone (released, expired)
 * is removed, its attached clients are told (TaskNotFoundError), its dedupe key is deleted, and
 * the children waiting for it fail with DependencyError (their parent can never finish).
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
 * ARGV[8] where to start in the pending list: "-" at the start, "(<entry id>" after an entry (the
 *         worker goes on from where the previous call stopped until it reaches the end)
 * ARGV[9] "1" when continuing a scan (the lock was taken by this worker's first call)
 *
 * Returns -1 when another worker holds the lock, else {examined, requeued, failed, last entry id
 * examined ("" when none)}.
 */
export const RECOVER: Script = new Script(
  "recover",
  LUA_COMMON + `
local stream, group, queue = KEYS[1], ARGV[2], ARGV[3]
local timeout = tonumber(ARGV[4])
if ARGV[9] ~= '1' and not redis.call('SET', KEYS[2], ARGV[5], 'NX', 'PX', ARGV[6]) then
  return -1
end
local now = now_ms()
if ARGV[9] ~= '1' then
  local cursor = redis.call('GET', k_watch_cursor()) or '0'
  local page = redis.call('HSCAN', k_watch(), cursor, 'COUNT', 100)
  redis.call('SET', k_watch_cursor(), page[1])
  for i = 1, #page[2], 2 do
    local ref = page[2][i]
    local wop, wtid = split_ref(ref)
    if redis.call('HEXISTS', k_status(wop), wtid) == 0 then
      local ok, info = pcall(cjson.decode, page[2][i + 1])
      redis.call('HDEL', k_watch(), ref)
      if not ok or type(info) ~= 'table' then info = {} end
      local gone = 'no task ' .. wtid .. ' (released or expired)'
      for _, r in ipairs(info.r or {}) do
        notice(r, 't', wtid, 's', '3', 'p',
          cjson.encode({name = 'TaskNotFoundError', message = gone, attempts = 0}))
      end
      if info.d and redis.call('GET', k_dedupe(info.d)) == ref then
        redis.call('DEL', k_dedupe(info.d))
      end
      for _, child in ipairs(take_children(wop, wtid, info)) do
        release_child(child, ref, wtid, '3', 'TaskNotFoundError: ' .. gone)
      end
    end
  end
end
local pending = redis.call('XPENDING', stream, group, 'IDLE', timeout, ARGV[8], '+', ARGV[7])
local requeued, failed = 0, 0
-- One candidate; an error (a key of the wrong type, written by something else) skips it alone.
local function recover_one(p)
  local id = p[1]
  local flat = entry_fields(stream, id)
  local op, tid, reply
  if flat then
    tid = get_field(flat, 'id')
    if tid then op, reply = entry_op(flat), entry_reply(flat) end
  end
  if not (op and tid and reply) then
    ack(stream, id)
  else
    local s = redis.call('HGET', k_status(op), tid)
    if s == '1' then
      local got, beat = pcall(redis.call, 'HGET', k_heartbeat(op), tid)
      local hb = tonumber(got and beat or '0') or 0
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
for _, p in ipairs(pending) do guarded('recovering entry ' .. p[1], recover_one, p) end
flush(group)
local last = ''
if #pending > 0 then last = pending[#pending][1] end
return {#pending, requeued, failed, last}
`,
);

/**
 * A client checks the tasks it saw start: one whose status is still "1" and whose heartbeat is
 * older than the timeout is lost, and is handled exactly as {@link RECOVER} does (another attempt
 * or WorkerLostError), provided its entry is still pending (else its worker finished or recovery
 * already acted). A lost task whose entry was deleted from the stream (by hand: XDEL, XTRIM) cannot
 * run again and fails with WorkerLostError.
 *
 * ARGV[1] app prefix
 * ARGV[2] consumer group
 * ARGV[3] heartbeat timeout, ms
 * ARGV[4] reply stream of the client
 * ARGV[5..] quadruples: queue name (with its priority level: "q" or "q:p5"), entry id, operation
 *           id, task id
 *
 * Returns the ids of the tasks that no longer exist (their status field is gone: released,
 * expired, deleted by hand); their futures cannot settle otherwise.
 */
export const RECOVER_TASKS: Script = new Script(
  "recover_tasks",
  LUA_COMMON + `
local group = ARGV[2]
local timeout = tonumber(ARGV[3])
local now = now_ms()
local gone = {}
for i = 5, #ARGV, 4 do
  local where, id, op, tid = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local status = redis.call('HGET', k_status(op), tid)
  if not status then gone[#gone + 1] = tid end
  if status == '1' then
    local hb = tonumber(redis.call('HGET', k_heartbeat(op), tid) or '0') or 0
    local age = now - hb * 1000
    if age > timeout then
      local stream = k_queue(where)
      local queue = string.match(where, '^[^:]+')
      local flat = entry_fields(stream, id)
      -- A stream or group that is gone (pcall) holds no lease either.
      local p = redis.pcall('XPENDING', stream, group, id, id, 1)
      local pending = type(p) == 'table' and not p.err and #p == 1
      local message = ' for ' .. math.floor(age) .. ' ms (task ' .. tid .. ')'
      if flat and pending and get_field(flat, 'id') == tid then
        lost(queue, stream, id, flat, op, tid, entry_reply(flat),
          'no heartbeat from worker ' .. p[1][2] .. message)
      elseif not flat then
        fail(op, tid, ARGV[4], queue, {}, 'WorkerLostError',
          'no heartbeat' .. message .. ', and its stream entry ' .. id .. ' was deleted', 1, 'lost')
      end
    end
  end
end
flush(group)
return gone
`,
);
