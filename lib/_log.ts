/**
 * Structured log lines for pools and workers: one line per record, as text or as JSON, written
 * to stderr (through `console.error`) or to an injected sink.
 *
 * ```
 * 2026-11-25T14:00:00.123Z INFO  worker vm:123:abc: task done task=ab-1 run_ms=3.2 wait_ms=0.8
 * {"time":"2026-11-25T14:00:00.123Z","level":"info","name":"worker vm:123:abc","msg":"task done","task":"ab-1","run_ms":3.2,"wait_ms":0.8}
 * ```
 *
 * Text lines are `time LEVEL name: message key=value ...`: the level padded to five characters,
 * `name: ` left out when the logger has no name, control characters of the name and message
 * escaped (`\n`, `\u001b`) so a record is always one line. Field values are written as they are
 * unless they are empty or contain whitespace, `"`, `=` or control characters; then they are
 * quoted and escaped as JSON strings. Errors are written `name: message`, dates as ISO strings,
 * other objects as JSON.
 *
 * JSON lines are one object: `time`, `level` (lower case), `name` (`""` when none), `msg`, then
 * the fields. Errors become `{name, message, stack}` (plus `cause` and other own enumerable
 * properties), BigInts and non-finite numbers strings, `Map`s objects, `Set`s arrays; a cycle is
 * written `"[Circular]"`. A field named like one of the four record keys is written
 * `field.<key>`.
 *
 * In both formats fields whose value is `undefined` are left out, and a field that cannot be
 * read or converted is written as `[unserializable: ...]`: logging never throws, and a sink that
 * throws (or returns a promise that rejects) is ignored.
 *
 * Records below the logger's level cost one comparison. For records whose fields are costly to
 * build, guard with {@linkcode Logger.enabled}:
 *
 * ```ts ignore
 * if (log.enabled("debug")) log.debug("task done", { task: id, run_ms: roundForLog(run) });
 * ```
 *
 * @module
 */

/** How much is logged: each level includes the ones after it; `silent` logs nothing. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

/** How a record is written: `text` (`time LEVEL name: message key=value`) or one JSON object. */
export type LogFormat = "text" | "json";

/** The accepted log levels, most verbose first. */
export const LOG_LEVELS: readonly LogLevel[] = Object.freeze([
  "debug",
  "info",
  "warn",
  "error",
  "silent",
]);

/** The accepted log formats. */
export const LOG_FORMATS: readonly LogFormat[] = Object.freeze(["text", "json"]);

/** Extra key/value pairs of a record. */
export type LogFields = Readonly<Record<string, unknown>>;

/** Receives each finished line (without a trailing newline). */
export type LogSink = (line: string) => void;

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Records below this level are dropped. Default `"info"`. */
  level?: LogLevel;
  /** Line format. Default `"text"`. */
  format?: LogFormat;
  /** Written in front of each message, e.g. `"worker vm:123:abc"`. Default: none. */
  name?: string;
  /** Where lines go. Default: `console.error` (stderr), looked up at each line. */
  sink?: LogSink;
  /** The time of a record, for tests. Default `new Date()`. */
  now?: () => Date;
}

/** Writes records at or above its level; see the module documentation for the line formats. */
export interface Logger {
  /** The level the logger was created with. */
  readonly level: LogLevel;
  /** The line format the logger was created with. */
  readonly format: LogFormat;
  /** The logger's name (`""` when it has none). */
  readonly name: string;
  /**
   * Whether a record at `level` would be written; always `false` for `"silent"`. Guard records
   * whose fields are costly to build with it.
   */
  enabled(level: LogLevel): boolean;
  /** Writes a `debug` record. */
  debug(message: string, fields?: LogFields): void;
  /** Writes an `info` record. */
  info(message: string, fields?: LogFields): void;
  /** Writes a `warn` record. */
  warn(message: string, fields?: LogFields): void;
  /** Writes an `error` record. */
  error(message: string, fields?: LogFields): void;
  /**
   * A logger with the same level, format, sink and clock whose name is this one's followed by a
   * space and `name` (just `name` when this one has none).
   */
  child(name: string): Logger;
}

const DEBUG = 10;
const INFO = 20;
const WARN = 30;
const ERROR = 40;

/** The rank of a record's level; `silent` (and anything unknown) is never written. */
const RANK: Readonly<Record<string, number>> = Object.freeze(
  Object.assign(Object.create(null), { debug: DEBUG, info: INFO, warn: WARN, error: ERROR }),
);

