import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import {
  CONFIG_OPTIONS,
  type ConfigOption,
  formatConfig,
  loadConfig,
  parseConfigValue,
  parseEnvFile,
} from "../lib/_config.ts";

function opt(name: string): ConfigOption {
  const found = CONFIG_OPTIONS.find((o) => o.name === name);
  assert.ok(found, name);
  return found;
}

/** Parses `text` as the value of option `name` from the environment. */
function parse(name: string, text: string): unknown {
  const o = opt(name);
  return parseConfigValue(o, text, `${o.env} in the environment`);
}

/** Asserts that `text` is refused for option `name` with exactly `message`. */
function refuses(name: string, text: string, error: string, message: string | RegExp): void {
  assert.throws(() => parse(name, text), { name: error, message }, `${name}=${text}`);
}

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "streamfutures-config-"));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let files = 0;
/** Writes an env file into the temp dir and returns its path. */
async function envFile(text: string): Promise<string> {
  const path = join(dir, `test${++files}.env`);
  await writeFile(path, text);
  return path;
}

describe("the option table", () => {
  it("derives each variable from the option name", () => {
    const names = CONFIG_OPTIONS.map((o) => o.name);
    assert.equal(new Set(names).size, names.length, "unique names");
    assert.equal(opt("url").env, "STREAMFUTURES_URL");
    assert.equal(opt("requireWorkers").env, "STREAMFUTURES_REQUIRE_WORKERS");
    assert.equal(opt("maxPayloadBytes").env, "STREAMFUTURES_MAX_PAYLOAD_BYTES");
    assert.equal(opt("logLevel").env, "STREAMFUTURES_LOG_LEVEL");
    for (const o of CONFIG_OPTIONS) {
      assert.match(o.env, /^STREAMFUTURES_[A-Z]+(_[A-Z]+)*$/);
      assert.equal(
        o.env.slice("STREAMFUTURES_".length).toLowerCase().replace(/_(.)/g, (_, c) => c),
        o.name.toLowerCase(),
      );
    }
  });

  it("has the documented options, targets and secrets", () => {
    const table = Object.fromEntries(
      CONFIG_OPTIONS.map((
        o,
      ) => [o.name, `${o.kind.type} ${o.appliesTo}${o.secret ? " secret" : ""}`]),
    );
    assert.deepEqual(table, {
      url: "url both secret",
      app: "keyName both",
      queue: "keyName pool",
      queues: "list worker",
      tasks: "list both",
      workers: "int pool",
      concurrency: "int both",
      executors: "int both",
      executorMode: "enum both",
      prefetch: "int both",
      requireWorkers: "bool pool",
      keep: "bool pool",
      heartbeatInterval: "duration both",
      heartbeatTimeout: "duration both",
      grace: "duration worker",
      taskGrace: "duration both",
      taskTimeout: "duration worker",
      timeout: "duration pool",
      retries: "int pool",
      retryDelay: "duration pool",
      retryOn: "enum pool",
      maxPayloadBytes: "bytes both",
      reconnectDeadline: "duration both",
      orphanTtl: "duration pool",
      dedupeTtl: "duration pool",
      statsInterval: "duration worker",
      logLevel: "enum both",
      logFormat: "enum both",
      id: "string worker",
      password: "string both secret",
    });
    assert.ok(Object.isFrozen(CONFIG_OPTIONS) && Object.isFrozen(opt("url")));
  });
});

