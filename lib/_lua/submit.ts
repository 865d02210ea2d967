import { Script } from "../_script.ts";
import { LUA_COMMON } from "./_common.ts";

/**
 * The first part of both submit scripts: the liveness check, the idempotence check, the due
 * time, and the batch's common entry fields. Defines `first` (index of the first per-task
 * argument), `extra`, `due`, `queue`, `op`, `reply`.
 */
const PREAMBLE = `
local op, reply, queue = ARGV[4], ARGV[5], ARGV[7]
local k = tonumber(ARGV[9])
local first = 10 + 2 * k
-- The liveness check (after the idempotence check: a retried call that was written is not refused).
local function live()
  return ARGV[2] ~= '1' or redis.call('ZCOUNT', KEYS[1], now_ms() - tonumber(ARGV[3]), '+inf') > 0
end
local extra = {}
local priority = nil
for i = 10, first - 1, 2 do
  extra[#extra + 1] = ARGV[i]
  extra[#extra + 1] = ARGV[i + 1]
  if ARGV[i] == 'pri' then priority = ARGV[i + 1] end
end
local due = nil
local spec = ARGV[8]
if string.sub(spec, 1, 1) == 'd' then due = now_ms() + tonumber(string.sub(spec, 2))
elseif string.sub(spec, 1, 1) == 'a' then due = tonumber(string.sub(spec, 2)) end
local delayed = due and due > now_ms()
-- A new priority level of the queue: workers start reading its stream (after the checks).
local function announce_priority()
  if priority and redis.call('SADD', k_priorities(queue), priority) == 1 then
    redis.call('PUBLISH', k_control(), 'p ' .. queue .. ' ' .. priority)
  end
end
-- A task entry. Its operation, reply stream and attempt (1) are left out: they follow from the
-- task id (see op_of_task, reply_of_op). TAKE returns an entry of exactly these fields, in this
-- order, in a short form (take.ts): keep the two in step.
local function entry(id, fn, args)
  local flat = {'v', '1', 'id', id, 'fn', fn, 'args', args}
  for _, v in ipairs(extra) do flat[#flat + 1] = v end
  return flat
end
-- Writes a task entry: to the stream, or to the delayed set when the call's tasks are due later.
local function put(flat, stream)
  if delayed then
    delay(queue, flat, due)
  else
    redis.call('XADD', stream, '*', unpack(flat))
  end
end
-- The operation's keys expire together, at one absolute time (see the orphan TTL).
local function expire_op()
  if ARGV[6] ~= '0' then
    local at = now_ms() + tonumber(ARGV[6])
    redis.call('PEXPIREAT', KEYS[2], at)
    redis.call('PEXPIREAT', KEYS[3], at)
    if delayed then redis.call('PEXPIREAT', k_delayed_entries(op), at) end
  end
end
-- The client's reply stream, which workers write to with NOMKSTREAM, is made again when Redis
-- lost it (a restart without persistence, a flush): tasks sent from now on reach the client.
if redis.call('EXISTS', reply) == 0 then
  local made = redis.call('XADD', reply, '*', 'init', '1')
  redis.call('XDEL', reply, made)
  if ARGV[6] ~= '0' then redis.call('PEXPIRE', reply, ARGV[6]) end
end
`;

