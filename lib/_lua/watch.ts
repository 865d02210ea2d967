import { Script } from "../_script.ts";
import { LUA_COMMON } from "./_common.ts";

/**
 * A client attaches to tasks it did not submit (`pool.future(id)`): for each task that has not
 * finished, its reply stream is added to the task's watchers (it gets the final notice); for a
 * finished one the outcome is returned at once.
 *
 * ARGV[1] app prefix
 * ARGV[2] reply stream of the attaching client
 * ARGV[3..] task refs "<op>/<taskId>"
 *
 * Returns one reply per task: {status, stored result} for a finished task ("2", "3", "4"),
 * {status} ("0" or "1") for one now watched, {"m"} for a task that does not exist.
 */
export const WATCH: Script = new Script(
  "watch",
  LUA_COMMON + `
local out = {}
for i = 3, #ARGV do
  local op, tid = split_ref(ARGV[i])
  local s = redis.call('HGET', k_status(op), tid)
  if not s then
    out[#out + 1] = {'m'}
  elseif s == '0' or s == '1' then
    watch(ARGV[i], 'r', ARGV[2])
    out[#out + 1] = {s}
  else
    out[#out + 1] = {s, redis.call('HGET', k_results(op), tid) or ''}
  end
end
return out
`,
);

/**
 * A client stops watching tasks (its attached future was disposed, or it closes).
 *
 * ARGV[1] app prefix
 * ARGV[2] reply stream of the client
 * ARGV[3..] task refs "<op>/<taskId>"
 *
 * Returns the number of watch records changed.
 */
export const UNWATCH: Script = new Script(
  "unwatch",
  LUA_COMMON + `
local changed = 0
for i = 3, #ARGV do
  local w = redis.call('HGET', k_watch(), ARGV[i])
  if w then
    local info = cjson.decode(w)
    local kept = {}
    for _, r in ipairs(info.r or {}) do if r ~= ARGV[2] then kept[#kept + 1] = r end end
    if #kept ~= #(info.r or {}) then
      changed = changed + 1
      info.r = kept
      if watch_empty(ARGV[i], info) then
        redis.call('HDEL', k_watch(), ARGV[i])
      else
        redis.call('HSET', k_watch(), ARGV[i], cjson.encode(info))
      end
    end
  end
end
return changed
`,
);
