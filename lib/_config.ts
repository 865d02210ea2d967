/**
 * Pool and worker options from the environment and from a `streamfutures.env` file.
 *
 * Every option in {@link CONFIG_OPTIONS} can be set by a variable named `STREAMFUTURES_` + the
 * option name in UPPER_SNAKE case (`concurrency` → `STREAMFUTURES_CONCURRENCY`,
 * `maxPayloadBytes` → `STREAMFUTURES_MAX_PAYLOAD_BYTES`), in the environment or in a dotenv-style
 * file (`streamfutures.env` in the working directory; see {@link parseEnvFile}). Explicit options
 * win over the environment, the environment over the file. An empty value counts as not set.
 * Adding an option is one line in the table.
 *
 * Text is read by the option's kind:
 *
 * | kind       | accepted text                                                                  |
 * |------------|--------------------------------------------------------------------------------|
 * | `string`   | anything, as is                                                                |
 * | `keyName`  | letters, digits, `_`, `.`, `-`                                                 |
 * | `url`      | a `redis://` or `rediss://` URL (its password is masked when printed)          |
 * | `int`      | a decimal integer, at least the option's minimum                               |
 * | `bool`     | `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in any case                   |
 * | `duration` | milliseconds, or a number with a unit `ms`, `s`, `m`, `h`: `250`, `10s`, `1.5m` |
 * | `enum`     | one of the listed values, in any case                                          |
 * | `list`     | comma-separated items (names, or module paths); empty items are dropped        |
 * | `bytes`    | bytes, or a number with a binary unit `k`/`kb`, `m`/`mb`, `g`/`gb`: `16mb`     |
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { envObject, getEnv } from "./_runtime.ts";
import { keyName, nearestName } from "./_options.ts";

/** What a configuration is for. */
export type ConfigTarget = "pool" | "worker";

/** Where an effective option value came from. */
export type ConfigSource = "explicit" | "env" | "file" | `env ${string}`;

/** How the text of a variable becomes an option value. */
export type ConfigKind =
  | { readonly type: "string" }
  | { readonly type: "keyName" }
  | { readonly type: "url" }
  | { readonly type: "int"; readonly min: number }
  | { readonly type: "bool" }
  | { readonly type: "duration"; readonly positive: boolean }
  | { readonly type: "enum"; readonly values: readonly string[] }
  | { readonly type: "list"; readonly item: "keyName" | "path" }
  | { readonly type: "bytes"; readonly min: number };

/** One row of {@link CONFIG_OPTIONS}. */
export interface ConfigOption {
  /** The library option name, e.g. `"logLevel"`. */
  readonly name: string;
  /** The variable, e.g. `"STREAMFUTURES_LOG_LEVEL"`. */
  readonly env: string;
  /** How the variable's text is read. */
  readonly kind: ConfigKind;
  /** Which constructor takes the option. */
  readonly appliesTo: ConfigTarget | "both";
  /** Masked when printed: a URL's password, or the whole value. */
  readonly secret: boolean;
}

const PREFIX = "STREAMFUTURES_";

const STRING: ConfigKind = { type: "string" };
const KEY_NAME: ConfigKind = { type: "keyName" };
const URL_KIND: ConfigKind = { type: "url" };
const BOOL: ConfigKind = { type: "bool" };
const DURATION: ConfigKind = { type: "duration", positive: false };
const POSITIVE_DURATION: ConfigKind = { type: "duration", positive: true };
const BYTES: ConfigKind = { type: "bytes", min: 1 };
const int = (min: number): ConfigKind => ({ type: "int", min });
const oneOf = (...values: string[]): ConfigKind => ({ type: "enum", values });
const list = (item: "keyName" | "path"): ConfigKind => ({ type: "list", item });

const SECRET = true;

function option(
  name: string,
  kind: ConfigKind,
  appliesTo: ConfigTarget | "both",
  secret = false,
): ConfigOption {
  const env = PREFIX + name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
  return Object.freeze({ name, env, kind, appliesTo, secret });
}

