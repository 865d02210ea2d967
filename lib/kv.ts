/**
 * A key-value store shared by tasks and clients of one application (`currentTask().kv`,
 * `pool.kv`), kept in Redis under `<app>:kv:<key>`.
 *
 * Values are written with the codec (`lib/codec.ts`), so anything a task may return can be
 * stored: JSON values, `Date`, `BigInt`, `Map`, `Set`, bytes, `undefined`, ... An array is stored
 * as a Redis list (one codec JSON element per item) so that {@link KeyValueStore.append} and
 * {@link KeyValueStore.pop} change it in place, atomically, however many workers share it; every
 * other value is a Redis string holding its codec JSON (numbers are their decimal text, so
 * {@link KeyValueStore.incr} is Redis' own `INCRBY` / `INCRBYFLOAT`). Redis has no empty lists:
 * an empty array is the string `[]`, which `append` turns into a list.
 *
 * Every operation's answer comes from one Redis command or one Lua script, so each sees a key at
 * one instant: a key cannot expire or change type half-way through a read, and concurrent writers
 * never lose an update. Reads are plain commands (a script would cost Redis a hash of every byte
 * it reads).
 *
 * @example
 * ```ts ignore
 * import { KeyValueStore } from "./kv.ts";
 * import { connect } from "./_redis.ts";
 *
 * const connection = await connect("redis://127.0.0.1:6379");
 * const kv = new KeyValueStore(connection, "myapp");
 * await kv.set("config", { retries: 3, since: new Date() });
 * await kv.set("session", "abc", { ttl: 60_000 }); // gone after a minute
 * await kv.append("log", "started"); // 1
 * await kv.incr("hits"); // 1
 * for await (const [key, value] of kv.entries()) console.log(key, value);
 * connection.close();
 * ```
 *
 * @module
 */

import { decode, encode } from "./codec.ts";
import { ProtocolError } from "./errors.ts";
import { Keys } from "./_keys.ts";
import { KV_APPEND } from "./_lua/kv_append.ts";
import { KV_INCR } from "./_lua/kv_incr.ts";
import { KV_POP } from "./_lua/kv_pop.ts";
import { KV_READ } from "./_lua/kv_read.ts";
import { KV_SET_LIST } from "./_lua/kv_set_list.ts";
import { checkOptions, keyName, positiveInt, storedDuration } from "./_options.ts";
import {
  isConnectionError,
  type RedisCommander,
  type RedisConnection,
  withReconnect,
} from "./_redis.ts";
import { ConnectionError } from "./errors.ts";

/** The store's scripts. */
const KV_SCRIPTS = [KV_SET_LIST, KV_APPEND, KV_POP, KV_INCR, KV_READ];

/**
 * Per connection: the loading of {@link KV_SCRIPTS} (a promise), or `true` once they are loaded.
 * Until then every call waits for it, so calls go out in the order they were made: a script call
 * that found its script missing would otherwise load it first, and plain commands made after it
 * (`SET`, `GET`, `UNLINK`) would overtake it.
 */
const scriptsLoaded = new WeakMap<RedisCommander, Promise<void> | true>();

/**
 * Options of {@link KeyValueStore.set}.
 *
 * @example
 * ```ts ignore
 * await kv.set("session", { user: 1 }, { ttl: 15 * 60_000 }); // expires in 15 minutes
 * ```
 */
export interface KeyValueSetOptions {
  /**
   * Time to live in milliseconds (positive; fractions round up): the key is deleted that long
   * after this `set`. Without it the key never expires, even if it had a time to live before.
   */
  ttl?: number;
}

/**
 * Options of the {@link KeyValueStore} constructor.
 *
 * @example
 * ```ts ignore
 * const kv = new KeyValueStore(connection, "myapp", { scanCount: 100 });
 * ```
 */
export interface KeyValueStoreOptions {
  /** Keys Redis examines per `SCAN` call of {@link KeyValueStore.entries} (default 1000). */
  scanCount?: number;
}

