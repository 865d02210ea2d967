/**
 * Runs the embedded Lua scripts of `lib/_lua/` with EVALSHA, falling back to EVAL when the server
 * does not have the script cached (after a restart or SCRIPT FLUSH). Scripts are TypeScript
 * strings so they travel with the package whether it is consumed from JSR or npm.
 *
 * @module
 */

import type { RedisCommander } from "./_redis.ts";

/** An atomic Redis state change, written in Lua. */
export class Script {
  /** A short name for error messages. */
  readonly name: string;
  /** The Lua source. */
  readonly source: string;
  #sha: string | undefined;
  #shaPromise: Promise<string>;

  constructor(name: string, source: string) {
    this.name = name;
    this.source = source;
    this.#shaPromise = sha1Hex(source).then((sha) => (this.#sha = sha));
  }

  /** Runs the script with the given keys and arguments and returns its raw reply. */
  async run(
    client: RedisCommander,
    keys: readonly string[],
    args: readonly string[],
  ): Promise<unknown> {
    const sha = this.#sha ?? await this.#shaPromise;
    try {
      return await client.sendCommand(["EVALSHA", sha, String(keys.length), ...keys, ...args]);
    } catch (error) {
      if (!String((error as Error)?.message).startsWith("NOSCRIPT")) throw error;
      return await client.sendCommand(["EVAL", this.source, String(keys.length), ...keys, ...args]);
    }
  }
}

async function sha1Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
