import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import {
  checkLogFormat,
  checkLogLevel,
  createLogger,
  LOG_LEVELS,
  type LogFields,
  type LoggerOptions,
  type LogLevel,
} from "../lib/_log.ts";

const TIME = "2026-11-25T14:00:00.123Z";

/** A logger writing into `lines`, at a fixed time. */
function setup(options: LoggerOptions = {}) {
  const lines: string[] = [];
  const log = createLogger({
    level: "debug",
    now: () => new Date(TIME),
    sink: (line) => lines.push(line),
    ...options,
  });
  return { log, lines };
}

/** The one line written for one `info` record with `fields`, in text format. */
function text(fields: LogFields, message = "m"): string {
  const { log, lines } = setup({ name: "n" });
  log.info(message, fields);
  assert.equal(lines.length, 1);
  const prefix = `${TIME} INFO  n: ${message}`;
  assert.ok(lines[0].startsWith(prefix), lines[0]);
  return lines[0].slice(prefix.length);
}

/** The parsed object written for one `info` record with `fields`, in JSON format. */
function json(fields: LogFields, message = "m"): Record<string, unknown> {
  const { log, lines } = setup({ name: "n", format: "json" });
  log.info(message, fields);
  assert.equal(lines.length, 1);
  assert.ok(!lines[0].includes("\n"));
  return JSON.parse(lines[0]);
}

describe("text lines", () => {
  it("writes time, padded level, name, message and fields", () => {
    const { log, lines } = setup({ name: "worker vm:123:abc" });
    log.info("task done", { task: "ab-1", run_ms: 3.2, wait_ms: 0.8 });
    assert.deepEqual(lines, [
      `${TIME} INFO  worker vm:123:abc: task done task=ab-1 run_ms=3.2 wait_ms=0.8`,
    ]);
  });

  it("pads every level label to five characters", () => {
    const { log, lines } = setup({ name: "w" });
    log.debug("a");
    log.info("b");
    log.warn("c");
    log.error("d");
    assert.deepEqual(lines, [
      `${TIME} DEBUG w: a`,
      `${TIME} INFO  w: b`,
      `${TIME} WARN  w: c`,
      `${TIME} ERROR w: d`,
    ]);
  });

  it("leaves the name out when there is none", () => {
    const { log, lines } = setup();
    log.warn("lost connection", { retry_ms: 250 });
    assert.deepEqual(lines, [`${TIME} WARN  lost connection retry_ms=250`]);
  });

  it("quotes values with spaces, quotes, = or control characters, and empty values", () => {
    assert.equal(text({ a: "plain-value_1.2:3/x" }), " a=plain-value_1.2:3/x");
    assert.equal(text({ a: "two words" }), ' a="two words"');
    assert.equal(text({ a: 'say "hi"' }), ' a="say \\"hi\\""');
    assert.equal(text({ a: "k=v" }), ' a="k=v"');
    assert.equal(text({ a: "" }), ' a=""');
    assert.equal(text({ a: "tab\there" }), ' a="tab\\there"');
    assert.equal(text({ a: "line\nbreak" }), ' a="line\\nbreak"');
    assert.equal(text({ a: "bell\u0007" }), ' a="bell\\u0007"');
    assert.equal(text({ a: "no\u00a0break" }), ' a="no\u00a0break"');
    assert.equal(text({ a: "back\\slash" }), " a=back\\slash");
    assert.equal(text({ a: "ünïcödé→✓" }), " a=ünïcödé→✓");
  });

  it("writes numbers, booleans, null, bigints, symbols and functions", () => {
    assert.equal(
      text({ n: 1.5, z: -0, nan: NaN, inf: -Infinity, t: true, f: false, x: null, big: 2n ** 70n }),
      " n=1.5 z=0 nan=NaN inf=-Infinity t=true f=false x=null big=1180591620717411303424",
    );
    assert.equal(
      text({ s: Symbol("k"), fn: function named() {} }),
      ' s=Symbol(k) fn="[Function named]"',
    );
  });

  it("leaves out undefined fields and ignores fields that are not an object", () => {
    assert.equal(text({ a: undefined, b: 1 }), " b=1");
    assert.equal(text(undefined as unknown as LogFields), "");
    assert.equal(text(null as unknown as LogFields), "");
    assert.equal(text("abc" as unknown as LogFields), "");
  });

  it("writes errors as name: message", () => {
    assert.equal(text({ error: new TypeError("bad input") }), ' error="TypeError: bad input"');
    assert.equal(text({ error: new RangeError("") }), " error=RangeError");
    class CustomError extends Error {
      override name = "CustomError";
    }
    assert.equal(text({ e: new CustomError("x") }), ' e="CustomError: x"');
    const multiline = new Error("first\nsecond");
    assert.equal(text({ e: multiline }), ' e="Error: first\\nsecond"');
  });

  it("writes dates as ISO strings and other objects as quoted JSON", () => {
    assert.equal(text({ at: new Date(TIME) }), ` at=${TIME}`);
    assert.equal(text({ at: new Date(NaN) }), ' at="Invalid Date"');
    assert.equal(text({ list: [1, 2] }), " list=[1,2]");
    assert.equal(text({ obj: { a: "b" } }), ' obj="{\\"a\\":\\"b\\"}"');
  });

  it("replaces whitespace, quotes, = and control characters in keys", () => {
    assert.equal(
      text({ "a b": 1, 'q"': 2, "k=": 3, "c\n": 4, "": 5 }),
      " a_b=1 q_=2 k_=3 c_=4 _=5",
    );
  });

  it("keeps every record on one line", () => {
    const { log, lines } = setup({ name: "evil\nname" });
    log.info("multi\r\nline\u001b[31m", { v: "x\ny" });
    assert.equal(lines.length, 1);
    assert.equal(lines[0], `${TIME} INFO  evil\\nname: multi\\r\\nline\\u001b[31m v="x\\ny"`);
  });

  it("does not throw for fields that cannot be read or converted", () => {
    const throwing = {
      get bad(): unknown {
        throw new Error("getter failed");
      },
      good: 1,
    };
    assert.equal(text(throwing), ' bad="[unserializable: Error: getter failed]" good=1');
    const nested = { inner: throwing };
    assert.equal(text({ nested }), ' nested="[unserializable: Error: getter failed]"');
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    assert.equal(text(revoked.proxy as LogFields), "");
    const { log, lines } = setup();
    log.info(Object.create(null) as string); // a message String() cannot convert
    assert.deepEqual(lines, [`${TIME} INFO  [object]`]);
  });
});

