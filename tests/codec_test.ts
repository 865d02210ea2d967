import { test } from "node:test";
import assert from "node:assert/strict";
import { byteLength, decode, encode, encodeArgs, MAX_DEPTH } from "../lib/codec.ts";

const ACCEPTED =
  "(accepted: JSON values, undefined, Date, BigInt, Map, Set, Uint8Array, NaN/Infinity)";

function roundTrip<T>(value: T): T {
  return decode(encode(value)) as T;
}

function nest(value: unknown): unknown {
  // Puts `value` deep inside arrays, objects, Map keys and values and Set members.
  return {
    a: [1, { b: [value, { c: value }] }],
    m: new Map<unknown, unknown>([[value, [value]], ["k", { value }]]),
    s: new Set([value, [value]]),
  };
}

test("plain JSON values encode byte-identically to JSON.stringify", () => {
  const values: unknown[] = [
    null,
    true,
    false,
    0,
    1,
    -1.5,
    1e300,
    5e-324,
    Number.MAX_SAFE_INTEGER,
    "",
    'héllo \u2028 "quoted" \\ \n \u0000 😀 \ud800',
    [],
    {},
    [1, "two", null, [true, [false]], { x: 1 }],
    { b: 1, a: 2, 10: "ten", 2: "two", "": "empty", "a b": [{}] },
    { nested: { deeper: { deepest: [1, 2, { ok: "yes" }] } } },
    Object.assign(Object.create(null), { nullProto: 1 }),
    JSON.parse('{"__proto__":{"x":1},"constructor":2}'),
  ];
  for (const value of values) {
    const text = encode(value);
    assert.equal(text, JSON.stringify(value));
    assert.deepStrictEqual(decode(text), value === values[16] ? { nullProto: 1 } : value);
  }
  // Deeper than the fast path's cycle tracking, as deep as the codec takes: still identical.
  let deep: unknown = "leaf";
  for (let i = 0; i < MAX_DEPTH; i++) deep = i % 2 ? [deep] : { k: deep };
  assert.equal(encode(deep), JSON.stringify(deep));
  assert.equal(JSON.stringify(decode(encode(deep))), JSON.stringify(deep));
});

test("deep values: extended types far down, and cycles far down, are handled", () => {
  let deep: unknown = [new Date(0), undefined];
  for (let i = 0; i < 400; i++) deep = i % 2 ? [deep] : { k: deep };
  assert.deepStrictEqual(roundTrip(deep), deep);

  const root: Record<string, unknown> = {};
  let node = root;
  for (let i = 0; i < 300; i++) node = (node.n = {}) as Record<string, unknown>;
  node.n = root.n;
  assert.throws(
    () => encode(root),
    // The path, 301 segments long, is abbreviated.
    /^TypeError: value(\.n){12}<\.\.\.277 more\.\.\.>(\.n){12}: a cyclic reference \(back to value\.n\) cannot be serialized/,
  );
});

/** Values nested `depth` levels deep (`depth` objects, arrays, Maps, ... in one another). */
const NESTED: Record<string, (depth: number) => unknown> = {
  "plain arrays": (depth) => nestIn(depth, 1, (v) => [v]),
  "plain objects": (depth) => nestIn(depth, "leaf", (v) => ({ n: v })),
  "arrays and objects around a BigInt": (depth) =>
    nestIn(depth, 7n, (v, i) => (i % 2 ? [v, undefined] : { n: v, "$sf": -0 })),
  "Maps": (depth) => nestIn(depth, 1, (v) => new Map([["k", v]])),
  "Map keys": (depth) => nestIn(depth, 1, (v) => new Map([[v, 2n]])),
  "Sets": (depth) => nestIn(depth, NaN, (v) => new Set([v])),
  "error causes": (depth) => nestIn(depth, 1, (v) => new Error("e", { cause: v })),
  // An AggregateError and its errors array: two levels.
  "aggregate errors": (depth) =>
    nestIn(Math.ceil(depth / 2), 1, (v) => new AggregateError([v], "e")),
};

function nestIn(depth: number, leaf: unknown, wrap: (v: unknown, i: number) => unknown): unknown {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = wrap(value, i);
  return value;
}

