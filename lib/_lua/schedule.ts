import { Script } from "../_script.ts";
import { LUA_COMMON } from "./_common.ts";

/**
 * Creates or replaces a named cron schedule, and tells workers when it is next due.
 *
 * Re-registering never loses a due time (apps call `schedule` at every start, possibly while a
 * worker is about to fire it):
 * - the same JSON (an identical schedule): the due time is kept as it is, also when it is overdue
 *   (the worker that comes up fires it, or catches it up, or skips it as missed);
 * - the same expression and time zone (only the task or its options changed): the due time is
 *   kept too (it is the expression's next one, or an overdue one, which then runs the new task);
 * - another expression or time zone: an overdue due time is kept (it runs once, with the new
 *   schedule; the schedule then follows the new expression), else the new next due time is used.
 * A due time already fired is never due again: FIRE moves the score past it atomically, and a new
 * due time is after Redis' time in this call (else the call refuses it as stale).
 *
 * ARGV[1] app prefix
 * ARGV[2] schedule name
 * ARGV[3] the schedule as JSON (see `lib/schedule.ts`)
 * ARGV[4] its next due time after now, ms (Redis time), used when no due time is kept
 *
 * Returns {replaced, due}: replaced 1 when a schedule of that name was replaced, 0 when it is new;
 * due the schedule's due time now (ms, decimal text). Returns {-1} and changes nothing when
 * ARGV[4] would be used but is not after Redis' time any more (the caller computes it again).
 */
export const SCHEDULE: Script = new Script(
  "schedule",
  LUA_COMMON + `
local name, json = ARGV[2], ARGV[3]
local old = redis.call('HGET', k_schedules(), name)
local score = redis.call('ZSCORE', k_schedule_due(), name)
local due = nil
if old and score then
  if old == json then
    due = score
  elseif tonumber(score) <= now_ms() then
    due = score
  else
    local ok, before = pcall(cjson.decode, old)
    local spec = cjson.decode(json)
    if ok and type(before) == 'table' and type(before.cron) == 'table'
      and before.cron.expression == spec.cron.expression
      and before.cron.timezone == spec.cron.timezone then
      due = score
    end
  end
end
if not due then
  if tonumber(ARGV[4]) <= now_ms() then return {-1} end
  due = ARGV[4]
end
local replaced = 0
if old then replaced = 1 end
if old ~= json then redis.call('HSET', k_schedules(), name, json) end
if due ~= score then redis.call('ZADD', k_schedule_due(), due, name) end
redis.call('PUBLISH', k_control(), 's ' .. due)
return {replaced, due}
`,
);

/**
 * Removes a named cron schedule (a task it already enqueued is left alone).
 *
 * ARGV[1] app prefix
 * ARGV[2] schedule name
 *
 * Returns 1 when the schedule existed.
 */
export const UNSCHEDULE: Script = new Script(
  "unschedule",
  LUA_COMMON + `
redis.call('ZREM', k_schedule_due(), ARGV[2])
return redis.call('HDEL', k_schedules(), ARGV[2])
`,
);

/**
 * A worker handles one due time of a schedule, exactly once however many workers race: only if
 * the schedule is still due at the expected time and unchanged does it move the schedule to its
 * next due time and (unless the tick is skipped) enqueue the task, as operation `ARGV[5]`
 * (status and results hashes kept until the task's outcome is final, then for the schedule's
 * result time to live: a watch record `k`, see process_finals).
 *
 * A schedule replaced meanwhile is not fired with the old JSON: the worker reads it again and fires
 * the same due time (SCHEDULE keeps overdue ones) with the new one. Since this call moves the score
 * past the due time and SCHEDULE only ever sets a due time that is still ahead of Redis' time, no
 * due time is handled twice.
 *
 * ARGV[1] app prefix
 * ARGV[2] schedule name
 * ARGV[3] the due time being handled, ms (the schedule's current score)
 * ARGV[4] the schedule's JSON as read (a replaced schedule is not fired with the old one), or ""
 *         when there was none: the due time is dropped (if it and the absence are unchanged)
 * ARGV[5] operation id (= task id) of the task to enqueue
 * ARGV[6] next due time, ms, or "-1" when the schedule never fires again
 * ARGV[7] "1" to enqueue the task, "0" to skip this tick (a missed tick without catchUp)
 *
 * Returns 1 when this call handled the tick, 0 when another worker had, or the schedule changed.
 */