/** The lowest rank a logger at each level writes. */
const THRESHOLD: Readonly<Record<LogLevel, number>> = Object.freeze({
  debug: DEBUG,
  info: INFO,
  warn: WARN,
  error: ERROR,
  silent: Infinity,
});

const LABEL: Readonly<Record<string, string>> = Object.freeze({
  debug: "DEBUG",
  info: "INFO ",
  warn: "WARN ",
  error: "ERROR",
});

const RESERVED: ReadonlySet<string> = new Set(["time", "level", "name", "msg"]);

/** Nesting deeper than this is written `"[Object]"` / `"[Array]"`. */
const MAX_DEPTH = 10;

/** A value for a message: strings as is, anything else quoted or by type. */
function shown(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "number":
    case "bigint":
    case "boolean":
    case "undefined":
      return String(value);
    case "symbol":
      return value.toString();
    default:
      return value === null ? "null" : `a value of type ${typeof value}`;
  }
}

function checkEnum<T extends string>(
  value: unknown,
  name: string,
  accepted: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (typeof value === "string" && (accepted as readonly string[]).includes(value)) {
    return value as T;
  }
  const message = `${name} must be one of ${accepted.join(", ")}, got ${shown(value)}`;
  throw typeof value === "string" ? new RangeError(message) : new TypeError(message);
}

/**
 * Checks a log level option: one of `debug`, `info`, `warn`, `error`, `silent` (exactly, lower
 * case). Throws `TypeError` for a value that is not a string, `RangeError` for another string.
 *
 * @param value The option value; `undefined` gives `fallback`.
 * @param name The option name for messages, e.g. `"logLevel"`.
 * @param fallback The default. Default `"info"`.
 */
export function checkLogLevel(value: unknown, name: string, fallback: LogLevel = "info"): LogLevel {
  return checkEnum(value, name, LOG_LEVELS, fallback);
}

/**
 * Checks a log format option: `text` or `json` (exactly, lower case). Throws `TypeError` for a
 * value that is not a string, `RangeError` for another string.
 *
 * @param value The option value; `undefined` gives `fallback`.
 * @param name The option name for messages, e.g. `"logFormat"`.
 * @param fallback The default. Default `"text"`.
 */
export function checkLogFormat(
  value: unknown,
  name: string,
  fallback: LogFormat = "text",
): LogFormat {
  return checkEnum(value, name, LOG_FORMATS, fallback);
}

// ---------------------------------------------------------------------------------------------
// Values

function isControl(c: number): boolean {
  return c < 0x20 || c === 0x7f;
}

const SHORT_ESCAPES: Readonly<Record<number, string>> = { 9: "\\t", 10: "\\n", 13: "\\r" };

/** `text` with control characters escaped (`\n`, `\u001b`), so it stays on one line. */
function escapeControls(text: string): string {
  let i = 0;
  while (i < text.length && !isControl(text.charCodeAt(i))) i++;
  if (i === text.length) return text;
  let out = text.slice(0, i);
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    out += isControl(c) ? SHORT_ESCAPES[c] ?? `\\u${c.toString(16).padStart(4, "0")}` : text[i];
  }
  return out;
}

const QUOTE_NEEDED = /[\s"=]/;

/** A text field value: as is, or as a JSON string when it is empty or would be ambiguous. */
function quoted(text: string): string {
  if (text === "" || QUOTE_NEEDED.test(text)) return JSON.stringify(text);
  for (let i = 0; i < text.length; i++) {
    if (isControl(text.charCodeAt(i))) return JSON.stringify(text);
  }
  return text;
}

/** A text field key: whitespace, `"`, `=` and control characters replaced by `_`. */
function textKey(key: string): string {
  if (key === "") return "_";
  let bad = QUOTE_NEEDED.test(key);
  for (let i = 0; !bad && i < key.length; i++) bad = isControl(key.charCodeAt(i));
  if (!bad) return key;
  let out = "";
  for (const ch of key) {
    out += QUOTE_NEEDED.test(ch) || isControl(ch.charCodeAt(0)) ? "_" : ch;
  }
  return out;
}

function isError(value: object): value is Error {
  return value instanceof Error || Object.prototype.toString.call(value) === "[object Error]";
}

/** `String(value)`, or a placeholder when that throws. */
function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return `[${typeof value}]`;
  }
}

function errorText(error: Error): string {
  const name = error.name === undefined ? "Error" : safeString(error.name);
  const message = error.message === undefined ? "" : safeString(error.message);
  return message === "" ? name : `${name}: ${message}`;
}