/** The levels of containers in a decoded value, down its first child (errors: their cause). */
function depthOf(value: unknown): number {
  let depth = 0;
  for (;;) {
    if (value instanceof Error) {
      value = value instanceof AggregateError ? value.errors : value.cause;
    } else if (value instanceof Map) value = [...value][0][value.has("k") ? 1 : 0];
    else if (value instanceof Set) value = [...value][0];
    else if (Array.isArray(value)) value = value[0];
    else if (typeof value === "object" && value !== null && !(value instanceof Date)) {
      value = (value as { n: unknown }).n;
    } else return depth;
    depth++;
  }
}

test("values nested exactly MAX_DEPTH (1000) levels deep round-trip", () => {
  assert.equal(MAX_DEPTH, 1000);
  for (const [name, make] of Object.entries(NESTED)) {
    const value = make(MAX_DEPTH);
    const text = encode(value);
    const decoded = decode(text);
    // (assert.deepStrictEqual recurses too deeply for this.)
    assert.equal(depthOf(decoded), MAX_DEPTH, name);
    assert.equal(encode(decoded), text, name);
  }
});

test("values nested deeper than MAX_DEPTH throw a TypeError naming the (abbreviated) path", () => {
  const tooDeep = "nested deeper than 1000 levels of objects and arrays (the most the codec takes)";
  for (const [name, make] of Object.entries(NESTED)) {
    // Just beyond the limit, and far beyond (where the stack would overflow).
    for (const depth of [MAX_DEPTH + 1, 30_000]) {
      const value = make(depth);
      assert.throws(() => encode(value), (error: Error) => {
        assert.ok(error instanceof TypeError, `${name} ${depth}: ${error}`);
        assert.match(error.message, /^value.*<\.\.\.\d+ more\.\.\.>.*: nested deeper than 1000 /);
        return true;
      });
    }
  }
  // The path of the first value too deep: 1000 segments, of which the first and last 12 shown.
  const args = [NESTED["plain objects"](5000)];
  assert.throws(() => encodeArgs(args), {
    name: "TypeError",
    message: `args[0]${".n".repeat(11)}<...976 more...>${".n".repeat(12)}: ${tooDeep}`,
  });
  assert.throws(() => encode([[NESTED["Maps"](MAX_DEPTH - 1)]]), {
    name: "TypeError",
    message: `value[0][0]${'.get("k")'.repeat(10)}<...976 more...>${
      '.get("k")'.repeat(12)
    }: ${tooDeep}`,
  });
  // An object within MAX_DEPTH levels is one more level: a Date in 999 arrays, not in 1000.
  assert.doesNotThrow(() => encode(nestIn(MAX_DEPTH - 1, new Date(0), (v) => [v])));
  assert.throws(() => encode(nestIn(MAX_DEPTH, new Date(0), (v) => [v])), TypeError);
  // Other errors deep down are still reported (with their path abbreviated).
  assert.throws(
    () => encode(nestIn(500, () => {}, (v) => ({ n: v }))),
    /^TypeError: value(\.n){12}<\.\.\.476 more\.\.\.>(\.n){12}: a function cannot be serialized/,
  );
});

test("decode revives tags at most MAX_DEPTH levels deep, and returns deeper plain JSON", () => {
  const tooDeep = /^TypeError: cannot decode a tagged value nested deeper than 1000 levels/;
  const texts: Record<string, (depth: number) => string> = {
    arrays: (depth) => "[".repeat(depth) + '{"$sf":"BigInt","v":"1"}' + "]".repeat(depth),
    objects: (depth) => '{"n":'.repeat(depth) + '{"$sf":"Date","v":null}' + "}".repeat(depth),
    Maps: (depth) => '{"$sf":"Map","v":[["k",'.repeat(depth) + "1" + "]]}".repeat(depth),
    Sets: (depth) => '{"$sf":"Set","v":['.repeat(depth) + "1" + "]}".repeat(depth),
    Objects: (depth) => '{"$sf":"Object","v":{"$sf":'.repeat(depth) + "1" + "}}".repeat(depth),
    errors: (depth) =>
      '{"$sf":"Error","v":{"name":"Error","message":"e","cause":'.repeat(depth) + "1" +
      "}}".repeat(depth),
  };
  for (const [name, text] of Object.entries(texts)) {
    // A tag of a scalar counts no level: a BigInt in 1000 arrays decodes.
    assert.doesNotThrow(() => decode(text(MAX_DEPTH)), name);
    for (const depth of [MAX_DEPTH + 1, 30_000]) {
      assert.throws(() => decode(text(depth)), tooDeep, `${name} ${depth}`);
    }
  }
  // Plain JSON deeper than the limit, from elsewhere, decodes as JSON.parse reads it, even when a
  // "\u" escape (which could spell "$sf") makes decode look for tags.
  for (const depth of [MAX_DEPTH + 1, 30_000]) {
    const text = '{"n":'.repeat(depth) + '"\\u0041"' + "}".repeat(depth);
    assert.equal(depthOf(decode(text)), depth);
  }
  const [five, deep] = decode(
    `[{"$sf":"BigInt","v":"5"},${"[".repeat(2000)}"\\u0041"${"]".repeat(2000)}]`,
  ) as [bigint, unknown];
  assert.equal(five, 5n);
  assert.equal(depthOf(deep), 2000);
});

