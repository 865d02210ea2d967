import { Script } from "../_script.ts";

/**
 * Replaces a key of the key-value store (whatever it held) by a list, in one step: no reader sees
 * it missing or half-written.
 *
 * KEYS[1] the key `<app>:kv:<name>`
 * ARGV[1] time to live, ms ("0": none)
 * ARGV[2..] the elements, codec JSON (at least one)
 *
 * Returns the length of the list.
 */
export const KV_SET_LIST: Script = new Script(
  "kv_set_list",
  `
local key = KEYS[1]
redis.call('UNLINK', key)
local n = 0
for i = 2, #ARGV, 4000 do
  n = redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 3999, #ARGV)))
end
if ARGV[1] ~= '0' then redis.call('PEXPIRE', key, ARGV[1]) end
return n
`,
);
