/**
 * Task modules: every exported function of a task module is a task named by its export name.
 * Clients load them to turn functions into names; workers load them to run tasks by name.
 *
 * @module
 */

import { resolveModuleUrl } from "./_runtime.ts";
import { CHUNK_PREFIX } from "./_chunks.ts";

/** A function that can run as a task. */
// deno-lint-ignore no-explicit-any
export type TaskFunction = (...args: any[]) => unknown;

/** Task module specifiers: a path (relative to the working directory), a URL, or several. */
export type TaskModules = string | URL | readonly (string | URL)[];

/** The tasks of one or more modules, by name and by function. */
export interface TaskRegistry {
  /** Task functions by export name. */
  readonly byName: ReadonlyMap<string, TaskFunction>;
  /** Export names by task function. */
  readonly nameOf: ReadonlyMap<TaskFunction, string>;
  /** The module URLs that were loaded. */
  readonly urls: readonly string[];
}

/** Validates the `tasks` option and returns it as a list. */
export function checkTaskModules(tasks: unknown, what = "tasks"): (string | URL)[] {
  if (tasks === undefined) return [];
  const list = typeof tasks === "string" || tasks instanceof URL ? [tasks] : tasks;
  if (!Array.isArray(list)) {
    throw new TypeError(`${what} must be a module path, a URL, or an array of them`);
  }
  for (const item of list) {
    if (!(typeof item === "string" && item.length > 0) && !(item instanceof URL)) {
      throw new TypeError(
        `${what} must contain module paths (non-empty strings) or URLs, got ${String(item)}`,
      );
    }
  }
  return [...list];
}

/** Imports the task modules and indexes their exported functions. */
export async function loadTasks(modules: readonly (string | URL)[]): Promise<TaskRegistry> {
  const byName = new Map<string, TaskFunction>();
  const nameOf = new Map<TaskFunction, string>();
  const urls: string[] = [];
  const origin = new Map<string, string>();
  for (const spec of modules) {
    const url = await resolveModuleUrl(spec);
    urls.push(url);
    let module: Record<string, unknown>;
    try {
      module = await import(url);
    } catch (error) {
      throw new TypeError(`cannot load task module ${url}: ${(error as Error)?.message ?? error}`, {
        cause: error,
      });
    }
    const exported = Object.entries(module);
    if (!exported.some(([, value]) => typeof value === "function")) {
      // Likely the wrong file, or a CommonJS module whose functions Node could not name.
      throw new TypeError(
        `task module ${url} exports no functions (exports: ${
          exported.map(([name]) => name).join(", ") || "none"
        }); a task module exports its tasks as named functions (export function add(a, b) {...})`,
      );
    }
    for (const [name, value] of exported) {
      if (typeof value !== "function") continue;
      if (name.startsWith(CHUNK_PREFIX)) {
        throw new TypeError(
          `task module ${url} exports "${name}": names starting with "${CHUNK_PREFIX}" are ` +
            "reserved for chunks of map() / imap() calls",
        );
      }
      const previous = origin.get(name);
      if (previous !== undefined && byName.get(name) !== value) {
        throw new TypeError(`task name "${name}" is exported by both ${previous} and ${url}`);
      }
      origin.set(name, url);
      byName.set(name, value as TaskFunction);
      if (!nameOf.has(value as TaskFunction)) nameOf.set(value as TaskFunction, name);
    }
  }
  return { byName, nameOf, urls };
}