/** Keys read per `MGET` while iterating {@link KeyValueStore.entries}. */
const READ_BATCH = 100;

/** Plain reads of a key that keeps changing type, before one read by script settles it. */
const PLAIN_READ_TRIES = 10;

/** A read answered `WRONGTYPE`. */
const WRONG_TYPE = Symbol("WRONGTYPE");

/** A lone UTF-16 surrogate: such a string has no UTF-8 form, so it cannot name a Redis key. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * A key-value store shared by every task and client of one application (`<app>`).
 *
 * - {@link get} / {@link set} (optionally with a time to live) / {@link delete} any value the
 *   codec accepts;
 * - {@link append} / {@link pop} on arrays, atomically (a list in Redis);
 * - {@link incr} on numbers, atomically;
 * - {@link entries} walks the keys page by page.
 *
 * Keys are any non-empty strings (without lone UTF-16 surrogates); they live in Redis as
 * `<app>:kv:<key>`, so two applications never see each other's keys.
 *
 * @example
 * ```ts ignore
 * import { KeyValueStore } from "./kv.ts";
 *
 * const kv = new KeyValueStore(connection, "myapp");
 * await kv.set("seen", []);
 * await Promise.all([kv.append("seen", "a"), kv.append("seen", "b", "c")]);
 * (await kv.get<string[]>("seen"))?.length; // 3, whatever the interleaving
 * await kv.incr("total", 2.5); // 2.5
 * await kv.delete("seen"); // true
 * ```
 */
export class KeyValueStore {
  /** The application (key prefix) this store belongs to. */
  readonly app: string;
  readonly #commander: RedisCommander;
  readonly #keys: Keys;
  readonly #scanCount: number;

  /**
   * Opens the store of application `app` over a Redis connection. The store holds no state of
   * its own: any number of stores (in any process) over the same Redis and app share the keys.
   *
   * @param commander The Redis connection to use (it is not closed by the store).
   * @param app The application prefix: letters, digits, `_`, `.`, `-`.
   * @param options See {@link KeyValueStoreOptions}.
   *
   * @example
   * ```ts ignore
   * const kv = new KeyValueStore(connection, "myapp"); // keys "myapp:kv:<key>"
   * ```
   */
  constructor(commander: RedisCommander, app: string, options: KeyValueStoreOptions = {}) {
    if (
      commander === null || typeof commander !== "object" ||
      typeof (commander as { sendCommand?: unknown }).sendCommand !== "function"
    ) {
      throw new TypeError("commander must be a Redis connection (an object with sendCommand())");
    }
    if (app === undefined) throw new TypeError("app must be given (the application prefix)");
    this.app = keyName(app, "app", "");
    this.#commander = commander;
    this.#keys = new Keys(this.app);
    this.#scanCount = positiveInt(options?.scanCount, "scanCount", 1000);
  }

