/**
 * Runs the embedded Lua scripts of `lib/_lua/` as Redis functions (`FCALL`), or with `EVALSHA`
 * where functions cannot be used (`FCALL` or `FUNCTION` renamed away, as some hosted Redis
 * services do with commands, or an ACL user not allowed them). Scripts are TypeScript
 * strings so they travel with the package whether it is consumed from JSR or npm.
 *
 * Why functions: most scripts start with the shared helpers of `_lua/_common.ts`, about fifty
 * Lua functions and a dozen tables. Run with `EVALSHA`, a script makes them afresh on every call,
 * which cost Redis about 60,000 instructions a call (callgrind), four times what the rest of a
 * call with one task costs. A function library makes them once, when it loads.
 *
 * Each script is a library of its own, named after the SHA1 of its `EVALSHA` source
 * (`sf_<name>_<sha1>`, the name of its one function too), so that versions of the package that
 * share a Redis never replace each other's scripts. Redis keeps libraries (they are persisted
 * with the data); a library whose version is gone can be removed with `FUNCTION DELETE`.
 * A library is loaded when a call finds it missing (first use, or a Redis that lost it), like
 * `EVALSHA` falling back to `EVAL`.
 *
 * @module
 */

import type { RedisCommander } from "./_redis.ts";
import { LUA_COMMON, LUA_COMMON_LIBRARY } from "./_lua/_common.ts";

/** Connections found unable to use functions (unknown command, or not permitted): EVALSHA. */
const evalOnly = new WeakSet<RedisCommander>();

/** An atomic Redis state change, written in Lua. */
export class Script {
  /** A short name for error messages. */
  readonly name: string;
  /** The Lua source, as run with EVALSHA / EVAL. */
  readonly source: string;
  #sha: string | undefined;
  #shaPromise: Promise<string>;
  /** `sf_<name>_<sha1 of source>`: the name of the script's function and of its library. */
  #function: string | undefined;
  /** Loads under way, per connection: calls that find the library missing together share one. */
  #loading = new WeakMap<RedisCommander, Promise<void>>();

  constructor(name: string, source: string) {
    if (!/^[a-z_]+$/.test(name)) {
      throw new TypeError(`a script name must be lower-case letters and "_", got "${name}"`);
    }
    this.name = name;
    this.source = source;
    this.#shaPromise = sha1Hex(source).then((sha) => {
      this.#function = `sf_${name}_${sha}`;
      return (this.#sha = sha);
    });
  }

  /** The name of the script's Redis function (and of its library): `sf_<name>_<sha1>`. */
  async functionName(): Promise<string> {
    await this.#shaPromise;
    return this.#function!;
  }

  /**
   * The script as a Redis function library: the shared helpers once, then the body as the
   * library's one function, which starts each call with `begin` (see `_lua/_common.ts`).
   */
  async library(): Promise<string> {
    const fn = await this.functionName();
    const common = this.source.startsWith(LUA_COMMON);
    const body = common ? this.source.slice(LUA_COMMON.length) : this.source;
    return `#!lua name=${fn}\n` +
      (common ? LUA_COMMON_LIBRARY : "local KEYS, ARGV\n") +
      `redis.register_function('${fn}', function(keys, args)\n` +
      (common ? "begin(keys, args)\n" : "KEYS, ARGV = keys, args\n") +
      `${body}\nend)\n`;
  }

  /**
   * Makes sure Redis has the script: loads its function library (already there is fine), or
   * caches it for EVALSHA where functions cannot be used. Loads on one connection that overlap
   * share one.
   */
  load(client: RedisCommander): Promise<void> {
    let loading = this.#loading.get(client);
    if (!loading) {
      loading = this.#load(client).finally(() => this.#loading.delete(client));
      this.#loading.set(client, loading);
    }
    return loading;
  }

  async #load(client: RedisCommander): Promise<void> {
    if (!evalOnly.has(client)) {
      try {
        await client.sendCommand(["FUNCTION", "LOAD", await this.library()]);
        return;
      } catch (error) {
        const message = String((error as Error)?.message);
        if (/^ERR Library '[^']*' already exists/.test(message)) return;
        if (!cannotUseFunctions(message)) throw error;
        evalOnly.add(client);
      }
    }
    await client.sendCommand(["SCRIPT", "LOAD", this.source]);
  }

  /** Runs the script with the given keys and arguments and returns its raw reply. */
  async run(
    client: RedisCommander,
    keys: readonly string[],
    args: readonly string[],
  ): Promise<unknown> {
    const sha = this.#sha ?? await this.#shaPromise;
    const numKeys = String(keys.length);
    if (!evalOnly.has(client)) {
      const call = ["FCALL", this.#function!, numKeys, ...keys, ...args];
      try {
        return await client.sendCommand(call);
      } catch (error) {
        const message = String((error as Error)?.message);
        if (message.startsWith("ERR Function not found")) {
          await this.load(client);
          if (!evalOnly.has(client)) return await client.sendCommand(call);
        } else if (cannotUseFunctions(message)) {
          evalOnly.add(client);
        } else {
          throw error;
        }
      }
    }
    try {
      return await client.sendCommand(["EVALSHA", sha, numKeys, ...keys, ...args]);
    } catch (error) {
      if (!String((error as Error)?.message).startsWith("NOSCRIPT")) throw error;
      return await client.sendCommand(["EVAL", this.source, numKeys, ...keys, ...args]);
    }
  }
}

/** Whether an error says that this connection cannot use functions at all. */
function cannotUseFunctions(message: string): boolean {
  // FCALL / FUNCTION renamed away (or a Redis without them), or an ACL user not allowed them.
  return /^ERR unknown command/i.test(message) || message.startsWith("NOPERM");
}

async function sha1Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