function functionText(fn: { readonly name?: unknown }): string {
  return `[Function ${fn.name || "anonymous"}]`;
}

/** A JSON-safe copy of `value` (see the module documentation); `seen` holds the ancestors. */
function toJson(value: unknown, seen: object[]): unknown {
  switch (typeof value) {
    case "string":
    case "boolean":
    case "undefined":
      return value;
    case "number":
      return Number.isFinite(value) ? value : String(value);
    case "bigint":
      return value.toString();
    case "symbol":
      return value.toString();
    case "function":
      return functionText(value);
  }
  if (value === null) return null;
  const object = value as object;
  if (seen.includes(object)) return "[Circular]";
  if (seen.length >= MAX_DEPTH) return Array.isArray(object) ? "[Array]" : "[Object]";
  seen.push(object);
  try {
    return objectToJson(object, seen);
  } finally {
    seen.pop();
  }
}

function ownToJson(object: object, seen: object[], skip?: ReadonlySet<string>): object {
  const out: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(object)) {
    if (skip?.has(key)) continue;
    const v = toJson((object as Record<string, unknown>)[key], seen);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

const ERROR_KEYS: ReadonlySet<string> = new Set(["name", "message", "stack", "cause", "errors"]);

function objectToJson(object: object, seen: object[]): unknown {
  if (isError(object)) {
    const error = object as Error & { errors?: unknown };
    const out: Record<string, unknown> = Object.create(null);
    out.name = error.name === undefined ? "Error" : safeString(error.name);
    out.message = error.message === undefined ? "" : safeString(error.message);
    if (typeof error.stack === "string") out.stack = error.stack;
    if (error.cause !== undefined) out.cause = toJson(error.cause, seen);
    if (Array.isArray(error.errors)) out.errors = toJson(error.errors, seen);
    return Object.assign(out, ownToJson(object, seen, ERROR_KEYS));
  }
  if (object instanceof Date) {
    return Number.isNaN(object.getTime()) ? "Invalid Date" : object.toISOString();
  }
  if (Array.isArray(object)) return object.map((v) => toJson(v, seen) ?? null);
  if (object instanceof Map) {
    const out: Record<string, unknown> = Object.create(null);
    for (const [k, v] of object) {
      const converted = toJson(v, seen);
      if (converted !== undefined) out[typeof k === "string" ? k : textOf(k, seen)] = converted;
    }
    return out;
  }
  if (object instanceof Set) return [...object].map((v) => toJson(v, seen) ?? null);
  if (ArrayBuffer.isView(object)) {
    return `[${object.constructor?.name ?? "ArrayBufferView"} ${object.byteLength} bytes]`;
  }
  if (object instanceof ArrayBuffer) return `[ArrayBuffer ${object.byteLength} bytes]`;
  const toJSON = (object as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === "function") return toJson(toJSON.call(object), seen);
  return ownToJson(object, seen);
}

/** A value as it appears in a text line (unquoted); `seen` as for {@link toJson}. */
function textOf(value: unknown, seen: object[]): string {
  switch (typeof value) {
    case "string":
      return value;
    case "number":
    case "bigint":
    case "boolean":
    case "undefined":
      return String(value);
    case "symbol":
      return value.toString();
    case "function":
      return functionText(value);
  }
  if (value === null) return "null";
  if (isError(value as object)) return errorText(value as Error);
  if (value instanceof Date) {
    return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
  }
  return JSON.stringify(toJson(value, seen));
}

function unserializable(error: unknown): string {
  const reason = error instanceof Error ? errorText(error) : safeString(error);
  return `[unserializable: ${reason}]`;
}

/** Own enumerable keys of `fields`, or none when it is not an object (or its keys throw). */
function fieldKeys(fields: LogFields | undefined): string[] {
  if (typeof fields !== "object" || fields === null) return [];
  try {
    return Object.keys(fields);
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// Lines

function timestamp(now: () => Date): string {
  try {
    return now().toISOString();
  } catch {
    return new Date().toISOString();
  }
}

function textLine(
  time: string,
  level: string,
  escapedName: string,
  message: string,
  fields: LogFields | undefined,
): string {
  let line = `${time} ${LABEL[level]} ${escapedName === "" ? "" : `${escapedName}: `}${
    escapeControls(message)
  }`;
  for (const key of fieldKeys(fields)) {
    let text: string;
    try {
      const value = fields![key];
      if (value === undefined) continue;
      text = quoted(textOf(value, []));
    } catch (error) {
      text = quoted(unserializable(error));
    }
    line += ` ${textKey(key)}=${text}`;
  }
  return line;
}

function jsonLine(
  time: string,
  level: string,
  name: string,
  message: string,
  fields: LogFields | undefined,
): string {
  const record: Record<string, unknown> = Object.create(null);
  record.time = time;
  record.level = level;
  record.name = name;
  record.msg = message;
  for (const key of fieldKeys(fields)) {
    let value: unknown;
    try {
      value = toJson(fields![key], []);
    } catch (error) {
      value = unserializable(error);
    }
    if (value !== undefined) record[RESERVED.has(key) ? `field.${key}` : key] = value;
  }
  return JSON.stringify(record);
}

function ignore(): void {}

/** What a logger and its children share. */
interface Core {
  readonly level: LogLevel;
  readonly format: LogFormat;
  readonly threshold: number;
  readonly sink: LogSink;
  readonly now: () => Date;
}

class StructuredLogger implements Logger {
  readonly #core: Core;
  readonly #name: string;
  readonly #escapedName: string;

  constructor(core: Core, name: string) {
    this.#core = core;
    this.#name = name;
    this.#escapedName = escapeControls(name);
  }

  get level(): LogLevel {
    return this.#core.level;
  }

  get format(): LogFormat {
    return this.#core.format;
  }

  get name(): string {
    return this.#name;
  }

  enabled(level: LogLevel): boolean {
    return RANK[level] >= this.#core.threshold;
  }

  debug(message: string, fields?: LogFields): void {
    if (this.#core.threshold <= DEBUG) this.#write("debug", message, fields);
  }

  info(message: string, fields?: LogFields): void {
    if (this.#core.threshold <= INFO) this.#write("info", message, fields);
  }

  warn(message: string, fields?: LogFields): void {
    if (this.#core.threshold <= WARN) this.#write("warn", message, fields);
  }

  error(message: string, fields?: LogFields): void {
    if (this.#core.threshold <= ERROR) this.#write("error", message, fields);
  }

  child(name: string): Logger {
    if (typeof name !== "string" || name === "") {
      throw new TypeError(`a child logger's name must be a non-empty string, got ${shown(name)}`);
    }
    return new StructuredLogger(this.#core, this.#name === "" ? name : `${this.#name} ${name}`);
  }

  #write(level: string, message: string, fields: LogFields | undefined): void {
    const core = this.#core;
    const text = typeof message === "string" ? message : safeString(message);
    const time = timestamp(core.now);
    const line = core.format === "json"
      ? jsonLine(time, level, this.#name, text, fields)
      : textLine(time, level, this.#escapedName, text, fields);
    try {
      const result: unknown = core.sink(line);
      if (result && typeof (result as { then?: unknown }).then === "function") {
        (result as PromiseLike<unknown>).then(undefined, ignore);
      }
    } catch {
      // A broken sink (a closed stderr, a throwing test double) must not break the caller.
    }
  }
}

function consoleSink(line: string): void {
  console.error(line);
}

function defaultNow(): Date {
  return new Date();
}

/**
 * Creates a logger.
 *
 * @param options Level (default `info`), format (default `text`), name, sink (default
 *   `console.error`) and clock. Throws `TypeError` / `RangeError` for a bad option.
 *
 * @example
 * ```ts ignore
 * const log = createLogger({ level: "debug", name: "worker" }).child(listener.id);
 * log.info("ready", { queue: "default", concurrency: 8 });
 * // 2026-11-25T14:00:00.123Z INFO  worker vm:123:abc: ready queue=default concurrency=8
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`logger options must be an object, got ${shown(options)}`);
  }
  const level = checkLogLevel(options.level, "logLevel");
  const format = checkLogFormat(options.format, "logFormat");
  const name = options.name ?? "";
  if (typeof name !== "string") {
    throw new TypeError(`a logger's name must be a string, got ${shown(name)}`);
  }
  for (const key of ["sink", "now"] as const) {
    if (options[key] !== undefined && typeof options[key] !== "function") {
      throw new TypeError(`a logger's ${key} must be a function, got ${shown(options[key])}`);
    }
  }
  const core: Core = Object.freeze({
    level,
    format,
    threshold: THRESHOLD[level],
    sink: options.sink ?? consoleSink,
    now: options.now ?? defaultNow,
  });
  return new StructuredLogger(core, name);
}