describe("parseConfigValue", () => {
  it("string: as is", () => {
    assert.equal(parse("id", " host-1 worker "), " host-1 worker ");
    assert.equal(parse("password", "p@ss w0rd#"), "p@ss w0rd#");
  });

  it("keyName", () => {
    assert.equal(parse("app", " My.App_2-x "), "My.App_2-x");
    refuses(
      "app",
      "my app",
      "TypeError",
      'STREAMFUTURES_APP in the environment must be a non-empty string of letters, digits, "_", "." or "-", got "my app"',
    );
    refuses("queue", "a:b", "TypeError", /^STREAMFUTURES_QUEUE in the environment must be /);
  });

  it("url: redis:// or rediss://, the password masked in messages", () => {
    assert.equal(parse("url", "redis://:pw@host:6379/0"), "redis://:pw@host:6379/0");
    assert.equal(parse("url", " rediss://user:pw@host "), "rediss://user:pw@host");
    refuses(
      "url",
      "http://host",
      "TypeError",
      'STREAMFUTURES_URL in the environment must be a redis:// or rediss:// URL, got "http://host"',
    );
    refuses(
      "url",
      "http://u:hunter2@host",
      "TypeError",
      /got "http:\/\/u:\*\*\*@host\/"$/,
    );
    refuses("url", "redis//:hunter2@host", "TypeError", /got "redis\/\/:hunter2@host"$/);
    refuses("url", "localhost:6379", "TypeError", /must be a redis:\/\/ or rediss:\/\/ URL/);
    // Not parseable as a URL: masked by pattern.
    assert.throws(() => parse("url", "redis://:hunter2@[bad"), (e: Error) => {
      assert.ok(!e.message.includes("hunter2"), e.message);
      assert.match(e.message, /got "redis:\/\/:\*\*\*@\[bad"$/);
      return true;
    });
  });

  it("int, with its minimum", () => {
    assert.equal(parse("concurrency", "8"), 8);
    assert.equal(parse("concurrency", " +16 "), 16);
    assert.equal(parse("workers", "0"), 0);
    assert.equal(parse("retries", "0"), 0);
    refuses(
      "concurrency",
      "many",
      "RangeError",
      'STREAMFUTURES_CONCURRENCY in the environment must be an integer >= 1, got "many"',
    );
    refuses("concurrency", "0", "RangeError", /must be an integer >= 1, got "0"$/);
    refuses("workers", "-1", "RangeError", /must be an integer >= 0, got "-1"$/);
    for (const bad of ["1.5", "1e3", "0x10", "8 workers", "99999999999999999999"]) {
      refuses("executors", bad, "RangeError", /STREAMFUTURES_EXECUTORS .* integer >= 1/);
    }
  });

  it("bool: true/false/1/0/yes/no/on/off in any case", () => {
    for (const t of ["true", "TRUE", "1", "yes", "Yes", "on", " ON "]) {
      assert.equal(parse("keep", t), true, t);
    }
    for (const f of ["false", "False", "0", "no", "NO", "off", "Off"]) {
      assert.equal(parse("requireWorkers", f), false, f);
    }
    refuses(
      "keep",
      "maybe",
      "TypeError",
      'STREAMFUTURES_KEEP in the environment must be one of true, false, 1, 0, yes, no, on, off (any case), got "maybe"',
    );
    refuses("keep", "2", "TypeError", /got "2"$/);
  });

  it("duration: milliseconds, or ms / s / m / h", () => {
    const cases: [string, number][] = [
      ["250", 250],
      ["250ms", 250],
      ["10s", 10_000],
      ["1.5s", 1500],
      ["1.1s", 1100],
      [".5s", 500],
      ["2m", 120_000],
      ["1.5m", 90_000],
      ["1h", 3_600_000],
      ["0.25h", 900_000],
      ["10 s", 10_000],
      ["10S", 10_000],
      ["0", 0],
      ["0s", 0],
      ["1.5", 1.5],
    ];
    for (const [text, ms] of cases) assert.equal(parse("grace", text), ms, text);
    const accepted =
      "duration: milliseconds, or a number with a unit ms, s, m or h such as 250ms, 10s or 1.5m";
    refuses(
      "grace",
      "10sec",
      "RangeError",
      `STREAMFUTURES_GRACE in the environment must be a ${accepted}, got "10sec"`,
    );
    for (const bad of ["-1s", "1d", "s", "1e3", "1,5s", "1:30", "ten"]) {
      refuses("retryDelay", bad, "RangeError", /must be a duration: milliseconds/);
    }
    assert.equal(parse("heartbeatInterval", "500ms"), 500);
    refuses(
      "heartbeatInterval",
      "0",
      "RangeError",
      `STREAMFUTURES_HEARTBEAT_INTERVAL in the environment must be a positive ${accepted}, got "0"`,
    );
    // Zero is refused here, with the variable's name, for every option that refuses it later.
    for (const name of ["timeout", "taskTimeout", "reconnectDeadline", "orphanTtl"]) {
      refuses(name, "0s", "RangeError", /in the environment must be a positive duration/);
    }
  });

  it("enum: the listed values, in any case", () => {
    assert.equal(parse("logLevel", "debug"), "debug");
    assert.equal(parse("logLevel", "WARN"), "warn");
    assert.equal(parse("logFormat", "json"), "json");
    assert.equal(parse("retryOn", " Lost "), "lost");
    refuses(
      "logLevel",
      "verbose",
      "RangeError",
      'STREAMFUTURES_LOG_LEVEL in the environment must be one of debug, info, warn, error, silent, got "verbose"',
    );
    refuses("retryOn", "always", "RangeError", /must be one of lost, error, got "always"$/);
    assert.equal(parse("executorMode", "Inline"), "inline");
    refuses(
      "executorMode",
      "fiber",
      "RangeError",
      /must be one of thread, process, inline, got "fiber"$/,
    );
  });

  it("list: comma-separated names or module paths", () => {
    assert.deepEqual(parse("queues", "mrz,ocr"), ["mrz", "ocr"]);
    assert.deepEqual(parse("queues", " mrz , ocr, "), ["mrz", "ocr"]);
    assert.deepEqual(parse("queues", "default"), ["default"]);
    refuses(
      "queues",
      "mrz,o cr",
      "TypeError",
      'STREAMFUTURES_QUEUES in the environment must be a comma-separated list of names of letters, digits, "_", "." or "-", got "mrz,o cr" ("o cr" is not one)',
    );
    refuses("queues", " , ", "TypeError", /list of names .*, got " , "$/);
    assert.deepEqual(parse("tasks", "./tasks.ts, /srv/app/more tasks.js,https://x.test/t.ts"), [
      "./tasks.ts",
      "/srv/app/more tasks.js",
      "https://x.test/t.ts",
    ]);
    refuses(
      "tasks",
      ",",
      "TypeError",
      'STREAMFUTURES_TASKS in the environment must be a comma-separated list of module paths or URLs, got ","',
    );
  });

  it("bytes: plain, or k/kb/m/mb/g/gb as powers of 1024", () => {
    const cases: [string, number][] = [
      ["65536", 65536],
      ["100b", 100],
      ["512k", 512 * 1024],
      ["512KB", 512 * 1024],
      ["16mb", 16 * 1024 * 1024],
      ["16 MiB", 16 * 1024 * 1024],
      ["1.5m", 1.5 * 1024 * 1024],
      ["1g", 1024 ** 3],
      ["2GB", 2 * 1024 ** 3],
    ];
    for (const [text, n] of cases) assert.equal(parse("maxPayloadBytes", text), n, text);
    const message =
      'STREAMFUTURES_MAX_PAYLOAD_BYTES in the environment must be a whole number of bytes >= 1, or a number with a unit k/kb (1024), m/mb (1024^2) or g/gb (1024^3) such as 512k or 16mb, got "16 megs"';
    refuses("maxPayloadBytes", "16 megs", "RangeError", message);
    for (const bad of ["0", "0.5", "1.0001k", "-1k", "1t", "k", "1e6"]) {
      refuses("maxPayloadBytes", bad, "RangeError", /must be a whole number of bytes >= 1/);
    }
  });

  it("masks a secret string entirely in messages", () => {
    const secret: ConfigOption = { ...opt("concurrency"), secret: true };
    assert.throws(() => parseConfigValue(secret, "hunter2", "X"), {
      message: "X must be an integer >= 1, got ***",
    });
  });
});

