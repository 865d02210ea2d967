/**
 * Cron schedules stored in Redis: `pool.schedule(name, cron, fn, args, options)` creates or
 * replaces one; workers enqueue its task at each due time, once however many workers are up.
 *
 * A schedule is a field of `<app>:schedules` (its JSON, below) and a member of
 * `<app>:schedule-due` scored by its next due time (Redis time, ms). Workers wake at the earliest
 * due time and run FIRE, which moves the schedule on and enqueues the task atomically.
 *
 * @module
 */

import { checkCron, type CronSpec, nextCronTime } from "./_cron.ts";
import { bool, checkOptions, keyName, storedDuration } from "./_options.ts";
import { type RedisConnection, replyPairs, withReconnect } from "./_redis.ts";
import type { Keys } from "./_keys.ts";
import { SCHEDULE, UNSCHEDULE } from "./_lua/schedule.ts";
import { decode } from "./codec.ts";
import {
  DEFAULT_POLICY,
  policyFields,
  type TaskPolicy,
  taskPolicy,
  type TaskPolicyOptions,
} from "./_submit_options.ts";

/** Options of `pool.schedule`. */
export interface ScheduleOptions extends TaskPolicyOptions {
  /** IANA time zone the expression is read in (default `"UTC"`). */
  timezone?: string;
  /**
   * What to do with due times missed while no worker was up (a tick is missed when it is handled
   * more than 5 s late): `false` (default) skips them, `true` runs the task once for all of them.
   */
  catchUp?: boolean;
  /** The queue the tasks go to (default: the pool's `queue`). */
  queue?: string;
  /** How long each fired task's status and result are kept, ms (default one day). */
  keepResults?: number;
}

/** Every option name of {@link ScheduleOptions}: a name not among them is refused. */
const SCHEDULE_OPTIONS: Record<keyof ScheduleOptions, true> = {
  timezone: true,
  catchUp: true,
  queue: true,
  keepResults: true,
  retries: true,
  retryDelay: true,
  retryOn: true,
  timeout: true,
  priority: true,
};

/** A schedule as stored in Redis and listed by `pool.schedules()`. */
export interface ScheduleInfo {
  /** The schedule's name. */
  name: string;
  /** The cron expression (5 fields, or 6 with seconds first). */
  cron: string;
  /** The time zone of the expression. */
  timezone: string;
  /** The task name. */
  task: string;
  /** The task's arguments. */
  args: unknown[];
  /** The queue its tasks go to. */
  queue: string;
  /** Whether missed due times run once (true) or are skipped. */
  catchUp: boolean;
  /** When it is next due (undefined when it never fires again). */
  nextRun: Date | undefined;
}

/** The JSON of a schedule in `<app>:schedules` (read by workers and by FIRE). */
export interface StoredSchedule {
  name: string;
  cron: CronSpec;
  fn: string;
  /** The encoded argument list. */
  args: string;
  queue: string;
  catchUp: boolean;
  /** Extra entry fields of the tasks (retry policy, timeout, priority). */
  extra: string[];
  /** Results time to live, ms. */
  keep: number;
}

/** What the schedule functions need of the pool. */
export interface ScheduleContext {
  cmd: RedisConnection;
  keys: Keys;
  defaultQueue: string;
  /** How long Redis may be unreachable before a call rejects with `ConnectionError`. */
  reconnectDeadline: number;
}

/** Checks a schedule name: letters, digits, `_`, `.`, `-`. */
export function checkScheduleName(name: unknown): string {
  if (name === undefined) throw new TypeError("a schedule needs a name");
  return keyName(name, "schedule name", "");
}

/**
 * Builds the stored form of a schedule (checks everything; throws TypeError / RangeError).
 * `args` is the encoded argument list.
 */