/**
 * Enqueues a batch of tasks of one operation, or nothing when no live listener serves the queue.
 * Each task's entry goes to the stream of its priority level, or to the delayed set when it is
 * due later. Idempotent: a batch whose first task already has a status was written by an earlier
 * try of the same call (a dropped connection), and is not written again.
 * KEYS[1] listener registry `<app>:listeners:<queue>`
 * KEYS[2] `<app>:<op>:status`
 * KEYS[3] `<app>:<op>:results`
 * ARGV[1] app prefix
 * ARGV[2] "1" to require a live listener, "0" to enqueue regardless
 * ARGV[3] liveness window in ms (a listener is live if its score is within it of Redis TIME)
 * ARGV[4] operation id
 * ARGV[5] reply stream of the submitting client
 * ARGV[6] time to live of the operation's keys in ms ("0": none), refreshed by the client
 * ARGV[7] queue name
 * ARGV[8] when the tasks become runnable: "" now, "d<ms>" after a delay, "a<ms>" at a Redis time
 * ARGV[9] k: the number of extra entry fields (retries, retryDelay, retryOn, timeout, pri, ...)
 * ARGV[10..9+2k] the extra fields, as name, value pairs (the same for every task of the batch)
 * ARGV[10+2k..] triples: task id, task name, encoded arguments
 *
 * Returns the number of tasks enqueued, -1 when no listener is live (nothing was written), or
 * -2 when the batch had been written already.
 */
export const SUBMIT: Script = new Script(
  "submit",
  LUA_COMMON + PREAMBLE + `
if ARGV[first] and redis.call('HEXISTS', KEYS[2], ARGV[first]) == 1 then return -2 end
if not live() then return -1 end
announce_priority()
-- The hot path: one entry table reused for every task (only id, fn and args change), the
-- stream key computed once.
local status, results = {}, {}
local n = 0
local flat = entry('', '', '')
local stream = k_stream(queue, priority)
-- Entries of the standard fields only, to the stream.
local plain = not delayed and #extra == 0
for i = first, #ARGV, 3 do
  local id = ARGV[i]
  n = n + 1
  status[2 * n - 1] = id
  status[2 * n] = '0'
  results[2 * n - 1] = id
  results[2 * n] = ''
  if plain then
    -- (The entry of entry(), written without a table.)
    redis.call('XADD', stream, '*', 'v', '1', 'id', id, 'fn', ARGV[i + 1], 'args', ARGV[i + 2])
  else
    flat[4] = id
    flat[6] = ARGV[i + 1]
    flat[8] = ARGV[i + 2]
    put(flat, stream)
  end
end
if delayed and n > 0 then
  redis.call('PUBLISH', k_control(), 'w ' .. queue .. ' ' .. string.format('%d', due))
end
if n > 0 then
  hset_all(KEYS[2], status)
  hset_all(KEYS[3], results)
  expire_op()
end
return n
`,
);

/**
 * {@link SUBMIT} for single-task operations: the `pool.submit` calls of one turn of the client's
 * event loop that share a queue and settings, each its own operation (task id = operation id),
 * written by one call instead of one call each. Idempotent like SUBMIT: a batch whose first task
 * already has a status was written by an earlier try of the same call.
 * KEYS[1] listener registry `<app>:listeners:<queue>`
 * ARGV[1..3], ARGV[5..] as SUBMIT's; ARGV[4] "" (each task is its own operation)
 * ARGV[10+2k..] triples: task id (= its operation id), task name, encoded arguments
 *
 * Returns the number of tasks enqueued, -1 when no listener is live (nothing was written), or
 * -2 when the batch had been written already.
 */
export const SUBMIT_SOLO: Script = new Script(
  "submit_solo",
  LUA_COMMON + PREAMBLE + `
if ARGV[first] and redis.call('HEXISTS', k_status(ARGV[first]), ARGV[first]) == 1 then return -2 end
if not live() then return -1 end
announce_priority()
local n = 0
local flat = entry('', '', '')
local stream = k_stream(queue, priority)
-- One absolute expiry for every operation of the call, formatted once.
local at = nil
if ARGV[6] ~= '0' then at = string.format('%d', now_ms() + tonumber(ARGV[6])) end
for i = first, #ARGV, 3 do
  local id = ARGV[i]
  n = n + 1
  flat[4] = id
  flat[6] = ARGV[i + 1]
  flat[8] = ARGV[i + 2]
  put(flat, stream)
  local ks, kr = k_status(id), k_results(id)
  redis.call('HSET', ks, id, '0')
  redis.call('HSET', kr, id, '')
  if at then
    redis.call('PEXPIREAT', ks, at)
    redis.call('PEXPIREAT', kr, at)
    if delayed then redis.call('PEXPIREAT', k_delayed_entries(id), at) end
  end
end
if delayed and n > 0 then
  redis.call('PUBLISH', k_control(), 'w ' .. queue .. ' ' .. string.format('%d', due))
end
return n
`,
);