export const FIRE: Script = new Script(
  "fire",
  LUA_COMMON + `
local name, op = ARGV[2], ARGV[5]
local score = redis.call('ZSCORE', k_schedule_due(), name)
if not score or tonumber(score) ~= tonumber(ARGV[3]) then return 0 end
local json = redis.call('HGET', k_schedules(), name)
if not json and ARGV[4] == '' then
  -- Unscheduled (the due time left over): dropped, unless a new schedule of the name came since.
  redis.call('ZREM', k_schedule_due(), name)
  return 1
end
if json ~= ARGV[4] then return 0 end
if ARGV[6] == '-1' then
  redis.call('ZREM', k_schedule_due(), name)
else
  redis.call('ZADD', k_schedule_due(), ARGV[6], name)
  redis.call('PUBLISH', k_control(), 's ' .. ARGV[6])
end
if ARGV[7] == '1' then
  local spec = cjson.decode(json)
  local flat = {'v', '1', 'id', op, 'fn', spec.fn, 'args', spec.args, 'schedule', name}
  for _, v in ipairs(spec.extra or {}) do flat[#flat + 1] = v end
  local priority = get_field(flat, 'pri')
  if priority and redis.call('SADD', k_priorities(spec.queue), priority) == 1 then
    redis.call('PUBLISH', k_control(), 'p ' .. spec.queue .. ' ' .. priority)
  end
  redis.call('HSET', k_status(op), op, '0')
  redis.call('HSET', k_results(op), op, '')
  -- Kept while the task waits, runs and is retried; its final outcome starts the keep time.
  watch(op .. '/' .. op, 'k', tonumber(spec.keep or 86400000))
  enqueue(spec.queue, flat, nil)
end
return 1
`,
);

/**
 * A worker's look at the due schedules. It also keeps the evidence of outages: when no worker
 * looked for more than the grace (`ARGV[3]` ms), nothing was up to fire what came due meanwhile,
 * so due times up to now minus the grace count as missed (they are skipped, or caught up once);
 * a due time that is late while workers kept looking (a backlog of due schedules) is not missed.
 * The record is kept while the app has schedules, for an hour after the last look.
 *
 * ARGV[1] app prefix
 * ARGV[2] the most due schedules to return
 * ARGV[3] the grace, ms
 *
 * Returns {now, missed, {name, due, ...}, {name, due} or {}}: Redis' time, the last due time that
 * counts as missed ("0" when none), the first due schedules, and when none is due the next one.
 */
export const CRON_DUE: Script = new Script(
  "cron_due",
  LUA_COMMON + `
local now, grace = now_ms(), tonumber(ARGV[3])
local key = k_schedule_seen()
local missed = 0
-- (Kept only while the app has schedules; no look for an hour counts as an outage anyway.)
if redis.call('EXISTS', k_schedule_due()) == 1 then
  local seen = tonumber(redis.call('HGET', key, 'at') or '')
  missed = tonumber(redis.call('HGET', key, 'missed') or '') or 0
  if not seen or now - seen > grace then
    missed = math.max(missed, now - grace)
    redis.call('HSET', key, 'at', string.format('%d', now), 'missed', string.format('%d', missed))
  else
    redis.call('HSET', key, 'at', string.format('%d', now))
  end
  redis.call('PEXPIRE', key, 3600000)
end
local due = redis.call('ZRANGEBYSCORE', k_schedule_due(), '-inf', now, 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[2]))
local head = {}
if #due == 0 then head = redis.call('ZRANGE', k_schedule_due(), 0, 0, 'WITHSCORES') end
return {string.format('%d', now), string.format('%d', missed), due, head}
`,
);