export function storedSchedule(
  name: string,
  cron: unknown,
  fn: string,
  args: string,
  options: ScheduleOptions | undefined,
  defaultQueue: string,
  defaults: TaskPolicy = DEFAULT_POLICY,
): StoredSchedule {
  options = checkOptions(options, SCHEDULE_OPTIONS, "schedule()");
  return {
    name,
    cron: checkCron(cron, options.timezone),
    fn,
    args,
    queue: keyName(options.queue, "queue", defaultQueue),
    catchUp: bool(options.catchUp, "catchUp", false),
    extra: policyFields(taskPolicy(options, defaults)),
    keep: storedDuration(options.keepResults, "keepResults", 86_400_000),
  };
}

/**
 * Stores a schedule (creating or replacing it); resolves with its due time. Replacing a schedule
 * keeps its due time when the expression and time zone are unchanged, and keeps an overdue one in
 * any case (see SCHEDULE), so the result can be in the past: the workers fire it as soon as they can.
 */
export async function saveSchedule(
  context: ScheduleContext,
  schedule: StoredSchedule,
): Promise<Date | undefined> {
  const json = JSON.stringify(schedule);
  const { cmd } = context;
  // A due time that passes between TIME and SCHEDULE is refused: compute it again.
  for (let attempt = 0;; attempt++) {
    // (SCHEDULE is idempotent: a call whose reply was lost goes again.)
    const reply = await reconnecting(context, `saving schedule ${schedule.name}`, async () => {
      const [seconds, micros] = await cmd.sendCommand(["TIME"]) as string[];
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      const next = nextCronTime(schedule.cron, now);
      if (next === undefined) {
        throw new RangeError(`cron expression "${schedule.cron.expression}" never fires again`);
      }
      return await SCHEDULE.run(cmd, [], [
        context.keys.app,
        schedule.name,
        json,
        String(next),
      ]) as unknown[];
    });
    if (Number(reply[0]) !== -1) return new Date(Number(reply[1]));
    if (attempt >= 10) {
      throw new Error(
        `schedule ${schedule.name}: its next due time kept passing before it was saved`,
      );
    }
  }
}

/** Removes a schedule; resolves true when it existed. */
export async function deleteSchedule(context: ScheduleContext, name: string): Promise<boolean> {
  // A call whose reply was lost goes again, and then finds nothing: the answer is whether the
  // schedule existed when the first call was made.
  let existed = false;
  await reconnecting(context, `removing schedule ${name}`, async () => {
    const exists = await context.cmd.sendCommand(["HEXISTS", context.keys.schedules(), name]);
    if (Number(exists) === 1) existed = true;
    if (await UNSCHEDULE.run(context.cmd, [], [context.keys.app, name]) === 1) existed = true;
  });
  return existed;
}

/** Lists the schedules, by name. */
export async function listSchedules(context: ScheduleContext): Promise<ScheduleInfo[]> {
  const [all, due] = await reconnecting(context, "listing schedules", () =>
    Promise.all([
      context.cmd.sendCommand(["HGETALL", context.keys.schedules()]),
      context.cmd.sendCommand(["ZRANGE", context.keys.scheduleDue(), "0", "-1", "WITHSCORES"]),
    ]));
  const nextRun = new Map(replyPairs(due).map(([name, score]) => [name, Number(score)]));
  const out: ScheduleInfo[] = [];
  for (const [name, json] of replyPairs(all)) {
    try {
      const s = JSON.parse(json) as StoredSchedule;
      const next = nextRun.get(name);
      out.push({
        name,
        cron: s.cron.expression,
        timezone: s.cron.timezone,
        task: s.fn,
        args: decode(s.args) as unknown[],
        queue: s.queue,
        catchUp: s.catchUp,
        nextRun: next === undefined ? undefined : new Date(next),
      });
    } catch {
      // A schedule written by something else; workers drop it.
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** `command`, sent again over a lost connection until the context's reconnect deadline. */
function reconnecting<T>(
  context: ScheduleContext,
  what: string,
  command: () => Promise<T>,
): Promise<T> {
  return withReconnect(context.cmd, command, context.reconnectDeadline, what);
}
