import { Script } from "../_script.ts";

/**
 * Moves the entries of a queue's delayed set that are due (score <= Redis time) to its stream,
 * oldest first, in one atomic step: however many workers run it at once, each entry is moved once.
 *
 * KEYS[1] delayed set `<app>:delayed:<queue>`
 * KEYS[2] task stream `<app>:queue:<queue>`
 * ARGV[1] the most entries to move in this call
 *
 * Returns {moved, due time of the next entry in ms or -1 when the set is empty, Redis time in ms}.
 */
export const PROMOTE: Script = new Script(
  "promote",
  `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(member)))
  redis.call('ZREM', KEYS[1], member)
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local nxt = -1
if #head == 2 then nxt = tonumber(head[2]) end
return {#due, nxt, now}
`,
);