describe("parseEnvFile", () => {
  it("reads KEY=value lines, comments, blank lines and export", () => {
    const text = [
      "# a comment",
      "",
      "   # an indented comment",
      "A=1",
      "export B=two words",
      "  C = spaced  ",
      "D=",
      "E=value # a comment",
      "F=a#b",
      "G= # only a comment",
      "H=#not a comment",
      "I=x\t# after a tab",
      "export\tJ=tab",
      "K=a=b=c",
      "A=last wins",
    ].join("\n");
    assert.deepEqual(parseEnvFile(text), {
      A: "last wins",
      B: "two words",
      C: "spaced",
      D: "",
      E: "value",
      F: "a#b",
      G: "",
      H: "#not a comment",
      I: "x",
      J: "tab",
      K: "a=b=c",
    });
  });

  it("reads quoted values", () => {
    const text = [
      `S='single # not a comment \\n $HOME'`,
      `D="double \\"quoted\\" \\\\ \\n\\t end"`,
      `U="unknown \\q escape"`,
      `C="value" # comment`,
      `W='  spaces kept  '`,
      `E=""`,
      `Q='it"s'`,
      `M="first`,
      `second"`,
      `N='a`,
      ``,
      `b'`,
    ].join("\n");
    assert.deepEqual(parseEnvFile(text), {
      S: "single # not a comment \\n $HOME",
      D: 'double "quoted" \\ \n\t end',
      U: "unknown \\q escape",
      C: "value",
      W: "  spaces kept  ",
      E: "",
      Q: 'it"s',
      M: "first\nsecond",
      N: "a\n\nb",
    });
  });

  it("handles CRLF, CR and a byte order mark", () => {
    assert.deepEqual(parseEnvFile("\uFEFFA=1\r\nB=2\r\n"), { A: "1", B: "2" });
    assert.deepEqual(parseEnvFile("A=1\rB='x'\r"), { A: "1", B: "x" });
  });

  it("keeps odd names as own properties", () => {
    const parsed = parseEnvFile("__proto__=x\nconstructor=y");
    assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
    assert.deepEqual(Object.keys(parsed), ["__proto__", "constructor"]);
    assert.equal(Object.getOwnPropertyDescriptor(parsed, "__proto__")?.value, "x");
  });

  it("reports syntax errors with the line number", () => {
    const cases: [string, string][] = [
      ["A=1\nJUST A LINE\n", 'env file line 2: expected KEY=value, got "JUST A LINE"'],
      ["export A\n", 'env file line 1: expected KEY=value, got "export A"'],
      [
        "\n\n1A=x",
        'env file line 3: invalid variable name "1A" (letters, digits and "_", not starting with a digit)',
      ],
      [
        "A-B=x",
        'env file line 1: invalid variable name "A-B" (letters, digits and "_", not starting with a digit)',
      ],
      [
        "=x",
        'env file line 1: invalid variable name "" (letters, digits and "_", not starting with a digit)',
      ],
      ['A=1\nB="open\nC=2', 'env file line 2: unterminated "-quoted value'],
      ["A='open", "env file line 1: unterminated '-quoted value"],
      ['A="x" y', 'env file line 1: unexpected text after the closing quote: "y"'],
      ['A="x\ny" z', 'env file line 2: unexpected text after the closing quote: "z"'],
    ];
    for (const [text, message] of cases) {
      assert.throws(() => parseEnvFile(text), { name: "SyntaxError", message }, text);
    }
    assert.throws(() => parseEnvFile("nope", "streamfutures.env"), {
      message: /^streamfutures.env line 1: /,
    });
  });
});

