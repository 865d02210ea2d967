/**
 * The messages between a worker and its executor threads, and their packing: batches travel as
 * one string, or as pieces of one where arguments or values are long ({@link PIECE_MIN}), fields
 * separated by NUL (structured cloning of nested arrays costs far more), which no packed field can
 * contain: ids and names are validated, JSON text escapes control characters.
 *
 * @module
 */

/** What the worker sends to start one task. */
export type RunMessage = [
  seq: number,
  fn: string,
  /** The encoded arguments; as the bytes Redis sent when they were stored beside the entry. */
  args: string | Uint8Array,
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
  | [seq: number, ok: 0, name: string, message: string, stack: string, detail?: string];

/** Something a running task published: a progress value ("p") or a yielded value ("y"). */
export type EventMessage = [seq: number, kind: 2, event: "p" | "y", index: number, value: string];

/** The separator of packed messages. */
export const SEP = "\u0000";

/**
 * Arguments and values of at least this many characters travel between an executor and its
 * worker as pieces of their own, not packed into one string with the rest of their batch: a batch
 * of long ones packed is a string of megabytes, for which V8 maps fresh memory every time (about
 * 25 page faults per 100 KB, each costly on a VM) and which a thread receives as a copy of the
 * same size, where pieces of 100 KB take memory V8 reuses. Across a socket they are the pieces of
 * a frame (`RawParts`), decoded one by one.
 */
export const PIECE_MIN = 4096;

const textDecoder = new TextDecoder();

/**
 * Whether `bytes` hold a NUL (0) byte, which no packed field may contain. Read four bytes at a
 * time: `Uint8Array.prototype.includes` takes 30 µs for 100 KB on Deno 2.9 (Buffer's 46 µs), this
 * 16-22 µs, and decoding to search the string allocates a string of that size.
 */
export function hasNul(bytes: Uint8Array): boolean {
  const length = bytes.length;
  const head = Math.min((4 - (bytes.byteOffset & 3)) & 3, length);
  for (let i = 0; i < head; i++) if (bytes[i] === 0) return true;
  const words = (length - head) >>> 2;
  if (words > 0) {
    const w = new Uint32Array(bytes.buffer, bytes.byteOffset + head, words);
    for (let i = 0; i < words; i++) {
      const v = w[i];
      // A zero byte in v sets its high bit in (v - 0x01010101) & ~v; no other byte does.
      if (((v - 0x01010101) & ~v & 0x80808080) !== 0) return true;
    }
  }
  for (let i = head + words * 4; i < length; i++) if (bytes[i] === 0) return true;
  return false;
}

/** A task's arguments as a string. */
export function argsText(args: string | Uint8Array): string {
  return typeof args === "string" ? args : textDecoder.decode(args);
}

/**
 * Packs tasks to run (see the module documentation) into pieces that make one string when joined
 * (byte arrays as UTF-8): per task its fields, each followed by a NUL; arguments given as bytes,
 * and those of at least {@link PIECE_MIN} characters, are pieces of their own, neither decoded
 * nor copied into a longer string (see {@link splitPacked}).
 */
export function packRunParts(tasks: readonly RunMessage[]): (string | Uint8Array)[] {
  const parts: (string | Uint8Array)[] = [];
  let out = "";
  for (const t of tasks) {
    out += `${t[0]}${SEP}${t[1]}${SEP}`;
    const args = t[2];
    if (typeof args === "string" && args.length < PIECE_MIN) out += args;
    else {
      parts.push(out, args);
      out = "";
    }
    out += `${SEP}${t[3]}${SEP}${t[4]}${SEP}${t[5]}${SEP}${t[6]}${SEP}${t[7]}${SEP}`;
  }
  parts.push(out);
  return parts;
}

/**
 * The tasks of the pieces {@link packRunParts} made (decoded one by one: a long argument is a
 * piece of its own, never joined to the others), or of the string they make together.
 */
export function unpackRun(packed: string | readonly string[]): RunMessage[] {
  const f = splitPacked(packed);
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

/**
 * The fields of a packed string, or of the string its pieces make together (without joining
 * them: a piece that is a whole field is that field).
 */
export function splitPacked(pieces: string | readonly string[]): string[] {
  if (typeof pieces === "string") return pieces.split(SEP);
  const fields: string[] = [];
  let carry = "";
  for (const piece of pieces) {
    const parts = piece.split(SEP);
    // A field cut between pieces (not the case of what packRunParts makes) is joined.
    if (carry !== "") parts[0] = parts[0] === "" ? carry : carry + parts[0];
    carry = parts.pop()!;
    for (const part of parts) fields.push(part);
  }
  fields.push(carry);
  return fields;
}