describe("JSON lines", () => {
  it("writes time, level, name, msg, then the fields, in that order", () => {
    const { log, lines } = setup({ name: "worker vm:1", format: "json" });
    log.info("task done", { task: "ab-1", run_ms: 3.2, wait_ms: 0.8 });
    assert.deepEqual(lines, [
      `{"time":"${TIME}","level":"info","name":"worker vm:1","msg":"task done","task":"ab-1","run_ms":3.2,"wait_ms":0.8}`,
    ]);
  });

  it("writes every level in lower case and an empty name when there is none", () => {
    const { log, lines } = setup({ format: "json" });
    log.debug("a");
    log.info("b");
    log.warn("c");
    log.error("d");
    assert.deepEqual(
      lines.map((l) => JSON.parse(l)),
      ["debug", "info", "warn", "error"].map((level, i) => ({
        time: TIME,
        level,
        name: "",
        msg: "abcd"[i],
      })),
    );
  });

  it("writes errors as {name, message, stack} with cause and own properties", () => {
    const cause = new RangeError("inner");
    const error = Object.assign(new TypeError("outer", { cause }), { code: "E_BAD" });
    const record = json({ error });
    const written = record.error as Record<string, unknown>;
    assert.equal(written.name, "TypeError");
    assert.equal(written.message, "outer");
    assert.equal(written.stack, error.stack);
    assert.equal(written.code, "E_BAD");
    assert.deepEqual(Object.keys(written), ["name", "message", "stack", "cause", "code"]);
    const writtenCause = written.cause as Record<string, unknown>;
    assert.equal(writtenCause.name, "RangeError");
    assert.equal(writtenCause.message, "inner");
    const aggregate = json({ e: new AggregateError([new Error("one")], "many") }).e as {
      errors: { message: string }[];
    };
    assert.equal(aggregate.errors[0].message, "one");
  });

  it("writes BigInts and non-finite numbers as strings", () => {
    assert.deepEqual(json({ big: 2n ** 70n, nan: NaN, inf: Infinity, list: [1n, -Infinity] }), {
      time: TIME,
      level: "info",
      name: "n",
      msg: "m",
      big: "1180591620717411303424",
      nan: "NaN",
      inf: "Infinity",
      list: ["1", "-Infinity"],
    });
  });

  it("does not throw on cycles, and keeps shared objects that are not cycles", () => {
    const a: Record<string, unknown> = { x: 1 };
    a.self = a;
    const shared = { s: true };
    const record = json({ a, pair: [shared, shared], list: [[a]] });
    assert.deepEqual(record.a, { x: 1, self: "[Circular]" });
    assert.deepEqual(record.pair, [{ s: true }, { s: true }]);
    assert.deepEqual(record.list, [[{ x: 1, self: "[Circular]" }]]);
  });

  it("converts dates, maps, sets, typed arrays, toJSON and nested undefined", () => {
    const record = json({
      at: new Date(TIME),
      map: new Map<unknown, unknown>([["k", 1], [2, "two"]]),
      set: new Set(["a", "b"]),
      bytes: new Uint8Array(16),
      url: new URL("https://example.com/x"),
      obj: { keep: 1, drop: undefined, list: [undefined] },
      fn: () => 1,
    });
    assert.equal(record.at, TIME);
    assert.deepEqual(record.map, { k: 1, 2: "two" });
    assert.deepEqual(record.set, ["a", "b"]);
    assert.equal(record.bytes, "[Uint8Array 16 bytes]");
    assert.equal(record.url, "https://example.com/x");
    assert.deepEqual(record.obj, { keep: 1, list: [null] });
    assert.equal(record.fn, "[Function fn]");
  });

  it("cuts off nesting deeper than ten levels", () => {
    let deep: Record<string, unknown> = { end: true };
    for (let i = 0; i < 20; i++) deep = { deeper: deep };
    let written = json({ deep }).deep as Record<string, unknown>;
    let depth = 1;
    while (typeof written.deeper === "object") {
      written = written.deeper as Record<string, unknown>;
      depth++;
    }
    assert.equal(written.deeper, "[Object]");
    assert.equal(depth, 10); // ten levels of objects are written, the eleventh is cut off
  });

  it("renames fields named like the record keys, and handles __proto__", () => {
    const fields = JSON.parse('{"msg":"x","time":1,"level":2,"name":3,"__proto__":4}');
    const record = json(fields);
    assert.equal(record.msg, "m");
    assert.equal(record["field.msg"], "x");
    assert.equal(record["field.time"], 1);
    assert.equal(record["field.level"], 2);
    assert.equal(record["field.name"], 3);
    assert.ok(Object.hasOwn(record, "__proto__"));
  });

  it("does not throw for fields that cannot be read", () => {
    const record = json({
      get bad(): unknown {
        throw new TypeError("nope");
      },
    });
    assert.equal(record.bad, "[unserializable: TypeError: nope]");
  });
});