test("undefined round-trips at top level, in arrays and as object property values", () => {
  assert.equal(encode(undefined), '{"$sf":"undefined"}');
  assert.equal(decode(encode(undefined)), undefined);

  const array = roundTrip([1, undefined, 3]);
  assert.deepStrictEqual(array, [1, undefined, 3]);
  assert.equal(array.length, 3);
  assert.ok(Object.hasOwn(array, 1));

  const object = roundTrip({ a: undefined, b: 1 });
  assert.ok(Object.hasOwn(object, "a"));
  assert.equal(object.a, undefined);
  assert.deepStrictEqual(Object.keys(object), ["a", "b"]);

  // Array holes decode as undefined.
  // deno-lint-ignore no-sparse-arrays
  const holes = roundTrip([1, , 3]);
  assert.ok(Object.hasOwn(holes, 1));
  assert.equal(holes[1], undefined);
});

test("special numbers round-trip exactly", () => {
  assert.equal(encode(NaN), '{"$sf":"Number","v":"NaN"}');
  assert.equal(encode(Infinity), '{"$sf":"Number","v":"Infinity"}');
  assert.equal(encode(-Infinity), '{"$sf":"Number","v":"-Infinity"}');
  assert.equal(encode(-0), '{"$sf":"Number","v":"-0"}');
  assert.equal(encode(0), "0");
  assert.ok(Number.isNaN(roundTrip(NaN)));
  assert.equal(roundTrip(Infinity), Infinity);
  assert.equal(roundTrip(-Infinity), -Infinity);
  assert.ok(Object.is(roundTrip(-0), -0));
  assert.ok(Object.is(roundTrip(0), 0));
  const nested = roundTrip({ xs: [NaN, -0, Infinity, -Infinity, 0] });
  assert.ok(Number.isNaN(nested.xs[0]));
  assert.ok(Object.is(nested.xs[1], -0));
  assert.equal(nested.xs[2], Infinity);
  assert.equal(nested.xs[3], -Infinity);
  assert.ok(Object.is(nested.xs[4], 0));
});

test("BigInt round-trips (negative, huge)", () => {
  assert.equal(encode(-123n), '{"$sf":"BigInt","v":"-123"}');
  const huge = 2n ** 1000n + 7n;
  for (const value of [0n, 1n, -1n, -123n, huge, -huge]) {
    assert.equal(roundTrip(value), value);
  }
  assert.deepStrictEqual(roundTrip({ ids: [huge, -huge] }), { ids: [huge, -huge] });
});

test("Date round-trips, including invalid dates", () => {
  const date = new Date("2024-01-01T00:00:00.000Z");
  assert.equal(encode(date), '{"$sf":"Date","v":"2024-01-01T00:00:00.000Z"}');
  const decoded = roundTrip(date);
  assert.ok(decoded instanceof Date);
  assert.equal(decoded.getTime(), date.getTime());
  const invalid = roundTrip(new Date(NaN));
  assert.ok(invalid instanceof Date);
  assert.ok(Number.isNaN(invalid.getTime()));
  for (const time of [-8.64e15, 8.64e15, -1, 1234567890123]) {
    assert.equal(roundTrip(new Date(time)).getTime(), time);
  }
});

