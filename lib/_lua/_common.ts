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
 *   operation costs one `HSET`, one `XACK`, one `XDEL` and one `XADD` per reply stream).
 * - An entry's fields travel as a flat Lua array `{name1, value1, name2, value2, ...}`.
 */
export const LUA_COMMON: string = LUA_KEYS + `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function heartbeat_now()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end

local function get_field(flat, name)
  for i = 1, #flat, 2 do
    if flat[i] == name then return flat[i + 1] end
  end
  return nil
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
  for i = 1, #list, step do
    local args = {}
    for _, v in ipairs(prefix) do args[#args + 1] = v end
    for j = i, math.min(i + step - 1, #list) do args[#args + 1] = list[j] end
    redis.call(command, key, unpack(args))
  end
end

local HSETS, HSET_KEYS = {}, {}
local function hset(key, field, value)
  local l = HSETS[key]
  if not l then
    l = {}
    HSETS[key] = l
    HSET_KEYS[#HSET_KEYS + 1] = key
  end
  l[#l + 1] = field
  l[#l + 1] = value
end

local ACKS, ACK_KEYS = {}, {}
local function ack(stream, id)
  local l = ACKS[stream]
  if not l then
    l = {}
    ACKS[stream] = l
    ACK_KEYS[#ACK_KEYS + 1] = stream
  end
  l[#l + 1] = id
end

local NOTICES, NOTICE_KEYS = {}, {}
local function notice(reply, ...)
  local l = NOTICES[reply]
  if not l then
    l = {}
    NOTICES[reply] = l
    NOTICE_KEYS[#NOTICE_KEYS + 1] = reply
  end
  for _, v in ipairs({...}) do l[#l + 1] = v end
end

-- Sends the collected writes: hash fields, then acknowledgements (XACK + XDEL), then one reply
-- entry per client holding all its notices (each notice starts with its 't' field).
local function flush(group)
  for _, key in ipairs(HSET_KEYS) do call_chunked('HSET', key, {}, HSETS[key]) end
  for _, stream in ipairs(ACK_KEYS) do
    call_chunked('XACK', stream, {group}, ACKS[stream])
    call_chunked('XDEL', stream, {}, ACKS[stream])
  end
  for _, reply in ipairs(NOTICE_KEYS) do
    call_chunked('XADD', reply, {'NOMKSTREAM', '*'}, NOTICES[reply])
  end
end

-- The delay before attempt n + 1 after attempt n failed: retryDelay * 2^(n - 1), at most a day.
local function backoff(flat, attempt)
  local base = tonumber(get_field(flat, 'retryDelay') or '0') or 0
  if base <= 0 then return 0 end
  return math.min(base * 2 ^ (attempt - 1), 86400000)
end

-- Puts a task back in its queue as attempt 'attempt', at once or after delay_ms (then it waits in
-- the delayed set and workers are told when it is due).
local function requeue(queue, flat, attempt, delay_ms)
  set_field(flat, 'attempt', tostring(attempt))
  if delay_ms > 0 then
    local due = now_ms() + delay_ms
    redis.call('ZADD', k_delayed(queue), due, cjson.encode(flat))
    redis.call('PUBLISH', k_control(), 'w ' .. queue .. ' ' .. string.format('%d', due))
  else
    redis.call('XADD', k_queue(queue), '*', unpack(flat))
  end
end

-- Records a final failure written by the library itself (not by the task): status 3, the results
-- line, a reply notice; with a dead-letter reason, also an entry in the dead-letter stream.
local function fail(op, tid, reply, queue, flat, name, message, attempt, dead_reason)
  local line = name .. ': ' .. message
  hset(k_status(op), tid, '3')
  hset(k_results(op), tid, line)
  notice(reply, 't', tid, 's', '3', 'p',
    cjson.encode({name = name, message = message, attempts = attempt}))
  if dead_reason then
    local fields = {'queue', queue, 'error', line, 'attempts', tostring(attempt), 'reason',
      dead_reason}
    for _, v in ipairs(flat) do fields[#fields + 1] = v end
    redis.call('XADD', k_dead(), 'MAXLEN', '~', '10000', '*', unpack(fields))
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
`;
