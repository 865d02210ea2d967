/**
 * How executor processes and their worker read each other's messages: frames over a Unix socket
 * (`frameMessage`, `frameReader`), JSON lines over a pipe (`lineSplitter`).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { concatBytes, frameMessage, frameReader, lineSplitter, RawParts } from "../lib/_runtime.ts";
import {
  hasNul,
  packRunParts,
  PIECE_MIN,
  type RunMessage,
  unpackRun,
} from "../lib/_executor_codec.ts";

describe("frameMessage / frameReader", () => {
  const messages: unknown[] = [
    { t: "run", p: '1\u0000noop\u0000["cé€\\n"]\u0000' },
    { t: "done", p: "", r: [[3, 0, "Error", "boom\nline", "stack"]] },
    { t: "abort", seq: 7, name: "CancelledError", message: "stop" },
    { init: { modules: ["file:///a.ts"], maxPayloadBytes: 1 } },
    { t: "ready", names: [] },
  ];

  it("carries every message whole across every cut of the stream, `p` included", () => {
    const bytes = concatBytes(messages.flatMap((m) => frameMessage(m)));
    for (let cut = 0; cut <= bytes.length; cut++) {
      const got: unknown[] = [];
      const read = frameReader((m) => got.push(m));
      read(bytes.subarray(0, cut));
      read(bytes.subarray(cut));
      assert.deepEqual(got, messages, `cut at ${cut}`);
    }
    // And one byte at a time.
    const got: unknown[] = [];
    const read = frameReader((m) => got.push(m));
    for (let i = 0; i < bytes.length; i++) read(bytes.subarray(i, i + 1));
    assert.deepEqual(got, messages);
  });

  it("sends `p` raw: neither escaped nor in the JSON part", () => {
    const p = 'a"b\\c\u0000d';
    const [head, raw] = frameMessage({ t: "run", p });
    const view = new DataView(head.buffer, head.byteOffset);
    const jsonLength = view.getUint32(0, true);
    assert.equal(new TextDecoder().decode(head.subarray(8, 8 + jsonLength)), '{"t":"run"}');
    assert.equal(view.getUint32(4, true), raw.length + 1);
    assert.equal(new TextDecoder().decode(raw), p);
    // A `p` that is not a string stays in the JSON.
    const [only, ...rest] = frameMessage({ t: "x", p: 3 });
    assert.equal(rest.length, 0);
    assert.equal(new DataView(only.buffer).getUint32(4, true), 0);
  });

  it("`p` in pieces (RawParts): strings and byte arrays, written as they are, arrive as the pieces, each decoded on its own", () => {
    const utf8 = (text: string) => new TextEncoder().encode(text);
    const parts = ["a\u0000", utf8('["cé€"]'), "", new Uint8Array(0), "\u0000z"];
    const frames = frameMessage({ t: "run", p: new RawParts(parts) });
    // The byte arrays are among the buffers to write, not copies of them.
    assert.ok(frames.includes(parts[1] as Uint8Array));
    const got: unknown[] = [];
    const read = frameReader((m) => got.push(m));
    read(concatBytes(frames));
    // Empty pieces are left out.
    assert.deepEqual(got, [{ t: "run", p: ["a\u0000", '["cé€"]', "\u0000z"] }]);
    // One piece: a string, as for a string `p`; none: an empty string.
    got.length = 0;
    read(concatBytes(frameMessage({ t: "run", p: new RawParts(["", utf8("only")]) })));
    read(concatBytes(frameMessage({ t: "run", p: new RawParts([]) })));
    assert.deepEqual(got, [{ t: "run", p: "only" }, { t: "run", p: "" }]);
  });

  it("packRunParts: pieces of one packed string of the tasks, long arguments pieces of their own, bytes kept as they are", () => {
    const args = new TextEncoder().encode('["ü".repeat]'.repeat(1000));
    const longText = `["${"ß".repeat(PIECE_MIN)}"]`;
    const tasks: RunMessage[] = [
      [1, "echo", '["short"]', "op.0", "op", 1, "default", ""],
      [2, "echo", args, "op.1", "op", 2, "default", '{"p/1":["2","3"]}'],
      [3, "echo", args, "op.2", "op", 1, "q", ""],
      [4, "echo", longText, "op.3", "op", 1, "q", ""],
    ];
    const parts = packRunParts(tasks);
    assert.equal(parts.filter((p) => p === args).length, 2, "the bytes, not copies");
    assert.ok(parts.includes(longText), "a long string argument is a piece of its own");
    assert.ok(parts.includes('["short"]') === false, "a short one is packed with the rest");
    const joined = concatBytes(
      parts.map((p) => typeof p === "string" ? new TextEncoder().encode(p) : p),
    );
    const text = new TextDecoder().decode(joined);
    const expected = tasks.map((t) => {
      const copy = [...t] as RunMessage;
      copy[2] = typeof t[2] === "string" ? t[2] : new TextDecoder().decode(t[2]);
      return copy;
    });
    // Joined, the pieces are one packed string of the tasks.
    assert.deepEqual(unpackRun(text), expected);
    // As an executor process gets them: the pieces, each decoded on its own.
    const pieces = parts.map((p) => typeof p === "string" ? p : new TextDecoder().decode(p));
    const back = unpackRun(pieces);
    assert.deepEqual(back, expected);
    // Pieces cut anywhere else still make the same fields.
    const [short] = packRunParts(tasks.slice(0, 1));
    assert.equal(typeof short, "string");
    for (const cut of [1, 5, 9, 12]) {
      const at = short as string;
      assert.deepEqual(unpackRun([at.slice(0, cut), at.slice(cut)]), expected.slice(0, 1));
    }
    assert.deepEqual(back.map((t) => t[2]), [
      '["short"]',
      ...[1, 2].map(() => '["ü".repeat]'.repeat(1000)),
      longText,
    ]);
    assert.deepEqual(back.map((t) => t[7]), ["", '{"p/1":["2","3"]}', "", ""]);
  });

  it("hasNul: finds a NUL byte at any place and alignment, and nothing in bytes without one", () => {
    const backing = new Uint8Array(32);
    const fillers = [0x01, 0x80, 0xff, 0x7f, 0x20];
    for (const filler of fillers) {
      for (let offset = 0; offset < 4; offset++) {
        for (let length = 0; length <= 20; length++) {
          backing.fill(filler);
          const bytes = backing.subarray(offset, offset + length);
          assert.equal(hasNul(bytes), false, `${filler} ${offset} ${length}`);
          for (let at = 0; at < length; at++) {
            bytes[at] = 0;
            assert.equal(hasNul(bytes), true, `${filler} ${offset} ${length} ${at}`);
            bytes[at] = filler;
          }
        }
      }
    }
    // Bytes around the view do not count.
    backing.fill(0);
    backing.fill(1, 5, 15);
    assert.equal(hasNul(backing.subarray(5, 15)), false);
  });

  it("frames that span chunks, one after another, larger and smaller, each come out as sent", () => {
    // The reader keeps its buffer for such frames: what a larger one left in it must not show.
    const sent = [300_000, 100_000, 500_000, 64, 200_000].map((n, i) => ({
      t: "run",
      p: `${"abcde"[i].repeat(n)}${i}`,
    }));
    const bytes = concatBytes(sent.flatMap((m) => frameMessage(m)));
    const got: unknown[] = [];
    const read = frameReader((m) => got.push(m));
    for (let i = 0; i < bytes.length; i += 65536) read(bytes.subarray(i, i + 65536));
    assert.deepEqual(got, sent);
  });

  it("a message of 8 MB in 64 KB chunks comes out whole, after and before small ones", () => {
    const big = { t: "run", p: "x".repeat(8 << 20) + "é" };
    const bytes = concatBytes([
      ...frameMessage({ t: "a" }),
      ...frameMessage(big),
      ...frameMessage({ t: "b", p: "z" }),
    ]);
    const got: { t: string; p?: string }[] = [];
    const read = frameReader((m) => got.push(m as { t: string; p?: string }));
    for (let i = 0; i < bytes.length; i += 65536) read(bytes.subarray(i, i + 65536));
    assert.deepEqual(got.map((m) => m.t), ["a", "run", "b"]);
    assert.equal(got[1].p, big.p);
    assert.equal(got[2].p, "z");
  });
});

describe("lineSplitter", () => {
  it("joins lines across chunks, splits several in one, keeps characters cut between chunks", () => {
    const lines: string[] = [];
    const split = lineSplitter((line) => lines.push(line));
    const bytes = new TextEncoder().encode("ab\ncé€\n\nlast part\n");
    // Every cut, including inside the two- and three-byte characters.
    for (let cut = 0; cut <= bytes.length; cut++) {
      lines.length = 0;
      split(bytes.subarray(0, cut));
      split(bytes.subarray(cut));
      assert.deepEqual(lines, ["ab", "cé€", "", "last part"], `cut at ${cut}`);
    }
  });

  it("a line of 8 MB in 64 KB chunks comes out whole", () => {
    const line = "x".repeat(8 << 20);
    const bytes = new TextEncoder().encode(`${line}\nnext\n`);
    const lines: string[] = [];
    const split = lineSplitter((l) => lines.push(l));
    for (let i = 0; i < bytes.length; i += 65536) split(bytes.subarray(i, i + 65536));
    assert.equal(lines.length, 2);
    assert.equal(lines[0].length, line.length);
    assert.equal(lines[1], "next");
  });
});