  /**
   * Reads a value. An array (a list in Redis) comes back whole.
   *
   * @param key The key.
   * @returns The value, or `undefined` when the key does not exist (or expired).
   * @throws {TypeError} If `key` is not a non-empty string.
   * @throws {ProtocolError} If the key holds something this store did not write (text that is
   * not codec JSON, or a Redis hash, set, ...).
   *
   * @example
   * ```ts ignore
   * await kv.set("when", new Date(0));
   * const when = await kv.get<Date>("when"); // a Date
   * await kv.get("missing"); // undefined
   * ```
   */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    const name = this.#name(key, "get");
    await this.#ready();
    return this.#value(key, await this.#read(name)) as T | undefined;
  }

  /**
   * Writes a value, replacing whatever the key held (of any type), in one step: no reader ever
   * sees the key missing or half-written. A non-empty array is stored as a list, so
   * {@link append} and {@link pop} work on it.
   *
   * @param key The key.
   * @param value Anything the codec accepts.
   * @param options `ttl`: delete the key that many milliseconds from now. Without it the key
   * does not expire (a previous time to live is removed).
   * @throws {TypeError} If `key` is not a non-empty string, or the value (or an element of an
   * array) cannot be serialized; the message names the offending path, e.g. `value[2].f`.
   * @throws {RangeError} If `ttl` is not a positive finite number of milliseconds.
   *
   * @example
   * ```ts ignore
   * await kv.set("token", "s3cret", { ttl: 30_000 });
   * await kv.set("queue", [1, 2, 3]); // a list: append / pop work on it
   * ```
   */
  async set(key: string, value: unknown, options?: KeyValueSetOptions): Promise<void> {
    const name = this.#name(key, "set");
    options = checkOptions(
      options,
      { ttl: true } satisfies Record<keyof KeyValueSetOptions, true>,
      "kv.set()",
    );
    const ttl = this.#ttl(options.ttl);
    if (Array.isArray(value) && value.length > 0) {
      const elements = Array.from(value, (element, i) => encode(element, `value[${i}]`));
      await this.#ready();
      await KV_SET_LIST.run(this.#commander, [name], [String(ttl), ...elements]);
      return;
    }
    const text = encode(value);
    await this.#ready();
    await this.#commander.sendCommand(
      ttl > 0 ? ["SET", name, text, "PX", String(ttl)] : ["SET", name, text],
    );
  }

  /**
   * Appends values at the end of an array, atomically (like `RPUSH`): appends from any number of
   * workers at the same time are all kept, none lost or duplicated. A missing key becomes a new
   * array. The key's time to live, if any, is kept.
   *
   * @param key The key.
   * @param values The values to append (none: only returns the length).
   * @returns The length of the array after the append.
   * @throws {TypeError} If `key` is not a non-empty string, if the key holds a value that is not
   * an array (nothing is appended then), or if a value cannot be serialized.
   *
   * @example
   * ```ts ignore
   * await kv.append("events", { type: "start" }); // 1
   * await kv.append("events", "a", "b"); // 3
   * ```
   */
  async append(key: string, ...values: unknown[]): Promise<number> {
    const name = this.#name(key, "append");
    const elements = values.map((value, i) => encode(value, `values[${i}]`));
    await this.#ready();
    const reply = await KV_APPEND.run(this.#commander, [name], elements);
    if (typeof reply === "string") throw this.#notList(key, "append", reply);
    return Number(reply);
  }

  /**
   * Removes the last element of an array and returns it (like `Array.prototype.pop`),
   * atomically: concurrent pops never return the same element. Popping the last element leaves
   * an empty array (with the key's time to live).
   *
   * @param key The key.
   * @returns The element, or `undefined` when the key is missing or holds an empty array.
   * @throws {TypeError} If `key` is not a non-empty string, or the key holds a value that is not
   * an array (it is left alone).
   * @throws {ProtocolError} If the element is not codec JSON (written by something else); it is
   * removed all the same.
   *
   * @example
   * ```ts ignore
   * await kv.set("stack", [1, 2]);
   * await kv.pop("stack"); // 2
   * await kv.pop("stack"); // 1
   * await kv.pop("stack"); // undefined
   * ```
   */
  async pop<T = unknown>(key: string): Promise<T | undefined> {
    const name = this.#name(key, "pop");
    await this.#ready();
    const reply = await KV_POP.run(this.#commander, [name], []);
    if (reply === null || reply === undefined) return undefined;
    if (typeof reply === "string") throw this.#notList(key, "pop", reply);
    return this.#decode(key, String((reply as unknown[])[0])) as T;
  }

  /**
   * Adds `by` to a number, atomically, and returns the result. A missing key counts as 0. Integers
   * use Redis `INCRBY`; a fractional increment or value uses `INCRBYFLOAT` (extended-precision
   * arithmetic printed with 17 digits after the decimal point, so `0.1 + 0.2` gives `0.3` and
   * magnitudes below about 1e-17 become 0). The key's time to live is kept.
   *
   * @param key The key.
   * @param by The increment (default 1; may be negative or fractional).
   * @returns The new value.
   * @throws {TypeError} If `key` is not a non-empty string, `by` is not a number, or the key holds
   * something that is not a number (an array, a string, a `BigInt`, `NaN`, ...).
   * @throws {RangeError} If `by` is not finite, or the result would not be (nothing is changed).
   *
   * @example
   * ```ts ignore
   * await kv.incr("visits"); // 1
   * await kv.incr("visits", 10); // 11
   * await kv.incr("balance", -2.5); // -2.5
   * ```
   */
  async incr(key: string, by: number = 1): Promise<number> {
    const name = this.#name(key, "incr");
    if (typeof by !== "number") {
      throw new TypeError(`by must be a finite number, got ${describe(by)}`);
    }
    if (!Number.isFinite(by)) throw new RangeError(`by must be a finite number, got ${by}`);
    const integer = Number.isSafeInteger(by);
    await this.#ready();
    const reply = await KV_INCR.run(this.#commander, [name], [
      String(by), // Redis parses exponents too (1e-7)
      integer ? "i" : "f",
    ]);
    if (Array.isArray(reply)) {
      const reason = String(reply[0]);
      const label = keyLabel(key);
      switch (reason) {
        case "list":
          throw new TypeError(
            `kv.incr(${label}): the key holds an array; incr works on numbers and missing keys`,
          );
        case "nan":
          throw new TypeError(
            `kv.incr(${label}): the key holds a value that is not a number; incr works on ` +
              `numbers and missing keys`,
          );
        case "infinite":
          throw new RangeError(
            `kv.incr(${label}, ${by}): the result would not be a finite number; the value is ` +
              `unchanged`,
          );
        default:
          throw new TypeError(
            `kv.incr(${label}): the key holds a Redis ${reason}; incr works on numbers and ` +
              `missing keys`,
          );
      }
    }
    return Number(reply);
  }

  /**
   * Deletes a key.
   *
   * @param key The key.
   * @returns `true` if the key existed.
   * @throws {TypeError} If `key` is not a non-empty string.
   *
   * @example
   * ```ts ignore
   * await kv.delete("session"); // true
   * await kv.delete("session"); // false
   * ```
   */
  async delete(key: string): Promise<boolean> {
    const name = this.#name(key, "delete");
    await this.#ready();
    return Number(await this.#commander.sendCommand(["UNLINK", name])) > 0;
  }

  /**
   * Walks every key of this application's store (or those starting with `prefix`) with its
   * value, in no particular order. Keys are read page by page with `SCAN` (never all at once),
   * each value at one instant; each key is yielded once. A key written during the walk may or may
   * not be seen; a key deleted or expired before its page is read is skipped.
   *
   * @param prefix Only keys starting with this string (default: all).
   * @returns An async iterable of `[key, value]` pairs (keys without the `<app>:kv:` prefix).
   * @throws {TypeError} If `prefix` is not a string.
   * @throws {ProtocolError} While iterating, at a key holding something this store did not
   * write.
   *
   * @example
   * ```ts ignore
   * for await (const [key, value] of kv.entries("user:")) console.log(key, value);
   * ```
   */
  entries<T = unknown>(prefix: string = ""): AsyncIterableIterator<[string, T]> {
    if (typeof prefix !== "string") {
      throw new TypeError(`prefix must be a string, got ${describe(prefix)}`);
    }
    if (LONE_SURROGATE.test(prefix)) {
      throw new TypeError(`prefix must not contain lone UTF-16 surrogates`);
    }
    return this.#entries<T>(prefix);
  }

  async *#entries<T>(prefix: string): AsyncIterableIterator<[string, T]> {
    const base = this.#keys.kv("");
    const match = escapeGlob(base + prefix) + "*";
    // SCAN may return a key more than once (while Redis resizes its table): remember names only.
    const seen = new Set<string>();
    let cursor = "0";
    await this.#ready();
    do {
      const reply = await this.#commander.sendCommand([
        "SCAN",
        cursor,
        "MATCH",
        match,
        "COUNT",
        String(this.#scanCount),
      ]) as [unknown, unknown[]];
      cursor = String(reply[0]);
      const names: string[] = [];
      for (const name of reply[1]) {
        const text = String(name);
        if (!seen.has(text)) {
          seen.add(text);
          names.push(text);
        }
      }
      for (let i = 0; i < names.length; i += READ_BATCH) {
        const batch = names.slice(i, i + READ_BATCH);
        // Strings in one MGET; the keys it has no string for (lists, missing, ...) one by one.
        const texts = await this.#commander.sendCommand(["MGET", ...batch]) as unknown[];
        const values = await Promise.all(
          batch.map((name, j) => typeof texts[j] === "string" ? ["s", texts[j]] : this.#read(name)),
        );
        for (let j = 0; j < batch.length; j++) {
          if (String(values[j][0]) === "none") continue;
          const key = batch[j].slice(base.length);
          yield [key, this.#value(key, values[j]) as T];
        }
      }
    } while (cursor !== "0");
  }

  /**
   * Reads one key as `["s", text]`, `["l", elements]`, `["none"]` or `[<Redis type>]`, with plain
   * commands: `GET` and `LRANGE`, sent together (one of them answers `WRONGTYPE`, unless the key
   * is missing), and `TYPE` when both do. Each answer is one command's, so the value returned is
   * the key's at one instant; a key that changed type between the commands is read again (and,
   * should it keep changing, by KV_READ, a script that reads it at one instant). Not a script
   * every time: Redis' Lua hashes every byte of every string a script reads, and a 1 MB value
   * cost 1,690 µs of Redis CPU through KV_READ against 255 µs this way.
   */
  async #read(name: string): Promise<unknown[]> {
    for (let i = 0; i < PLAIN_READ_TRIES; i++) {
      const [text, list] = await Promise.all([
        this.#plain(["GET", name]),
        this.#plain(["LRANGE", name, "0", "-1"]),
      ]);
      if (typeof text === "string") return ["s", text];
      if (Array.isArray(list) && list.length > 0) return ["l", list];
      // Missing when GET answered (nil), or when LRANGE found nothing (Redis has no empty lists).
      if (text !== WRONG_TYPE || Array.isArray(list)) return ["none"];
      const type = String(await this.#commander.sendCommand(["TYPE", name]));
      if (type === "none") return ["none"];
      if (type !== "string" && type !== "list") return [type];
    }
    const [reply] = await KV_READ.run(this.#commander, [name], []) as unknown[][];
    return reply;
  }

  /** A read command's reply, or {@link WRONG_TYPE} when the key holds another type. */
  async #plain(command: string[]): Promise<unknown> {
    try {
      return await this.#commander.sendCommand(command);
    } catch (error) {
      if (String((error as Error)?.message).startsWith("WRONGTYPE")) return WRONG_TYPE;
      throw error;
    }
  }

  /**
   * Undefined once the store's scripts are loaded on its connection; else the loading (begun by
   * the first call) that calls wait for, in the order they were made (see {@link scriptsLoaded}).
   */
  #ready(): Promise<void> | undefined {
    const commander = this.#commander;
    const state = scriptsLoaded.get(commander);
    if (state === true) return undefined;
    if (state) return state;
    const loading = Promise.all(KV_SCRIPTS.map((script) => script.load(commander))).then(
      () => void scriptsLoaded.set(commander, true),
      (error) => {
        scriptsLoaded.delete(commander);
        throw error;
      },
    );
    scriptsLoaded.set(commander, loading);
    return loading;
  }

  /** Checks a key and returns its Redis name. */
  #name(key: string, method: string): string {
    if (typeof key !== "string" || key === "") {
      throw new TypeError(`kv.${method}: key must be a non-empty string, got ${describe(key)}`);
    }
    if (LONE_SURROGATE.test(key)) {
      throw new TypeError(
        `kv.${method}: key ${keyLabel(key)} contains a lone UTF-16 surrogate (not valid Unicode, ` +
          `so not a Redis key name)`,
      );
    }
    return this.#keys.kv(key);
  }

  /** Checks the `ttl` option: 0 for none, else whole milliseconds. */
  #ttl(ttl: unknown): number {
    return storedDuration(ttl, "ttl", 0);
  }

  /** The value of a KV_READ reply: `{"s", text}`, `{"l", elements}`, `{"none"}`, `{type}`. */
  #value(key: string, reply: unknown[]): unknown {
    const kind = String(reply[0]);
    switch (kind) {
      case "none":
        return undefined;
      case "s":
        return this.#decode(key, String(reply[1]));
      case "l":
        return (reply[1] as unknown[]).map((element) => this.#decode(key, String(element)));
      default:
        throw this.#foreign(key, `a Redis ${kind}`);
    }
  }

  #decode(key: string, text: string): unknown {
    try {
      return decode(text);
    } catch (error) {
      throw this.#foreign(key, preview(text), error);
    }
  }

  #foreign(key: string, what: string, cause?: unknown): ProtocolError {
    const reason = cause instanceof Error ? `: ${cause.message}` : "";
    return new ProtocolError(
      `kv key ${keyLabel(key)} (Redis key ${keyLabel(this.#keys.kv(key))}) holds ${what}, ` +
        `which the key-value store did not write (it stores codec JSON in strings and lists)` +
        reason,
      { cause },
    );
  }

  #notList(key: string, method: string, type: string): TypeError {
    const what = type === "string" ? "a value that is not an array" : `a Redis ${type}`;
    return new TypeError(
      `kv.${method}(${keyLabel(key)}): the key holds ${what}; ${method} works on arrays and ` +
        `missing keys`,
    );
  }
}