/**
 * {@link SUBMIT} for tasks with parents (futures among their arguments) or a dedupe key.
 *
 * A task with parents waits in `<app>:deps:<op>:<taskId>` (its entry, its queue, due time,
 * onParentError, and one field `p:<parent ref>` per finished parent) and is registered as a
 * child in the watch record of each unfinished parent; the last parent to finish enqueues it
 * with a `deps` field holding every parent's status and stored result (see `release_child`). A
 * parent already failed or cancelled fails the child at once with DependencyError (unless
 * onParentError is "pass"); a parent whose status does not exist counts as failed.
 *
 * A task with a dedupe key first looks the key up: if it names a task that still exists, that
 * task is shared (this client is added to its watchers) and nothing is created.
 *
 * Idempotent per task: a task whose status already exists was written by an earlier try of the
 * same call and is skipped (reported as created).
 * KEYS[1] listener registry `<app>:listeners:<queue>`
 * KEYS[2] `<app>:<op>:status`
 * KEYS[3] `<app>:<op>:results`
 * ARGV[1] app prefix
 * ARGV[2] "1" to require a live listener, "0" to enqueue regardless
 * ARGV[3] liveness window in ms (a listener is live if its score is within it of Redis TIME)
 * ARGV[4] operation id
 * ARGV[5] reply stream of the submitting client
 * ARGV[6] time to live of the operation's keys in ms ("0": none), refreshed by the client
 * ARGV[7] queue name
 * ARGV[8] when the tasks become runnable: "" now, "d<ms>" after a delay, "a<ms>" at a Redis time
 * ARGV[9] k: the number of extra entry fields (retries, retryDelay, retryOn, timeout, pri, ...)
 * ARGV[10..9+2k] the extra fields, as name, value pairs (the same for every task of the batch)
 * ARGV[10+2k] onParentError: "fail" or "pass"
 * ARGV[11+2k] dedupe time to live after the task finished, ms ("0": forget it at once)
 * ARGV[12+2k..] quintuples: task id, task name, encoded arguments, parent refs
 *   ("<op>/<taskId>" separated by spaces, or ""), dedupe hash (or "")
 *
 * Returns -1 (no live listener) like SUBMIT, else one reply per task:
 * {"n"} created, or {"d", "<op>/<taskId>", status, stored result} shared with an existing task.
 */
