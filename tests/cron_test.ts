import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { checkCron, type CronSpec, nextCronTime } from "../lib/_cron.ts";
import { startRedis, type TestRedis } from "./_redis.ts";
import {
  cleanUp,
  nextApp,
  pool as makePool,
  readTrace,
  traceFile,
  waitFor,
} from "./composition/_setup.ts";

const BERLIN = "Europe/Berlin";

/** The next `n` due times after `from` (an ISO string), as ISO strings. */
function runs(spec: CronSpec, from: string, n: number): string[] {
  const out: string[] = [];
  let at = Date.parse(from);
  for (let i = 0; i < n; i++) {
    const next = nextCronTime(spec, at);
    assert.ok(next !== undefined, `run ${i} after ${new Date(at).toISOString()}`);
    assert.ok(next > at, "strictly after");
    out.push(new Date(next).toISOString());
    at = next;
  }
  return out;
}

/** The days (YYYY-MM-DD) of the next `n` runs. */
function days(spec: CronSpec, from: string, n: number): string[] {
  return runs(spec, from, n).map((iso) => iso.slice(0, 10));
}

describe("checkCron", () => {
  it("accepts 5 and 6 fields and normalizes the spacing", () => {
    assert.deepEqual(checkCron("*/5 * * * *"), {
      expression: "*/5 * * * *",
      timezone: "UTC",
      seconds: false,
    });
    assert.deepEqual(checkCron("  */10   * * * *\t* ", BERLIN), {
      expression: "*/10 * * * * *",
      timezone: BERLIN,
      seconds: true,
    });
  });

  it("refuses other field counts, naming them", () => {
    assert.throws(() => checkCron("* * *"), {
      name: "TypeError",
      message:
        'cron expression "* * *" must have 5 fields (minute hour day month weekday) or 6 (seconds first), got 3',
    });
    assert.throws(() => checkCron("0 0 0 1 1 * 2030"), {
      name: "TypeError",
      message: /"0 0 0 1 1 \* 2030" must have 5 fields .* got 7$/,
    });
    assert.throws(() => checkCron(""), { name: "TypeError", message: /got 0$/ });
    assert.throws(() => checkCron("   "), { name: "TypeError", message: /got 0$/ });
  });

  it("refuses non-strings", () => {
    for (const bad of [undefined, null, 5, ["*", "*", "*", "*", "*"]]) {
      assert.throws(() => checkCron(bad), {
        name: "TypeError",
        message: /^cron expression must be a string of 5 fields/,
      });
    }
  });

  it("refuses values out of their field's range, naming them as written", () => {
    assert.throws(() => checkCron("60 * * * *"), {
      name: "RangeError",
      message: 'cron expression "60 * * * *": 60 is out of range (0-59) in the minute field "60"',
    });
    // (croner counts months and days from 0: its own message said "month: 12" for 13.)
    assert.throws(() => checkCron("0 0 * 13 *"), {
      name: "RangeError",
      message: /: 13 is out of range \(1-12\) in the month field "13"$/,
    });
    assert.throws(() => checkCron("0 0 0 * *"), { message: /0 is out of range \(1-31\)/ });
    assert.throws(() => checkCron("0 0 32 * *"), { message: /32 is out of range \(1-31\)/ });
    assert.throws(() => checkCron("0 0 * * 1,8"), { message: /8 is out of range \(0-7\)/ });
    assert.throws(() => checkCron("60 * * * * *"), { message: /in the second field/ });
    assert.throws(() => checkCron("*/0 * * * *"), {
      name: "RangeError",
      message: /a step must be 1 or more, got 0 in the minute field "\*\/0"$/,
    });
    assert.throws(() => checkCron("5-1 * * * *"), {
      name: "RangeError",
      message: /the range 5-1 ends before it starts/,
    });
    for (const ok of ["0 0 * * 7", "0 0 L * *", "0 0 * JAN-MAR MON", "*/15 0-23/2 1,15 * *"]) {
      checkCron(ok);
    }
  });

  it("reports croner's complaints with the expression", () => {
    assert.throws(() => checkCron("* * * * FOO"), {
      name: "TypeError",
      message: /^cron expression "\* \* \* \* FOO" is invalid/,
    });
    assert.throws(() => checkCron("a b c d e"), { name: "TypeError", message: /is invalid/ });
  });

  it("refuses an expression that never fires", () => {
    assert.throws(() => checkCron("0 0 30 2 *"), {
      name: "RangeError",
      message: 'cron expression "0 0 30 2 *" never fires',
    });
    assert.throws(() => checkCron("0 0 31 4,6,9,11 *"), { message: /never fires/ });
    // Feb 29 does come round, and with a weekday it is ORed.
    checkCron("0 0 29 2 *");
    checkCron("0 0 30 2 MON");
  });

  it("accepts the usual nicknames, case-insensitively, and refuses others", () => {
    const from = "2026-05-13T10:20:30Z"; // a Wednesday
    const cases: [string, string][] = [
      ["@hourly", "2026-05-13T11:00:00.000Z"],
      ["@daily", "2026-05-14T00:00:00.000Z"],
      ["@midnight", "2026-05-14T00:00:00.000Z"],
      ["@weekly", "2026-05-17T00:00:00.000Z"],
      ["@monthly", "2026-06-01T00:00:00.000Z"],
      ["@yearly", "2027-01-01T00:00:00.000Z"],
      ["@annually", "2027-01-01T00:00:00.000Z"],
      [" @HOURLY ", "2026-05-13T11:00:00.000Z"],
    ];
    for (const [nickname, next] of cases) {
      const spec = checkCron(nickname);
      assert.equal(spec.expression, nickname.trim().toLowerCase());
      assert.equal(spec.seconds, false);
      assert.deepEqual(runs(spec, from, 1), [next], nickname);
    }
    assert.throws(() => checkCron("@reboot"), {
      name: "TypeError",
      message: /"@reboot" is not supported .*accepted nicknames: @yearly, @annually/,
    });
    assert.throws(() => checkCron("@every 5m"), {
      name: "TypeError",
      message: /"@every 5m" is not a known nickname; accepted nicknames: /,
    });
  });

  it("checks the time zone against Intl", () => {
    assert.equal(checkCron("* * * * *", "europe/berlin").timezone, BERLIN);
    assert.equal(checkCron("* * * * *", "Etc/GMT-1").timezone, "Etc/GMT-1");
    assert.equal(checkCron("* * * * *", "America/Argentina/Buenos_Aires").seconds, false);
    for (const bad of ["Europe/Nowhere", "", "+01:00", "Z", "UTC+1"]) {
      assert.throws(() => checkCron("* * * * *", bad), {
        name: "RangeError",
        message:
          `cron timezone must be an IANA time zone name such as "Europe/Berlin" or "UTC", got ${
            JSON.stringify(bad)
          }`,
      });
    }
    assert.throws(() => checkCron("* * * * *", 60), {
      name: "TypeError",
      message: /^cron timezone must be an IANA time zone name .*got 60$/,
    });
  });

  it("returns frozen plain data", () => {
    const spec = checkCron("0 * * * *");
    assert.ok(Object.isFrozen(spec));
    assert.deepEqual(JSON.parse(JSON.stringify(spec)), spec);
  });
});

