import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ProgressBar, type ProgressBarOptions, type ProgressStream } from "../lib/_progress_bar.ts";

/** A stream that records every write and the fake clock's time at that write. */
class FakeStream implements ProgressStream {
  writes: string[] = [];
  times: number[] = [];
  constructor(
    public isTTY: boolean | undefined = true,
    public columns: number | undefined = 120,
    private clock?: FakeClock,
  ) {}
  write(chunk: string): boolean {
    this.writes.push(chunk);
    this.times.push(this.clock?.t ?? NaN);
    return true;
  }
  /** The visible text of each write (without `\r`, erase-to-end-of-line and newline). */
  get lines(): string[] {
    return this.writes.map((w) => {
      assert.ok(w.startsWith("\r") && /\[K\n?$/.test(w), `${JSON.stringify(w)} is not one line`);
      return w.slice(1, w.lastIndexOf(ERASE));
    });
  }
  get last(): string {
    const lines = this.lines;
    assert.ok(lines.length > 0, "nothing was drawn");
    return lines[lines.length - 1];
  }
}

class FakeClock {
  t = 0;
  now = (): number => this.t;
}

function setup(options: ProgressBarOptions = {}, columns = 120) {
  const clock = new FakeClock();
  const stream = new FakeStream(true, columns, clock);
  const bar = new ProgressBar({ stream, now: clock.now, autoRefresh: false, ...options });
  return { clock, stream, bar };
}

const ERASE = "\x1b[K";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("ProgressBar", () => {
  it("writes nothing at all when the stream is not a TTY", async () => {
    for (const isTTY of [false, undefined]) {
      const clock = new FakeClock();
      const stream = new FakeStream(true, 80, clock);
      stream.isTTY = isTTY;
      const bar = new ProgressBar({ stream, now: clock.now, total: 10, intervalMs: 20 });
      assert.equal(bar.drawing, false);
      for (let i = 0; i <= 10; i++) {
        clock.t += 1000;
        bar.update({ done: i, failed: 0, running: 1 });
      }
      await sleep(60); // the refresh timer (if there were one) would have fired
      bar.stop();
      bar.stop();
      assert.deepEqual(stream.writes, []);
    }
  });

  it("draws counts, percentage, bar, rate and ETA", () => {
    const { clock, stream, bar } = setup({ total: 1000, label: "squares" });
    bar.update({ done: 0, failed: 0, running: 8 });
    assert.equal(
      stream.last,
      "squares [------------------------------]   0% 0/1000 (0 failed, 8 running) --/s ETA --",
    );
    // 100 tasks/s (9 done + 1 failed every 100 ms) for 5 s.
    for (let k = 1; k <= 50; k++) {
      clock.t = k * 100;
      bar.update({ done: 9 * k, failed: k, running: 8 });
    }
    assert.equal(
      stream.last,
      "squares [###############---------------]  50% 500/1000 (50 failed, 8 running) 100/s ETA 0:05",
    );
    for (const w of stream.writes) {
      assert.ok(w.startsWith("\r") && w.endsWith(ERASE), JSON.stringify(w));
      assert.equal(w.indexOf(ERASE), w.length - ERASE.length);
      assert.ok(!w.includes("\n"));
    }
  });

  it("measures the rate over a sliding window, not since the start", () => {
    const { clock, stream, bar } = setup({ total: 10_000, rateWindowMs: 5000 });
    let completed = 0;
    for (let k = 0; k < 100; k++) { // 10 s at 100/s
      clock.t += 100;
      completed += 10;
      bar.update({ done: completed, failed: 0, running: 4 });
    }
    assert.match(stream.last, / 100\/s ETA 1:30$/); // 9000 left at 100/s
    for (let k = 0; k < 60; k++) { // then 6 s at 10/s
      clock.t += 100;
      completed += 1;
      bar.update({ done: completed, failed: 0, running: 4 });
    }
    // Since the start it would be 1060 / 16 s = 66/s; over the last 5 s it is 10/s.
    assert.match(stream.last, / 1060\/10000 \(0 failed, 4 running\) 10\.0\/s ETA 14:54$/);
  });

  it("shows a zero rate and an unknown ETA when nothing finishes, and skips unchanged lines", () => {
    const { clock, stream, bar } = setup({ total: 100 });
    for (let k = 1; k <= 20; k++) {
      clock.t = k * 100;
      bar.update({ done: k, failed: 0, running: 2 });
    }
    assert.match(stream.last, / 10\.0\/s ETA 0:08$/);
    for (let k = 21; k <= 100; k++) { // 8 s stalled
      clock.t = k * 100;
      bar.update({ done: 20, failed: 0, running: 2 });
    }
    assert.match(stream.last, / 20\/100 \(0 failed, 2 running\) 0\/s ETA --$/);
    const before = stream.writes.length;
    for (let k = 101; k <= 120; k++) {
      clock.t = k * 100;
      bar.update({ done: 20, failed: 0, running: 2 });
    }
    assert.equal(stream.writes.length, before, "an unchanged line is not rewritten");
  });

  it("redraws at most once per intervalMs", () => {
    const { clock, stream, bar } = setup({ total: 1000, intervalMs: 100 });
    for (let i = 1; i <= 1000; i++) { // one update every 10 ms for 10 s
      clock.t = i * 10;
      bar.update({ done: i, failed: 0, running: 1 });
    }
    assert.ok(stream.writes.length >= 95 && stream.writes.length <= 101, `${stream.writes.length}`);
    for (let i = 1; i < stream.times.length; i++) {
      assert.ok(stream.times[i] - stream.times[i - 1] >= 100, `redraws at ${stream.times}`);
    }
    bar.stop(); // the final line ignores the throttle
    assert.match(stream.writes.at(-1)!, /1000\/1000.*\n$/);
  });

  it("shows counts, rate and elapsed time without percentage or ETA when the total is unknown", () => {
    const { clock, stream, bar } = setup({ label: "imap" });
    for (let k = 1; k <= 42; k++) {
      clock.t = k * 100;
      bar.update({ done: 9 * k, failed: k, running: 3 });
    }
    assert.equal(stream.last, "imap 420/? (42 failed, 3 running) 100/s elapsed 0:04");
    clock.t += 100;
    bar.update({ done: 400, failed: 30, running: 3, total: 500 }); // the total becomes known
    assert.match(stream.last, /^imap \[#+-+\] {2}86% 430\/500 \(30 failed, 3 running\) .* ETA /);
    clock.t += 100;
    bar.update({ done: 410, failed: 30, running: 3, total: 800 }); // and grows
    assert.match(stream.last, / {2}55% 440\/800 /);
    clock.t += 100;
    bar.update({ done: 420, failed: 30, running: 3 }); // an omitted total keeps the last one
    assert.match(stream.last, / {2}56% 450\/800 /);
  });

  it("fits the line to the terminal width, dropping bar, label and detail in turn", () => {
    const expected: [number, RegExp][] = [
      [200, /^a-rather-long-label \[#{18}-{12}\] {2}61% 61017\/100000 \(17 failed, 16 running\) /],
      [100, /^a-rather-long-label \[#{10}-{8}\] {2}61% /], // a narrower bar
      [80, /^a-rather-long-label {2}61% 61017\/100000 \(17 failed, 16 running\) /], // no bar
      [60, /^61% 61017\/100000 \(17 failed, 16 running\) 12\.2k\/s ETA 0:04$/], // no label
      [50, /^61% 61017\/100000 17 failed 12\.2k\/s ETA 0:04$/], // no running count
      [40, /^61% 61017\/100000 17 failed ETA 0:04$/], // no rate
      [20, /^61% 61017\/100000 17$/], // cut
      [1, /^6$/],
      [0, /^a-rather-long-label {2}61% /], // unknown width: 80
    ];
    for (const [columns, pattern] of expected) {
      const { clock, stream, bar } = setup(
        { total: 100_000, label: "a-rather-long-label" },
        columns,
      );
      bar.update({ done: 0, failed: 0, running: 0 });
      clock.t = 5000;
      bar.update({ done: 61_000, failed: 17, running: 16 });
      const line = stream.last;
      assert.ok(line.length <= Math.max(1, (columns || 80) - 1), `${columns}: ${line}`);
      assert.match(line, pattern, `${columns} columns`);
    }
  });

  it("follows terminal resizes", () => {
    const { clock, stream, bar } = setup({ total: 1000 }, 120);
    for (const columns of [120, 30, undefined, 10, 100]) {
      stream.columns = columns;
      clock.t += 1000;
      bar.update({ done: clock.t / 100, failed: 0, running: 1 });
      assert.ok(stream.last.length <= (columns ?? 80) - 1, `${columns}: ${stream.last}`);
    }
    assert.match(stream.last, /^\[#-+\] {3}5% 50\/1000 /);
  });

  it("replaces control characters in the label", () => {
    const { stream, bar } = setup({ label: "a\nb\x1b[31mc" });
    bar.update({ done: 1, failed: 0, running: 0 });
    assert.match(stream.last, /^a b \[31mc 1\/\? /);
  });

  it("stop() draws a final summary line and a newline, once", () => {
    const { clock, stream, bar } = setup({ total: 50 });
    for (let k = 1; k <= 50; k++) {
      clock.t = k * 200;
      bar.update({ done: k - 1, failed: 1, running: 50 - k });
    }
    bar.stop();
    const last = stream.writes.at(-1)!;
    assert.ok(last.endsWith("\n"));
    // Average since the first update (5 tasks/s), elapsed since construction.
    assert.ok(last.endsWith(`] 100% 50/50 (1 failed, 0 running) 5.00/s in 0:10${ERASE}\n`), last);
    const count = stream.writes.length;
    bar.stop();
    bar.update({ done: 60, failed: 0, running: 0 });
    assert.equal(stream.writes.length, count);
    assert.equal(stream.writes.join("").split("\n").length - 1, 1, "exactly one newline");
    assert.equal(bar.drawing, false);
  });

  it("stop() draws a line even without any update", () => {
    const { clock, stream, bar } = setup({ total: 3 });
    clock.t = 1500;
    bar.stop();
    assert.deepEqual(stream.lines, [
      "[------------------------------]   0% 0/3 (0 failed, 0 running) --/s in 0:01",
    ]);
  });

  it("stays cheap at 100,000 updates", () => {
    const { clock, stream, bar } = setup({ total: 100_000 });
    for (let i = 1; i <= 100_000; i++) { // 100,000 updates within one second
      clock.t += 0.01;
      bar.update({ done: i, failed: 0, running: 8 });
    }
    assert.ok(stream.writes.length <= 12, `${stream.writes.length} writes`);
    const slow = setup({ total: 100_000 });
    for (let i = 1; i <= 100_000; i++) { // 100,000 updates over 100 seconds
      slow.clock.t += 1;
      slow.bar.update({ done: i, failed: 0, running: 8 });
    }
    assert.ok(slow.stream.writes.length <= 1001, `${slow.stream.writes.length} writes`);
    bar.stop();
    slow.bar.stop();
    assert.match(slow.stream.last, /100000\/100000 .* 1000\/s in 1:40$/);
  });

  it("never throws into the caller when writing or the clock fails, and then goes quiet", () => {
    let calls = 0;
    const broken: ProgressStream = {
      isTTY: true,
      write() {
        calls++;
        throw new Error("EPIPE");
      },
    };
    const clock = new FakeClock();
    const bar = new ProgressBar({ stream: broken, now: clock.now, autoRefresh: false });
    bar.update({ done: 1, failed: 0, running: 0 });
    clock.t += 1000;
    bar.update({ done: 2, failed: 0, running: 0 });
    bar.stop();
    assert.equal(calls, 1);
    assert.equal(bar.drawing, false);

    let t = 0;
    const stream = new FakeStream();
    const flaky = new ProgressBar({
      stream,
      autoRefresh: false,
      now: () => {
        if (++t > 2) throw new Error("clock broke");
        return t * 1000;
      },
    });
    flaky.update({ done: 1, failed: 0, running: 0 });
    flaky.update({ done: 2, failed: 0, running: 0 });
    flaky.stop();
    assert.equal(stream.writes.length, 1);
  });

  it("rejects bad options and counts with TypeError/RangeError", () => {
    const stream = new FakeStream();
    const bad: [unknown, ErrorConstructor, RegExp][] = [
      [null, TypeError, /options must be an object/],
      [{ total: -1 }, RangeError, /total must be a non-negative integer, got -1/],
      [{ total: 1.5 }, RangeError, /total must be a non-negative integer/],
      [{ total: "10" }, TypeError, /total must be a non-negative integer, got string/],
      [{ stream: {} }, TypeError, /stream must be an object with a write\(chunk\) method/],
      [{ stream, label: 3 }, TypeError, /label must be a string/],
      [{ stream, intervalMs: -5 }, RangeError, /intervalMs must be a non-negative finite/],
      [{ stream, intervalMs: Infinity }, RangeError, /intervalMs/],
      [{ stream, rateWindowMs: 0 }, RangeError, /rateWindowMs must be a positive finite/],
      [{ stream, autoRefresh: 1 }, TypeError, /autoRefresh must be true or false/],
      [{ stream, now: 5 }, TypeError, /now must be a function/],
    ];
    for (const [options, type, message] of bad) {
      assert.throws(() => new ProgressBar(options as ProgressBarOptions), (e: Error) => {
        assert.ok(e instanceof type, `${JSON.stringify(options)} -> ${e}`);
        assert.match(e.message, message);
        return true;
      });
    }
    const bar = new ProgressBar({ stream, autoRefresh: false });
    const badCounts: [unknown, ErrorConstructor, RegExp][] = [
      [undefined, TypeError, /takes \{ done, failed, running, total\? \}/],
      [{ done: 1, failed: 0 }, TypeError, /running must be a non-negative integer, got undefined/],
      [{ done: -1, failed: 0, running: 0 }, RangeError, /done must be a non-negative integer/],
      [{ done: 0, failed: NaN, running: 0 }, RangeError, /failed .* got NaN/],
      [{ done: 0, failed: 0, running: 0, total: -2 }, RangeError, /total .* got -2/],
    ];
    for (const [counts, type, message] of badCounts) {
      assert.throws(() => bar.update(counts as never), (e: Error) => {
        assert.ok(e instanceof type, `${JSON.stringify(counts)} -> ${e}`);
        assert.match(e.message, message);
        return true;
      });
    }
    bar.stop();
  });

  it("with autoRefresh, a timer draws the last throttled update and stops with stop()", async () => {
    const stream = new FakeStream(true, 100);
    const bar = new ProgressBar({ stream, total: 10, intervalMs: 20 });
    bar.update({ done: 1, failed: 0, running: 1 });
    bar.update({ done: 2, failed: 0, running: 1 }); // throttled
    assert.match(stream.last, / 1\/10 /);
    await sleep(120);
    assert.match(stream.last, / 2\/10 /);
    bar.stop();
    const count = stream.writes.length;
    await sleep(80);
    assert.equal(stream.writes.length, count);
  });
});
