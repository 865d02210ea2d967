import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { formatSummary, roundForLog, type TaskFigures, TaskStats } from "../lib/_metrics.ts";
import { createLogger } from "../lib/_log.ts";

class FakeClock {
  t = 1_000;
  now = (): number => this.t;
}

function setup() {
  const clock = new FakeClock();
  return { clock, stats: new TaskStats({ now: clock.now }) };
}

const EMPTY: Omit<TaskFigures, "seconds" | "tasksPerSecond"> = {
  tasks: 0,
  completed: 0,
  failed: 0,
  meanWaitMs: 0,
  meanRunMs: 0,
  maxWaitMs: 0,
  maxRunMs: 0,
};

/** Asserts that every figure (of the window and of the totals, if any) is a finite number. */
function assertFinite(figures: TaskFigures & { total?: TaskFigures }): void {
  const { total, ...window } = figures;
  for (const [key, value] of Object.entries(window)) {
    assert.ok(Number.isFinite(value), `${key} is ${value}`);
  }
  if (total) assertFinite(total);
}

describe("TaskStats", () => {
  it("sums a window: counts, rate, means and maxima", () => {
    const { clock, stats } = setup();
    stats.record("completed", 1, 4);
    stats.record("failed", 3, 2);
    stats.record("completed", 2, 12);
    stats.record("completed", 10, 2);
    assert.equal(stats.windowTasks, 4);
    clock.t += 2_000;
    const { total, ...window } = stats.take();
    assert.deepEqual(window, {
      seconds: 2,
      tasks: 4,
      completed: 3,
      failed: 1,
      tasksPerSecond: 2,
      meanWaitMs: 4,
      meanRunMs: 5,
      maxWaitMs: 10,
      maxRunMs: 12,
    });
    assert.deepEqual(total, window, "the first window is all there is");
  });

  it("starts a new window at each take, and keeps totals", () => {
    const { clock, stats } = setup();
    stats.record("completed", 5, 50);
    clock.t += 1_000;
    stats.take();
    assert.equal(stats.windowTasks, 0);

    stats.record("failed", 1, 10);
    stats.record("failed", 3, 30);
    clock.t += 4_000;
    const second = stats.take();
    assert.equal(second.seconds, 4);
    assert.equal(second.tasks, 2);
    assert.equal(second.completed, 0);
    assert.equal(second.failed, 2);
    assert.equal(second.tasksPerSecond, 0.5);
    assert.equal(second.meanWaitMs, 2);
    assert.equal(second.meanRunMs, 20);
    assert.equal(second.maxWaitMs, 3, "the first window's maximum is not carried over");
    assert.equal(second.maxRunMs, 30);
    assert.deepEqual(second.total, {
      seconds: 5,
      tasks: 3,
      completed: 1,
      failed: 2,
      tasksPerSecond: 0.6,
      meanWaitMs: 3,
      meanRunMs: 30,
      maxWaitMs: 5,
      maxRunMs: 50,
    });
  });

  it("gives zeros, not NaN, for an empty window", () => {
    const { clock, stats } = setup();
    clock.t += 10_000;
    const { total, ...window } = stats.take();
    assert.deepEqual(window, { ...EMPTY, seconds: 10, tasksPerSecond: 0 });
    assert.deepEqual(total, window);
    assertFinite(window);
  });

  it("gives zeros for a window of no time, or a clock that went back", () => {
    const { clock, stats } = setup();
    stats.record("completed", 1, 1);
    const s = stats.take(); // same instant as creation
    assert.equal(s.seconds, 0);
    assert.equal(s.tasksPerSecond, 0);
    assert.equal(s.tasks, 1);
    assertFinite(s);
    clock.t -= 500;
    const back = stats.take();
    assert.equal(back.seconds, 0);
    assertFinite(back);
  });

  it("takes an explicit end time", () => {
    const { stats } = setup();
    stats.record("completed", 0, 0);
    const s = stats.take(1_250);
    assert.equal(s.seconds, 0.25);
    assert.equal(s.tasksPerSecond, 4);
    assert.equal(stats.take(3_250).seconds, 2, "the next window starts at the explicit time");
  });

  it("counts negative, NaN and infinite times as 0", () => {
    const { clock, stats } = setup();
    stats.record("completed", -3, NaN);
    stats.record("completed", Infinity, -Infinity);
    stats.record("completed", 6, 9);
    clock.t += 1_000;
    const s = stats.take();
    assert.equal(s.tasks, 3);
    assert.equal(s.meanWaitMs, 2);
    assert.equal(s.meanRunMs, 3);
    assert.equal(s.maxWaitMs, 6);
    assert.equal(s.maxRunMs, 9);
  });

  it("uses performance.now() by default", () => {
    const before = performance.now();
    const stats = new TaskStats();
    const s = stats.take(before + 2_000);
    assert.ok(s.seconds > 1.9 && s.seconds <= 2, String(s.seconds));
    assert.ok(stats.take().seconds >= 0);
  });

  it("refuses bad arguments", () => {
    const { stats } = setup();
    assert.throws(() => stats.record("cancelled" as "failed", 1, 1), {
      name: "RangeError",
      message: `a task outcome must be "completed" or "failed", got "cancelled"`,
    });
    assert.equal(stats.windowTasks, 0, "a refused record counts nothing");
    assert.throws(() => stats.take(NaN), {
      name: "RangeError",
      message: "nowMs must be a finite number of ms, got NaN",
    });
    assert.throws(() => new TaskStats({ now: () => Number.NaN }), {
      name: "RangeError",
      message: "the clock must return a finite number of ms, got NaN",
    });
    assert.throws(() => new TaskStats({ now: 5 as unknown as () => number }), {
      name: "TypeError",
      message: "TaskStats now must be a function, got number",
    });
  });
});

