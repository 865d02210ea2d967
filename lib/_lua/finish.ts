import { Script } from "../_script.ts";
import { LUA_COMMON } from "./_common.ts";

/**
 * A worker records the outcomes of a batch of tasks it ran from one stream. Fencing: an outcome
 * is written only while the task's entry is still pending (recovery did not hand the task to
 * another attempt; an entry is only ever pending for the worker that read it) and its status is
 * still "1" (not cancelled, released or finished): the first final write wins. Entries still
 * pending are acknowledged and deleted either way.
 *
 * KEYS[1] task stream `<app>:queue:<queue>`
 * ARGV[1] app prefix
 * ARGV[2] consumer group
 * ARGV[3] queue name
 * ARGV[4..] octuples: entry id, operation id, task id, reply stream, action, a, b, timings
 *   (timings: "<wait ms>,<run ms>,<started at ms>" or "", passed on to the client in field "m")
 *   action "c" completed: a = the encoded value (results hash and reply payload); the notice to
 *              a client that reads them (`compact_replies`) is compact when the value is short:
 *              `c <task id>NUL<timings>NUL<value>`
 *   action "e" failed: a = "<ErrorName>: <message>", b = reply payload JSON {name, message, ...}
 *   action "d" failed for good after a retryable failure: as "e", and the task is dead-lettered
 *              (reason "timeout" for a TaskTimeoutError payload, "interrupted" for
 *              WorkerInterrupted, else "error")
 *   action "r" failed with retries left: back to the queue as attempt + 1 after the backoff
 *              delay; a = the error line, b = the payload (sent with the "requeued" notice)
 *   action "l" its executor was lost: another attempt if retries remain, else WorkerLostError
 *              with message a
 *   action "q" give back a task claimed but never run (a prefetched task of a stopping worker):
 *              back to the queue at once as the same attempt
 *   action "x" discard the outcome (the task was cancelled or superseded): acknowledge only
 *
 * Final outcomes are passed on to whoever watches the task (attached clients, dependent tasks,
 * dedupe keys; see `on_final` in `_common.ts`).
 *
 * Returns one result per task: 1 recorded, 2 requeued, 0 not recorded (fenced or not running).
 */
export const FINISH: Script = new Script(
  "finish",
  LUA_COMMON + `
local stream, group, queue = KEYS[1], ARGV[2], ARGV[3]
local n = (#ARGV - 3) / 8
local results = {}
local by_op, ops = {}, {}
local acks = list_in(ACKS, ACK_KEYS, stream)
-- The lease check and the acknowledgement in one: XACK of an entry says 1 only while it is
-- pending, and an entry is only ever pending for the worker that read it (nothing hands an entry
-- to another consumer: recovery requeues a new entry and acknowledges the old one). One XACK per
-- entry costs Redis less than XPENDING's four values per entry.
ACKED[stream] = true
for i = 1, n do
  local b = 3 + (i - 1) * 8
  results[i] = 0
  if redis.call('XACK', stream, group, ARGV[b + 1]) == 1 then
    acks[#acks + 1] = ARGV[b + 1]
    if ARGV[b + 5] ~= 'x' then
      local l = list_in(by_op, ops, ARGV[b + 2])
      l[#l + 1] = i
    end
  end
end
for _, op in ipairs(ops) do
  local idx = by_op[op]
  local tids = {}
  for j, i in ipairs(idx) do tids[j] = ARGV[3 + (i - 1) * 8 + 3] end
  local ks = k_status(op)
  local st = redis.call('HMGET', ks, unpack(tids))
  local ls, lr = hset_list(ks), hset_list(k_results(op))
  local last_reply, nl, ns, compact = nil, nil, nil, false
  for j, i in ipairs(idx) do
    local b = 3 + (i - 1) * 8
    local m = ARGV[b + 8]
    local id, tid, reply, action = ARGV[b + 1], tids[j], ARGV[b + 4], ARGV[b + 5]
    if st[j] == '1' then
      if action == 'c' then
        -- The hot path: appended straight to the batched writes.
        local value = ARGV[b + 6]
        ls[#ls + 1] = tid
        ls[#ls + 1] = '2'
        lr[#lr + 1] = tid
        lr[#lr + 1] = value
        if reply ~= last_reply then
          last_reply = reply
          nl, ns = notice_list(reply)
          compact = compact_replies(reply)
        end
        local c = #nl
        ns[#ns + 1] = c + 1
        if compact and #value <= COMPACT_NOTICE_MAX then
          -- The compact notice: two values instead of eight.
          nl[c + 1] = 'c'
          nl[c + 2] = tid .. '\\0' .. m .. '\\0' .. value
        else
          nl[c + 1] = 't'
          nl[c + 2] = tid
          nl[c + 3] = 's'
          nl[c + 4] = '2'
          nl[c + 5] = 'p'
          nl[c + 6] = value
          if m ~= '' then
            nl[c + 7] = 'm'
            nl[c + 8] = m
          end
        end
        on_final(op, tid, '2', value, value)
        results[i] = 1
      elseif action == 'e' or action == 'd' then
        hset(k_status(op), tid, '3')
        hset(k_results(op), tid, ARGV[b + 6])
        if m ~= '' then notice(reply, 't', tid, 's', '3', 'p', ARGV[b + 7], 'm', m)
        else notice(reply, 't', tid, 's', '3', 'p', ARGV[b + 7]) end
        on_final(op, tid, '3', ARGV[b + 6], ARGV[b + 7])
        if action == 'd' then
          local flat = entry_fields(stream, id) or {}
          local ok, info = pcall(cjson.decode, ARGV[b + 7])
          local reason = 'error'
          if ok and type(info) == 'table' then
            if info.name == 'TaskTimeoutError' then reason = 'timeout' end
            if info.name == 'WorkerInterrupted' then reason = 'interrupted' end
          end
          dead_letter({'queue', queue, 'error', ARGV[b + 6], 'attempts',
            get_field(flat, 'attempt') or '1', 'reason', reason}, flat, op, tid)
        end
        results[i] = 1
      elseif action == 'r' or action == 'q' then
        -- 'r': the next attempt, after the backoff; 'q': the same attempt again, at once.
        local flat = entry_fields(stream, id)
        if flat then
          local attempt = tonumber(get_field(flat, 'attempt') or '1') or 1
          local delay = 0
          if action == 'r' then
            delay = backoff(flat, attempt)
            attempt = attempt + 1
          end
          requeue(queue, flat, attempt, delay)
          hset(k_status(op), tid, '0')
          notice(reply, 't', tid, 's', '0', 'a', tostring(attempt), 'p', ARGV[b + 7])
          results[i] = 2
        end
      elseif action == 'l' then
        local flat = entry_fields(stream, id)
        if flat then
          if lost(queue, stream, id, flat, op, tid, reply, ARGV[b + 6]) == 'r' then
            results[i] = 2
          else
            results[i] = 1
          end
        end
      end
    end
  end
end
flush(group)
return results
`,
);