test("Map round-trips with any keys, keeping insertion order", () => {
  const objectKey = { id: 1 };
  const map = new Map<unknown, unknown>([
    ["z", 1],
    [objectKey, "object key"],
    [2n, [undefined]],
    [NaN, new Date(0)],
    [undefined, null],
    ["a", new Map([[1, 2]])],
  ]);
  const decoded = roundTrip(map);
  assert.ok(decoded instanceof Map);
  assert.deepStrictEqual(decoded, map);
  const keys = [...decoded.keys()];
  assert.equal(keys[0], "z");
  assert.deepStrictEqual(keys[1], objectKey);
  assert.equal(keys[2], 2n);
  assert.ok(Number.isNaN(keys[3]));
  assert.equal(keys[4], undefined);
  assert.equal(keys[5], "a");
  assert.equal(decoded.get(keys[1]), "object key");
  assert.equal(encode(new Map([["k", 1]])), '{"$sf":"Map","v":[["k",1]]}');
});

test("Set round-trips, keeping insertion order", () => {
  const set = new Set<unknown>([3, "b", 1, { a: 1 }, undefined, -0 /* stored as 0 */]);
  const decoded = roundTrip(set);
  assert.ok(decoded instanceof Set);
  assert.deepStrictEqual(decoded, set);
  assert.deepStrictEqual([...decoded], [...set]);
  assert.equal(encode(new Set([1, 2])), '{"$sf":"Set","v":[1,2]}');
});

test("Uint8Array round-trips (all byte values, empty, 1 MB, subarray views)", () => {
  const all = new Uint8Array(256);
  for (let i = 0; i < 256; i++) all[i] = i;
  const decoded = roundTrip(all);
  assert.ok(decoded instanceof Uint8Array);
  assert.equal(Object.getPrototypeOf(decoded), Uint8Array.prototype);
  assert.deepStrictEqual(decoded, all);
  for (let i = 0; i < 256; i++) assert.equal(decoded[i], i);

  assert.equal(encode(new Uint8Array([1, 2, 3])), '{"$sf":"Uint8Array","v":"AQID"}');
  assert.deepStrictEqual(roundTrip(new Uint8Array(0)), new Uint8Array(0));
  for (let n = 1; n <= 5; n++) {
    const small = all.subarray(250, 250 + n);
    assert.deepStrictEqual(roundTrip(small), new Uint8Array(small));
  }

  const big = new Uint8Array(1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 8)) & 0xff;
  const bigDecoded = roundTrip({ payload: big }).payload;
  assert.ok(bigDecoded instanceof Uint8Array);
  assert.equal(bigDecoded.length, big.length);
  assert.deepStrictEqual(bigDecoded, big);

  // A view into a larger buffer encodes only its own bytes.
  const view = new Uint8Array(all.buffer, 10, 3);
  assert.deepStrictEqual([...roundTrip(view)], [10, 11, 12]);
});

test("a Node Buffer encodes as a Uint8Array", async () => {
  const { Buffer } = await import("node:buffer");
  const text = encode(Buffer.from("hi"));
  assert.equal(text, '{"$sf":"Uint8Array","v":"aGk="}');
  const decoded = decode(text);
  assert.equal(Object.getPrototypeOf(decoded), Uint8Array.prototype);
  assert.deepStrictEqual(decoded, new Uint8Array([104, 105]));
});

test("other typed arrays and ArrayBuffer round-trip", () => {
  const values = [
    new Int8Array([-128, 0, 127]),
    new Uint16Array([0, 65535]),
    new Int32Array([-(2 ** 31), 2 ** 31 - 1]),
    new Float32Array([1.5, -0, NaN]),
    new Float64Array([Math.PI, -Infinity]),
    new BigInt64Array([-(2n ** 63n), 5n]),
    new BigUint64Array([2n ** 64n - 1n]),
    new Uint8ClampedArray([0, 255]),
  ];
  for (const value of values) {
    const decoded = roundTrip(value);
    assert.equal(Object.getPrototypeOf(decoded), Object.getPrototypeOf(value));
    assert.deepStrictEqual(decoded, value);
  }
  const buffer = new Uint8Array([9, 8, 7]).buffer;
  const decodedBuffer = roundTrip(buffer);
  assert.ok(decodedBuffer instanceof ArrayBuffer);
  assert.deepStrictEqual([...new Uint8Array(decodedBuffer)], [9, 8, 7]);
});

