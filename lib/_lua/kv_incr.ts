import { Script } from "../_script.ts";

/**
 * Adds to a number of the key-value store (a missing key counts as 0, and so does -0, which the
 * codec stores as the tag `{"$sf":"Number","v":"-0"}`; the time to live is kept).
 * An integer increment uses INCRBY while the value is an integer; otherwise INCRBYFLOAT. A result
 * a JavaScript number cannot hold (±Infinity) is undone.
 *
 * KEYS[1] the key `<app>:kv:<name>`
 * ARGV[1] the increment, a decimal number
 * ARGV[2] "i" when the increment is a safe integer, "f" otherwise
 *
 * Returns the new value as the decimal text now stored; or, when nothing was changed, {reason}:
 * {"list"} (the key holds an array), {"nan"} (a value that is not a number), {"infinite"} (the
 * result would not be finite), {<type>} for a key of another Redis type.
 */
export const KV_INCR: Script = new Script(
  "kv_incr",
  `
local NEGATIVE_ZERO = '{"$sf":"Number","v":"-0"}'
local key = KEYS[1]
local t = redis.call('TYPE', key).ok
if t == 'list' then return {'list'} end
if t ~= 'string' and t ~= 'none' then return {t} end
local old = false
if t == 'string' then
  local length = redis.call('STRLEN', key)
  if length == 2 and redis.call('GET', key) == '[]' then return {'list'} end
  -- -0 is stored as its codec tag (JSON has no -0): count it as 0.
  if length == #NEGATIVE_ZERO and redis.call('GET', key) == NEGATIVE_ZERO then
    old = NEGATIVE_ZERO
    redis.call('SET', key, '0', 'KEEPTTL')
  end
end
if ARGV[2] == 'i' then
  local r = redis.pcall('INCRBY', key, ARGV[1])
  -- The stored text, not the integer: Lua numbers (and some clients) round above 2^53.
  if type(r) == 'number' then return redis.call('GET', key) end
end
if t == 'string' and not old then old = redis.call('GET', key) end
local r = redis.pcall('INCRBYFLOAT', key, ARGV[1])
if type(r) == 'table' then
  if old == NEGATIVE_ZERO then redis.call('SET', key, old, 'KEEPTTL') end
  if r.err and string.find(r.err, 'NaN or Infinity', 1, true) then return {'infinite'} end
  return {'nan'}
end
local n = tonumber(r)
if n == nil or n ~= n or n == math.huge or n == -math.huge then
  if old then redis.call('SET', key, old, 'KEEPTTL') else redis.call('DEL', key) end
  return {'infinite'}
end
return r
`,
);
