import { Script } from "../_script.ts";

/**
 * A client keeps its keys alive: every given key that exists expires `ARGV[1]` ms from now, all
 * at the same absolute time (so the hashes of an operation never outlive one another).
 *
 * KEYS[1..n] the keys (a reply stream, operations' status / heartbeat / results hashes)
 * ARGV[1] time to live, ms
 *
 * Returns the number of keys that exist.
 */
export const TOUCH: Script = new Script(
  "touch",
  `
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local n = 0
for _, key in ipairs(KEYS) do n = n + redis.call('PEXPIREAT', key, at) end
return n
`,
);
