import { Script } from "../_script.ts";

/**
 * Enqueues a batch of tasks of one operation, or nothing when no live listener serves the queue.
 * Idempotent: a batch whose first task already has a status was written by an earlier try of the
 * same call (a dropped connection), and is not written again.
 *
 * KEYS[1] task stream `<app>:queue:<queue>`
 * KEYS[2] listener registry `<app>:listeners:<queue>`
 * KEYS[3] `<app>:<op>:status`
 * KEYS[4] `<app>:<op>:results`
 * ARGV[1] "1" to require a live listener, "0" to enqueue regardless
 * ARGV[2] liveness window in ms (a listener is live if its score is within it of Redis TIME)
 * ARGV[3] operation id
 * ARGV[4] reply stream of the submitting client
 * ARGV[5] time to live of the operation's keys in ms ("0": none), refreshed by the client
 * ARGV[6] k: the number of extra entry fields (retries, retryDelay, retryOn, timeout, ...)
 * ARGV[7..6+2k] the extra fields, as name, value pairs (the same for every task of the batch)
 * ARGV[7+2k..] triples: task id, task name, encoded arguments
 *
 * Returns the number of tasks enqueued, -1 when no listener is live (nothing was written), or
 * -2 when the batch had been written already.
 */
export const SUBMIT: Script = new Script(
  "submit",
  `
local k = tonumber(ARGV[6])
local first = 7 + 2 * k
if ARGV[1] == '1' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[2]), '+inf') == 0 then return -1 end
end
if ARGV[first] and redis.call('HEXISTS', KEYS[3], ARGV[first]) == 1 then return -2 end
local extra = {}
for i = 7, first - 1 do extra[#extra + 1] = ARGV[i] end
local status, results = {}, {}
local n = 0
for i = first, #ARGV, 3 do
  local id = ARGV[i]
  status[#status + 1] = id
  status[#status + 1] = '0'
  results[#results + 1] = id
  results[#results + 1] = ''
  redis.call('XADD', KEYS[1], '*', 'v', '1', 'id', id, 'op', ARGV[3], 'fn', ARGV[i + 1],
    'args', ARGV[i + 2], 'reply', ARGV[4], 'attempt', '1', unpack(extra))
  n = n + 1
end
if n > 0 then
  redis.call('HSET', KEYS[3], unpack(status))
  redis.call('HSET', KEYS[4], unpack(results))
  if ARGV[5] ~= '0' then
    redis.call('PEXPIRE', KEYS[3], ARGV[5])
    redis.call('PEXPIRE', KEYS[4], ARGV[5])
  end
end
return n
`,
);