describe("levels", () => {
  const writes = (level: LogLevel) => {
    const { log, lines } = setup({ level });
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
    return lines.map((l) => l.slice(l.lastIndexOf(" ") + 1)).join("");
  };

  it("writes records at or above the level", () => {
    assert.equal(writes("debug"), "diwe");
    assert.equal(writes("info"), "iwe");
    assert.equal(writes("warn"), "we");
    assert.equal(writes("error"), "e");
    assert.equal(writes("silent"), "");
  });

  it("tells which levels are enabled; silent never is", () => {
    const table = LOG_LEVELS.map((level) => {
      const log = createLogger({ level, sink: () => {} });
      return LOG_LEVELS.map((l) => (log.enabled(l) ? 1 : 0)).join("");
    });
    assert.deepEqual(table, ["11110", "01110", "00110", "00010", "00000"]);
    const log = createLogger({ level: "debug", sink: () => {} });
    assert.equal(log.enabled("trace" as LogLevel), false);
    assert.equal(log.enabled("constructor" as LogLevel), false);
  });

  it("builds nothing and reads no clock for disabled records", () => {
    let clockReads = 0;
    const log = createLogger({
      level: "info",
      sink: () => assert.fail("written"),
      now: () => {
        clockReads++;
        return new Date();
      },
    });
    const fields = {
      get costly(): unknown {
        return assert.fail("read");
      },
    };
    log.debug("d", fields);
    if (log.enabled("debug")) assert.fail("enabled");
    assert.equal(clockReads, 0);
  });

  it("defaults to info and text", () => {
    const log = createLogger({ sink: () => {} });
    assert.equal(log.level, "info");
    assert.equal(log.format, "text");
    assert.equal(log.name, "");
    assert.equal(log.enabled("debug"), false);
    assert.equal(log.enabled("info"), true);
  });
});

describe("child loggers", () => {
  it("extend the name and share level, format, sink and clock", () => {
    const { log, lines } = setup({ name: "worker", level: "warn", format: "json" });
    const child = log.child("vm:123:abc");
    const grandchild = child.child("executor-2");
    assert.equal(child.name, "worker vm:123:abc");
    assert.equal(grandchild.name, "worker vm:123:abc executor-2");
    assert.equal(grandchild.level, "warn");
    assert.equal(grandchild.format, "json");
    grandchild.info("dropped");
    grandchild.warn("kept");
    assert.equal(lines.length, 1);
    assert.deepEqual(JSON.parse(lines[0]), {
      time: TIME,
      level: "warn",
      name: "worker vm:123:abc executor-2",
      msg: "kept",
    });
    assert.equal(log.name, "worker");
  });

  it("of an unnamed logger take just the child's name", () => {
    const { log, lines } = setup();
    log.child("pool").info("up");
    assert.deepEqual(lines, [`${TIME} INFO  pool: up`]);
  });

  it("need a non-empty string name", () => {
    const { log } = setup();
    assert.throws(() => log.child(""), {
      name: "TypeError",
      message: `a child logger's name must be a non-empty string, got ""`,
    });
    assert.throws(() => log.child(42 as unknown as string), {
      name: "TypeError",
      message: "a child logger's name must be a non-empty string, got 42",
    });
  });
});