describe("loadConfig", () => {
  it("explicit wins over env, env over the file", async () => {
    const file = await envFile(
      [
        "STREAMFUTURES_APP=FromFile",
        "STREAMFUTURES_CONCURRENCY=2",
        "STREAMFUTURES_GRACE=30s",
        "STREAMFUTURES_LOG_LEVEL=debug",
      ].join("\n"),
    );
    const env = {
      STREAMFUTURES_APP: "FromEnv",
      STREAMFUTURES_CONCURRENCY: "4",
      HOME: "/root",
    };
    const { options, origin, warnings, file: read } = await loadConfig(
      "worker",
      { app: "Explicit", id: undefined },
      { env, file },
    );
    assert.deepEqual(options, {
      app: "Explicit",
      concurrency: 4,
      grace: 30_000,
      logLevel: "debug",
    });
    assert.deepEqual(origin, {
      app: "explicit",
      concurrency: "env",
      grace: "file",
      logLevel: "file",
    });
    assert.deepEqual(warnings, []);
    assert.equal(read, file);
  });

  it("passes explicit values on unchecked, including ones not in the table", async () => {
    const signal = new AbortController().signal;
    const explicit = { concurrency: "lots", url: { host: "h", port: 1 }, signal, other: 0 };
    const { options, origin } = await loadConfig("pool", explicit, {
      env: { STREAMFUTURES_CONCURRENCY: "bad, but overridden" },
      file: null,
    });
    assert.deepEqual(options, explicit);
    assert.equal(options.signal, signal);
    assert.deepEqual(origin, {
      concurrency: "explicit",
      url: "explicit",
      signal: "explicit",
      other: "explicit",
    });
  });

  it("reads only the variables of options that apply to the target", async () => {
    const env = {
      STREAMFUTURES_WORKERS: "3", // pool
      STREAMFUTURES_QUEUE: "mrz", // pool
      STREAMFUTURES_QUEUES: "mrz,ocr", // worker
      STREAMFUTURES_GRACE: "5s", // worker
      STREAMFUTURES_URL: "redis://db:6379/1", // both
    };
    const pool = await loadConfig("pool", {}, { env, file: null });
    assert.deepEqual(pool.options, { url: "redis://db:6379/1", queue: "mrz", workers: 3 });
    assert.deepEqual(pool.warnings, []);
    const worker = await loadConfig("worker", {}, { env, file: null });
    assert.deepEqual(worker.options, {
      url: "redis://db:6379/1",
      queues: ["mrz", "ocr"],
      grace: 5000,
    });
    assert.deepEqual(worker.warnings, []);
  });

  it("treats an empty value as not set", async () => {
    const file = await envFile("STREAMFUTURES_APP=FromFile\nSTREAMFUTURES_KEEP=\n");
    const { options, origin } = await loadConfig("pool", {}, {
      env: { STREAMFUTURES_APP: "", STREAMFUTURES_CONCURRENCY: "  ", STREAMFUTURES_ID: undefined },
      file,
    });
    assert.deepEqual(options, { app: "FromFile" });
    assert.deepEqual(origin, { app: "file" });
  });

  it("names the variable and the source of a bad value", async () => {
    const file = await envFile("# settings\n\nSTREAMFUTURES_CONCURRENCY=many\n");
    await assert.rejects(loadConfig("worker", {}, { env: {}, file }), {
      name: "RangeError",
      message: `STREAMFUTURES_CONCURRENCY in ${file} line 3 must be an integer >= 1, got "many"`,
    });
    await assert.rejects(
      loadConfig("worker", {}, { env: { STREAMFUTURES_LOG_FORMAT: "xml" }, file: null }),
      {
        name: "RangeError",
        message: 'STREAMFUTURES_LOG_FORMAT in the environment must be one of text, json, got "xml"',
      },
    );
    // The file's bad value is not used when the environment sets the option.
    const ok = await loadConfig("worker", {}, { env: { STREAMFUTURES_CONCURRENCY: "3" }, file });
    assert.deepEqual(ok.options, { concurrency: 3 });
    // A value for another target is not read, so not checked.
    const pool = await loadConfig("pool", {}, { env: { STREAMFUTURES_GRACE: "soon" }, file: null });
    assert.deepEqual(pool.options, {});
  });

  it("warns about unknown STREAMFUTURES_ variables, suggesting a near name", async () => {
    const file = await envFile(
      "STREAMFUTURES_APP=x\nSTREAMFUTURES_LOGLEVEL=info\nSTREAMFUTURES_X=1\nOTHER_TOOL=1\nCONCURRENCY=2\n",
    );
    const { options, warnings } = await loadConfig("worker", {}, {
      env: {
        STREAMFUTURES_CONCURENCY: "8",
        STREAMFUTURES_TEST_ECHO: "1",
        REDIS_URL: "redis://x",
        STREAMFUTURES_WORKERS: "2",
      },
      file,
    });
    assert.deepEqual(options, { app: "x" });
    assert.deepEqual(warnings, [
      "unknown variable STREAMFUTURES_CONCURENCY in the environment (did you mean STREAMFUTURES_CONCURRENCY?)",
      `unknown variable STREAMFUTURES_LOGLEVEL in ${file} line 2 (did you mean STREAMFUTURES_LOG_LEVEL?)`,
      `unknown variable STREAMFUTURES_X in ${file} line 3`,
      `variable OTHER_TOOL in ${file} line 4 is ignored: only STREAMFUTURES_* variables are read`,
      `variable CONCURRENCY in ${file} line 5 is ignored: only STREAMFUTURES_* variables are read (did you mean STREAMFUTURES_CONCURRENCY?)`,
    ]);
  });

  it("is fine without a file, and reports a file it cannot read or parse", async () => {
    const missing = join(dir, "missing.env");
    const none = await loadConfig("pool", {}, { env: {}, file: missing });
    assert.deepEqual(none, { options: {}, origin: {}, warnings: [], file: undefined });
    const nofile = await loadConfig("pool", {}, { env: {}, file: null });
    assert.equal(nofile.file, undefined);

    const sub = join(dir, "a-directory.env");
    await mkdir(sub);
    await assert.rejects(loadConfig("pool", {}, { env: {}, file: sub }), {
      message: new RegExp(`^cannot read ${sub}: `),
    });
    const bad = await envFile("STREAMFUTURES_APP=x\nthis is not an assignment\n");
    await assert.rejects(loadConfig("pool", {}, { env: {}, file: bad }), {
      name: "SyntaxError",
      message: `${bad} line 2: expected KEY=value, got "this is not an assignment"`,
    });
  });

  it("reads ./streamfutures.env by default", async () => {
    const work = join(dir, "cwd");
    await mkdir(work);
    await writeFile(join(work, "streamfutures.env"), "STREAMFUTURES_APP=Here\n");
    const cwd = process.cwd();
    process.chdir(work);
    try {
      const { options, origin, file } = await loadConfig("pool", {}, { env: {} });
      assert.deepEqual(options, { app: "Here" });
      assert.deepEqual(origin, { app: "file" });
      assert.equal(file, "streamfutures.env");
      await writeFile(join(work, "streamfutures.env"), "STREAMFUTURES_APP=bad name\n");
      await assert.rejects(loadConfig("pool", {}, { env: {} }), {
        message: /^STREAMFUTURES_APP in streamfutures.env line 1 must be /,
      });
    } finally {
      process.chdir(cwd);
    }
  });

  it("uses the process environment by default (read-only)", async () => {
    const { options, origin } = await loadConfig("pool", { app: "A" }, { file: null });
    assert.equal(options.app, "A");
    assert.equal(origin.app, "explicit");
  });

  it("refuses a bad target, explicit options or file", async () => {
    await assert.rejects(loadConfig("client" as "pool", {}, { env: {}, file: null }), {
      name: "TypeError",
      message: 'target must be "pool" or "worker", got "client"',
    });
    await assert.rejects(
      loadConfig("pool", null as unknown as Record<string, unknown>, { env: {}, file: null }),
      { name: "TypeError", message: "explicit options must be an object, got null" },
    );
    await assert.rejects(loadConfig("pool", {}, { env: {}, file: "" }), {
      name: "TypeError",
      message: 'file must be a path or null, got ""',
    });
  });
});