test("Error objects decode to errors with the same name, message, stack and cause", () => {
  const cause = new RangeError("inner");
  const error = new TypeError("outer", { cause });
  const decoded = roundTrip(error);
  assert.ok(decoded instanceof TypeError);
  assert.equal(decoded.name, "TypeError");
  assert.equal(decoded.message, "outer");
  assert.equal(decoded.stack, error.stack);
  assert.ok(decoded.cause instanceof RangeError);
  assert.equal((decoded.cause as Error).message, "inner");

  class HttpError extends Error {
    override name = "HttpError";
    status = 503;
  }
  const custom = roundTrip({ err: new HttpError("down") }).err;
  assert.ok(custom instanceof Error);
  assert.equal(custom.name, "HttpError");
  assert.equal(custom.message, "down");
  assert.equal((custom as unknown as { status: number }).status, 503);
  assert.equal(String(custom), "HttpError: down");

  const aggregate = roundTrip(new AggregateError([new Error("a"), 1n], "many"));
  assert.ok(aggregate instanceof AggregateError);
  assert.equal(aggregate.message, "many");
  assert.equal((aggregate.errors[0] as Error).message, "a");
  assert.equal(aggregate.errors[1], 1n);
});

test("every extended type round-trips nested deeply", () => {
  const values: unknown[] = [
    undefined,
    NaN,
    -0,
    Infinity,
    -Infinity,
    -(2n ** 100n),
    new Date(86_400_000),
    new Map<unknown, unknown>([[{ k: 1 }, new Set([1])]]),
    new Set([new Map(), undefined]),
    new Uint8Array([0, 128, 255]),
    { $sf: "Date", v: "not a tag" },
  ];
  for (const value of values) {
    const wrapped = nest(value);
    const decoded = roundTrip(wrapped);
    assert.deepStrictEqual(decoded, wrapped);
    let deep: unknown = value;
    for (let i = 0; i < 50; i++) {
      deep = i % 3 === 0 ? [deep] : i % 3 === 1 ? { x: deep } : new Set([deep]);
    }
    assert.deepStrictEqual(roundTrip(deep), deep);
  }
  // (Invalid dates checked by hand: Node 20's deepStrictEqual mishandles them in Sets/Map keys.)
  const invalid = roundTrip(nest(new Date(NaN))) as {
    a: [1, { b: [Date, { c: Date }] }];
    m: Map<unknown, unknown>;
    s: Set<unknown>;
  };
  const dates = [
    invalid.a[1].b[0],
    invalid.a[1].b[1].c,
    ...invalid.m.keys(),
    ...invalid.s,
  ].flat() as unknown[];
  assert.equal(dates.filter((d) => d instanceof Date && Number.isNaN(d.getTime())).length, 5);

  const nested = roundTrip({ a: [{ b: new Map([["m", { z: -0, u: undefined }]]) }] });
  const inner = nested.a[0].b.get("m")!;
  assert.ok(Object.is(inner.z, -0));
  assert.ok(Object.hasOwn(inner, "u"));
});

test('user objects with an own "$sf" key are escaped and round-trip as-is', () => {
  const value = { $sf: "Date", v: "2024-01-01T00:00:00.000Z" };
  const text = encode(value);
  assert.equal(text, '{"$sf":"Object","v":{"$sf":"Date","v":"2024-01-01T00:00:00.000Z"}}');
  assert.deepStrictEqual(decode(text), value);
  const tricky = { $sf: { $sf: "undefined" }, other: [{ $sf: 1 }], u: undefined };
  const decoded = roundTrip(tricky);
  assert.deepStrictEqual(decoded, tricky);
  assert.ok(Object.hasOwn(decoded, "u"));
  assert.deepStrictEqual(roundTrip({ $sf: "Object", v: {} }), { $sf: "Object", v: {} });
});

