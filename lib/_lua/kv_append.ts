import { Script } from "../_script.ts";

/**
 * Appends elements to a list of the key-value store, creating it when missing. An empty array is
 * stored as the string "[]" (Redis has no empty lists): it becomes a list with the same time to
 * live. A list keeps its time to live.
 *
 * KEYS[1] the key `<app>:kv:<name>`
 * ARGV[1..] the elements, codec JSON (none: only report the length)
 *
 * Returns the new length (an integer), or the type the key holds (a string: "string" for a
 * non-list value, "hash", "set", ...) when it is not a list: nothing is written then.
 */
export const KV_APPEND: Script = new Script(
  "kv_append",
  `
local key = KEYS[1]
local t = redis.call('TYPE', key).ok
local ttl = 0
if t == 'string' then
  if redis.call('STRLEN', key) ~= 2 or redis.call('GET', key) ~= '[]' then return 'string' end
  if #ARGV == 0 then return 0 end
  ttl = redis.call('PTTL', key)
  redis.call('DEL', key)
elseif t == 'list' then
  if #ARGV == 0 then return redis.call('LLEN', key) end
elseif t == 'none' then
  if #ARGV == 0 then return 0 end
else
  return t
end
local n = 0
for i = 1, #ARGV, 4000 do
  n = redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 3999, #ARGV)))
end
if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
return n
`,
);
