/**
 * Per-worker task statistics for the periodic summary log line: how many tasks finished (and
 * how many failed), the rate, and the mean and largest queue wait and run time, over the window
 * since the previous summary and since the start.
 *
 * ```ts ignore
 * const stats = new TaskStats();
 * stats.record("completed", waitMs, runMs); // per task: a few additions, no allocation
 * log.info("summary", formatSummary(stats.take())); // periodically
 * // 2026-11-25T14:00:10.000Z INFO  worker vm:123:abc: summary tasks=1234 completed=1230 failed=4
 * //   tasks_per_s=123 mean_wait_ms=0.81 mean_run_ms=3.2 max_wait_ms=12.5 max_run_ms=45
 * //   seconds=10 total_tasks=100000 total_failed=12
 * ```
 *
 * (one line, wrapped here)
 *
 * @module
 */

/** How a task ended, for {@linkcode TaskStats.record}. */
export type TaskOutcome = "completed" | "failed";

/** Task figures over a span of time. Every number is finite: an empty span gives zeros. */
export interface TaskFigures {
  /** Length of the span in seconds. */
  readonly seconds: number;
  /** Tasks that finished in the span: `completed + failed`. */
  readonly tasks: number;
  /** Tasks that finished with a value. */
  readonly completed: number;
  /** Tasks that finished with an error. */
  readonly failed: number;
  /** `tasks / seconds` (0 for an empty span). */
  readonly tasksPerSecond: number;
  /** Mean queue wait in ms (0 without tasks). */
  readonly meanWaitMs: number;
  /** Mean run time in ms (0 without tasks). */
  readonly meanRunMs: number;
  /** Largest queue wait in ms (0 without tasks). */
  readonly maxWaitMs: number;
  /** Largest run time in ms (0 without tasks). */
  readonly maxRunMs: number;
}

/** What {@linkcode TaskStats.take} returns: the window since the previous take, and totals. */
export interface TaskSummary extends TaskFigures {
  /** The same figures since the `TaskStats` was created (up to this take). */
  readonly total: TaskFigures;
}

/** Options of {@linkcode TaskStats}. */
export interface TaskStatsOptions {
  /** Clock in ms, for tests. Default `performance.now()`. */
  now?: () => number;
}

/** A time for the statistics: negative, NaN and infinite times count as 0. */
function sane(ms: number): number {
  return ms > 0 && ms < Infinity ? ms : 0;
}

/** Running sums of one span. */
class Sums {
  completed = 0;
  failed = 0;
  waitSum = 0;
  runSum = 0;
  waitMax = 0;
  runMax = 0;

  constructor(public start: number) {}

  /** Adds `other` to these sums. */
  add(other: Sums): void {
    this.completed += other.completed;
    this.failed += other.failed;
    this.waitSum += other.waitSum;
    this.runSum += other.runSum;
    if (other.waitMax > this.waitMax) this.waitMax = other.waitMax;
    if (other.runMax > this.runMax) this.runMax = other.runMax;
  }

  /** Clears the sums and starts the span at `start`. */
  reset(start: number): void {
    this.completed =
      this.failed =
      this.waitSum =
      this.runSum =
      this.waitMax =
      this.runMax =
        0;
    this.start = start;
  }

  figures(nowMs: number): TaskFigures {
    const seconds = nowMs > this.start ? (nowMs - this.start) / 1000 : 0;
    const tasks = this.completed + this.failed;
    return {
      seconds,
      tasks,
      completed: this.completed,
      failed: this.failed,
      tasksPerSecond: seconds > 0 ? tasks / seconds : 0,
      meanWaitMs: tasks > 0 ? this.waitSum / tasks : 0,
      meanRunMs: tasks > 0 ? this.runSum / tasks : 0,
      maxWaitMs: this.waitMax,
      maxRunMs: this.runMax,
    };
  }
}

/** `ms`, if it is a finite number; `what` starts the message otherwise. */
function checkTime(ms: unknown, what: string): number {
  if (typeof ms !== "number" || !Number.isFinite(ms)) {
    throw new RangeError(`${what} a finite number of ms, got ${String(ms)}`);
  }
  return ms;
}

function defaultNow(): number {
  return performance.now();
}

