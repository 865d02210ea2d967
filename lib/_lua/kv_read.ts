import { Script } from "../_script.ts";

/**
 * Reads keys of the key-value store, each at one instant (a key cannot change type or expire
 * between finding out what it holds and reading it).
 *
 * KEYS[1..n] the keys `<app>:kv:<name>`
 *
 * Returns one reply per key: {"s", text} for a string, {"l", {element, ...}} for a list, {"none"}
 * for a missing key, {<type>} (e.g. {"hash"}) for a key of another type.
 */
export const KV_READ: Script = new Script(
  "kv_read",
  `
local out = {}
for i, key in ipairs(KEYS) do
  local t = redis.call('TYPE', key).ok
  if t == 'string' then
    out[i] = {'s', redis.call('GET', key)}
  elseif t == 'list' then
    out[i] = {'l', redis.call('LRANGE', key, 0, -1)}
  else
    out[i] = {t}
  end
end
return out
`,
);