describe("roundForLog", () => {
  it("keeps about three significant digits and all integer digits", () => {
    const cases: [number, number][] = [
      [0, 0],
      [123_456.7, 123_457],
      [1234.5, 1235],
      [100.4, 100],
      [45.67, 45.7],
      [10.04, 10],
      [3.214, 3.21],
      [9.996, 10],
      [1, 1],
      [0.81234, 0.812],
      [0.0456, 0.046],
      [0.0004, 0],
      [-0.0004, 0],
      [-3.214, -3.21],
      [NaN, 0],
      [Infinity, 0],
    ];
    for (const [value, expected] of cases) {
      assert.ok(Object.is(roundForLog(value), expected), `${value} → ${roundForLog(value)}`);
    }
  });
});

describe("formatSummary", () => {
  it("gives rounded fields, in order, for a logger line", () => {
    const { clock, stats } = setup();
    for (let i = 0; i < 3; i++) stats.record("completed", 0.8123, 3.2049);
    stats.record("failed", 12.345, 45.678);
    clock.t += 3_000;
    const fields = formatSummary(stats.take());
    assert.deepEqual(Object.entries(fields), [
      ["tasks", 4],
      ["completed", 3],
      ["failed", 1],
      ["tasks_per_s", 1.33],
      ["mean_wait_ms", 3.7],
      ["mean_run_ms", 13.8],
      ["max_wait_ms", 12.3],
      ["max_run_ms", 45.7],
      ["seconds", 3],
      ["total_tasks", 4],
      ["total_failed", 1],
    ]);

    const lines: string[] = [];
    const log = createLogger({
      name: "worker vm:1",
      sink: (line) => lines.push(line),
      now: () => new Date("2026-11-25T14:00:10.000Z"),
    });
    log.info("summary", fields);
    assert.deepEqual(lines, [
      "2026-11-25T14:00:10.000Z INFO  worker vm:1: summary tasks=4 completed=3 failed=1 " +
      "tasks_per_s=1.33 mean_wait_ms=3.7 mean_run_ms=13.8 max_wait_ms=12.3 max_run_ms=45.7 " +
      "seconds=3 total_tasks=4 total_failed=1",
    ]);
  });

  it("gives zeros for an empty window", () => {
    const { clock, stats } = setup();
    clock.t += 10_000;
    const fields = formatSummary(stats.take());
    assert.deepEqual(fields, {
      tasks: 0,
      completed: 0,
      failed: 0,
      tasks_per_s: 0,
      mean_wait_ms: 0,
      mean_run_ms: 0,
      max_wait_ms: 0,
      max_run_ms: 0,
      seconds: 10,
      total_tasks: 0,
      total_failed: 0,
    });
  });
});
