/**
 * Cron schedules: checking an expression and a time zone ({@link checkCron}), and finding the next
 * due time ({@link nextCronTime}). Pure logic on top of [croner](https://github.com/Hexagon/croner);
 * nothing here starts a timer.
 *
 * The rules:
 *
 * - **Fields.** 5 fields (`minute hour day-of-month month day-of-week`) or 6 with seconds first
 *   (`"*\/10 * * * * *"`). Croner's 7-field form (with a year) is refused. Each field takes what
 *   croner accepts: `*`, `?`, lists, ranges, `*\/step`, `range/step`, month and weekday names
 *   (`JAN`, `MON`), weekdays 0-7 (0 and 7 are Sunday), and croner's extensions `L`, `W`, `#` and
 *   `+`.
 * - **Nicknames.** `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and
 *   `@hourly` stand for the usual 5-field expressions, case-insensitively. `@reboot` is refused: a
 *   schedule has no reboot to run at.
 * - **Day of month and day of week** combine as in Vixie cron and cronie: when both fields are
 *   restricted a day matches if **either** matches (`0 0 1 * MON` runs on the 1st and on every
 *   Monday); when either field starts with `*` or `?` a day must match **both** (`0 0 * * MON`
 *   runs on Mondays only). As in Vixie cron, a field such as `*\/2` starts with `*` and so counts
 *   as unrestricted here: `0 0 *\/2 * MON` runs on Mondays that fall on an odd day of the month.
 *   Croner's `+` prefix on the weekday field (`0 0 1 * +MON`) always asks for both.
 * - **Time zone.** An IANA zone such as `"Europe/Berlin"`, default `"UTC"` (so every process
 *   computes the same due times, whatever its local zone). Fixed UTC offsets such as `"+01:00"` are
 *   refused; use an `Etc/GMT-1`-style zone for a fixed offset.
 * - **Daylight saving time**, as in Vixie cron. A *fixed-time* schedule has no `*`, `?` or step in
 *   its seconds, minutes and hours (`30 2 * * *`, `0 30 2,14 * * *`); every other schedule is an
 *   *interval* schedule (`*\/15 * * * *`, `30 * * * *`). On the day the clocks spring forward
 *   (Europe/Berlin 2026-03-29, 02:00 → 03:00) a fixed-time schedule whose time falls in the gap
 *   runs once, at the end of the gap (`30 2 * * *` runs at 03:00 CEST); an interval schedule skips
 *   the times that do not exist. On the day the clocks fall back (2026-10-25, 03:00 → 02:00) a
 *   fixed-time schedule runs once, at the first of the two 02:30s (02:30 CEST); an interval
 *   schedule runs on both passes through the repeated hour.
 * - **Never.** An expression that can never fire (`0 0 30 2 *`, February 30) is refused. Croner
 *   does not look past the year 3000, so {@link nextCronTime} returns `undefined` after that.
 *
 * @module
 */

import { Cron } from "croner";

/** A checked cron schedule, made by {@link checkCron}. Plain data: it can be stored as JSON. */
export interface CronSpec {
  /**
   * The expression, trimmed, with single spaces between its fields (a nickname in lower case,
   * e.g. `"@hourly"`).
   */
  readonly expression: string;
  /** The IANA time zone the expression is read in, as `Intl` names it (default `"UTC"`). */
  readonly timezone: string;
  /** True when the expression has a seconds field (6 fields), so it can fire every second. */
  readonly seconds: boolean;
}

const NICKNAMES: Readonly<Record<string, string>> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};

const FIELDS = "5 fields (minute hour day month weekday) or 6 (seconds first)";

/** Croner jobs (never scheduled, only asked for run times) by spec. */
const jobs = new WeakMap<CronSpec, Cron>();

/** A zone name: letters first, then letters, digits, `_`, `+`, `-`, in `/`-separated parts. */
const ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+\-]*(?:\/[A-Za-z0-9_+\-]+)*$/;

function checkTimezone(timezone: unknown): string {
  if (timezone === undefined) return "UTC";
  if (typeof timezone !== "string") {
    throw new TypeError(
      `cron timezone must be an IANA time zone name such as "Europe/Berlin", got ${
        String(timezone)
      }`,
    );
  }
  let resolved: string | undefined;
  if (ZONE_NAME.test(timezone)) {
    try {
      resolved = new Intl.DateTimeFormat("en-US", { timeZone: timezone }).resolvedOptions()
        .timeZone;
    } catch {
      // not a zone this runtime knows
    }
  }
  if (resolved === undefined) {
    throw new RangeError(
      `cron timezone must be an IANA time zone name such as "Europe/Berlin" or "UTC", got ${
        JSON.stringify(timezone)
      }`,
    );
  }
  return resolved;
}

/** The fields of an expression, a nickname expanded. */
function fieldsOf(expression: string): { normalized: string; fields: string[] } {
  const trimmed = expression.trim();
  if (trimmed.startsWith("@")) {
    const nickname = trimmed.toLowerCase();
    const expanded = NICKNAMES[nickname];
    if (expanded === undefined) {
      const reason = nickname === "@reboot"
        ? "is not supported (a schedule has no reboot to run at)"
        : "is not a known nickname";
      throw new TypeError(
        `cron expression ${JSON.stringify(expression)} ${reason}; accepted nicknames: ${
          Object.keys(NICKNAMES).join(", ")
        }`,
      );
    }
    return { normalized: nickname, fields: expanded.split(" ") };
  }
  const fields = trimmed === "" ? [] : trimmed.split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) {
    throw new TypeError(
      `cron expression ${JSON.stringify(expression)} must have ${FIELDS}, got ${fields.length}`,
    );
  }
  return { normalized: fields.join(" "), fields };
}

