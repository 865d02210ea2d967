/**
 * Parsing of XREAD / XREADGROUP replies, in either RESP2 (arrays) or RESP3 (maps) form.
 *
 * @module
 */

import { PROTOCOL_VERSION } from "./_keys.ts";

/** One stream entry: its id and its fields. */
export interface StreamEntry {
  /** The stream that held the entry. */
  stream: string;
  /** The entry id, e.g. `"1722355139617-0"`. */
  id: string;
  /** The entry's fields (a repeated name keeps its first value, as the scripts' `get_field`). */
  fields: Record<string, string>;
}

/** One stream entry with its fields as the flat list Redis sent (`[name, value, ...]`). */
export interface FlatStreamEntry {
  /** The stream that held the entry. */
  stream: string;
  /** The entry id. */
  id: string;
  /** Field names and values, in order, duplicates kept. */
  flat: string[];
}

/** Flattens an XREAD/XREADGROUP reply into entries with flat field lists. `null` gives `[]`. */
export function parseStreamReplyFlat(reply: unknown): FlatStreamEntry[] {
  if (reply === null || reply === undefined) return [];
  const out: FlatStreamEntry[] = [];
  const streams: [string, unknown][] = Array.isArray(reply)
    ? reply.map((s) => [String((s as unknown[])[0]), (s as unknown[])[1]])
    : reply instanceof Map
    ? [...reply.entries()].map(([k, v]) => [String(k), v])
    : Object.entries(reply as Record<string, unknown>);
  for (const [stream, entries] of streams) {
    if (!Array.isArray(entries)) continue;
    for (const entry of entries) {
      if (!Array.isArray(entry)) continue;
      const [id, flat] = entry as [unknown, unknown];
      // A deleted-but-pending entry comes back with nil fields; it is kept with no fields.
      out.push({ stream, id: String(id), flat: Array.isArray(flat) ? flat.map(String) : [] });
    }
  }
  return out;
}

/**
 * The fields of the `count` names and values from `values[from]`: a repeated name keeps its first
 * value, as the scripts' `get_field` does.
 */
function fieldsOf(values: readonly unknown[], from: number, count: number): Record<string, string> {
  const fields: Record<string, string> = Object.create(null);
  for (let j = 0; j + 1 < count; j += 2) {
    const name = String(values[from + j]);
    if (!(name in fields)) fields[name] = String(values[from + j + 1]);
  }
  return fields;
}

/** Flattens an XREAD/XREADGROUP reply into entries. `null` (timeout) gives `[]`. */
export function parseStreamReply(reply: unknown): StreamEntry[] {
  return parseStreamReplyFlat(reply).map(({ stream, id, flat }) => ({
    stream,
    id,
    fields: fieldsOf(flat, 0, flat.length),
  }));
}

/**
 * Reads the entries of a flat reply (TAKE's): from index `start`, per stream the stream name, the
 * number of its entries, and per entry its id, the number of its field names and values, and
 * those; or, in the short form of an entry with exactly the standard fields, 0 and then the values
 * of `id`, `fn` and `args` (`v` is `PROTOCOL_VERSION`); or, packed, such an entry in one value,
 * `<entry id>NUL<id>NUL<fn>NUL<args>` (an entry id holds no NUL). A repeated field name keeps its first
 * value, as in {@link parseStreamReply} (TAKE's Lua claimed the task by the first `id`).
 */
export function parseFlatEntries(reply: readonly unknown[], start: number): StreamEntry[] {
  const out: StreamEntry[] = [];
  let i = start;
  while (i + 1 < reply.length) {
    const stream = String(reply[i]);
    const n = Number(reply[i + 1]);
    i += 2;
    for (let e = 0; e < n && i < reply.length; e++) {
      const id = String(reply[i]);
      const a = id.indexOf("\0");
      if (a >= 0) {
        // The packed form: "<entry id>NUL<id>NUL<fn>NUL<args>".
        const b = id.indexOf("\0", a + 1);
        const c = b < 0 ? -1 : id.indexOf("\0", b + 1);
        const fields: Record<string, string> = Object.create(null);
        fields.v = PROTOCOL_VERSION;
        fields.id = id.slice(a + 1, b);
        fields.fn = id.slice(b + 1, c);
        fields.args = id.slice(c + 1);
        out.push({ stream, id: id.slice(0, a), fields });
        i += 1;
        continue;
      }
      if (i + 1 >= reply.length) break;
      const k = Number(reply[i + 1]);
      i += 2;
      if (k === 0) {
        const fields: Record<string, string> = Object.create(null);
        fields.v = PROTOCOL_VERSION;
        fields.id = String(reply[i]);
        fields.fn = String(reply[i + 1]);
        fields.args = String(reply[i + 2]);
        out.push({ stream, id, fields });
        i += 3;
        continue;
      }
      out.push({ stream, id, fields: fieldsOf(reply, i, k) });
      i += k;
    }
  }
  return out;
}