/**
 * Counts finished tasks and sums their queue wait and run times. {@linkcode record} is called
 * once per task and only adds and compares; {@linkcode take} reads and restarts the window.
 *
 * @example
 * ```ts ignore
 * let t = 0;
 * const stats = new TaskStats({ now: () => t });
 * stats.record("completed", 1, 4);
 * stats.record("failed", 3, 2);
 * t = 2000;
 * stats.take(); // { seconds: 2, tasks: 2, failed: 1, tasksPerSecond: 1, meanWaitMs: 2, ... }
 * ```
 */
export class TaskStats {
  readonly #now: () => number;
  readonly #window: Sums;
  readonly #total: Sums;

  /** Starts the first window (and the totals) at the clock's current time. */
  constructor(options: TaskStatsOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`TaskStats options must be an object, got ${String(options)}`);
    }
    if (options.now !== undefined && typeof options.now !== "function") {
      throw new TypeError(`TaskStats now must be a function, got ${typeof options.now}`);
    }
    this.#now = options.now ?? defaultNow;
    const start = checkTime(this.#now(), "the clock must return");
    this.#window = new Sums(start);
    this.#total = new Sums(start);
  }

  /** Tasks recorded since the last {@linkcode take} (or since creation). */
  get windowTasks(): number {
    return this.#window.completed + this.#window.failed;
  }

  /**
   * Records one finished task.
   *
   * @param outcome `"completed"` (a value) or `"failed"` (an error); anything else throws
   *   `RangeError`.
   * @param waitMs Time from enqueue to start, in ms. Negative (clock skew between machines),
   *   NaN or infinite times count as 0.
   * @param runMs Time from start to finish, in ms; the same rules.
   */
  record(outcome: TaskOutcome, waitMs: number, runMs: number): void {
    const w = this.#window;
    if (outcome === "completed") w.completed++;
    else if (outcome === "failed") w.failed++;
    else {
      throw new RangeError(
        `a task outcome must be "completed" or "failed", got ${JSON.stringify(String(outcome))}`,
      );
    }
    const wait = sane(waitMs);
    const run = sane(runMs);
    w.waitSum += wait;
    w.runSum += run;
    if (wait > w.waitMax) w.waitMax = wait;
    if (run > w.runMax) w.runMax = run;
  }

  /**
   * Returns the figures of the window since the previous take (or since creation) and the
   * totals, and starts a new window at `nowMs`.
   *
   * @param nowMs The end of the window, on the same clock as the `now` option. Default: that
   *   clock. A time before the window's start gives a window of 0 seconds.
   */
  take(nowMs: number = this.#now()): TaskSummary {
    checkTime(nowMs, "nowMs must be");
    const window = this.#window.figures(nowMs);
    this.#total.add(this.#window);
    this.#window.reset(nowMs);
    return { ...window, total: this.#total.figures(nowMs) };
  }
}

/**
 * `value` rounded for a log line: to about three significant digits, never dropping integer
 * digits, at most three decimals (`1234.5` → `1235`, `45.67` → `45.7`, `3.214` → `3.21`,
 * `0.81234` → `0.812`, `0.00012` → `0`). Non-finite values give 0.
 */
export function roundForLog(value: number): number {
  if (!Number.isFinite(value)) return 0;
  const size = Math.abs(value);
  const scale = size >= 100 ? 1 : size >= 10 ? 10 : size >= 1 ? 100 : 1000;
  const rounded = Math.round(value * scale) / scale;
  return rounded === 0 ? 0 : rounded; // no -0
}

/**
 * The fields of a summary log line, in this order, numbers rounded with
 * {@linkcode roundForLog}: `tasks`, `completed`, `failed`, `tasks_per_s`, `mean_wait_ms`,
 * `mean_run_ms`, `max_wait_ms`, `max_run_ms`, `seconds` (the window), `total_tasks`,
 * `total_failed`.
 *
 * @example
 * ```ts ignore
 * log.info("summary", formatSummary(stats.take()));
 * ```
 */
export function formatSummary(summary: TaskSummary): Record<string, number> {
  return {
    tasks: summary.tasks,
    completed: summary.completed,
    failed: summary.failed,
    tasks_per_s: roundForLog(summary.tasksPerSecond),
    mean_wait_ms: roundForLog(summary.meanWaitMs),
    mean_run_ms: roundForLog(summary.meanRunMs),
    max_wait_ms: roundForLog(summary.maxWaitMs),
    max_run_ms: roundForLog(summary.maxRunMs),
    seconds: roundForLog(summary.seconds),
    total_tasks: summary.total.tasks,
    total_failed: summary.total.failed,
  };
}