/** The fields' names and ranges, seconds first (a 5-field expression has no seconds). */
const RANGES: readonly [string, number, number][] = [
  ["second", 0, 59],
  ["minute", 0, 59],
  ["hour", 0, 23],
  ["day of month", 1, 31],
  ["month", 1, 12],
  ["day of week", 0, 7],
];

/**
 * Checks the plain numbers of the fields (values, ranges, steps) against their field's range, so
 * that the message names the value as written (croner counts months and days from 0 in its own).
 */
function checkRanges(expression: string, fields: string[]): void {
  const ranges = RANGES.slice(6 - fields.length);
  fields.forEach((field, i) => {
    const [name, min, max] = ranges[i];
    for (const part of field.split(",")) {
      const match = /^(?:\*|\?|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
      if (!match) continue; // names, L, W, #: croner's to check
      const [, from, to, step] = match;
      const bad = (what: string) => {
        throw new RangeError(
          `cron expression ${JSON.stringify(expression)}: ${what} in the ${name} field "${field}"`,
        );
      };
      for (const value of [from, to]) {
        if (value !== undefined && (Number(value) < min || Number(value) > max)) {
          bad(`${value} is out of range (${min}-${max})`);
        }
      }
      if (from !== undefined && to !== undefined && Number(to) < Number(from)) {
        bad(`the range ${from}-${to} ends before it starts`);
      }
      if (step !== undefined && Number(step) < 1) bad(`a step must be 1 or more, got ${step}`);
    }
  });
}

function makeJob(expression: string, fields: string[], timezone: string): Cron {
  checkRanges(expression, fields);
  // Vixie cron: day of month and day of week are ORed only when neither field starts with "*"
  // ("?" is croner's alias of "*"); otherwise both must match.
  const dom = fields[fields.length - 3];
  const dow = fields[fields.length - 1];
  const star = (field: string) => field.startsWith("*") || field.startsWith("?");
  try {
    return new Cron(fields.join(" "), {
      mode: "5-or-6-parts",
      timezone,
      domAndDow: star(dom) || star(dow),
      fixedTimeRule: "no-wildcard",
    });
  } catch (error) {
    const message = String((error as Error)?.message ?? error).replace(/^CronPattern:\s*/, "");
    const Class = error instanceof RangeError ? RangeError : TypeError;
    throw new Class(`cron expression ${JSON.stringify(expression)} is invalid: ${message}`, {
      cause: error,
    });
  }
}

/**
 * Checks a cron expression and time zone; throws `TypeError` / `RangeError` saying what is wrong
 * and what is accepted. See the module documentation for the accepted syntax and the rules.
 *
 * @param expression 5 fields (`minute hour day month weekday`), 6 fields (seconds first), or a
 *   nickname such as `"@hourly"`.
 * @param timezone An IANA time zone name; default `"UTC"`.
 * @returns The checked schedule, for {@link nextCronTime}.
 *
 * @example
 * ```ts ignore
 * const spec = checkCron("30 2 * * *", "Europe/Berlin");
 * new Date(nextCronTime(spec, Date.UTC(2026, 0, 1))!).toISOString(); // "2026-01-01T01:30:00.000Z"
 * checkCron("* * *"); // TypeError: ... must have 5 fields (minute hour day month weekday) ...
 * ```
 */
export function checkCron(expression: unknown, timezone?: unknown): CronSpec {
  if (typeof expression !== "string") {
    throw new TypeError(
      `cron expression must be a string of ${FIELDS}, got ${
        expression === null ? "null" : typeof expression
      }`,
    );
  }
  const zone = checkTimezone(timezone);
  const { normalized, fields } = fieldsOf(expression);
  const job = makeJob(expression, fields, zone);
  // Without a year field a schedule that fires at all fires again within 400 years, so one that
  // does not fire after 2000 never does.
  if (job.nextRun(new Date(Date.UTC(2000, 0, 1))) === null) {
    throw new RangeError(`cron expression ${JSON.stringify(expression)} never fires`);
  }
  const spec: CronSpec = Object.freeze({
    expression: normalized,
    timezone: zone,
    seconds: fields.length === 6,
  });
  jobs.set(spec, job);
  return spec;
}

/**
 * The first due time of a schedule strictly after `afterMs`, in epoch milliseconds (always a whole
 * second), or `undefined` when there is none (only past the year 3000, where croner stops).
 *
 * `spec` should come from {@link checkCron}; a spec read back from storage (plain data) is checked
 * again on first use.
 *
 * @param spec The schedule.
 * @param afterMs An instant in epoch milliseconds; a run exactly at `afterMs` is not returned.
 *
 * @example
 * ```ts ignore
 * const every10s = checkCron("*\/10 * * * * *");
 * nextCronTime(every10s, Date.UTC(2026, 0, 1, 0, 0, 10)); // Date.UTC(2026, 0, 1, 0, 0, 20)
 * ```
 */
export function nextCronTime(spec: CronSpec, afterMs: number): number | undefined {
  if (
    typeof afterMs !== "number" || !Number.isFinite(afterMs) ||
    Number.isNaN(new Date(afterMs).getTime())
  ) {
    throw new RangeError(
      `afterMs must be a finite number of epoch milliseconds, got ${String(afterMs)}`,
    );
  }
  let job = jobs.get(spec);
  if (job === undefined) {
    if (typeof spec !== "object" || spec === null) {
      throw new TypeError(`spec must be a CronSpec from checkCron(), got ${String(spec)}`);
    }
    const checked = checkCron(spec.expression, spec.timezone);
    job = jobs.get(checked)!;
    jobs.set(spec, job);
  }
  const next = job.nextRun(new Date(afterMs));
  return next === null ? undefined : next.getTime();
}
