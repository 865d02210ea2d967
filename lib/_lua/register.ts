import { Script } from "../_script.ts";

/**
 * A listener proves it is alive: its score in the registry becomes Redis' own clock (so clients
 * and workers on other machines agree on it), entries older than the expiry are removed, and the
 * registry key itself expires after the expiry, so a queue whose workers all died leaves nothing.
 *
 * KEYS[1] listener registry `<app>:listeners:<queue>`
 * ARGV[1] worker id
 * ARGV[2] expiry in ms: entries whose last heartbeat is older are dropped
 *
 * Returns Redis' time in ms.
 */
export const REGISTER: Script = new Script(
  "register",
  `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return now
`,
);