describe("formatConfig", () => {
  it("lists effective options aligned, with their source, secrets masked", async () => {
    const file = await envFile(
      "STREAMFUTURES_URL=redis://:hunter2@db:6379/0\nSTREAMFUTURES_MAX_PAYLOAD_BYTES=16mb\n",
    );
    const { options, origin } = await loadConfig("worker", { concurrency: 8 }, {
      env: {
        STREAMFUTURES_PASSWORD: "hunter2",
        STREAMFUTURES_QUEUES: "mrz,ocr",
        STREAMFUTURES_GRACE: "1.5s",
        STREAMFUTURES_HEARTBEAT_TIMEOUT: "90s",
      },
      file,
    });
    const text = formatConfig(options, origin);
    assert.ok(!text.includes("hunter2"), text);
    assert.equal(
      text,
      [
        "url               redis://:***@db:6379/0  file STREAMFUTURES_URL",
        "queues            mrz,ocr                 env STREAMFUTURES_QUEUES",
        "concurrency       8                       explicit",
        "heartbeatTimeout  1.5m                    env STREAMFUTURES_HEARTBEAT_TIMEOUT",
        "grace             1.5s                    env STREAMFUTURES_GRACE",
        "maxPayloadBytes   16mb                    file STREAMFUTURES_MAX_PAYLOAD_BYTES",
        "password          ***                     env STREAMFUTURES_PASSWORD",
      ].join("\n"),
    );
  });

  it("lists a target's unset options as defaults, and options without an origin", () => {
    const text = formatConfig({ app: "A", workers: 2 }, { app: "explicit" }, "pool");
    const lines = text.split("\n");
    assert.equal(lines.length, CONFIG_OPTIONS.filter((o) => o.appliesTo !== "worker").length);
    assert.equal(lines[0], "url                (default)");
    assert.equal(lines[1], "app                A          explicit");
    assert.ok(lines.includes("workers            2          default"), text);
    assert.ok(!lines.some((l) => l.startsWith("grace ")), "worker-only option not listed");
  });

  it("formats explicit values of any shape", () => {
    const text = formatConfig(
      {
        url: { host: "h", port: 6380, password: "hunter2" },
        tasks: ["./a.ts", new URL("https://x.test/b.ts")],
        id: "",
        app: " padded ",
        heartbeatInterval: 250,
        taskTimeout: 3_600_000,
        retryDelay: 1234,
        maxPayloadBytes: 1000,
        callback: function onEvent() {},
      },
      {},
    );
    assert.ok(!text.includes("hunter2"), text);
    const values = Object.fromEntries(
      text.split("\n").map((l) => {
        const [name, ...rest] = l.split(/\s{2,}/);
        return [name, rest[0]];
      }),
    );
    assert.deepEqual(values, {
      url: '{"host":"h","port":6380,"password":"***"}',
      tasks: "./a.ts,https://x.test/b.ts",
      id: '""',
      app: '" padded "',
      heartbeatInterval: "250ms",
      taskTimeout: "1h",
      retryDelay: "1.234s",
      maxPayloadBytes: "1000",
      callback: "[function onEvent]",
    });
  });

  it("prints durations and sizes the parser reads back", () => {
    const grace = opt("grace");
    const bytes = opt("maxPayloadBytes");
    for (const ms of [0, 1, 999, 1000, 1500, 60_000, 90_000, 100_000, 5_400_000, 1.5]) {
      const text = formatConfig({ grace: ms }, {}).split(/\s+/)[1];
      assert.equal(parseConfigValue(grace, text, "x"), ms, text);
    }
    for (const n of [1, 1023, 1024, 1536, 16 * 1024 * 1024, 3 * 1024 ** 3]) {
      const text = formatConfig({ maxPayloadBytes: n }, {}).split(/\s+/)[1];
      assert.equal(parseConfigValue(bytes, text, "x"), n, text);
    }
  });

  it("masks the password of a URL given explicitly, and leaves a URL without one alone", () => {
    assert.equal(
      formatConfig({ url: "rediss://user:pw@host:6380/2" }, { url: "explicit" }),
      "url  rediss://user:***@host:6380/2  explicit",
    );
    assert.equal(
      formatConfig({ url: "redis://host:6379" }, { url: "explicit" }),
      "url  redis://host:6379  explicit",
    );
  });
});