describe("nextCronTime", () => {
  it("is strictly after afterMs, to the second", () => {
    const everySecond = checkCron("* * * * * *");
    const t = Date.parse("2026-01-01T00:00:00Z");
    assert.equal(nextCronTime(everySecond, t), t + 1000);
    assert.equal(nextCronTime(everySecond, t + 1), t + 1000);
    assert.equal(nextCronTime(everySecond, t + 999), t + 1000);
    assert.equal(nextCronTime(everySecond, t - 1), t);

    const everyMinute = checkCron("* * * * *");
    assert.equal(nextCronTime(everyMinute, t), t + 60_000);
    assert.equal(nextCronTime(everyMinute, t - 1), t);
    assert.equal(nextCronTime(everyMinute, t + 59_500), t + 60_000);
  });

  it("runs seconds-level schedules", () => {
    assert.deepEqual(runs(checkCron("*/10 * * * * *"), "2026-01-01T00:00:05Z", 4), [
      "2026-01-01T00:00:10.000Z",
      "2026-01-01T00:00:20.000Z",
      "2026-01-01T00:00:30.000Z",
      "2026-01-01T00:00:40.000Z",
    ]);
    assert.deepEqual(runs(checkCron("15,45 30 * * * *"), "2026-01-01T00:30:20Z", 3), [
      "2026-01-01T00:30:45.000Z",
      "2026-01-01T01:30:15.000Z",
      "2026-01-01T01:30:45.000Z",
    ]);
    // In 5 fields the seconds are 0.
    assert.deepEqual(runs(checkCron("*/5 * * * *"), "2026-01-01T00:03:59.999Z", 2), [
      "2026-01-01T00:05:00.000Z",
      "2026-01-01T00:10:00.000Z",
    ]);
  });

  it("reads the expression in the time zone (UTC by default)", () => {
    const from = "2026-01-15T12:00:00Z";
    assert.deepEqual(runs(checkCron("0 9 * * *"), from, 1), ["2026-01-16T09:00:00.000Z"]);
    assert.deepEqual(runs(checkCron("0 9 * * *", BERLIN), from, 1), ["2026-01-16T08:00:00.000Z"]);
    assert.deepEqual(runs(checkCron("0 9 * * *", "America/New_York"), from, 1), [
      "2026-01-15T14:00:00.000Z",
    ]);
    // Summer time in Berlin is UTC+2.
    assert.deepEqual(runs(checkCron("0 9 * * *", BERLIN), "2026-07-15T12:00:00Z", 1), [
      "2026-07-16T07:00:00.000Z",
    ]);
  });

  describe("day of month and day of week (Vixie cron)", () => {
    // June 2026: the 1st is a Monday.
    const from = "2026-05-31T12:00:00Z";

    it("only day of month restricted: that day", () => {
      assert.deepEqual(days(checkCron("0 0 13 * *"), from, 3), [
        "2026-06-13",
        "2026-07-13",
        "2026-08-13",
      ]);
    });

    it("only day of week restricted: those weekdays", () => {
      assert.deepEqual(days(checkCron("0 0 * * FRI"), from, 3), [
        "2026-06-05",
        "2026-06-12",
        "2026-06-19",
      ]);
      assert.deepEqual(days(checkCron("0 0 ? * 5"), from, 2), ["2026-06-05", "2026-06-12"]);
      assert.deepEqual(days(checkCron("0 0 * * 7"), from, 2), ["2026-06-07", "2026-06-14"]);
    });

    it("both restricted: either (OR)", () => {
      // Friday the 13th style: every 13th and every Friday.
      assert.deepEqual(days(checkCron("0 0 13 * FRI"), from, 6), [
        "2026-06-05",
        "2026-06-12",
        "2026-06-13",
        "2026-06-19",
        "2026-06-26",
        "2026-07-03",
      ]);
      assert.deepEqual(days(checkCron("0 0 0 1,15 * SUN", BERLIN), "2026-06-10T00:00:00Z", 4), [
        "2026-06-13", // Sunday the 14th, 00:00 in Berlin
        "2026-06-14", // the 15th
        "2026-06-20", // Sunday the 21st
        "2026-06-27", // Sunday the 28th
      ]);
    });

    it("a field starting with * counts as unrestricted, so both must match (AND)", () => {
      // Odd days of the month that are Mondays.
      assert.deepEqual(days(checkCron("0 0 */2 * MON"), from, 4), [
        "2026-06-01",
        "2026-06-15",
        "2026-06-29",
        "2026-07-13",
      ]);
      // The 1st, when it is a Sunday, Tuesday, Thursday or Saturday.
      assert.deepEqual(days(checkCron("0 0 1 * */2"), from, 3), [
        "2026-08-01",
        "2026-09-01",
        "2026-10-01",
      ]);
    });

    it("croner's + asks for both", () => {
      assert.deepEqual(days(checkCron("0 0 1 * +MON"), from, 3), [
        "2026-06-01",
        "2027-02-01",
        "2027-03-01",
      ]);
    });
  });

  describe("daylight saving time (Europe/Berlin)", () => {
    // 2026-03-29: 02:00 CET -> 03:00 CEST. 2026-10-25: 03:00 CEST -> 02:00 CET.
    it("spring forward: a fixed time in the gap runs at the end of the gap, once", () => {
      assert.deepEqual(runs(checkCron("30 2 * * *", BERLIN), "2026-03-27T12:00:00Z", 4), [
        "2026-03-28T01:30:00.000Z", // 02:30 CET
        "2026-03-29T01:00:00.000Z", // 03:00 CEST: 02:30 does not exist
        "2026-03-30T00:30:00.000Z", // 02:30 CEST
        "2026-03-31T00:30:00.000Z",
      ]);
      // Also with seconds, and with a list (fixed times: no wildcard or step).
      assert.deepEqual(runs(checkCron("0 30 2 * * *", BERLIN), "2026-03-28T12:00:00Z", 1), [
        "2026-03-29T01:00:00.000Z",
      ]);
      assert.deepEqual(runs(checkCron("30 2,14 * * *", BERLIN), "2026-03-28T18:00:00Z", 3), [
        "2026-03-29T01:00:00.000Z",
        "2026-03-29T12:30:00.000Z",
        "2026-03-30T00:30:00.000Z",
      ]);
    });

    it("spring forward: an interval schedule skips the missing times", () => {
      assert.deepEqual(runs(checkCron("*/30 * * * *", BERLIN), "2026-03-29T00:00:00Z", 3), [
        "2026-03-29T00:30:00.000Z", // 01:30 CET
        "2026-03-29T01:00:00.000Z", // 03:00 CEST
        "2026-03-29T01:30:00.000Z", // 03:30 CEST
      ]);
      assert.deepEqual(runs(checkCron("30 * * * *", BERLIN), "2026-03-29T00:00:00Z", 2), [
        "2026-03-29T00:30:00.000Z", // 01:30 CET
        "2026-03-29T01:30:00.000Z", // 03:30 CEST; 02:30 does not exist
      ]);
    });

    it("fall back: a fixed time in the repeated hour runs once, at its first occurrence", () => {
      assert.deepEqual(runs(checkCron("30 2 * * *", BERLIN), "2026-10-24T12:00:00Z", 3), [
        "2026-10-25T00:30:00.000Z", // 02:30 CEST
        "2026-10-26T01:30:00.000Z", // 02:30 CET the next day: the second 02:30 is skipped
        "2026-10-27T01:30:00.000Z",
      ]);
      // Asked during the repeated hour, after the first 02:30: next day.
      const spec = checkCron("30 2 * * *", BERLIN);
      for (const at of ["2026-10-25T00:30:00Z", "2026-10-25T01:15:00Z"]) {
        assert.equal(
          new Date(nextCronTime(spec, Date.parse(at))!).toISOString(),
          "2026-10-26T01:30:00.000Z",
          at,
        );
      }
    });

    it("fall back: an interval schedule runs on both passes", () => {
      assert.deepEqual(runs(checkCron("*/30 * * * *", BERLIN), "2026-10-24T23:45:00Z", 5), [
        "2026-10-25T00:00:00.000Z", // 02:00 CEST
        "2026-10-25T00:30:00.000Z", // 02:30 CEST
        "2026-10-25T01:00:00.000Z", // 02:00 CET
        "2026-10-25T01:30:00.000Z", // 02:30 CET
        "2026-10-25T02:00:00.000Z", // 03:00 CET
      ]);
      assert.deepEqual(runs(checkCron("30 * * * *", BERLIN), "2026-10-25T00:15:00Z", 3), [
        "2026-10-25T00:30:00.000Z",
        "2026-10-25T01:30:00.000Z",
        "2026-10-25T02:30:00.000Z",
      ]);
    });

    it("UTC has no such days", () => {
      assert.deepEqual(runs(checkCron("30 2 * * *"), "2026-03-28T12:00:00Z", 2), [
        "2026-03-29T02:30:00.000Z",
        "2026-03-30T02:30:00.000Z",
      ]);
    });
  });

  it("handles L, W and # (croner extensions)", () => {
    const from = "2026-01-10T00:00:00Z";
    assert.deepEqual(days(checkCron("0 0 L * *"), from, 3), [
      "2026-01-31",
      "2026-02-28",
      "2026-03-31",
    ]);
    assert.deepEqual(days(checkCron("0 0 * * FRI#L"), from, 2), ["2026-01-30", "2026-02-27"]);
    assert.deepEqual(days(checkCron("0 0 * * MON#1"), from, 2), ["2026-02-02", "2026-03-02"]);
    // 2026-02-15 is a Sunday: nearest weekday is Monday the 16th.
    assert.deepEqual(days(checkCron("0 0 15W * *"), from, 2), ["2026-01-15", "2026-02-16"]);
  });

  it("returns undefined past croner's last year", () => {
    assert.equal(nextCronTime(checkCron("0 0 1 1 *"), Date.UTC(3000, 5, 1)), undefined);
  });

  it("accepts a spec read back from storage", () => {
    const stored = JSON.parse(JSON.stringify(checkCron("30 2 * * *", BERLIN))) as CronSpec;
    assert.equal(
      nextCronTime(stored, Date.parse("2026-03-28T12:00:00Z")),
      Date.parse("2026-03-29T01:00:00Z"),
    );
    assert.throws(
      () => nextCronTime({ expression: "* *", timezone: "UTC", seconds: false }, 0),
      { name: "TypeError", message: /must have 5 fields/ },
    );
  });

  it("refuses a bad afterMs", () => {
    const spec = checkCron("* * * * *");
    for (const bad of [NaN, Infinity, 9e15, "0" as unknown as number]) {
      assert.throws(() => nextCronTime(spec, bad), {
        name: "RangeError",
        message: /^afterMs must be a finite number of epoch milliseconds, got /,
      });
    }
  });
});

