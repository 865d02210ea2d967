/**
 * How executor processes and their worker read each other's messages: frames over a Unix socket
 * (`frameMessage`, `frameReader`), JSON lines over a pipe (`lineSplitter`).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { concatBytes, frameMessage, frameReader, lineSplitter } from "../lib/_runtime.ts";

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