/** Every option that can come from the environment or the file, one per line. */
export const CONFIG_OPTIONS: readonly ConfigOption[] = Object.freeze([
  option("url", URL_KIND, "both", SECRET),
  option("app", KEY_NAME, "both"),
  option("queue", KEY_NAME, "pool"),
  option("queues", list("keyName"), "worker"),
  option("tasks", list("path"), "both"),
  option("workers", int(0), "pool"),
  option("concurrency", int(1), "both"),
  option("executors", int(1), "both"),
  option("executorMode", oneOf("thread", "process", "inline"), "both"),
  option("prefetch", int(0), "both"),
  option("requireWorkers", BOOL, "pool"),
  option("keep", BOOL, "pool"),
  option("heartbeatInterval", POSITIVE_DURATION, "both"),
  option("heartbeatTimeout", POSITIVE_DURATION, "both"),
  option("grace", DURATION, "worker"),
  option("taskGrace", DURATION, "both"),
  option("taskTimeout", POSITIVE_DURATION, "worker"),
  option("timeout", POSITIVE_DURATION, "pool"),
  option("retries", int(0), "pool"),
  option("retryDelay", DURATION, "pool"),
  option("retryOn", oneOf("lost", "error"), "pool"),
  option("maxPayloadBytes", BYTES, "both"),
  option("reconnectDeadline", POSITIVE_DURATION, "both"),
  option("orphanTtl", POSITIVE_DURATION, "pool"),
  option("dedupeTtl", DURATION, "pool"),
  option("statsInterval", DURATION, "worker"),
  option("logLevel", oneOf("debug", "info", "warn", "error", "silent"), "both"),
  option("logFormat", oneOf("text", "json"), "both"),
  option("id", STRING, "worker"),
  option("password", STRING, "both", SECRET),
]);

/** `STREAMFUTURES_*` variables read elsewhere, which are not options (no unknown-name warning). */
const OTHER_VARIABLES: ReadonlySet<string> = new Set(["STREAMFUTURES_TEST_ECHO"]);

const BY_ENV: ReadonlyMap<string, ConfigOption> = new Map(CONFIG_OPTIONS.map((o) => [o.env, o]));
const BY_NAME: ReadonlyMap<string, ConfigOption> = new Map(
  CONFIG_OPTIONS.map((o) => [o.name, o]),
);

// ---------------------------------------------------------------------------------------------
// Values

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};
/** A non-negative decimal number and a unit (possibly empty). */
const NUMBER_AND_UNIT = /^(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)$/i;
const BYTE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};
const BOOLS: Readonly<Record<string, boolean>> = {
  true: true,
  false: false,
  "1": true,
  "0": false,
  yes: true,
  no: false,
  on: true,
  off: false,
};

/** A product of decimals without binary noise (1.1 * 1000 is 1100, not 1100.0000000000002). */
function scaled(number: string, factor: number): number {
  return Number((Number(number) * factor).toPrecision(15));
}

function isKeyName(text: string): boolean {
  try {
    keyName(text, "", "");
    return true;
  } catch {
    return false;
  }
}

