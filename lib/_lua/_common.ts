import { LUA_KEYS } from "../_keys.ts";

/**
 * Lua shared by the batched scripts (START, FINISH, HEARTBEAT, RECOVER, ...): key names, Redis
 * time, entry fields, deferred batched writes, and the two ways a task that did not complete can
 * end — back to its queue for another attempt, or failed for good (and dead-lettered).
 *
 * Conventions of every script that includes it:
 * - `ARGV[1]` is the app prefix (see `LUA_KEYS` in `_keys.ts`).
 * - Reads happen first; writes go through `hset`, `ack` and `notice`, which collect them per key
 *   and are sent by `flush()` at the end, one command per key (so a batch of n tasks of one
 *   operation costs one `HSET`, one `XACK`, one `XPENDING` and one `XTRIM` (see `remove_acked`)
 *   and one `XADD` per reply stream).
 * - An entry's fields travel as a flat Lua array `{name1, value1, name2, value2, ...}`.
 */
const HELPERS: string = LUA_KEYS + `
-- Redis' time, read once per call: everything a call writes happens at one instant.
local CLOCK
local function clock()
  if not CLOCK then CLOCK = redis.call('TIME') end
  return CLOCK
end

local function now_ms()
  local t = clock()
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function heartbeat_now()
  local t = clock()
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end

local function get_field(flat, name)
  for i = 1, #flat, 2 do
    if flat[i] == name then return flat[i + 1] end
  end
  return nil
end

local function entry_op(flat)
  return get_field(flat, 'op') or op_of_task(get_field(flat, 'id') or '')
end

local function entry_reply(flat)
  return get_field(flat, 'reply') or reply_of_op(entry_op(flat) or '')
end

local function set_field(flat, name, value)
  for i = 1, #flat, 2 do
    if flat[i] == name then
      flat[i + 1] = value
      return
    end
  end
  flat[#flat + 1] = name
  flat[#flat + 1] = value
end

local function entry_fields(stream, id)
  local r = redis.call('XRANGE', stream, id, id)
  if #r == 0 then return nil end
  return r[1][2]
end

-- Whether 'stream' holds an entry after entry id 'id': a consumer group that has delivered up to
-- 'id' has more to give.
local function more_after(stream, id)
  local r = redis.call('XREAD', 'COUNT', 1, 'STREAMS', stream, id)
  return type(r) == 'table' and #r > 0
end

-- Entry ids in [min, max] that are pending for this consumer (its leases).
local function owned_set(stream, group, consumer, min, max, count)
  local owned = {}
  for _, p in ipairs(redis.call('XPENDING', stream, group, min, max, count, consumer)) do
    owned[p[1]] = true
  end
  return owned
end

local function call_chunked(command, key, prefix, list)
  local step = 4000
  if #list == 0 then return nil end
  if #list <= step then
    -- One call, no copy.
    if #prefix == 0 then return redis.call(command, key, unpack(list)) end
    if #prefix == 1 then return redis.call(command, key, prefix[1], unpack(list)) end
    if #prefix == 2 then return redis.call(command, key, prefix[1], prefix[2], unpack(list)) end
  end
  for i = 1, #list, step do
    local args = {}
    for _, v in ipairs(prefix) do args[#args + 1] = v end
    for j = i, math.min(i + step - 1, #list) do args[#args + 1] = list[j] end
    redis.call(command, key, unpack(args))
  end
end

-- Writes the field, value pairs 'list' to hash 'key'. A hash of up to hash-max-listpack-entries
-- (512) fields is a listpack, which finds a field by scanning it, and Redis 7.0 turns it into a
-- hash table only after a whole HSET: one HSET of k new fields into a listpack of n costs about
-- k × (n + k / 2) field comparisons (500 new fields: 15 million instructions, 30,000 per field).
-- A batch of WIDE_BATCH or more pairs makes the hash a hash table first, with a field longer
-- than hash-max-listpack-value (which converts it before anything is inserted) that it then
-- deletes; a hash table stays one. (The price: a hash of 32 to 512 fields takes more memory,
-- about as much per field as a large one.)
local WIDE_BATCH = 32
-- (':' is in no task id or task reference, so the field is never one of theirs.)
local WIDE_FIELD = 'sf:wide:${"-".repeat(248)}'
local function hset_all(key, list)
  if #list < 2 * WIDE_BATCH then return call_chunked('HSET', key, {}, list) end
  call_chunked('HSET', key, {WIDE_FIELD, ''}, list)
  redis.call('HDEL', key, WIDE_FIELD)
end
-- HSET of the field, value pairs '...' to 'key' that leaves the hash a hash table (see hset_all);
-- with no pairs, 'key' must exist (deleting a hash's last field deletes it).
local function hset_wide(key, ...)
  redis.call('HSET', key, WIDE_FIELD, '', ...)
  redis.call('HDEL', key, WIDE_FIELD)
end


-- The list filed under 'key' in 'lists', made on first use, when 'key' is appended to 'order'
-- (so that keys are handled in the order they came).
local function list_in(lists, order, key)
  local l = lists[key]
  if not l then
    l = {}
    lists[key] = l
    order[#order + 1] = key
  end
  return l
end

local HSETS, HSET_KEYS
-- Hashes that grow a few fields per call (the heartbeat hash of an operation of many tasks, read
-- by a worker that takes a few at a time): flush makes one a hash table once it reaches
-- WIDE_BATCH fields, which hset_all alone would not do for small writes.
local GROWING
-- The list of field, value pairs to write to hash 'key' (hot loops append to it directly).
local function hset_list(key)
  return list_in(HSETS, HSET_KEYS, key)
end
local function hset(key, field, value)
  local l = hset_list(key)
  l[#l + 1] = field
  l[#l + 1] = value
end

local ACKS, ACK_KEYS
-- Streams whose listed entries the script acknowledged itself already (FINISH's lease check):
-- flush only trims them.
local ACKED
local function ack(stream, id)
  local l = list_in(ACKS, ACK_KEYS, stream)
  l[#l + 1] = id
end

-- START and TAKE: starts the tasks 'tids' of operation 'op' read from 'stream' (entry ids
-- 'entry_ids') whose status is "0" — or "1", a retried call of our own — with status "1" and
-- heartbeat 'hb'; any other task is acknowledged without running. Returns the verdicts, one per
-- task (1, or the status it had, "" if none), and whether any task started.
local function start_tasks(stream, op, tids, entry_ids, hb)
  local ks = k_status(op)
  local st = redis.call('HMGET', ks, unpack(tids))
  local kh = k_heartbeat(op)
  local ls, lh = hset_list(ks), hset_list(kh)
  -- (An operation of one task, whose task id is the operation's, never grows.)
  if tids[1] ~= op then GROWING[kh] = true end
  local out, started = {}, false
  for j, tid in ipairs(tids) do
    local s = st[j]
    if s == '0' or s == '1' then
      out[j] = 1
      ls[#ls + 1] = tid
      ls[#ls + 1] = '1'
      lh[#lh + 1] = tid
      lh[#lh + 1] = hb
      started = true
    else
      out[j] = s or ''
      ack(stream, entry_ids[j])
    end
  end
  return out, started
end

-- The heartbeat hashes of operations whose tasks started expire with their other keys (orphan
-- expiry: the status hash's absolute expiry, when it has one).
local function expire_heartbeats(ops)
  for _, op in ipairs(ops) do
    local at = redis.call('PEXPIRETIME', k_status(op))
    if at > 0 then redis.call('PEXPIREAT', k_heartbeat(op), at) end
  end
end

local NOTICES, NOTICE_KEYS, NOTICE_STARTS
-- The notices to send to reply stream 'reply': all their fields in one flat list, and the list of
-- the index in it where each notice starts (hot loops append to both directly).
local function notice_list(reply)
  return list_in(NOTICES, NOTICE_KEYS, reply), list_in(NOTICE_STARTS, {}, reply)
end
local function notice(reply, ...)
  local l, starts = notice_list(reply)
  local c = #l
  starts[#starts + 1] = c + 1
  local fields = {...}
  for i = 1, #fields do l[c + i] = fields[i] end
end

-- Runs f(...), and logs an error it raises instead of letting it end the script: a key of the
-- wrong type or a record that does not decode (written by something else) must not undo what
-- the script did for other tasks — Redis does not roll a script back when it fails half-way, and
-- the writes before it (say FINISH's acknowledgements) would stay without the rest.
local function guarded(what, f, ...)
  local ok, err = pcall(f, ...)
  if not ok then redis.log(redis.LOG_WARNING, 'streamfutures: ' .. what .. ': ' .. tostring(err)) end
  return ok
end

-- One XADD per client, or several when there are many notices: never splitting a notice.
local function send_notices(reply, flat, starts)
  local n = #flat
  if n == 0 then return end
  local from = 1
  if n > 4000 then
    for k = 1, #starts do
      if (starts[k + 1] or n + 1) - from > 4000 and starts[k] > from then
        redis.call('XADD', reply, 'NOMKSTREAM', '*', unpack(flat, from, starts[k] - 1))
        from = starts[k]
      end
    end
  end
  redis.call('XADD', reply, 'NOMKSTREAM', '*', unpack(flat, from, n))
end

-- The delay before attempt n + 1 after attempt n failed: retryDelay * 2^(n - 1), at most a day.
local function backoff(flat, attempt)
  local base = tonumber(get_field(flat, 'retryDelay') or '0') or 0
  if base <= 0 then return 0 end
  return math.min(base * 2 ^ (attempt - 1), 86400000)
end

-- Puts a task entry in its queue's delayed set until Redis time 'due' (ms): the member is the
-- task's ref "<op>/<taskId>", and the entry waits in the operation's hash k_delayed_entries, as
-- JSON [queue, fields], which expires with the operation's other keys (once they have an expiry;
-- the submit scripts set it with theirs). CANCEL takes a cancelled task out of both (undelay).
local function delay(queue, flat, due)
  local op, tid = entry_op(flat), get_field(flat, 'id')
  local kd = k_delayed_entries(op)
  redis.call('ZADD', k_delayed(queue), due, op .. '/' .. tid)
  redis.call('HSET', kd, tid, cjson.encode({queue, flat}))
  local at = redis.call('PEXPIRETIME', k_status(op))
  if at > 0 then redis.call('PEXPIREAT', kd, at) end
end

-- Takes task 'tid' of operation 'op' out of its queue's delayed set, if it waits there.
local function undelay(op, tid)
  local kd = k_delayed_entries(op)
  local record = redis.call('HGET', kd, tid)
  if not record then return end
  redis.call('ZREM', k_delayed(cjson.decode(record)[1]), op .. '/' .. tid)
  redis.call('HDEL', kd, tid)
end

-- Adds a task entry to its queue's stream (its priority level's), or, when 'due' (Redis time,
-- ms) is in the future, to the queue's delayed set; workers are told when it is due.
local function enqueue(queue, flat, due)
  if due and due > now_ms() then
    delay(queue, flat, due)
    redis.call('PUBLISH', k_control(), 'w ' .. queue .. ' ' .. string.format('%d', due))
  else
    redis.call('XADD', k_stream(queue, get_field(flat, 'pri')), '*', unpack(flat))
  end
end

-- Puts a task back in its queue as attempt 'attempt', at once or after delay_ms. (Its priority
-- level, from an entry this library may not have written, is checked: one that is not -9..9 is
-- dropped, and a level workers do not know yet is registered, so that they read its stream.)
local function requeue(queue, flat, attempt, delay_ms)
  set_field(flat, 'attempt', tostring(attempt))
  local pri = get_field(flat, 'pri')
  if pri and pri ~= '' and pri ~= '0' then
    local n = tonumber(pri)
    if not string.match(pri, '^%-?%d$') or not n or n < -9 or n > 9 then
      set_field(flat, 'pri', '0')
    elseif redis.call('SADD', k_priorities(queue), pri) == 1 then
      redis.call('PUBLISH', k_control(), 'p ' .. queue .. ' ' .. pri)
    end
  end
  local due = nil
  if delay_ms > 0 then due = now_ms() + delay_ms end
  enqueue(queue, flat, due)
end

-- Final outcomes (status 2, 3 or 4) of this call, for the tasks someone watches (see k_watch):
-- attached clients are notified, dependent tasks released or failed, dedupe keys expired.
local FINALS, WATCHING
local function on_final(op, tid, status, stored, payload)
  if WATCHING == nil then WATCHING = redis.call('EXISTS', k_watch()) == 1 end
  if WATCHING then FINALS[#FINALS + 1] = {op, tid, status, stored, payload} end
end

local function split_ref(ref)
  local slash = string.find(ref, '/', 1, true)
  return string.sub(ref, 1, slash - 1), string.sub(ref, slash + 1)
end

-- The most bytes of a failed task's results line that a DependencyError names (see
-- dependency_error); a longer line is cut there.
local DEPENDENCY_LINE_MAX = 2048

-- 'line' cut to its first 'max' bytes (never inside a UTF-8 sequence), with a marker that says
-- how long it was; unchanged when not longer.
local function cut_line(line, max)
  if #line <= max then return line end
  local cut = max
  while cut > 0 do
    local b = string.byte(line, cut + 1)
    if b < 128 or b >= 192 then break end
    cut = cut - 1
  end
  return string.sub(line, 1, cut) .. '… (truncated: ' .. #line .. ' bytes in all)'
end

-- The DependencyError of a child whose parent 'parent_tid' ended with status 'status' ("3" or
-- "4") and results line 'stored': its message "parent task <parent id> failed: <line>" ("was
-- cancelled" for status "4"), and <line>, the parent's error as the child names it. That is the
-- parent's own line (cut to DEPENDENCY_LINE_MAX bytes), unless the parent itself failed with a
-- DependencyError: then it is "DependencyError: root task <root id> failed: <root line>" (or
-- "was cancelled"), where the root is the task whose failure or cancellation started the cascade
-- and <root line> its results line, as its own direct children name it. So a message never
-- nests the messages of the levels above it: its size does not grow with the depth of the graph.
local function dependency_error(parent_tid, status, stored)
  local what = 'failed'
  if status == '4' then what = 'was cancelled' end
  local line
  if status == '3' and string.sub(stored, 1, 29) == 'DependencyError: parent task ' then
    -- The parent's own message: "parent task <grandparent id> failed: <its line>".
    local gid, gwhat, gline = string.match(stored, '^DependencyError: parent task (%S+) (failed): (.*)$')
    if not gid then
      gid, gwhat, gline = string.match(stored, '^DependencyError: parent task (%S+) (was cancelled): (.*)$')
    end
    if gid then
      local rid, rwhat, rline = string.match(gline, '^DependencyError: root task (%S+) (failed): (.*)$')
      if not rid then
        rid, rwhat, rline = string.match(gline, '^DependencyError: root task (%S+) (was cancelled): (.*)$')
      end
      if not rid then rid, rwhat, rline = gid, gwhat, gline end
      -- The root line was cut already, marker included (the extra room keeps it as it is); the
      -- bound matters for a line written otherwise (an earlier version nested every level).
      line = 'DependencyError: root task ' .. rid .. ' ' .. rwhat .. ': ' ..
        cut_line(rline, DEPENDENCY_LINE_MAX + 64)
    end
  end
  if not line then line = cut_line(stored, DEPENDENCY_LINE_MAX) end
  return 'parent task ' .. parent_tid .. ' ' .. what .. ': ' .. line, line
end

-- A parent of the waiting task 'child' reached a final status.
local function release_child(child, parent_ref, parent_tid, status, stored)
  local cop, ctid = split_ref(child)
  local dk = k_deps(cop, ctid)
  local record = redis.call('HMGET', dk, 'flat', 'q', 'ope', 'due')
  if not record[1] then return end
  local flat = cjson.decode(record[1])
  if status ~= '2' and record[3] ~= 'pass' then
    redis.call('DEL', dk)
    if redis.call('HGET', k_status(cop), ctid) ~= '0' then return end
    local message, line = dependency_error(parent_tid, status, stored)
    local payload = cjson.encode({name = 'DependencyError', message = message, attempts = 0,
      parent = {id = parent_tid, status = status, error = line}})
    hset(k_status(cop), ctid, '3')
    hset(k_results(cop), ctid, 'DependencyError: ' .. message)
    notice(entry_reply(flat), 't', ctid, 's', '3', 'p', payload)
    on_final(cop, ctid, '3', 'DependencyError: ' .. message, payload)
    return
  end
  redis.call('HSET', dk, 'p:' .. parent_ref, cjson.encode({status, stored}))
  if redis.call('HINCRBY', dk, 'left', -1) > 0 then return end
  local all = redis.call('HGETALL', dk)
  redis.call('DEL', dk)
  if redis.call('HGET', k_status(cop), ctid) ~= '0' then return end
  local deps = {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'p:' then deps[string.sub(all[i], 3)] = cjson.decode(all[i + 1]) end
  end
  set_field(flat, 'deps', cjson.encode(deps))
  enqueue(record[2], flat, tonumber(record[4] or ''))
end

-- The children waiting for task 'tid' of 'op' (those of an older version's record 'c' list
-- first), taken out of Redis: its final outcome or its clean-up releases them.
local function take_children(op, tid, info)
  local out = {}
  for _, c in ipairs(info.c or {}) do out[#out + 1] = c end
  local key = k_children(op, tid)
  for _, c in ipairs(redis.call('ZRANGE', key, 0, -1)) do out[#out + 1] = c end
  redis.call('DEL', key)
  return out
end

-- Whether the watch record 'info' of task 'ref' holds nothing any more (it can be deleted).
local function watch_empty(ref, info)
  if #(info.r or {}) > 0 or #(info.c or {}) > 0 or info.d or info.k then return false end
  local op, tid = split_ref(ref)
  return redis.call('EXISTS', k_children(op, tid)) == 0
end

-- Follows up the final outcome f = {op, tid, status, stored, payload} of a watched task.
local function process_final(f)
  local ref = f[1] .. '/' .. f[2]
  local w = redis.call('HGET', k_watch(), ref)
  if w then
    redis.call('HDEL', k_watch(), ref)
    local ok, info = pcall(cjson.decode, w)
    if not ok or type(info) ~= 'table' then info = {} end -- (not written by this library)
    for _, reply in ipairs(info.r or {}) do
      if f[5] then notice(reply, 't', f[2], 's', f[3], 'p', f[5])
      else notice(reply, 't', f[2], 's', f[3]) end
    end
    if info.d then
      -- Identical calls share a finished task for its dedupe time to live; a cancelled one, never.
      local key = k_dedupe(info.d)
      if redis.call('GET', key) == ref then
        local ttl = tonumber(info.dt or '0') or 0
        if ttl > 0 and f[3] ~= '4' then redis.call('PEXPIRE', key, ttl)
        else redis.call('DEL', key) end
      end
    end
    if info.k then
      -- A scheduled task's keys: kept for the schedule's result time to live from now on.
      redis.call('PEXPIRE', k_status(f[1]), info.k)
      redis.call('PEXPIRE', k_results(f[1]), info.k)
      redis.call('PEXPIRE', k_delayed_entries(f[1]), info.k)
    end
    for _, child in ipairs(take_children(f[1], f[2], info)) do
      release_child(child, ref, f[2], f[3], f[4])
    end
  end
end

local function process_finals()
  local i = 1
  while i <= #FINALS do
    local f = FINALS[i]
    i = i + 1
    guarded('following up the outcome of task ' .. f[2], process_final, f)
  end
end

-- Adds to the watch record of task 'ref': a reply stream ('r'), a dependent task ('c'), a
-- dedupe key with its time to live ('d', 'dt'), or how long a scheduled task's keys are kept once
-- it is final ('k', ms).
local function watch(ref, kind, value, ttl)
  if WATCHING == nil then WATCHING = redis.call('EXISTS', k_watch()) == 1 end
  if kind == 'c' then
    -- Children go in a sorted set of their own (in the order they came, once each): a parent
    -- shared by thousands of children costs each one O(log n), not a rewrite of the record.
    local op, tid = split_ref(ref)
    local key = k_children(op, tid)
    redis.call('ZADD', key, 'NX', redis.call('ZCARD', key), value)
    if WATCHING then
      redis.call('HSETNX', k_watch(), ref, '{}')
    else
      hset_wide(k_watch(), ref, '{}')
      WATCHING = true
    end
    return
  end
  local info = {}
  local w = redis.call('HGET', k_watch(), ref)
  if w then info = cjson.decode(w) end
  if kind == 'd' then
    info.d = value
    info.dt = ttl
  elseif kind == 'k' then
    info.k = value
  else
    local list = info[kind] or {}
    for _, v in ipairs(list) do if v == value then return end end
    list[#list + 1] = value
    info[kind] = list
  end
  if WATCHING then
    redis.call('HSET', k_watch(), ref, cjson.encode(info))
  else
    -- A new watch hash is made a hash table at once (see hset_all): every final outcome looks
    -- its task up in it, which a listpack of up to 512 records would do by scanning them.
    hset_wide(k_watch(), ref, cjson.encode(info))
    WATCHING = true
  end
end

-- The id just after stream entry id 'id' ("<ms>-<seq>").
local function id_after(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end

-- Removes the acknowledged entries 'ids' from 'stream'. XDEL scans a stream node from its start
-- for each id; XTRIM MINID drops whole nodes at once. Every entry older than the group's oldest
-- pending one was delivered (in order) and acknowledged, so:
-- - nothing pending: everything the group delivered goes, in one exact trim;
-- - the oldest pending entry was delivered recently (RETAIN_MS): whole nodes older than it go,
--   and the rest wait for a later call (at most RETAIN_MS of acknowledged entries stay);
-- - else (a long task holds the trim point back): the same, and the entries go one by one.
local RETAIN_MS = 2000
local function remove_acked(stream, group, ids)
  if #ids == 0 then return end
  local oldest = redis.call('XPENDING', stream, group, '-', '+', 1)[1]
  if not oldest then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      if get_field(g, 'name') == group then
        redis.call('XTRIM', stream, 'MINID', id_after(get_field(g, 'last-delivered-id')))
      end
    end
    return
  end
  redis.call('XTRIM', stream, 'MINID', '~', oldest[1])
  if oldest[3] >= RETAIN_MS then call_chunked('XDEL', stream, {}, ids) end
end

-- Sends the collected writes: hash fields, then acknowledgements (XACK, then remove_acked), then
-- one reply entry per client holding all its notices (each notice starts with its 't' field, or
-- is a compact 'c' one). The final outcomes are followed up first (watchers, dependents), which
-- may add writes of their own.
local function write_hset(key, list)
  if GROWING[key] and #list > 0 and #list < 2 * WIDE_BATCH then
    local added = redis.call('HSET', key, unpack(list))
    local n = redis.call('HLEN', key)
    if n >= WIDE_BATCH and n - added < WIDE_BATCH then hset_wide(key) end
  else
    hset_all(key, list)
  end
end

-- (Each write guarded: a key of the wrong type spoils its own writes, not the rest.)
local function flush(group)
  process_finals()
  for _, key in ipairs(HSET_KEYS) do guarded('writing ' .. key, write_hset, key, HSETS[key]) end
  for _, stream in ipairs(ACK_KEYS) do
    if not ACKED[stream] then call_chunked('XACK', stream, {group}, ACKS[stream]) end
    guarded('trimming ' .. stream, remove_acked, stream, group, ACKS[stream])
  end
  for _, reply in ipairs(NOTICE_KEYS) do
    guarded('notifying ' .. reply, send_notices, reply, NOTICES[reply], NOTICE_STARTS[reply])
  end
end

-- Adds a dead-letter entry: 'fields', then the task's entry 'flat', whose arguments, if they were
-- stored beside it (ARGS_ASIDE), are put back in: they go when the task's operation does.
local function dead_letter(fields, flat, op, tid)
  if get_field(flat, 'args') == ARGS_ASIDE then
    local ok, args = pcall(redis.call, 'HGET', k_args(op), tid)
    set_field(flat, 'args', ok and args or ARGS_ASIDE)
  end
  for _, v in ipairs(flat) do fields[#fields + 1] = v end
  guarded('dead-lettering task ' .. tid, function()
    redis.call('XADD', k_dead(), 'MAXLEN', '~', '10000', '*', unpack(fields))
  end)
end

-- Records a final failure written by the library itself (not by the task): status 3, the results
-- line, a reply notice; with a dead-letter reason, also an entry in the dead-letter stream.
local function fail(op, tid, reply, queue, flat, name, message, attempt, dead_reason)
  local line = name .. ': ' .. message
  local payload = cjson.encode({name = name, message = message, attempts = attempt})
  hset(k_status(op), tid, '3')
  hset(k_results(op), tid, line)
  notice(reply, 't', tid, 's', '3', 'p', payload)
  on_final(op, tid, '3', line, payload)
  if dead_reason then
    dead_letter({'queue', queue, 'error', line, 'attempts', tostring(attempt), 'reason',
      dead_reason}, flat, op, tid)
  end
end

-- A running task whose worker is gone: another attempt when retries remain, else WorkerLostError.
-- Returns 'r' (requeued) or 'f' (failed).
local function lost(queue, stream, id, flat, op, tid, reply, message)
  local attempt = tonumber(get_field(flat, 'attempt') or '1') or 1
  local retries = tonumber(get_field(flat, 'retries') or '0') or 0
  ack(stream, id)
  if attempt <= retries then
    requeue(queue, flat, attempt + 1, backoff(flat, attempt))
    hset(k_status(op), tid, '0')
    notice(reply, 't', tid, 's', '0', 'a', tostring(attempt + 1))
    return 'r'
  end
  fail(op, tid, reply, queue, flat, 'WorkerLostError', message, attempt, 'lost')
  return 'f'
end

-- The start of every call: its keys and arguments, empty collections of deferred writes, and no
-- time read yet (a script run as a Redis function keeps these locals from one call to the next).
local function begin(keys, args)
  KEYS, ARGV, APP = keys, args, args[1]
  HSETS, HSET_KEYS, GROWING, ACKS, ACK_KEYS, ACKED = {}, {}, {}, {}, {}, {}
  NOTICES, NOTICE_KEYS, NOTICE_STARTS, FINALS, WATCHING, CLOCK = {}, {}, {}, {}, nil, nil
end
`;

/**
 * {@link LUA_COMMON} as the start of a Redis function library (see `_script.ts`): the same
 * helpers, made once when the library loads; each function calls `begin(keys, args)` first.
 */
export const LUA_COMMON_LIBRARY: string = `
local KEYS, ARGV
` + HELPERS;

/** The shared Lua, followed by a script's body run with EVALSHA. */
export const LUA_COMMON: string = `
-- Locals, not globals: the hot loops index ARGV once or more per task.
local KEYS, ARGV = KEYS, ARGV
` + HELPERS + `begin(KEYS, ARGV)
`;
