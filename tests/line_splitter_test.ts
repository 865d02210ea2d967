/**
 * `lineSplitter`: how executor processes and their worker read each other's JSON lines.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { lineSplitter } from "../lib/_runtime.ts";

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
