import { Script } from "../_script.ts";
import { LUA_COMMON } from "./_common.ts";

/**
 * A worker refreshes the heartbeats of the tasks it runs and learns which of them it must stop.
 * A heartbeat (Redis time, epoch seconds) is written only for a task whose status is still "1"
 * and whose entry is still pending for this worker, so a cancelled, finished, released or
 * reassigned task is never refreshed (nor its field re-created).
 *
 * ARGV[1] app prefix
 * ARGV[2] consumer group
 * ARGV[3] consumer (worker id)
 * ARGV[4..] quadruples: task stream, entry id, operation id, task id
 *
 * Returns a flat list of pairs (task index from 1, verdict) for the tasks to stop: "c" cancelled
 * (status "4"), "g" gone (no longer running: released, expired, or finished by someone else),
 * "l" lease lost (the entry is no longer pending for this worker: it was given to another
 * attempt).
 */
export const HEARTBEAT: Script = new Script(
  "heartbeat",
  LUA_COMMON + `
local group, consumer = ARGV[2], ARGV[3]
local n = (#ARGV - 3) / 4
local hb = heartbeat_now()
local owned_by_stream = {}
local out = {}
for i = 1, n do
  local b = 3 + (i - 1) * 4
  local stream, id, op, tid = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local owned = owned_by_stream[stream]
  if not owned then
    owned = owned_set(stream, group, consumer, '-', '+', 1000000)
    owned_by_stream[stream] = owned
  end
  local s = redis.call('HGET', k_status(op), tid)
  if not owned[id] then
    out[#out + 1] = i
    out[#out + 1] = 'l'
  elseif s == '1' then
    hset(k_heartbeat(op), tid, hb)
  else
    out[#out + 1] = i
    if s == '4' then out[#out + 1] = 'c' else out[#out + 1] = 'g' end
  end
end
flush(group)
return out
`,
);
