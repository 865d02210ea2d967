/**
 * A one-line terminal progress bar for a set of tasks: finished (done + failed) of total, the
 * failed and running counts, the rate over a sliding window and an ETA. It draws on a TTY
 * stream (stderr by default) and writes nothing at all to anything else.
 *
 * ```
 * squares [############------------------]  42% 420/1000 (3 failed, 8 running) 120/s ETA 0:05
 * squares [##############################] 100% 1000/1000 (3 failed, 0 running) 122/s in 0:08
 * squares 420/? (3 failed, 8 running) 120/s elapsed 0:03
 * ```
 *
 * (running; after `stop()`, with the average rate and the elapsed time; with an unknown total)
 *
 * The bar is drawn by hand rather than with `cli-progress`: that library reads `Date.now()`
 * itself (no injectable clock), estimates its ETA from the last few `update` calls rather than
 * the last few seconds, saves and restores the cursor around the whole run (so whatever else
 * was written to the terminal meanwhile is overwritten by the final line), turns terminal
 * auto-wrap off until `stop()` and keeps an un-unref'd timer running until `stop()`.
 *
 * Drawing is one `\r` + line + erase-to-end-of-line write, the line cut to the terminal width,
 * and a newline on `stop()`. The cursor is never hidden or moved off the line, so an
 * interrupted run leaves the terminal as it was.
 *
 * @module
 */

/** Where a bar draws: the part of a Node `tty.WriteStream` it uses. */
export interface ProgressStream {
  /** The bar draws only when this is `true`; otherwise it writes nothing at all. */
  readonly isTTY?: boolean;
  /** Terminal width in columns (80 when absent). Read at every redraw, so resizes are followed. */
  readonly columns?: number;
  /** Writes a chunk; the return value is ignored. */
  write(chunk: string): unknown;
}

/** Task counts passed to {@linkcode ProgressBar.update}. Non-negative integers. */
export interface ProgressCounts {
  /** Tasks that finished successfully. */
  done: number;
  /** Tasks that finished with an error or were cancelled. */
  failed: number;
  /** Tasks currently running. */
  running: number;
  /** Total number of tasks; when omitted the previous total (or the unknown total) is kept. */
  total?: number;
}

/** Options of {@linkcode ProgressBar}. */
export interface ProgressBarOptions {
  /** Total number of tasks; omit when unknown (no percentage, bar or ETA is shown then). */
  total?: number;
  /**
   * Stream to draw on. Default: Node's `process.stderr` (also under Deno), resolved
   * asynchronously; updates made before it resolves are drawn once it has.
   */
  stream?: ProgressStream;
  /**
   * Text in front of the bar; control characters are replaced by spaces, and widths are counted
   * in UTF-16 code units, so keep it to narrow (e.g. ASCII) characters. Dropped first when the
   * terminal is too narrow. Default: none.
   */
  label?: string;
  /** Minimum time between redraws in ms. Default 100. */
  intervalMs?: number;
  /** The rate is measured over roughly this many trailing ms. Default 5000. */
  rateWindowMs?: number;
  /**
   * Also redraw from an unref'd timer every `intervalMs` (only while drawing on a TTY), so the
   * last throttled update is shown and the rate and ETA age while nothing finishes. The timer
   * never keeps the process alive and stops with `stop()`. Default `true`; tests pass `false`.
   */
  autoRefresh?: boolean;
  /** Clock in ms, for tests. Default `performance.now()`. */
  now?: () => number;
}

/** A point of the completed count's history, for the sliding-window rate. */
interface Sample {
  t: number;
  completed: number;
}

const ERASE_RIGHT = "\x1b[K";
const DEFAULT_COLUMNS = 80;
const BAR_MAX = 30;
const BAR_MIN = 5;
/** Samples kept per rate window: bounds memory and work whatever the update rate. */
const SAMPLES_PER_WINDOW = 50;

/**
 * A single-line progress bar on a TTY. `update()` is cheap (it stores the counts and draws at
 * most once per `intervalMs`); nothing it draws ever throws into the caller: if writing fails,
 * the bar goes quiet.
 *
 * ```ts
 * const bar = new ProgressBar({ total: futures.length, label: "squares" });
 * try {
 *   // ...on every state change:
 *   bar.update({ done, failed, running });
 * } finally {
 *   bar.stop();
 * }
 * ```
 */
export class ProgressBar {
  #stream: ProgressStream | undefined;
  /** Drawing: the stream is a TTY, not stopped and nothing has failed yet. */
  #drawing = false;
  #stopped = false;
  readonly #label: string;
  readonly #intervalMs: number;
  readonly #windowMs: number;
  readonly #autoRefresh: boolean;
  readonly #now: () => number;
  readonly #startedAt: number;
  #cancelTimer: (() => void) | undefined;

  #done = 0;
  #failed = 0;
  #running = 0;
  #total: number | undefined;
  #updated = false;

  #lastRender = -Infinity;
  #lastLine = "";
  #first: Sample | undefined;
  #samples: Sample[] = [];