describe("sinks", () => {
  it("default to console.error, looked up at each line", () => {
    const original = console.error;
    const seen: unknown[][] = [];
    console.error = (...args: unknown[]) => seen.push(args);
    try {
      const log = createLogger({ now: () => new Date(TIME) });
      log.info("to stderr", { a: 1 });
      log.debug("dropped");
    } finally {
      console.error = original;
    }
    assert.deepEqual(seen, [[`${TIME} INFO  to stderr a=1`]]);
  });

  it("that throw do not break the caller", () => {
    let calls = 0;
    const log = createLogger({
      sink: () => {
        calls++;
        throw new Error("EPIPE");
      },
    });
    log.info("a");
    log.error("b", { error: new Error("x") });
    assert.equal(calls, 2);
  });

  it("that return a rejected promise cause no unhandled rejection", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const log = createLogger({
        sink: (() => Promise.reject(new Error("async sink failed"))) as (line: string) => void,
      });
      log.info("a");
      await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
    assert.deepEqual(unhandled, []);
  });

  it("get the real time when the injected clock fails", () => {
    const lines: string[] = [];
    const log = createLogger({ sink: (l) => lines.push(l), now: () => new Date(NaN) });
    log.info("x");
    assert.match(lines[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}x$/);
  });
});

describe("option checks", () => {
  it("accept every level and format, and give the default for undefined", () => {
    for (const level of LOG_LEVELS) assert.equal(checkLogLevel(level, "logLevel"), level);
    assert.equal(checkLogLevel(undefined, "logLevel"), "info");
    assert.equal(checkLogLevel(undefined, "logLevel", "warn"), "warn");
    assert.equal(checkLogFormat("json", "logFormat"), "json");
    assert.equal(checkLogFormat("text", "logFormat"), "text");
    assert.equal(checkLogFormat(undefined, "logFormat"), "text");
  });

  it("refuse other values saying what is accepted", () => {
    assert.throws(() => checkLogLevel("verbose", "logLevel"), {
      name: "RangeError",
      message: `logLevel must be one of debug, info, warn, error, silent, got "verbose"`,
    });
    assert.throws(() => checkLogLevel("INFO", "logLevel"), {
      name: "RangeError",
      message: `logLevel must be one of debug, info, warn, error, silent, got "INFO"`,
    });
    assert.throws(() => checkLogLevel(3, "options.logLevel"), {
      name: "TypeError",
      message: "options.logLevel must be one of debug, info, warn, error, silent, got 3",
    });
    assert.throws(() => checkLogFormat("yaml", "logFormat"), {
      name: "RangeError",
      message: `logFormat must be one of text, json, got "yaml"`,
    });
    assert.throws(() => checkLogFormat({}, "logFormat"), {
      name: "TypeError",
      message: "logFormat must be one of text, json, got a value of type object",
    });
    assert.throws(() => checkLogFormat(null, "logFormat"), {
      name: "TypeError",
      message: "logFormat must be one of text, json, got null",
    });
  });

  it("are applied by createLogger", () => {
    assert.throws(() => createLogger({ level: "loud" as LogLevel }), {
      name: "RangeError",
      message: `logLevel must be one of debug, info, warn, error, silent, got "loud"`,
    });
    assert.throws(() => createLogger({ format: "xml" as "json" }), {
      name: "RangeError",
      message: `logFormat must be one of text, json, got "xml"`,
    });
    assert.throws(() => createLogger({ name: 1 as unknown as string }), {
      name: "TypeError",
      message: "a logger's name must be a string, got 1",
    });
    assert.throws(() => createLogger({ sink: "stderr" as unknown as () => void }), {
      name: "TypeError",
      message: `a logger's sink must be a function, got "stderr"`,
    });
    assert.throws(
      () => createLogger({ now: Date.now as unknown as () => Date, sink: 1 as never }),
      {
        name: "TypeError",
        message: "a logger's sink must be a function, got 1",
      },
    );
    assert.throws(() => createLogger(null as unknown as LoggerOptions), {
      name: "TypeError",
      message: "logger options must be an object, got null",
    });
  });
});
