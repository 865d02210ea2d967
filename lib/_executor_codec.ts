/**
 * The messages between a worker and its executor threads, and their packing: batches travel as
 * one string, fields separated by NUL (structured cloning of nested arrays costs far more), which
 * no packed field can contain: ids and names are validated, JSON text escapes control characters.
 *
 * @module
 */

/** What the worker sends to start one task. */
export type RunMessage = [
  seq: number,
  fn: string,
  args: string,
  taskId: string,
  operationId: string,
  attempt: number,
  queue: string,
  /** The entry's `deps` field: the parents' outcomes (JSON), or "". */
  deps: string,
];

/** A task's outcome: its encoded value, or the error it failed with. */
export type DoneMessage =
  | [seq: number, ok: 1, value: string]
  | [seq: number, ok: 0, name: string, message: string, stack: string];

/** Something a running task published: a progress value ("p") or a yielded value ("y"). */
export type EventMessage = [seq: number, kind: 2, event: "p" | "y", index: number, value: string];

/** The separator of packed messages. */
export const SEP = "\u0000";

/** Packs tasks to run into one string (see the module documentation). */
export function packRun(tasks: readonly RunMessage[]): string {
  let out = "";
  for (const t of tasks) {
    out += `${t[0]}${SEP}${t[1]}${SEP}${t[2]}${SEP}${t[3]}${SEP}${t[4]}${SEP}${t[5]}${SEP}${
      t[6]
    }${SEP}${t[7]}${SEP}`;
  }
  return out;
}

/** The tasks of a string made by {@link packRun}. */
export function unpackRun(packed: string): RunMessage[] {
  const f = packed.split(SEP);
  const out: RunMessage[] = [];
  for (let i = 0; i + 8 <= f.length; i += 8) {
    out.push([
      Number(f[i]),
      f[i + 1],
      f[i + 2],
      f[i + 3],
      f[i + 4],
      Number(f[i + 5]),
      f[i + 6],
      f[i + 7],
    ]);
  }
  return out;
}