  /** Creates a bar; it draws nothing until the first `update()` (or `stop()`). */
  constructor(options: ProgressBarOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`ProgressBar options must be an object, got ${String(options)}`);
    }
    const { total, stream, label, intervalMs, rateWindowMs, autoRefresh, now } = options;
    if (total !== undefined) checkCount(total, "ProgressBar total");
    if (
      stream !== undefined &&
      (typeof stream !== "object" || stream === null || typeof stream.write !== "function")
    ) {
      throw new TypeError(
        `ProgressBar stream must be an object with a write(chunk) method, got ${String(stream)}`,
      );
    }
    if (label !== undefined && typeof label !== "string") {
      throw new TypeError(`ProgressBar label must be a string, got ${String(label)}`);
    }
    if (autoRefresh !== undefined && typeof autoRefresh !== "boolean") {
      throw new TypeError(
        `ProgressBar autoRefresh must be true or false, got ${String(autoRefresh)}`,
      );
    }
    if (now !== undefined && typeof now !== "function") {
      throw new TypeError(`ProgressBar now must be a function returning ms, got ${String(now)}`);
    }
    this.#total = total;
    // deno-lint-ignore no-control-regex
    this.#label = label === undefined ? "" : label.replace(/[\x00-\x1f\x7f-\x9f]/g, " ");
    this.#intervalMs = checkMs(intervalMs, "ProgressBar intervalMs", 100, true);
    this.#windowMs = checkMs(rateWindowMs, "ProgressBar rateWindowMs", 5000, false);
    this.#autoRefresh = autoRefresh ?? true;
    this.#now = now ?? (() => performance.now());
    this.#startedAt = this.#now();
    if (stream !== undefined) this.#attach(stream);
    if (stream === undefined || (this.#drawing && this.#autoRefresh)) void this.#setUp();
  }

  /**
   * Whether the bar is drawing: its stream is a TTY and it is not stopped. `false` also while
   * the default stream is still resolving, and after a failed write.
   */
  get drawing(): boolean {
    return this.#drawing;
  }

  /**
   * Records new counts and redraws unless the last redraw was less than `intervalMs` ago.
   * Throws `TypeError`/`RangeError` on counts that are not non-negative integers; ignored after
   * `stop()`.
   */
  update(counts: ProgressCounts): void {
    checkCounts(counts);
    if (this.#stopped) return;
    this.#done = counts.done;
    this.#failed = counts.failed;
    this.#running = counts.running;
    if (counts.total !== undefined) this.#total = counts.total;
    this.#updated = true;
    if (!this.#drawing) return;
    try {
      const t = this.#now();
      if (t - this.#lastRender >= this.#intervalMs) this.#render(t);
    } catch {
      this.#drawing = false;
    }
  }

  /**
   * Draws the final line (average rate and elapsed time instead of the ETA) and a newline, then
   * stops drawing. Idempotent.
   */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    // With the default stream still resolving, #setUp() draws the final line once it has.
    if (this.#stream !== undefined) this.#finish();
  }

  #attach(stream: ProgressStream): void {
    this.#stream = stream;
    try {
      this.#drawing = stream.isTTY === true;
    } catch {
      this.#drawing = false;
    }
  }

  /** Resolves the default stream and starts the refresh timer; never rejects. */
  async #setUp(): Promise<void> {
    try {
      if (this.#stream === undefined) {
        const { default: process } = await import("node:process");
        this.#attach(process.stderr);
        if (this.#stopped) return this.#finish();
        if (this.#drawing && this.#updated) this.#render(this.#now());
      }
      if (!this.#drawing || !this.#autoRefresh || this.#stopped) return;
      const timers = await import("node:timers");
      if (!this.#drawing || this.#stopped) return;
      const timer = timers.setInterval(() => this.#tick(), Math.max(this.#intervalMs, 20));
      timer.unref();
      this.#cancelTimer = () => timers.clearInterval(timer);
    } catch {
      this.#drawing = false;
    }
  }

  #tick(): void {
    if (!this.#drawing || this.#stopped) return;
    try {
      const t = this.#now();
      if (this.#updated && t - this.#lastRender >= this.#intervalMs) this.#render(t);
    } catch {
      this.#drawing = false;
      this.#cancelTimer?.();
    }
  }

  #finish(): void {
    if (!this.#drawing) return;
    this.#drawing = false;
    try {
      const t = this.#now();
      this.#sample(t);
      this.#stream!.write(`\r${this.#format(t, true)}${ERASE_RIGHT}\n`);
    } catch {
      // A bar never throws into its caller.
    }
  }

  #render(t: number): void {
    this.#lastRender = t;
    this.#sample(t);
    const line = this.#format(t, false);
    if (line === this.#lastLine) return;
    this.#lastLine = line;
    this.#stream!.write(`\r${line}${ERASE_RIGHT}`);
  }

  /** Records the completed count at `t`; keeps one sample at or before the window's start. */
  #sample(t: number): void {
    const completed = this.#done + this.#failed;
    const samples = this.#samples;
    if (this.#first === undefined) this.#first = { t, completed };
    const last = samples[samples.length - 1];
    if (last === undefined || t - last.t >= this.#windowMs / SAMPLES_PER_WINDOW) {
      samples.push({ t, completed });
    }
    const start = t - this.#windowMs;
    while (samples.length > 1 && samples[1].t <= start) samples.shift();
  }

  /** Tasks per second since `from`, or undefined when no time has passed. */
  #rateSince(from: Sample | undefined, t: number): number | undefined {
    if (from === undefined || !(t > from.t)) return undefined;
    return (this.#done + this.#failed - from.completed) * 1000 / (t - from.t);
  }

  #format(t: number, final: boolean): string {
    const completed = this.#done + this.#failed;
    const total = this.#total;
    const rate = this.#rateSince(final ? this.#first : this.#samples[0], t);
    const counts = `(${this.#failed} failed, ${this.#running} running)`;
    const rateText = `${rate === undefined ? "--" : formatRate(rate)}/s`;
    let timeText: string;
    if (final) timeText = `in ${formatDuration((t - this.#startedAt) / 1000)}`;
    else if (total === undefined) {
      timeText = `elapsed ${formatDuration((t - this.#startedAt) / 1000)}`;
    } else {
      const remaining = Math.max(0, total - completed);
      const eta = remaining === 0 ? 0 : rate === undefined || rate <= 0 ? NaN : remaining / rate;
      timeText = `ETA ${formatDuration(Math.ceil(eta))}`;
    }

    const columns = this.#columns();
    const maxWidth = Math.max(1, columns - 1); // never the last column: no pending wrap
    const head = this.#label === "" ? "" : `${this.#label} `;
    const fraction = total === undefined ? 0 : total === 0 ? 1 : Math.min(1, completed / total);
    const progress = total === undefined
      ? `${completed}/?`
      : `${String(Math.floor(fraction * 100)).padStart(3)}% ${completed}/${total}`;
    const tail = `${progress} ${counts} ${rateText} ${timeText}`;
    if (total !== undefined) {
      const width = Math.min(BAR_MAX, maxWidth - head.length - tail.length - 3);
      if (width >= BAR_MIN) {
        const filled = Math.floor(fraction * width);
        return `${head}[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${tail}`;
      }
    }
    // Narrower: no bar, then no label, then only the failed count, then no rate; then cut.
    const candidates = [
      head + tail,
      tail.trimStart(),
      `${progress} ${this.#failed} failed ${rateText} ${timeText}`.trimStart(),
      `${progress} ${this.#failed} failed ${timeText}`.trimStart(),
    ];
    for (const line of candidates) if (line.length <= maxWidth) return line;
    return candidates[candidates.length - 1].slice(0, maxWidth);
  }

  #columns(): number {
    const columns = this.#stream?.columns;
    return typeof columns === "number" && columns >= 1 ? Math.floor(columns) : DEFAULT_COLUMNS;
  }
}

function checkCount(value: unknown, what: string): void {
  if (typeof value !== "number") {
    throw new TypeError(`${what} must be a non-negative integer, got ${typeof value}`);
  }
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative integer, got ${String(value)}`);
  }
}

function checkCounts(counts: ProgressCounts): void {
  if (typeof counts !== "object" || counts === null) {
    throw new TypeError(
      `ProgressBar.update() takes { done, failed, running, total? }, got ${String(counts)}`,
    );
  }
  const { done, failed, running, total } = counts;
  // The fast path: four integer checks, then back to the caller.
  if (
    Number.isInteger(done) && done >= 0 && Number.isInteger(failed) && failed >= 0 &&
    Number.isInteger(running) && running >= 0 &&
    (total === undefined || (Number.isInteger(total) && total >= 0))
  ) return;
  checkCount(done, "ProgressBar.update() done");
  checkCount(failed, "ProgressBar.update() failed");
  checkCount(running, "ProgressBar.update() running");
  if (total !== undefined) checkCount(total, "ProgressBar.update() total");
}

function checkMs(value: unknown, what: string, fallback: number, zeroOk: boolean): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== "number" || !Number.isFinite(value) || value < 0 || (!zeroOk && value === 0)
  ) {
    throw new RangeError(
      `${what} must be a ${zeroOk ? "non-negative" : "positive"} finite number of ms, ` +
        `got ${String(value)}`,
    );
  }
  return value;
}

/** `1234.5` → `"1.2k"`; three significant-ish digits, never `"0.00"` for a positive rate. */
function formatRate(rate: number): string {
  if (rate <= 0) return "0";
  if (rate < 0.01) return "<0.01";
  if (rate < 10) return rate.toFixed(2);
  if (rate < 100) return rate.toFixed(1);
  if (rate < 10_000) return String(Math.round(rate));
  if (rate < 10_000_000) return `${(rate / 1000).toFixed(1)}k`;
  return `${(rate / 1_000_000).toFixed(1)}M`;
}

/** Seconds → `m:ss` or `h:mm:ss`; `--` when not a finite non-negative number. */
function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--";
  const s = Math.floor(seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const secs = String(s % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}
