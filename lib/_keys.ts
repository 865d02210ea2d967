/**
 * Every Redis key name streamfutures uses is built here, and only here. docs/protocol.md
 * describes each one.
 *
 * @module
 */

/** The consumer group every worker of a queue joins. */
export const GROUP = "workers";

/** The version of the stream entry format written by this library. */
export const PROTOCOL_VERSION = "1";

/**
 * The `args` field of a stream entry whose arguments are stored beside it, in the operation's
 * `<app>:<op>:args` hash ({@link Keys.args}), because they are long: see {@link ARGS_ASIDE_MIN}.
 * No encoding of arguments (a JSON array) reads like it.
 */
export const ARGS_ASIDE = "@";

/**
 * Encoded arguments of at least this many characters are stored beside the entry. Every string a
 * Redis script receives or reads is hashed byte by byte as it becomes a Lua string (Redis 7.0's
 * Lua hashes every byte of a string, about 11 instructions each), and an entry's arguments cross
 * into Lua twice, in SUBMIT's arguments and TAKE's read: of the 2.7M Redis instructions a task
 * with 100 KB of arguments cost, 2.0M were those two hashes (callgrind). Beside the entry they are
 * written and read with plain `HSET` / `HMGET`, which copy them and nothing more, for one more
 * command per batch. Below about 2 KB the extra command costs more than the hashing it saves
 * (alternating probe runs: 1.2 KB 4–10 % slower, 2.2 KB even, 4 KB 3–11 % faster, 10 KB 18–26 %).
 */
export const ARGS_ASIDE_MIN = 4096;

/**
 * The last character of the id of a client that reads compact completion notices (see
 * {@link COMPACT_NOTICE_MAX}): such clients have ids of {@link CLIENT_ID_LENGTH} characters, the
 * last one this mark. Clients of earlier versions of this library have ids of 10 characters and get
 * only the classic notices (`t <task id> s 2 p <value> m <timings>`), which they read.
 */
export const COMPACT_NOTICE_MARK = "2";

/** The length of a client id of this version: 10 random characters and {@link COMPACT_NOTICE_MARK}. */
export const CLIENT_ID_LENGTH = 11;

/**
 * The longest encoded value FINISH sends in a compact completion notice, `c <task id>NUL<timings>
 * NUL<value>`: two values in the reply entry instead of the classic notice's eight. For a no-op
 * task that is 9,200 fewer Redis instructions (callgrind: the XADD of a batch of notices and the
 * client's XREAD of them, 18,000 → 8,800 instructions a notice), the client parses six fewer
 * strings, and the fields of the reply stream. Building the one string costs Redis about 11
 * instructions a byte of the value (Lua hashes each byte of a new string), so a longer value goes in
 * a classic notice.
 */
export const COMPACT_NOTICE_MAX = 256;

/** Status codes of the seed's `<app>:<op>:status` hash. */
export const Status = {
  NOT_STARTED: "0",
  RUNNING: "1",
  COMPLETE: "2",
  ERROR: "3",
  CANCELLED: "4",
} as const;

/** A status code as stored in Redis. */
export type StatusCode = typeof Status[keyof typeof Status];

/** Key names of one application (`<app>` prefix). */
export class Keys {
  /** The application prefix. */
  readonly app: string;

  constructor(app: string) {
    this.app = app;
  }

  /** `<app>:<op>:status` — hash `{taskId: status code}`. */
  status(op: string): string {
    return `${this.app}:${op}:status`;
  }

  /** `<app>:<op>:heartbeat` — hash `{taskId: epoch seconds}`. */
  heartbeat(op: string): string {
    return `${this.app}:${op}:heartbeat`;
  }

  /**
   * `<app>:<op>:args` — hash `{taskId: encoded arguments}` of the tasks whose arguments are too
   * long to go through the scripts ({@link ARGS_ASIDE}); a field goes once its task has a final
   * outcome.
   */
  args(op: string): string {
    return `${this.app}:${op}:args`;
  }

  /** `<app>:<op>:results` — hash `{taskId: "" | JSON | "<Name>: <message>"}`. */
  results(op: string): string {
    return `${this.app}:${op}:results`;
  }