describe("pool.schedule: re-registering keeps due times (Redis)", () => {
  let redis: TestRedis;
  before(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await cleanUp([]);
  });
  after(async () => {
    await redis.stop();
  });

  /** Redis' clock, ms. */
  async function redisNow(): Promise<number> {
    const c = await redis.client();
    const [seconds, micros] = await c.sendCommand(["TIME"]) as string[];
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  async function dueOf(app: string, name: string): Promise<number | undefined> {
    const c = await redis.client();
    const score = await c.sendCommand(["ZSCORE", `${app}:schedule-due`, name]);
    return score === null ? undefined : Number(score);
  }

  /** The due times (from the operation ids `cron-<hash>-<due>`) of the runs in a trace. */
  function dues(ops: string[]): number[] {
    return ops.map((op) => parseInt(op.slice(op.lastIndexOf("-") + 1), 36)).sort((a, b) => a - b);
  }

  it("an overdue due time stays due when the app registers its schedules again before any worker is up; catchUp runs it once", async () => {
    const app = nextApp("cronrereg");
    const caught = await traceFile();
    const skipped = await traceFile();
    await using client = makePool(redis, app, { requireWorkers: false });
    const register = async () => {
      return [
        await client.schedule("catch", "0 * * * *", "mark", [caught, "catch"], { catchUp: true }),
        await client.schedule("skip", "0 * * * *", "mark", [skipped, "skip"]),
      ];
    };
    const [first] = await register();
    // Everything was down over a due time (hours ago).
    const past = await redisNow() - 3 * 3600_000;
    const c = await redis.client();
    await c.sendCommand([
      "ZADD",
      `${app}:schedule-due`,
      String(past),
      "catch",
      String(past),
      "skip",
    ]);

    // The application starts again first and registers the same schedules: nothing moves.
    const again = await register();
    assert.deepEqual(again.map((d) => d?.getTime()), [past, past], "resolves with the due time");
    assert.equal(await dueOf(app, "catch"), past);
    assert.equal(await dueOf(app, "skip"), past);
    assert.deepEqual(
      (await client.schedules()).map((s) => [s.name, s.nextRun?.getTime()]),
      [["catch", past], ["skip", past]],
    );
    // Only the options changed (same expression): still due.
    await client.schedule("catch", "0 * * * *", "mark", [caught, "catch"], {
      catchUp: true,
      retries: 2,
    });
    assert.equal(await dueOf(app, "catch"), past);

    // Then a worker comes up: the missed run happens, once; the skipped one moves on.
    {
      await using worker = makePool(redis, app, { workers: 1, executorMode: "inline" });
      await worker.ready();
      await waitFor(async () => (await readTrace(caught)).length === 1, "the catch-up run", 5_000);
      await waitFor(async () => (await dueOf(app, "skip"))! > past, "skip moved on", 5_000);
      const next = (await dueOf(app, "catch"))!;
      assert.equal(next, first!.getTime(), "then the next due time");
      // Registering again now keeps that next due time, and runs nothing more.
      await register();
      assert.equal(await dueOf(app, "catch"), next);
      await waitFor(async () => (await dueOf(app, "skip"))! === next, "skip's next due time");
    }
    const runs = await readTrace(caught);
    assert.equal(runs.length, 1, "caught up once");
    assert.deepEqual(dues(runs.map((r) => r.operationId)), [past]);
    assert.equal(
      (await readTrace(skipped)).length,
      0,
      "the missed tick without catchUp is skipped",
    );
  });

  it("another expression: a future due time is replaced, an overdue one is kept", async () => {
    const app = nextApp("cronexpr");
    await using client = makePool(redis, app, { requireWorkers: false });
    await client.schedule("s", "0 0 1 1 *", "mark", ["/dev/null", "x"]);
    const yearly = (await dueOf(app, "s"))!;
    const now = await redisNow();
    const hourly = await client.schedule("s", "0 * * * *", "mark", ["/dev/null", "x"]);
    assert.ok(hourly!.getTime() < yearly && hourly!.getTime() > now, "the new next due time");
    assert.equal(await dueOf(app, "s"), hourly!.getTime());
    assert.deepEqual((await client.schedules()).map((s) => s.cron), ["0 * * * *"]);
    const past = now - 60_000;
    const c = await redis.client();
    await c.sendCommand(["ZADD", `${app}:schedule-due`, String(past), "s"]);
    const replaced = await client.schedule("s", "*/5 * * * *", "mark", ["/dev/null", "x"]);
    assert.equal(replaced!.getTime(), past, "the overdue due time is kept");
    assert.equal(await dueOf(app, "s"), past);
  });

  it("re-registering over and over while a worker fires an every-second schedule loses no tick and runs none twice", async () => {
    const app = nextApp("cronbusy");
    const file = await traceFile();
    await using worker = makePool(redis, app, { workers: 1, executorMode: "inline" });
    await using a = makePool(redis, app, { requireWorkers: false });
    await using b = makePool(redis, app, { requireWorkers: false });
    await Promise.all([worker.ready(), a.ready(), b.ready()]);
    const first = (await a.schedule("s", "* * * * * *", "mark", [file, "s"]))!.getTime();
    // Ticks at first, first + 1 s, + 2 s, + 3 s, all while two pools register the schedule again
    // every few ms (b with another retry policy: same expression, so the same due times).
    const until = first + 3_300;
    let registrations = 0;
    const spin = async (pool: typeof a, retries: number) => {
      while (Date.now() < until) {
        await pool.schedule("s", "* * * * * *", "mark", [file, "s"], { retries });
        registrations++;
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    };
    await Promise.all([spin(a, 0), spin(b, 1)]);
    const expected = [0, 1000, 2000, 3000].map((d) => first + d);
    await waitFor(
      async () => {
        const seen = new Set(dues((await readTrace(file)).map((t) => t.operationId)));
        return expected.every((d) => seen.has(d));
      },
      "the four ticks",
      5_000,
    ).catch(() => {});
    assert.equal(await a.unschedule("s"), true);
    const ops = (await readTrace(file)).map((t) => t.operationId);
    assert.equal(new Set(ops).size, ops.length, "no due time ran twice");
    const ran = dues(ops);
    assert.deepEqual(ran.slice(0, 4), expected, `${registrations} registrations; ran ${ran}`);
    for (let i = 1; i < ran.length; i++) assert.equal(ran[i] - ran[i - 1], 1000);
  });
});