test("decode does not pollute prototypes", () => {
  const decoded = decode('{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":2}}}');
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
  assert.ok(Object.hasOwn(decoded as object, "__proto__"));
  assert.ok(Object.hasOwn(decoded as object, "constructor"));
  assert.deepStrictEqual(Object.getOwnPropertyDescriptor(decoded, "__proto__")?.value, {
    polluted: 1,
  });

  // The same through tagged values (revived in place).
  const tagged = decode(
    '{"__proto__":{"polluted":3,"u":{"$sf":"undefined"}},"$sf":"Object","v":{"__proto__":{"polluted":4,"d":{"$sf":"BigInt","v":"1"}}}}',
  );
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.ok(Object.hasOwn(tagged as object, "__proto__"));
  const inner = Object.getOwnPropertyDescriptor(tagged, "__proto__")?.value;
  assert.equal(inner.polluted, 4);
  assert.equal(inner.d, 1n);
  assert.equal(Object.getPrototypeOf(tagged), Object.prototype);

  const inMap = decode(
    '{"$sf":"Map","v":[["k",{"__proto__":{"polluted":5},"x":{"$sf":"undefined"}}]]}',
  );
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  const entry = (inMap as Map<string, object>).get("k")!;
  assert.ok(Object.hasOwn(entry, "__proto__"));
  assert.ok(Object.hasOwn(entry, "x"));

  const error = decode(
    '{"$sf":"Error","v":{"name":"Error","message":"m","props":{"__proto__":{"polluted":6}}}}',
  );
  assert.ok(error instanceof Error);
  assert.equal(Object.getPrototypeOf(error), Error.prototype);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);

  // An own "__proto__" key round-trips through encode as well.
  const own = JSON.parse('{"__proto__":{"y":[1]},"n":1}');
  own.n = NaN;
  const back = roundTrip(own);
  assert.ok(Object.hasOwn(back, "__proto__"));
  assert.equal(Object.getPrototypeOf(back), Object.prototype);
  assert.deepStrictEqual(back, own);
});

test("unserializable values throw TypeError naming the path", () => {
  assert.throws(
    () => encode([1, { f() {} }], "args"),
    new TypeError(`args[1].f: a function cannot be serialized ${ACCEPTED}`),
  );
  assert.throws(
    () => encode({ s: Symbol("x") }),
    new TypeError(`value.s: a symbol cannot be serialized ${ACCEPTED}`),
  );
  assert.throws(
    () => encode({ "a b": [() => 1] }),
    new TypeError(`value["a b"][0]: a function cannot be serialized ${ACCEPTED}`),
  );
  const cyclic: Record<string, unknown> = { list: [] };
  (cyclic.list as unknown[]).push({ back: cyclic });
  assert.throws(
    () => encode({ root: cyclic }, "result"),
    new TypeError(
      `result.root.list[0].back: a cyclic reference (back to result.root) cannot be serialized ${ACCEPTED}`,
    ),
  );
  const selfMap = new Map<unknown, unknown>();
  selfMap.set("me", selfMap);
  assert.throws(() => encode(selfMap), /^TypeError: value\.get\("me"\): a cyclic reference/);
  class Point {
    constructor(public x: number) {}
  }
  assert.throws(
    () => encode({ p: new Point(1) }),
    new TypeError(`value.p: a Point cannot be serialized ${ACCEPTED}`),
  );
  assert.throws(
    () => encode([Promise.resolve(1)], "args"),
    new TypeError(`args[0]: a Promise cannot be serialized ${ACCEPTED}`),
  );
  assert.throws(
    () => encode(new Map([[1, new WeakMap()]])),
    new TypeError(`value.get(1): a WeakMap cannot be serialized ${ACCEPTED}`),
  );
  assert.throws(
    () => encode(new Set([1, /re/])),
    new TypeError(`value.values()[1]: a RegExp cannot be serialized ${ACCEPTED}`),
  );
  assert.throws(
    () => encode(new Map([[() => 1, 1]])),
    new TypeError(`value.keys()[0]: a function cannot be serialized ${ACCEPTED}`),
  );
  assert.throws(() => encode(() => 1), /^TypeError: value: a function cannot be serialized/);
});

test("symbol-keyed properties are ignored like JSON", () => {
  assert.equal(encode({ a: 1, [Symbol("s")]: 2 }), '{"a":1}');
  assert.equal(encode({ a: 1n, [Symbol("s")]: () => 1 }), '{"a":{"$sf":"BigInt","v":"1"}}');
});