  /** `<app>:queue:<queue>` — the task stream of a queue (consumer group {@link GROUP}). */
  queue(queue: string): string {
    return `${this.app}:queue:${queue}`;
  }

  /**
   * The stream of a queue's priority level: {@link queue} for priority 0, else
   * `<app>:queue:<queue>:p<priority>` (e.g. `:p5`, `:p-2`).
   */
  stream(queue: string, priority = 0): string {
    return priority === 0 ? this.queue(queue) : `${this.app}:queue:${queue}:p${priority}`;
  }

  /** `<app>:priorities:<queue>` — set of the non-zero priority levels a queue has seen. */
  priorities(queue: string): string {
    return `${this.app}:priorities:${queue}`;
  }

  /**
   * `<app>:watch` — hash `{"<op>/<taskId>": JSON}` of tasks someone waits on besides their
   * client: reply streams of attached clients, dependent tasks, a dedupe key to expire.
   */
  watch(): string {
    return `${this.app}:watch`;
  }

  /** `<app>:deps:<op>:<taskId>` — hash: a task waiting for its parent tasks. */
  deps(op: string, taskId: string): string {
    return `${this.app}:deps:${op}:${taskId}`;
  }
  /**
   * `<app>:children:<op>:<taskId>` — sorted set `{child task ref "<op>/<taskId>": order}`: the
   * tasks waiting for this one (its dependents), released or failed at its final outcome.
   */
  children(op: string, taskId: string): string {
    return `${this.app}:children:${op}:${taskId}`;
  }

  /** `<app>:dedupe:<hash>` — string `"<op>/<taskId>"`: the task identical calls share. */
  dedupe(hash: string): string {
    return `${this.app}:dedupe:${hash}`;
  }

  /** `<app>:schedules` — hash `{name: JSON spec}` of cron schedules. */
  schedules(): string {
    return `${this.app}:schedules`;
  }

  /** `<app>:schedule-due` — sorted set `{name: next due time, ms (Redis TIME)}`. */
  scheduleDue(): string {
    return `${this.app}:schedule-due`;
  }

  /**
   * `<app>:schedule-seen` — hash `{at: Redis time (ms) of the latest look at the due schedules by
   * any worker, missed: the last due time that counts as missed (no worker looked for over the
   * grace after it)}`.
   */
  scheduleSeen(): string {
    return `${this.app}:schedule-seen`;
  }

  /** `<app>:listeners:<queue>` — sorted set `{workerId: last heartbeat, ms (Redis TIME)}`. */
  listeners(queue: string): string {
    return `${this.app}:listeners:${queue}`;
  }

  /** `<app>:replies:<clientId>` — the stream a client reads completions from. */
  replies(clientId: string): string {
    return `${this.app}:replies:${clientId}`;
  }

  /**
   * `<app>:delayed:<queue>` — sorted set of the tasks due later `{"<op>/<taskId>": due ms (Redis
   * TIME)}`; their entries are in {@link delayedEntries}.
   */
  delayed(queue: string): string {
    return `${this.app}:delayed:${queue}`;
  }

  /**
   * `<app>:<op>:delayed` — hash `{taskId: JSON [queue, entry fields]}` of an operation's tasks
   * waiting in a delayed set: where PROMOTE takes their entries from, and where CANCEL finds the
   * set to remove a cancelled one from.
   */
  delayedEntries(op: string): string {
    return `${this.app}:${op}:delayed`;
  }

  /** `<app>:dead` — the dead-letter stream: tasks that exhausted their attempts. */
  dead(): string {
    return `${this.app}:dead`;
  }

  /**
   * `<app>:recovering:<queue>` (priority 0) or `<app>:recovering:<queue>:p<n>` — lock string:
   * which worker scans the stream for lost tasks.
   */
  recovering(queue: string, priority = 0): string {
    return priority === 0
      ? `${this.app}:recovering:${queue}`
      : `${this.app}:recovering:${queue}:p${priority}`;
  }

  /** `<app>:watch-cursor` — string: where recovery's clean-up of {@link watch} goes on. */
  watchCursor(): string {
    return `${this.app}:watch-cursor`;
  }

