import { Script } from "../_script.ts";

/**
 * Removes the last element of a list of the key-value store. A list left empty becomes the string
 * "[]" with the list's time to live (the key still holds an empty array, as after `set(key, [])`).
 *
 * KEYS[1] the key `<app>:kv:<name>`
 *
 * Returns {element} (codec JSON), nil when the key is missing or holds an empty array, or the type
 * the key holds (a string: "string" for a non-list value, "hash", ...) when it is not a list.
 */
export const KV_POP: Script = new Script(
  "kv_pop",
  `
local key = KEYS[1]
local t = redis.call('TYPE', key).ok
if t == 'none' then return false end
if t == 'string' then
  if redis.call('STRLEN', key) == 2 and redis.call('GET', key) == '[]' then return false end
  return 'string'
end
if t ~= 'list' then return t end
local ttl = redis.call('PTTL', key)
local v = redis.call('RPOP', key)
if redis.call('EXISTS', key) == 0 then
  if ttl > 0 then redis.call('SET', key, '[]', 'PX', ttl) else redis.call('SET', key, '[]') end
end
return {v}
`,
);