test("shared (non-cyclic) references are encoded twice", () => {
  const shared = { d: new Date(0), n: 1 };
  const value = { a: shared, b: [shared, shared], m: new Map([[shared, shared]]) };
  const decoded = roundTrip(value);
  assert.deepStrictEqual(decoded, value);
  assert.notEqual(decoded.a, decoded.b[0]);
  const plain = { x: 1 };
  assert.equal(encode([plain, plain]), '[{"x":1},{"x":1}]');
});

test("toJSON is honoured like JSON.stringify", () => {
  const url = new URL("https://example.com/a");
  assert.equal(encode({ url }), '{"url":"https://example.com/a"}');
  const custom = { toJSON: (key: string) => ({ key, big: 1n }) };
  assert.deepStrictEqual(decode(encode({ k: custom })), { k: { key: "k", big: 1n } });
  assert.equal(encode([Object(1), Object("s"), Object(false)]), '[1,"s",false]');
});

test("decode rejects malformed JSON with SyntaxError and unknown tags with TypeError", () => {
  assert.throws(() => decode("{"), SyntaxError);
  assert.throws(() => decode(""), SyntaxError);
  assert.throws(() => decode("undefined"), SyntaxError);
  assert.throws(() => decode('{"$sf":"Nope","v":1}'), /^TypeError: .*"Nope"/);
  assert.throws(() => decode('[{"a":{"$sf":"Regex"}}]'), TypeError);
  assert.throws(() => decode('{"$sf":5}'), TypeError);
  assert.throws(() => decode('{"$sf":"BigInt","v":"12x"}'), TypeError);
  assert.throws(() => decode('{"$sf":"Number","v":"1"}'), TypeError);
  assert.throws(() => decode('{"$sf":"Map","v":[[1]]}'), TypeError);
  assert.throws(() => decode('{"$sf":"Uint8Array","v":"%%%"}'), TypeError);
  assert.throws(() => decode('{"$sf":"Float64Array","v":"AQID"}'), TypeError);
  // A tag spelled with a JSON escape is still a tag.
  assert.equal(decode('{"\\u0024sf":"BigInt","v":"5"}'), 5n);
});

test("encodeArgs validates and encodes an argument array", () => {
  assert.equal(encodeArgs([1, "a", null]), '[1,"a",null]');
  assert.equal(encodeArgs([]), "[]");
  assert.deepStrictEqual(decode(encodeArgs([undefined, 1n])), [undefined, 1n]);
  assert.throws(() => encodeArgs("x" as unknown as unknown[]), /^TypeError: args must be an array/);
  assert.throws(() => encodeArgs({ 0: 1 } as unknown as unknown[]), TypeError);
  assert.throws(
    () => encodeArgs([1, { f() {} }]),
    new TypeError(`args[1].f: a function cannot be serialized ${ACCEPTED}`),
  );
});

test("byteLength matches TextEncoder", () => {
  const encoder = new TextEncoder();
  const samples = [
    "",
    "ascii",
    "héllo",
    "€",
    "😀",
    "a\ud800b",
    "\udc00",
    "\ud800",
    "x".repeat(100_000) + "ü😀",
    encode({ m: new Map([["ключ", "値"]]) }),
  ];
  for (const sample of samples) {
    assert.equal(byteLength(sample), encoder.encode(sample).length, JSON.stringify(sample));
  }
});

test("a getter, toJSON or proxy that throws: a TypeError naming where, the error as its cause", () => {
  const getter = new Error("getter boom");
  const bad = {
    get x(): number {
      throw getter;
    },
  };
  assert.throws(() => encode({ a: [1, bad] }), (error: unknown) => {
    assert.ok(error instanceof TypeError);
    assert.equal(
      error.message,
      "value.a[1].x cannot be serialized: reading it threw Error: getter boom",
    );
    assert.equal(error.cause, getter);
    return true;
  });
  const toJSON = {
    toJSON: () => {
      throw new RangeError("no");
    },
  };
  assert.throws(() => encodeArgs([toJSON]), {
    name: "TypeError",
    message: "args[0] cannot be serialized: reading it threw RangeError: no",
  });
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  assert.throws(() => encode(new Map([["k", proxy]])), {
    name: "TypeError",
    message: /^value\.get\("k"\) cannot be serialized: reading it threw TypeError: /,
  });
  // The encoder's own errors are unchanged.
  assert.throws(() => encode({ f() {} }), {
    message: `value.f: a function cannot be serialized ${ACCEPTED}`,
  });
});