  /**
   * The reply stream of the client that submitted an operation: `<app>:replies:<clientId>` for
   * `<clientId>-<n>`; cron tasks (`cron-...`) have {@link cronReplies}.
   */
  replyOf(op: string): string | undefined {
    if (op.startsWith("cron-")) return this.cronReplies();
    const dash = op.lastIndexOf("-");
    return dash > 0 ? this.replies(op.slice(0, dash)) : undefined;
  }

  /** `<app>:replies:cron` — the reply stream of cron tasks, which nobody creates or reads. */
  cronReplies(): string {
    return `${this.app}:replies:cron`;
  }

  /** `<app>:control` — the pub/sub channel of cancel and wake-up notices to workers. */
  control(): string {
    return `${this.app}:control`;
  }

  /**
   * `<app>:kv:<name>` — one key of the shared key-value store: a string (codec JSON; `[]` for an
   * empty array) or a list (an array, one codec JSON element per item). `name` is any string.
   */
  kv(name: string): string {
    return `${this.app}:kv:${name}`;
  }
}

/**
 * The same key names for Lua scripts that reach keys of several operations or queues in one call
 * (batched START / FINISH / HEARTBEAT, recovery). Each script that uses them receives the app
 * prefix as `ARGV[1]`, which `begin` in `_lua/_common.ts` puts in `APP` at the start of every
 * call; keep these in step with {@link Keys}.
 */
export const LUA_KEYS: string = `
local APP
local function k_status(op) return APP .. ':' .. op .. ':status' end
local function k_heartbeat(op) return APP .. ':' .. op .. ':heartbeat' end
local function k_results(op) return APP .. ':' .. op .. ':results' end
local function k_args(op) return APP .. ':' .. op .. ':args' end
local function k_delayed_entries(op) return APP .. ':' .. op .. ':delayed' end
local ARGS_ASIDE = '${ARGS_ASIDE}'
-- Whether the client of reply stream 'reply' reads compact completion notices: its id has
-- CLIENT_ID_LENGTH characters, the last one COMPACT_NOTICE_MARK (see _keys.ts).
local function compact_replies(reply)
  return #reply == #APP + ${":replies:".length + CLIENT_ID_LENGTH} and string.byte(reply, -1) == ${
  COMPACT_NOTICE_MARK.charCodeAt(0)
}
end
local COMPACT_NOTICE_MAX = ${COMPACT_NOTICE_MAX}
local function k_queue(q) return APP .. ':queue:' .. q end
local function k_delayed(q) return APP .. ':delayed:' .. q end
local function k_dead() return APP .. ':dead' end
local function k_control() return APP .. ':control' end
local function k_priorities(q) return APP .. ':priorities:' .. q end
local function k_watch() return APP .. ':watch' end
local function k_deps(op, tid) return APP .. ':deps:' .. op .. ':' .. tid end
local function k_children(op, tid) return APP .. ':children:' .. op .. ':' .. tid end
local function k_dedupe(h) return APP .. ':dedupe:' .. h end
local function k_schedules() return APP .. ':schedules' end
local function k_watch_cursor() return APP .. ':watch-cursor' end
local function k_cron_replies() return APP .. ':replies:cron' end
local function k_schedule_due() return APP .. ':schedule-due' end
local function k_schedule_seen() return APP .. ':schedule-seen' end
-- An entry's operation and reply stream: its 'op' and 'reply' fields, or (when they are left
-- out, as this library's clients do) derived from the task id: the operation is the id up to
-- its first '.', the reply stream that of the client the operation id starts with.
local function op_of_task(tid)
  return string.match(tid, '^[^.]+')
end
local function reply_of_op(op)
  if string.sub(op, 1, 5) == 'cron-' then return k_cron_replies() end
  local client = string.match(op, '^(.+)%-[^-]*$')
  if not client then return nil end
  return APP .. ':replies:' .. client
end
local function k_stream(q, priority)
  if priority == nil or priority == '' or priority == '0' then return k_queue(q) end
  return k_queue(q) .. ':p' .. priority
end
`;
