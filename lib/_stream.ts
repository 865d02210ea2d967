/**
 * Parsing of XREAD / XREADGROUP replies, in either RESP2 (arrays) or RESP3 (maps) form.
 *
 * @module
 */

/** One stream entry: its id and its fields. */
export interface StreamEntry {
  /** The stream that held the entry. */
  stream: string;
  /** The entry id, e.g. `"1722355139617-0"`. */
  id: string;
  /** The entry's fields (later duplicates win). */
  fields: Record<string, string>;
}

/** Flattens an XREAD/XREADGROUP reply into entries. `null` (timeout) gives `[]`. */
export function parseStreamReply(reply: unknown): StreamEntry[] {
  if (reply === null || reply === undefined) return [];
  const out: StreamEntry[] = [];
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
      const fields: Record<string, string> = Object.create(null);
      if (Array.isArray(flat)) {
        for (let i = 0; i + 1 < flat.length; i += 2) fields[String(flat[i])] = String(flat[i + 1]);
      }
      // A deleted-but-pending entry comes back with nil fields; it is kept with no fields.
      out.push({ stream, id: String(id), fields });
    }
  }
  return out;
}