/** Masks the password of a URL, even one `URL` cannot parse. */
function maskUrl(text: string): string {
  try {
    const url = new URL(text);
    if (!url.password) return text;
    url.password = "***";
    return url.href;
  } catch {
    return text.replace(/^([^:/?#]*:\/\/[^:/?#@]*:)[^/?#]*@/, "$1***@");
  }
}

/** The text of a value for messages: quoted, a secret masked. */
function shown(option: ConfigOption, text: string): string {
  if (!option.secret) return JSON.stringify(text);
  return option.kind.type === "url" ? JSON.stringify(maskUrl(text)) : "***";
}

/**
 * Reads the text of one option's variable (leading and trailing blanks are ignored except for
 * `string` options). Throws `TypeError` / `RangeError` starting with `where` and saying what is
 * accepted.
 *
 * @param option The option, from {@link CONFIG_OPTIONS}.
 * @param text The variable's text.
 * @param where What to call the text in messages, e.g. `"STREAMFUTURES_GRACE in the environment"`.
 * @returns The option value: a string, number, boolean or string array.
 *
 * @example
 * ```ts ignore
 * const grace = CONFIG_OPTIONS.find((o) => o.name === "grace")!;
 * parseConfigValue(grace, "1.5s", "--grace"); // 1500
 * ```
 */
export function parseConfigValue(option: ConfigOption, text: string, where: string): unknown {
  if (typeof text !== "string") {
    throw new TypeError(`${where} must be text, got ${typeof text}`);
  }
  const kind = option.kind;
  const value = kind.type === "string" ? text : text.trim();
  const got = `got ${shown(option, text)}`;
  switch (kind.type) {
    case "string":
      return value;
    case "keyName":
      if (!isKeyName(value)) {
        throw new TypeError(
          `${where} must be a non-empty string of letters, digits, "_", "." or "-", ${got}`,
        );
      }
      return value;
    case "url": {
      let url: URL | undefined;
      try {
        url = new URL(value);
      } catch {
        // below
      }
      if (url?.protocol !== "redis:" && url?.protocol !== "rediss:") {
        throw new TypeError(`${where} must be a redis:// or rediss:// URL, ${got}`);
      }
      return value;
    }
    case "int": {
      const n = Number(value);
      if (!/^[+-]?\d+$/.test(value) || !Number.isSafeInteger(n) || n < kind.min) {
        throw new RangeError(`${where} must be an integer >= ${kind.min}, ${got}`);
      }
      return n;
    }
    case "bool": {
      const b = BOOLS[value.toLowerCase()];
      if (b === undefined) {
        throw new TypeError(
          `${where} must be one of true, false, 1, 0, yes, no, on, off (any case), ${got}`,
        );
      }
      return b;
    }
    case "duration": {
      const match = NUMBER_AND_UNIT.exec(value);
      const factor = match && DURATION_UNITS[match[2].toLowerCase() || "ms"];
      const ms = match && factor ? scaled(match[1], factor) : NaN;
      if (!Number.isFinite(ms) || (kind.positive && ms === 0)) {
        throw new RangeError(
          `${where} must be a ${
            kind.positive ? "positive " : ""
          }duration: milliseconds, or a number with a unit ms, s, m or h such as 250ms, 10s or 1.5m, ${got}`,
        );
      }
      return ms;
    }
    case "enum": {
      const found = kind.values.find((v) => v.toLowerCase() === value.toLowerCase());
      if (found === undefined) {
        throw new RangeError(`${where} must be one of ${kind.values.join(", ")}, ${got}`);
      }
      return found;
    }
    case "list": {
      const items = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
      const bad = kind.item === "keyName" ? items.find((s) => !isKeyName(s)) : undefined;
      if (items.length === 0 || bad !== undefined) {
        const what = kind.item === "keyName"
          ? `names of letters, digits, "_", "." or "-"`
          : "module paths or URLs";
        throw new TypeError(
          `${where} must be a comma-separated list of ${what}, ${got}${
            bad === undefined ? "" : ` (${JSON.stringify(bad)} is not one)`
          }`,
        );
      }
      return items;
    }
    case "bytes": {
      const match = NUMBER_AND_UNIT.exec(value);
      const factor = match && BYTE_UNITS[match[2].toLowerCase()];
      const n = match && factor ? scaled(match[1], factor) : NaN;
      if (!Number.isSafeInteger(n) || n < kind.min) {
        throw new RangeError(
          `${where} must be a whole number of bytes >= ${kind.min}, or a number with a unit k/kb (1024), m/mb (1024^2) or g/gb (1024^3) such as 512k or 16mb, ${got}`,
        );
      }
      return n;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The file

interface FileEntry {
  value: string;
  line: number;
}

const VARIABLE = /^[A-Za-z_][A-Za-z0-9_]*$/;

const ESCAPES: Readonly<Record<string, string>> = {
  n: "\n",
  r: "\r",
  t: "\t",
  '"': '"',
  "\\": "\\",
};

function parseEntries(text: string, label: string): Map<string, FileEntry> {
  const entries = new Map<string, FileEntry>();
  const lines = text.replace(/^\uFEFF/, "").split(/\r\n|\n|\r/);
  const error = (line: number, message: string) =>
    new SyntaxError(`${label} line ${line}: ${message}`);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const content = lines[i].trim();
    if (content === "" || content.startsWith("#")) continue;
    const assignment = /^(?:export\s+)?([^=\s]*)\s*=/.exec(content);
    if (!assignment) throw error(line, `expected KEY=value, got ${JSON.stringify(content)}`);
    const key = assignment[1];
    if (!VARIABLE.test(key)) {
      throw error(
        line,
        `invalid variable name ${
          JSON.stringify(key)
        } (letters, digits and "_", not starting with a digit)`,
      );
    }
    const raw = content.slice(assignment[0].length);
    let rest = raw.trimStart();
    let value = "";
    const quote = rest[0];
    if (quote === '"' || quote === "'") {
      // A quoted value runs to the closing quote, over line ends if need be.
      let j = 1;
      for (;;) {
        if (j >= rest.length) {
          if (i + 1 >= lines.length) throw error(line, `unterminated ${quote}-quoted value`);
          value += "\n";
          rest = lines[++i];
          j = 0;
          continue;
        }
        const c = rest[j];
        if (c === quote) break;
        if (quote === '"' && c === "\\" && j + 1 < rest.length) {
          value += ESCAPES[rest[j + 1]] ?? c + rest[j + 1];
          j += 2;
          continue;
        }
        value += c;
        j++;
      }
      const after = rest.slice(j + 1);
      if (!/^\s*(#.*)?$/.test(after)) {
        throw error(
          i + 1,
          `unexpected text after the closing quote: ${JSON.stringify(after.trim())}`,
        );
      }
    } else {
      // Unquoted: up to a " #" comment, blanks around it dropped.
      const comment = /\s#/.exec(raw);
      value = (comment ? raw.slice(0, comment.index) : raw).trim();
    }
    entries.set(key, { value, line });
  }
  return entries;
}

/**
 * Parses a dotenv-style file:
 *
 * - `KEY=value` or `export KEY=value`, blanks around `=` allowed; a later line wins;
 * - blank lines and lines starting with `#` are skipped;
 * - unquoted values are trimmed and end at ` #` (a `#` after a blank starts a comment);
 * - `'single-quoted'` values are taken literally; `"double-quoted"` values understand `\n`, `\r`,
 *   `\t`, `\"` and `\\` (other backslashes stay as they are); both can span lines, and may be
 *   followed by a comment;
 * - no `${VAR}` expansion.
 *
 * Throws `SyntaxError` naming the line.
 *
 * @param text The file's text.
 * @param label What to call the file in messages.
 * @returns Values by variable name.
 *
 * @example
 * ```ts ignore
 * parseEnvFile('# redis\nexport STREAMFUTURES_URL="redis://db:6379"\nSTREAMFUTURES_GRACE=10s # s\n');
 * // { STREAMFUTURES_URL: "redis://db:6379", STREAMFUTURES_GRACE: "10s" }
 * ```
 */
export function parseEnvFile(text: string, label = "env file"): Record<string, string> {
  if (typeof text !== "string") {
    throw new TypeError(`env file text must be a string, got ${typeof text}`);
  }
  return Object.fromEntries([...parseEntries(text, label)].map(([k, e]) => [k, e.value]));
}

// ---------------------------------------------------------------------------------------------
// Loading

/** Where {@link loadConfig} looks besides the explicit options. */
export interface ConfigSources {
  /** The environment (default: this process's). */
  env?: Record<string, string | undefined>;
  /**
   * The env file's path (default `"streamfutures.env"`, in the working directory); `null` reads
   * none. A missing file is fine.
   */
  file?: string | null;
}

/** What {@link loadConfig} found. */
export interface LoadedConfig {
  /** The effective options: the explicit ones (`undefined` dropped) plus those found. */
  options: Record<string, unknown>;
  /** Where each of `options` came from. */
  origin: Record<string, ConfigSource>;
  /** Things to tell the user, such as unknown `STREAMFUTURES_*` variables (likely typos). */
  warnings: string[];
  /** The env file that was read, if any. */
  file: string | undefined;
}

/** The default environment; with restricted env access (Deno), just the variables allowed. */
function processEnv(): Record<string, string | undefined> {
  try {
    return envObject();
  } catch {
    return Object.fromEntries(CONFIG_OPTIONS.map((o) => [o.env, getEnv(o.env)]));
  }
}

async function readEnvFile(path: string, warnings: string[]): Promise<string | undefined> {
  const { readFile } = await import("node:fs/promises");
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    return readError(path, error, warnings);
  }
}

/** A missing file is no file; without read permission (Deno) it is skipped with a warning. */
function readError(path: string, error: unknown, warnings: string[]): undefined {
  const { code, name, message } = error as { code?: string; name?: string; message?: string };
  if (code === "ENOENT") return undefined;
  if (name === "NotCapable" || name === "PermissionDenied") {
    warnings.push(`${path} was not read: ${message}`);
    return undefined;
  }
  throw new Error(`cannot read ${path}: ${message ?? error}`, { cause: error });
}

/** The option variable nearest to `suffix` (a name without the prefix), if it is close. */
function nearest(suffix: string): string | undefined {
  const best = nearestName(
    suffix.toUpperCase(),
    CONFIG_OPTIONS.map((option) => option.env.slice(PREFIX.length)),
  );
  return best === undefined ? undefined : PREFIX + best;
}

function unknownVariable(name: string, where: string): string {
  const best = nearest(name.slice(PREFIX.length));
  return `unknown variable ${name} ${where}${best ? ` (did you mean ${best}?)` : ""}`;
}

function ignoredVariable(name: string, where: string): string {
  const best = nearest(name.startsWith("STREAMFUTURES") ? name.slice(PREFIX.length - 1) : name);
  return `variable ${name} ${where} is ignored: only ${PREFIX}* variables are read${
    best ? ` (did you mean ${best}?)` : ""
  }`;
}

/**
 * The effective options of a pool or a worker: `explicit` options (any value but `undefined`) win
 * over `STREAMFUTURES_*` environment variables, which win over the env file. Only the variables of
 * options that apply to `target` are read; unknown `STREAMFUTURES_*` variables become `warnings`.
 * A variable's value that is used is checked, and a bad one throws `TypeError` / `RangeError`
 * naming the variable and where it was set; a file that cannot be parsed throws `SyntaxError`.
 * Explicit values are passed on unchecked (the constructors check them).
 *
 * @param target `"pool"` or `"worker"`.
 * @param explicit Options given in code or on the command line.
 * @param sources The environment and the env file to use instead of the defaults.
 *
 * @example
 * ```ts ignore
 * const { options, origin, warnings } = await loadConfig("worker", { concurrency: 4 });
 * for (const w of warnings) console.warn(w);
 * const listener = new Listener(options);
 * ```
 */
export async function loadConfig(
  target: ConfigTarget,
  explicit: Record<string, unknown> = {},
  sources: ConfigSources = {},
): Promise<LoadedConfig> {
  checkTarget(target, explicit);
  const env = sources?.env ?? processEnv();
  const path = checkPath(sources);
  const warnings: string[] = [];
  const text = path === null ? undefined : await readEnvFile(path, warnings);
  return resolveConfig(target, explicit, env, path, text, warnings);
}

/**
 * {@link loadConfig} without awaiting: the env file is read synchronously (for constructors,
 * such as the pool's, that cannot wait).
 */
export function loadConfigSync(
  target: ConfigTarget,
  explicit: Record<string, unknown> = {},
  sources: ConfigSources = {},
): LoadedConfig {
  checkTarget(target, explicit);
  const env = sources?.env ?? processEnv();
  const path = checkPath(sources);
  const warnings: string[] = [];
  const text = path === null ? undefined : readEnvFileSync(path, warnings);
  return resolveConfig(target, explicit, env, path, text, warnings);
}

function checkTarget(target: unknown, explicit: unknown): void {
  if (target !== "pool" && target !== "worker") {
    throw new TypeError(`target must be "pool" or "worker", got ${JSON.stringify(target)}`);
  }
  if (typeof explicit !== "object" || explicit === null) {
    throw new TypeError(`explicit options must be an object, got ${String(explicit)}`);
  }
}

function checkPath(sources: ConfigSources): string | null {
  const path = sources?.file === undefined ? "streamfutures.env" : sources.file;
  if (path !== null && (typeof path !== "string" || path === "")) {
    throw new TypeError(`file must be a path or null, got ${JSON.stringify(path)}`);
  }
  return path;
}

function readEnvFileSync(path: string, warnings: string[]): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    return readError(path, error, warnings);
  }
}

function resolveConfig(
  target: ConfigTarget,
  explicit: Record<string, unknown>,
  env: Record<string, string | undefined>,
  path: string | null,
  text: string | undefined,
  warnings: string[],
): LoadedConfig {
  const file = text === undefined ? new Map<string, FileEntry>() : parseEntries(text, path!);

  for (const name of Object.keys(env)) {
    if (name.startsWith(PREFIX) && !BY_ENV.has(name) && !OTHER_VARIABLES.has(name)) {
      warnings.push(unknownVariable(name, "in the environment"));
    }
  }
  for (const [name, entry] of file) {
    if (!name.startsWith(PREFIX)) {
      // Everything in the file is meant for streamfutures: a name without the prefix is a slip.
      warnings.push(ignoredVariable(name, `in ${path} line ${entry.line}`));
    } else if (!BY_ENV.has(name) && !OTHER_VARIABLES.has(name)) {
      warnings.push(unknownVariable(name, `in ${path} line ${entry.line}`));
    }
  }

  const options: Record<string, unknown> = {};
  const origin: Record<string, ConfigSource> = {};
  for (const option of CONFIG_OPTIONS) {
    if (explicit[option.name] !== undefined) {
      options[option.name] = explicit[option.name];
      origin[option.name] = "explicit";
      continue;
    }
    if (option.appliesTo !== target && option.appliesTo !== "both") continue;
    const fromEnv = env[option.env];
    const fromFile = file.get(option.env);
    if (fromEnv !== undefined && fromEnv.trim() !== "") {
      options[option.name] = parseConfigValue(option, fromEnv, `${option.env} in the environment`);
      origin[option.name] = "env";
    } else if (fromFile !== undefined && fromFile.value.trim() !== "") {
      const where = `${option.env} in ${path} line ${fromFile.line}`;
      options[option.name] = parseConfigValue(option, fromFile.value, where);
      origin[option.name] = "file";
    }
  }
  for (const [name, value] of Object.entries(explicit)) {
    if (value !== undefined && !BY_NAME.has(name)) {
      options[name] = value;
      origin[name] = "explicit";
    }
  }
  return { options, origin, warnings, file: text === undefined ? undefined : path! };
}

// ---------------------------------------------------------------------------------------------
// Printing

function formatDuration(ms: number): string {
  for (const [unit, size] of [["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms >= size && Number.isInteger((ms * 1000) / size)) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function formatBytes(n: number): string {
  for (const [unit, size] of [["gb", 1024 ** 3], ["mb", 1024 ** 2], ["kb", 1024]] as const) {
    if (n >= size && n % size === 0) return `${n / size}${unit}`;
  }
  return String(n);
}

const SECRET_KEY = /pass|secret|token|credential/i;

function formatText(text: string): string {
  const plain = text !== "" && text.trim() === text && ![...text].some((c) => c < " " || c === '"');
  return plain ? text : JSON.stringify(text);
}

function formatAny(value: unknown): string {
  if (typeof value === "string") return formatText(value);
  if (value instanceof URL) return maskUrl(value.href);
  if (typeof value === "function") return `[function ${value.name || "anonymous"}]`;
  if (Array.isArray(value)) return value.map(formatAny).join(",");
  if (typeof value === "object" && value !== null) {
    try {
      return JSON.stringify(value, (key, v) => (key && SECRET_KEY.test(key) ? "***" : v));
    } catch {
      return String(value);
    }
  }
  return String(value);
}

function formatValue(option: ConfigOption | undefined, value: unknown): string {
  if (option?.secret) {
    if (option.kind.type !== "url") return "***";
    if (typeof value === "string") return maskUrl(value);
    return formatAny(value); // an object: its password key is masked
  }
  if (option?.kind.type === "duration" && typeof value === "number") return formatDuration(value);
  if (option?.kind.type === "bytes" && typeof value === "number") return formatBytes(value);
  return formatAny(value);
}

/**
 * A listing of the effective configuration (for `worker.ts --print-config`): one option per line,
 * aligned, with its value and where it came from (`explicit`, `env STREAMFUTURES_X`,
 * `file STREAMFUTURES_X`, or `default` when `origin` has no entry). Secrets are masked:
 * `redis://:***@host:6379/0`, `***`. Durations and sizes print in units the variables accept
 * (`10s`, `16mb`). With `target`, options that apply to it but are not set are listed too, as
 * `(default)`.
 *
 * @param options Effective options, e.g. from {@link loadConfig}.
 * @param origin Where each came from.
 * @param target List the unset options of this target as well.
 *
 * @example
 * ```ts ignore
 * const { options, origin } = await loadConfig("worker", {});
 * console.log(formatConfig(options, origin, "worker"));
 * // url          redis://:***@redis:6379/0  env STREAMFUTURES_URL
 * // concurrency  8                          file STREAMFUTURES_CONCURRENCY
 * ```
 */
export function formatConfig(
  options: Record<string, unknown>,
  origin: Record<string, ConfigSource>,
  target?: ConfigTarget,
): string {
  const rows: [string, string, string][] = [];
  const listed = new Set<string>();
  const add = (name: string) => {
    const option = BY_NAME.get(name);
    listed.add(name);
    if (!Object.hasOwn(options, name) || options[name] === undefined) {
      rows.push([name, "(default)", ""]);
      return;
    }
    const source = origin[name];
    // ("env <NAME>": a variable other than the option's own, such as REDIS_URL.)
    const from = source === "env" || source === "file"
      ? `${source} ${option?.env ?? ""}`.trimEnd()
      : source ?? "default";
    rows.push([name, formatValue(option, options[name]), from]);
  };
  for (const option of CONFIG_OPTIONS) {
    const applies = target !== undefined &&
      (option.appliesTo === target || option.appliesTo === "both");
    if (Object.hasOwn(options, option.name) || applies) add(option.name);
  }
  for (const name of Object.keys(options)) if (!listed.has(name)) add(name);
  const width = (k: 0 | 1) => Math.max(0, ...rows.map((r) => r[k].length));
  const [nameWidth, valueWidth] = [width(0), width(1)];
  return rows
    .map(([name, value, from]) =>
      `${name.padEnd(nameWidth)}  ${from ? value.padEnd(valueWidth) + "  " + from : value}`
        .trimEnd()
    )
    .join("\n");
}
