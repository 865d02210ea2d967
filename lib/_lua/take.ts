import { Script } from "../_script.ts";
import { LUA_COMMON } from "./_common.ts";
import { PROTOCOL_VERSION } from "../_keys.ts";

/**
 * A busy worker reads and claims new tasks in one call: a non-blocking `XREADGROUP` of up to
 * `count` new entries across its streams (in the order given: highest priority first), then what
 * START does for them — status "0" becomes "1" with a heartbeat (Redis time); a task with any
 * other status (cancelled while queued, already final) is acknowledged and deleted without
 * running. Entries that lack a valid `id` (or `op` / `reply`) are acknowledged and deleted too.
 * One round trip instead of two (read, then START) while work is waiting; an idle worker blocks
 * in a plain `XREADGROUP` and claims what it gets with START.
 *
 * A call whose reply is lost (dropped connection) leaves its entries pending for this consumer
 * with status "1": the worker reads them back with `XREADGROUP ... <last id>` and claims them
 * again with START, which accepts a pending entry of its own with status "1".
 *
 * KEYS[1..] task streams, in the order to read them
 * ARGV[1] app prefix
 * ARGV[2] consumer group
 * ARGV[3] consumer (worker id)
 * ARGV[4] most entries to take, over all streams
 *
 * Returns one flat array: Redis' time in ms; the verdicts, one per entry in reply order (1 = run
 * it, "m" = malformed (dropped), else the status the task had, "" if none); 1 if more entries may
 * wait (the call stopped at ARGV[4] with more in the stream it was reading, or before reading every
 * stream), else 0 (every stream is drained for the group: the worker blocks next); then, per
 * stream that gave entries, the stream, the number of its entries, and per entry its id, the
 * number of its field names and values, and those — or, for an entry whose fields are exactly
 * `v 1 id <id> fn <fn> args <args>` (as SUBMIT writes them when a call sets no extra fields; `1`
 * being `PROTOCOL_VERSION`), one value `<entry id>NUL<id>NUL<fn>NUL<args>` when args has at most
 * 256 characters and fn no NUL (an entry id holds no NUL: the reader tells the forms apart by it),
 * else the entry id, 0 and then only the values of id, fn and args. (Flat, not the nested
 * `XREADGROUP` reply: Redis turns each table a script returns into a reply of its own, two per
 * entry there; and every value returned costs Redis about a thousand instructions, so names that
 * say nothing are left out.)
 */
export const TAKE: Script = new Script(
  "take",
  LUA_COMMON + `
local group, consumer = ARGV[2], ARGV[3]
local left = tonumber(ARGV[4])
local hb = heartbeat_now()
local verdicts, expire = {}, {}
local out, c = {0, verdicts, 0}, 3
local prefix = APP .. ':replies:'
local ID_PATTERN = '^[%w_.%-]+$'
-- A task id that matches ID_PATTERN, capturing its operation (op_of_task): the characters before
-- its first '.' (at least one).
local TASK_OP_PATTERN = '^([%w_%-]+)[%w_.%-]*$'
-- The longest args of an entry returned packed (Lua hashes every byte of the string it builds).
local PACK_MAX = 256
for _, stream in ipairs(KEYS) do
  if left <= 0 then
    out[3] = 1 -- streams not read may hold entries
    break
  end
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left, 'STREAMS', stream, '>')
  if r and r[1] and #r[1][2] > 0 then
    local entries = r[1][2]
    if #entries >= left and more_after(stream, entries[#entries][1]) then out[3] = 1 end
    out[c + 1] = stream
    out[c + 2] = #entries
    c = c + 2
    local by_op, ops = {}, {}
    local base = #verdicts
    -- One pass per entry: its id and fields go to the reply, its id, op and reply fields are
    -- picked up (the first of each, as get_field would); an op's checks are made once per run.
    local last_op, last_rep, last_ok = nil, nil, false
    for i, e in ipairs(entries) do
      local flat = e[2]
      local n = #flat
      out[c + 1] = e[1]
      local tid, op, rep = nil, nil, nil
      -- For a standard entry, one match both checks the task id and takes its operation.
      local tid_ok = false
      if n == 8 and flat[1] == 'v' and flat[2] == '${PROTOCOL_VERSION}' and flat[3] == 'id'
        and flat[5] == 'fn' and flat[7] == 'args' then
        tid = flat[4]
        op = string.match(tid, TASK_OP_PATTERN)
        tid_ok = op ~= nil
        local args = flat[8]
        if #args <= PACK_MAX and not string.find(flat[6], '\\0', 1, true) then
          -- The packed form: one value, "<entry id>NUL<id>NUL<fn>NUL<args>".
          out[c + 1] = e[1] .. '\\0' .. tid .. '\\0' .. flat[6] .. '\\0' .. args
          c = c + 1
        else
          -- The short form of an entry with exactly the standard fields: 0, then id, fn, args.
          out[c + 2] = 0
          out[c + 3] = tid
          out[c + 4] = flat[6]
          out[c + 5] = args
          c = c + 5
        end
      else
        out[c + 2] = n
        for j = 1, n, 2 do
          local name, value = flat[j], flat[j + 1]
          out[c + 2 + j] = name
          out[c + 3 + j] = value
          if name == 'id' then tid = tid or value
          elseif name == 'op' then op = op or value
          elseif name == 'reply' then rep = rep or value end
        end
        c = c + 2 + n
      end
      op = op or (tid and op_of_task(tid))
      -- An entry's reply stream is checked once per run of entries of one operation (and the
      -- same 'reply' field, if it has one); it is derived from the op only then.
      if op ~= last_op or rep ~= last_rep then
        last_op, last_rep = op, rep
        rep = rep or (op and reply_of_op(op))
        last_ok = op ~= nil and rep ~= nil and string.match(op, ID_PATTERN) ~= nil
          and string.sub(rep, 1, #prefix) == prefix
      end
      if last_ok and tid and (tid_ok or string.match(tid, ID_PATTERN)) then
        local l = list_in(by_op, ops, op)
        l[#l + 1] = i
        l[#l + 1] = tid
      else
        verdicts[base + i] = 'm'
        ack(stream, e[1])
      end
    end
    left = left - #entries
    for _, op in ipairs(ops) do
      local l = by_op[op]
      local tids, ids = {}, {}
      for j = 2, #l, 2 do
        tids[#tids + 1] = l[j]
        ids[#ids + 1] = entries[l[j - 1]][1]
      end
      local got, started = start_tasks(stream, op, tids, ids, hb)
      for j, v in ipairs(got) do verdicts[base + l[2 * j - 1]] = v end
      if started then expire[#expire + 1] = op end
    end
  end
end
flush(group)
expire_heartbeats(expire)
out[1] = now_ms()
return out
`,
);
