import { Script } from "../_script.ts";

/**
 * Enqueues a batch of tasks of one operation, or nothing when no live listener serves the queue.
 *
 * KEYS[1] task stream `<app>:queue:<queue>`
 * KEYS[2] listener registry `<app>:listeners:<queue>`
 * KEYS[3] `<app>:<op>:status`
 * KEYS[4] `<app>:<op>:results`
 * ARGV[1] "1" to require a live listener, "0" to enqueue regardless
 * ARGV[2] liveness window in ms (a listener is live if its score is within it of Redis TIME)
 * ARGV[3] operation id
 * ARGV[4] reply stream of the submitting client
 * ARGV[5..] triples: task id, task name, encoded arguments
 *
 * Returns the number of tasks enqueued, or -1 when no listener is live (nothing was written).
 */
export const SUBMIT: Script = new Script(
  "submit",
  `
if ARGV[1] == '1' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[2]), '+inf') == 0 then return -1 end
end
local status, results = {}, {}
local n = 0
for i = 5, #ARGV, 3 do
  local id = ARGV[i]
  status[#status + 1] = id
  status[#status + 1] = '0'
  results[#results + 1] = id
  results[#results + 1] = ''
  redis.call('XADD', KEYS[1], '*', 'v', '1', 'id', id, 'op', ARGV[3], 'fn', ARGV[i + 1],
    'args', ARGV[i + 2], 'reply', ARGV[4], 'attempt', '1')
  n = n + 1
end
if n > 0 then
  redis.call('HSET', KEYS[3], unpack(status))
  redis.call('HSET', KEYS[4], unpack(results))
end
return n
`,
);