export const SUBMIT_EX: Script = new Script(
  "submit_ex",
  LUA_COMMON + PREAMBLE + `
local ope, dedupe_ttl = ARGV[first], ARGV[first + 1]
local ttl = tonumber(ARGV[6])
if not (ARGV[first + 2] and redis.call('HEXISTS', KEYS[2], ARGV[first + 2]) == 1) and not live() then
  return -1
end
announce_priority()
local out = {}
local created = 0
-- A call of many tasks writes them one HSET each: into hash tables, not listpacks.
local wide = (#ARGV - first - 1) / 5 >= WIDE_BATCH
for i = first + 2, #ARGV, 5 do
  local id, parents, dedupe = ARGV[i], ARGV[i + 3], ARGV[i + 4]
  local shared = nil
  if redis.call('HEXISTS', KEYS[2], id) == 1 then
    shared = {'n'}
  elseif dedupe ~= '' then
    local ref = redis.call('GET', k_dedupe(dedupe))
    if ref then
      local sop, stid = split_ref(ref)
      local s = redis.call('HGET', k_status(sop), stid)
      if s then
        if s == '0' or s == '1' then watch(ref, 'r', reply) end
        shared = {'d', ref, s, redis.call('HGET', k_results(sop), stid) or ''}
      end
    end
  end
  if shared then
    out[#out + 1] = shared
  else
    created = created + 1
    out[#out + 1] = {'n'}
    local ref = op .. '/' .. id
    if wide then
      -- The operation's hashes become hash tables at the first write (see hset_all).
      hset_wide(KEYS[2], id, '0')
      hset_wide(KEYS[3], id, '')
      wide = false
    else
      redis.call('HSET', KEYS[2], id, '0')
      redis.call('HSET', KEYS[3], id, '')
    end
    if dedupe ~= '' then
      -- No expiry while the task is unfinished: its final outcome sets the dedupe time to live,
      -- and recovery's watch clean-up deletes the key of a task that vanished.
      redis.call('SET', k_dedupe(dedupe), ref)
      watch(ref, 'd', dedupe, dedupe_ttl)
    end
    local flat = entry(id, ARGV[i + 1], ARGV[i + 2])
    if parents == '' then
      enqueue(queue, flat, due)
    else
      local left, failed, finished, listed = 0, nil, {}, {}
      for parent in string.gmatch(parents, '%S+') do
        -- (A parent listed twice is waited for once: its final outcome releases the child once.)
        if not listed[parent] then
          listed[parent] = true
          local pop, ptid = split_ref(parent)
          local s = redis.call('HGET', k_status(pop), ptid)
          if s == '0' or s == '1' then
            left = left + 1
            watch(parent, 'c', ref)
          else
            local stored
            if s then
              stored = redis.call('HGET', k_results(pop), ptid) or ''
            else
              s = '3'
              stored = 'TaskNotFoundError: no task ' .. ptid .. ' (never submitted, released, or expired)'
            end
            finished[parent] = {s, stored}
            if s ~= '2' and not failed then failed = {parent, ptid, s, stored} end
          end
        end
      end
      if failed and ope ~= 'pass' then
        -- Undo the registrations: the child fails now.
        for parent in string.gmatch(parents, '%S+') do
          local w = redis.call('HGET', k_watch(), parent)
          if w then
            local info = cjson.decode(w)
            local pop, ptid = split_ref(parent)
            redis.call('ZREM', k_children(pop, ptid), ref)
            if info.c then
              local kept = {}
              for _, c in ipairs(info.c) do if c ~= ref then kept[#kept + 1] = c end end
              info.c = kept
            end
            if watch_empty(parent, info) then
              redis.call('HDEL', k_watch(), parent)
            else
              redis.call('HSET', k_watch(), parent, cjson.encode(info))
            end
          end
        end
        local message, line = dependency_error(failed[2], failed[3], failed[4])
        local payload = cjson.encode({name = 'DependencyError', message = message, attempts = 0,
          parent = {id = failed[2], status = failed[3], error = line}})
        redis.call('HSET', KEYS[2], id, '3')
        redis.call('HSET', KEYS[3], id, 'DependencyError: ' .. message)
        notice(reply, 't', id, 's', '3', 'p', payload)
        on_final(op, id, '3', 'DependencyError: ' .. message, payload)
      elseif left == 0 then
        set_field(flat, 'deps', cjson.encode(finished))
        enqueue(queue, flat, due)
      else
        local dk = k_deps(op, id)
        local record = {'flat', cjson.encode(flat), 'q', queue, 'ope', ope, 'left', left}
        if due then
          record[#record + 1] = 'due'
          record[#record + 1] = string.format('%d', due)
        end
        for parent, v in pairs(finished) do
          record[#record + 1] = 'p:' .. parent
          record[#record + 1] = cjson.encode(v)
        end
        redis.call('HSET', dk, unpack(record))
        if ttl > 0 then redis.call('PEXPIRE', dk, ttl) end
      end
    end
  end
end
if created > 0 then expire_op() end
flush('')
return out
`,
);