/** A key for messages: JSON-quoted, cut at 100 characters. */
function keyLabel(key: string): string {
  return key.length <= 100 ? JSON.stringify(key) : `${JSON.stringify(key.slice(0, 100))}...`;
}

/** Stored text for messages: cut at 60 characters. */
function preview(text: string): string {
  return text.length <= 60 ? JSON.stringify(text) : `${JSON.stringify(text.slice(0, 60))}...`;
}

/** An argument for messages. */
function describe(value: unknown): string {
  if (typeof value === "string") return keyLabel(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "symbol" || typeof value === "function") return typeof value;
  return String(value);
}

/** Escapes the `SCAN MATCH` glob characters of a literal prefix. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}

/** The store's scripts whose call, if sent again after a lost reply, could apply twice. */
const ONCE_SCRIPTS = [KV_APPEND, KV_POP, KV_INCR];
let onceMarkers: Promise<Set<string>> | undefined;

/** The function names, SHA1s and sources that mark a call of {@link ONCE_SCRIPTS}. */
function markersOnce(): Promise<Set<string>> {
  return onceMarkers ??= Promise.all(ONCE_SCRIPTS.map(async (script) => {
    const name = await script.functionName();
    return [name, name.slice(name.lastIndexOf("_") + 1), script.source];
  })).then((all) => new Set(all.flat()));
}

/**
 * A store's commands over `connection()`, sent again over a lost connection (with backoff, until
 * `deadline` ms, then `ConnectionError`) when that is harmless: every call but `append`, `pop` and
 * `incr`, which a lost reply may have applied — those reject with `ConnectionError` at once, and say
 * so. (Without it every call failed with the driver's raw error at the first blip.)
 */
export function reconnectingCommander(
  connection: () => Promise<RedisConnection>,
  deadline: number,
): RedisCommander {
  return {
    async sendCommand(args) {
      const cmd = await connection();
      const once = (await markersOnce()).has(args[1] ?? "");
      if (!once) {
        return await withReconnect(cmd, () => cmd.sendCommand(args), deadline, `kv ${args[0]}`);
      }
      try {
        return await cmd.sendCommand(args);
      } catch (error) {
        if (!isConnectionError(error)) throw error;
        throw new ConnectionError(
          "kv: the connection to Redis was lost during a call that is not sent again (append, " +
            `pop, incr): it may or may not have been applied: ${(error as Error).message}`,
          { cause: error },
        );
      }
    },
  };
}
