/**
 * Value codec for task arguments and results.
 *
 * Values are encoded as JSON text. Plain JSON values (`null`, booleans, finite numbers other than
 * `-0`, strings, arrays and plain objects of those) encode to exactly `JSON.stringify(value)`, so
 * results stored in Redis stay readable from any language.
 *
 * ## Wire format (part of the protocol)
 *
 * Values JSON cannot express are written as *tagged objects*: JSON objects whose reserved key
 * `"$sf"` names the type, with the payload (if any) under `"v"`:
 *
 * | Value                         | Encoding                                                   |
 * | ----------------------------- | ---------------------------------------------------------- |
 * | `undefined`                   | `{"$sf":"undefined"}`                                      |
 * | `NaN`, `±Infinity`, `-0`      | `{"$sf":"Number","v":"NaN"}` (`"Infinity"`, `"-Infinity"`, `"-0"`) |
 * | `BigInt`                      | `{"$sf":"BigInt","v":"-123"}` (decimal digits)             |
 * | `Date`                        | `{"$sf":"Date","v":"2024-01-01T00:00:00.000Z"}` (`"v":null` if invalid) |
 * | `Map`                         | `{"$sf":"Map","v":[[key,value],...]}` (insertion order)    |
 * | `Set`                         | `{"$sf":"Set","v":[member,...]}` (insertion order)         |
 * | `Uint8Array` (and `Buffer`)   | `{"$sf":"Uint8Array","v":"<base64>"}`                      |
 * | other typed arrays            | `{"$sf":"<Int8Array, Float64Array, ...>","v":"<base64 of the little-endian bytes>"}` |
 * | `ArrayBuffer`                 | `{"$sf":"ArrayBuffer","v":"<base64>"}`                     |
 * | `Error`                       | `{"$sf":"Error","v":{"name","message","stack"?,"cause"?,"errors"?,"props"?}}` |
 * | plain object with own `"$sf"` | `{"$sf":"Object","v":{...the object, keys taken literally...}}` |
 * | a task (future) in arguments  | `{"$sf":"Future","v":{"op":"<operation id>","id":"<task id>"}}` (only from {@link encodeWithRefs}; {@link decode} needs a resolver) |
 *
 * Payloads are themselves encoded values, so tags nest at any depth (inside arrays, objects, Map
 * keys and values, Set members, error causes). In an `Error` payload, `cause` and the members of
 * `errors` (for `AggregateError`) are encoded values and `props` holds the error's other own
 * enumerable properties (e.g. `code`). Decoders must reject unknown tags.
 *
 * ## Encoding rules
 *
 * - Like JSON, symbol-keyed and non-enumerable properties are ignored, boxed primitives are
 *   unwrapped, and objects with a `toJSON()` method (other than the types above) are replaced by
 *   its result, which is then encoded (e.g. `URL` becomes its string).
 * - Unlike JSON, `undefined` is kept everywhere (an object property whose value is `undefined`
 *   decodes to an own property holding `undefined`) and array holes decode as `undefined`.
 * - Functions, symbols, cyclic references and instances of other classes (`WeakMap`, `Promise`,
 *   `RegExp`, user classes, ...) throw a `TypeError` naming the offending path. An object reached
 *   twice without a cycle is simply encoded twice.
 * - Objects nested in more than {@link MAX_DEPTH} (1,000) objects and arrays throw a `TypeError`
 *   naming the path (`value[0][0]<...976 more...>[0][0]: nested deeper than 1000 levels ...`);
 *   decoding revives tags no deeper either. Long paths are abbreviated in messages.
 *
 * @example
 * ```ts
 * import { decode, encode } from "./codec.ts";
 *
 * const text = encode({ when: new Date(0), big: 2n ** 70n, tags: new Set(["a"]) });
 * const value = decode(text) as { when: Date; big: bigint; tags: Set<string> };
 * console.log(value.big === 2n ** 70n, value.tags.has("a")); // true true
 * console.log(encode({ plain: [1, "two", null] })); // {"plain":[1,"two",null]}
 * ```
 *
 * @module
 */

/** The reserved key of tagged objects. */
const TAG = "$sf";

const ACCEPTED =
  "(accepted: JSON values, undefined, Date, BigInt, Map, Set, Uint8Array, NaN/Infinity)";

/** Nesting depth from which the plain-JSON check starts tracking ancestors to detect cycles. */
const FAST_PATH_CYCLE_DEPTH = 256;

/**
 * The most levels of objects and arrays (Maps, Sets, errors, ...) nested in one another that
 * {@link encode} takes (deeper values throw a `TypeError` naming the path) and {@link decode}
 * revives. The codec recurses, and deeper values would overflow the call stack with a
 * `RangeError` naming nothing. At this depth, encoding or decoding takes at most about half of the
 * smallest default stack (about 1 MB: Node's main thread, Deno's threads; Node's worker threads
 * have 4 MB) before JIT compilation shrinks the frames, except 1,000 Maps nested in one another,
 * which Node 20's `JSON.stringify` needs about 3/4 of it for (measured with Deno 2.9, Node 20).
 * Must be more than {@link FAST_PATH_CYCLE_DEPTH}.
 */
export const MAX_DEPTH = 1000;

const TOO_DEEP =
  `nested deeper than ${MAX_DEPTH} levels of objects and arrays (the most the codec takes)`;

/** Paths of more segments than this are abbreviated in messages (their first and last few kept). */
const LONG_PATH = 100;
/** How many segments an abbreviated path keeps at each end. */
const PATH_ENDS = 12;

const hasOwn: (object: object, key: PropertyKey) => boolean = (object, key) =>
  Object.prototype.hasOwnProperty.call(object, key);

const objectToString = Object.prototype.toString;

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

type TypedArrayConstructor = {
  readonly BYTES_PER_ELEMENT: number;
  new (buffer: ArrayBuffer, byteOffset: number, length: number): ArrayBufferView;
};

const TYPED_ARRAY_NAMES = [
  "Int8Array",
  "Uint8Array",
  "Uint8ClampedArray",
  "Int16Array",
  "Uint16Array",
  "Int32Array",
  "Uint32Array",
  "Float16Array",
  "Float32Array",
  "Float64Array",
  "BigInt64Array",
  "BigUint64Array",
];

/** Typed array constructors available on this runtime, by name. */
const TYPED_ARRAYS: ReadonlyMap<string, TypedArrayConstructor> = new Map(
  TYPED_ARRAY_NAMES.flatMap((name) => {
    const ctor = (globalThis as Record<string, unknown>)[name];
    return typeof ctor === "function" ? [[name, ctor as unknown as TypedArrayConstructor]] : [];
  }),
);

type ErrorConstructorLike = new (message?: string) => Error;

const ERROR_CONSTRUCTORS: ReadonlyMap<string, ErrorConstructorLike> = new Map<
  string,
  ErrorConstructorLike
>([
  ["Error", Error],
  ["TypeError", TypeError],
  ["RangeError", RangeError],
  ["SyntaxError", SyntaxError],
  ["ReferenceError", ReferenceError],
  ["EvalError", EvalError],
  ["URIError", URIError],
]);

// ---------------------------------------------------------------------------------------------
// base64

type Base64Native = {
  fromBase64?: (text: string) => Uint8Array;
  prototype: { toBase64?: () => string };
};
const NATIVE_BASE64 = typeof (Uint8Array as unknown as Base64Native).fromBase64 === "function" &&
  typeof (Uint8Array as unknown as Base64Native).prototype.toBase64 === "function";

/** Chunk size for the fallback encoder: a multiple of 3 so chunks concatenate without padding. */
const BASE64_CHUNK = 3 * 8192;

function toBase64(bytes: Uint8Array): string {
  if (NATIVE_BASE64) return (bytes as unknown as { toBase64(): string }).toBase64();
  let out = "";
  for (let i = 0; i < bytes.length; i += BASE64_CHUNK) {
    const chunk = bytes.subarray(i, i + BASE64_CHUNK);
    out += btoa(String.fromCharCode.apply(null, chunk as unknown as number[]));
  }
  return out;
}

function fromBase64(text: string, tag: string): Uint8Array {
  try {
    if (NATIVE_BASE64) {
      return (Uint8Array as unknown as { fromBase64(text: string): Uint8Array }).fromBase64(text);
    }
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  } catch {
    throw new TypeError(`malformed ${tag} tag: "v" is not valid base64`);
  }
}

// ---------------------------------------------------------------------------------------------
// encoding

/**
 * Whether `value` is a plain JSON value that `JSON.stringify` encodes exactly as we would.
 *
 * Cycles are only looked for below {@link FAST_PATH_CYCLE_DEPTH} (any cycle repeats there), so
 * ordinary values cost no bookkeeping; a cycle makes this return false and the general encoder
 * reports it.
 */
function isPlainJson(value: unknown, depth: number, deep: Set<object> | null): boolean {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return (value - value === 0) && (value !== 0 || 1 / value > 0);
    case "object": {
      if (value === null) return true;
      if (depth >= FAST_PATH_CYCLE_DEPTH) {
        // Too deep: the general encoder reports it with the path.
        if (depth >= MAX_DEPTH) return false;
        deep ??= new Set();
        if (deep.has(value)) return false;
        deep.add(value);
      }
      const plain = isPlainJsonObject(value, depth, deep);
      if (depth >= FAST_PATH_CYCLE_DEPTH) deep!.delete(value);
      return plain;
    }
    default:
      return false;
  }
}

function isPlainJsonObject(value: object, depth: number, deep: Set<object> | null): boolean {
  const proto = Object.getPrototypeOf(value);
  if (proto === Array.prototype) {
    const array = value as unknown[];
    for (let i = 0; i < array.length; i++) {
      if (!isPlainJson(array[i], depth + 1, deep)) return false;
    }
    return true;
  }
  if (proto !== Object.prototype && proto !== null) return false;
  if (hasOwn(value, TAG)) return false;
  const record = value as Record<string, unknown>;
  for (const key in record) {
    if (hasOwn(record, key) && !isPlainJson(record[key], depth + 1, deep)) return false;
  }
  return true;
}

/**
 * One step of the path to the value being encoded: an array index, a property key, or (for the
 * rarer containers) a special segment.
 */
type Segment = number | string | SpecialSegment;

class SpecialSegment {
  constructor(
    readonly kind: "map key" | "map value" | "set member",
    readonly index: number,
    readonly key?: unknown,
  ) {}

  toString(): string {
    switch (this.kind) {
      case "map key":
        return `.keys()[${this.index}]`;
      case "map value":
        return `.get(${mapKeyLabel(this.key, this.index)})`;
      case "set member":
        return `.values()[${this.index}]`;
    }
  }
}

function mapKeyLabel(key: unknown, index: number): string {
  switch (typeof key) {
    case "string":
      return key.length <= 60 ? JSON.stringify(key) : `${JSON.stringify(key.slice(0, 60))}...`;
    case "number":
      return Object.is(key, -0) ? "-0" : String(key);
    case "boolean":
      return String(key);
    case "bigint":
      return `${key}n`;
    case "undefined":
      return "undefined";
    default:
      return key === null ? "null" : `<key #${index}>`;
  }
}

function formatPath(root: string, segments: readonly Segment[], length: number): string {
  let path = root;
  for (let i = 0; i < length; i++) {
    if (i === PATH_ENDS && length > LONG_PATH) {
      path += `<...${length - 2 * PATH_ENDS} more...>`;
      i = length - PATH_ENDS - 1;
      continue;
    }
    const segment = segments[i];
    if (typeof segment === "number") path += `[${segment}]`;
    else if (typeof segment === "string") {
      path += IDENTIFIER.test(segment) ? `.${segment}` : `[${JSON.stringify(segment)}]`;
    } else path += segment.toString();
  }
  return path;
}

function isPlainPrototype(proto: unknown): boolean {
  return proto === Object.prototype || proto === null;
}

function className(value: object): string {
  const proto = Object.getPrototypeOf(value);
  const ctor = proto === null ? undefined : proto.constructor;
  if (typeof ctor === "function" && typeof ctor.name === "string" && ctor.name !== "") {
    return ctor.name;
  }
  return objectToString.call(value).slice(8, -1);
}

/** Errors that say themselves where and why a value cannot be encoded. */
const pathErrors = new WeakSet<object>();

/**
 * The general encoder: converts a value into a JSON-compatible tree (tagging what JSON cannot
 * express) for `JSON.stringify`. Paths are only formatted when an error is thrown.
 */
class Encoder {
  readonly #root: string;
  /** The path from the root to the value being encoded. */
  readonly #segments: Segment[] = [];
  /** Objects being encoded (the ancestors of the current value) and their path lengths. */
  readonly #ancestors = new Map<object, number>();
  readonly #refOf: ((value: object) => FutureRef | undefined) | undefined;
  /** The references met, as `"<op>/<id>"`, in order, without duplicates. */
  readonly refs: string[] = [];

  constructor(root: string, refOf?: (value: object) => FutureRef | undefined) {
    this.#root = root;
    // (What `refOf` throws, it says itself: passed on as it is.)
    this.#refOf = refOf && ((value) => {
      try {
        return refOf(value);
      } catch (error) {
        if (error !== null && typeof error === "object") pathErrors.add(error);
        throw error;
      }
    });
  }

  #fail(what: string): TypeError {
    const path = formatPath(this.#root, this.#segments, this.#segments.length);
    const error = new TypeError(`${path}: ${what} cannot be serialized ${ACCEPTED}`);
    pathErrors.add(error);
    return error;
  }

  /**
   * Encodes `value`, the root. An error that reading it raises (a getter, a `toJSON`, a proxy
   * trap that throws) becomes a `TypeError` naming where it was met, its `cause` the error.
   */
  encodeRoot(value: unknown): unknown {
    try {
      return this.encode(value);
    } catch (error) {
      if (pathErrors.has(error as object)) throw error;
      // (The segments were not popped on the way out: they still lead to the value.)
      const path = formatPath(this.#root, this.#segments, this.#segments.length);
      const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      const wrapped = new TypeError(`${path} cannot be serialized: reading it threw ${what}`, {
        cause: error,
      });
      pathErrors.add(wrapped);
      throw wrapped;
    }
  }

  encode(value: unknown): unknown {
    switch (typeof value) {
      case "string":
      case "boolean":
        return value;
      case "number":
        if (value - value !== 0) {
          return {
            [TAG]: "Number",
            v: value !== value ? "NaN" : value > 0 ? "Infinity" : "-Infinity",
          };
        }
        return value === 0 && 1 / value < 0 ? { [TAG]: "Number", v: "-0" } : value;
      case "bigint":
        return { [TAG]: "BigInt", v: value.toString() };
      case "undefined":
        return { [TAG]: "undefined" };
      case "function":
        throw this.#fail("a function");
      case "symbol":
        throw this.#fail("a symbol");
    }
    if (value === null) return null;
    const object = value as object;
    const ancestor = this.#ancestors.get(object);
    if (ancestor !== undefined) {
      const target = formatPath(this.#root, this.#segments, ancestor);
      throw this.#fail(`a cyclic reference (back to ${target})`);
    }
    // The ancestors are the objects this one is nested in.
    if (this.#ancestors.size >= MAX_DEPTH) {
      const path = formatPath(this.#root, this.#segments, this.#segments.length);
      const error = new TypeError(`${path}: ${TOO_DEEP}`);
      pathErrors.add(error);
      throw error;
    }
    const segments = this.#segments;
    this.#ancestors.set(object, segments.length);
    // Arrays and plain objects, the common nesting, recurse here with no frame in between: each
    // level of them takes as little of the stack as it can (see MAX_DEPTH).
    let out: unknown;
    if (Array.isArray(object)) {
      const array = new Array<unknown>(object.length);
      for (let i = 0; i < object.length; i++) {
        segments.push(i);
        array[i] = this.encode(object[i]);
        segments.pop();
      }
      out = array;
    } else if (
      isPlainPrototype(Object.getPrototypeOf(object)) &&
      typeof (object as { toJSON?: unknown }).toJSON !== "function" &&
      this.#refOf?.(object) === undefined
    ) {
      const record = object as Record<string, unknown>;
      // A null prototype makes `fields["__proto__"] = ...` define an ordinary own property.
      const fields: Record<string, unknown> = Object.create(null);
      for (const key of Object.keys(record)) {
        segments.push(key);
        fields[key] = this.encode(record[key]);
        segments.pop();
      }
      out = TAG in fields ? { [TAG]: "Object", v: fields } : fields;
    } else if (object instanceof Map) {
      out = this.#encodeMap(object);
    } else if (object instanceof Set) {
      out = this.#encodeSet(object);
    } else if (object instanceof Error) {
      out = this.#encodeError(object);
    } else {
      out = this.#encodeObject(object);
    }
    this.#ancestors.delete(object);
    return out;
  }

  // Children are encoded inline (push the segment, encode, pop), not by a helper, which would be
  // one more frame on the stack per level.

  #encodeMap(map: Map<unknown, unknown>): unknown {
    const segments = this.#segments;
    const entries: unknown[] = [];
    let i = 0;
    for (const entry of map) {
      segments.push(new SpecialSegment("map key", i));
      const key = this.encode(entry[0]);
      segments[segments.length - 1] = new SpecialSegment("map value", i, entry[0]);
      entries.push([key, this.encode(entry[1])]);
      segments.pop();
      i++;
    }
    return { [TAG]: "Map", v: entries };
  }

  #encodeSet(set: Set<unknown>): unknown {
    const segments = this.#segments;
    const members: unknown[] = [];
    let i = 0;
    for (const member of set) {
      segments.push(new SpecialSegment("set member", i));
      members.push(this.encode(member));
      segments.pop();
      i++;
    }
    return { [TAG]: "Set", v: members };
  }

  /** Encodes an object other than an array, a plain object without `toJSON`, a Map, Set, Error. */
  #encodeObject(value: object): unknown {
    if (value instanceof Date) {
      const time = value.getTime();
      return { [TAG]: "Date", v: time === time ? value.toISOString() : null };
    }
    if (ArrayBuffer.isView(value)) {
      const name = objectToString.call(value).slice(8, -1);
      if (!TYPED_ARRAYS.has(name)) throw this.#fail(`a ${className(value)}`);
      const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      return { [TAG]: name, v: toBase64(bytes) };
    }
    if (value instanceof ArrayBuffer) {
      return { [TAG]: "ArrayBuffer", v: toBase64(new Uint8Array(value)) };
    }
    const ref = this.#refOf?.(value);
    if (ref !== undefined) {
      const key = `${ref.op}/${ref.id}`;
      if (!this.refs.includes(key)) this.refs.push(key);
      return { [TAG]: "Future", v: { op: ref.op, id: ref.id } };
    }
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") {
      const last = this.#segments[this.#segments.length - 1];
      const key = typeof last === "number" ? String(last) : typeof last === "string" ? last : "";
      return this.encode(toJSON.call(value, key));
    }
    if (value instanceof String || value instanceof Number || value instanceof Boolean) {
      return this.encode(value.valueOf());
    }
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) throw this.#fail(`a ${className(value)}`);
    const out = this.#encodeProperties(value as Record<string, unknown>);
    return TAG in out ? { [TAG]: "Object", v: out } : out;
  }

  /** Encodes the own enumerable string-keyed properties into a null-prototype object. */
  #encodeProperties(
    value: Record<string, unknown>,
    skip?: ReadonlySet<string>,
  ): Record<string, unknown> {
    // A null prototype makes `out["__proto__"] = ...` define an ordinary own property.
    const out: Record<string, unknown> = Object.create(null);
    const segments = this.#segments;
    for (const key of Object.keys(value)) {
      if (skip !== undefined && skip.has(key)) continue;
      segments.push(key);
      out[key] = this.encode(value[key]);
      segments.pop();
    }
    return out;
  }

  #encodeError(error: Error): unknown {
    const v: Record<string, unknown> = {
      name: String(error.name),
      message: String(error.message),
    };
    if (typeof error.stack === "string") v.stack = error.stack;
    const segments = this.#segments;
    if (hasOwn(error, "cause")) {
      segments.push("cause");
      v.cause = this.encode((error as { cause?: unknown }).cause);
      segments.pop();
    }
    const errors = (error as { errors?: unknown }).errors;
    if (error instanceof AggregateError && Array.isArray(errors)) {
      segments.push("errors");
      v.errors = this.encode(errors);
      segments.pop();
    }
    const props = this.#encodeProperties(error as unknown as Record<string, unknown>, ERROR_FIELDS);
    for (const _ in props) {
      v.props = props;
      break;
    }
    return { [TAG]: "Error", v };
  }
}

/**
 * The properties of an `Error` its encoding holds in fields of their own (`name`, `message`,
 * `stack`, `cause`, `errors`), not among its `props`.
 */
export const ERROR_FIELDS: ReadonlySet<string> = new Set([
  "name",
  "message",
  "stack",
  "cause",
  "errors",
]);

/**
 * Encodes a value as JSON text, using the tagged-object scheme described in the module
 * documentation for values JSON cannot represent.
 *
 * Plain JSON values encode to exactly `JSON.stringify(value)`.
 *
 * @param value The value to encode.
 * @param path How to name `value` in error messages (default `"value"`).
 * @returns The JSON text.
 * @throws {TypeError} If the value contains a function, a symbol, a cyclic reference or an
 * instance of an unsupported class, or is nested deeper than {@link MAX_DEPTH} levels; the message
 * starts with the path of the offending value, e.g. `args[1].f: a function cannot be serialized
 * (...)`.
 *
 * @example
 * ```ts
 * import { encode } from "./codec.ts";
 *
 * encode({ a: [1, 2] }); // '{"a":[1,2]}'
 * encode(10n); // '{"$sf":"BigInt","v":"10"}'
 * ```
 */
export function encode(value: unknown, path = "value"): string {
  return plainJsonText(value) ?? JSON.stringify(new Encoder(path).encodeRoot(value));
}

/** A reference to a task (a future) inside encoded arguments. */
export interface FutureRef {
  /** The task's operation id. */
  op: string;
  /** The task id. */
  id: string;
}

/**
 * Encodes a value in which some objects stand for tasks (futures): `refOf` returns the task of
 * such an object, which is written as `{"$sf":"Future","v":{"op","id"}}`. Returns the text and
 * the tasks referenced (`"<op>/<id>"`, in order of first appearance).
 *
 * @param value The value to encode.
 * @param path The name of the value in error messages.
 * @param refOf Returns the task an object stands for, or `undefined` for ordinary objects.
 * @returns The JSON text and the references.
 */
export function encodeWithRefs(
  value: unknown,
  path: string,
  refOf: (value: object) => FutureRef | undefined,
): { text: string; refs: string[] } {
  const plain = plainJsonText(value);
  if (plain !== undefined) return { text: plain, refs: [] };
  const encoder = new Encoder(path, refOf);
  const text = JSON.stringify(encoder.encodeRoot(value));
  return { text, refs: encoder.refs };
}

/**
 * Encodes the arguments of a task call (an array) with the path `"args"`.
 *
 * @param args The arguments.
 * @returns The JSON text of the arguments array.
 * @throws {TypeError} If `args` is not an array or an argument cannot be serialized.
 *
 * @example
 * ```ts
 * import { encodeArgs } from "./codec.ts";
 *
 * encodeArgs([1, "x"]); // '[1,"x"]'
 * ```
 */
export function encodeArgs(args: readonly unknown[]): string {
  if (!Array.isArray(args)) {
    const got = args === null
      ? "null"
      : typeof args === "object"
      ? `a ${className(args as object)}`
      : `a ${typeof args}`;
    throw new TypeError(`args must be an array of task arguments (got ${got})`);
  }
  return encode(args, "args");
}

// ---------------------------------------------------------------------------------------------
// decoding

function malformed(tag: string, expected: string): TypeError {
  return new TypeError(`malformed ${tag} tag: "v" must be ${expected}`);
}

function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(target, key, {
      value,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  } else {
    target[key] = value;
  }
}

function defineHidden(target: object, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    writable: true,
    enumerable: false,
    configurable: true,
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Revives the tagged objects in a parsed value (in place where it can), `depth` being how many
 * arrays and objects it is nested in: like the encoder's, at most {@link MAX_DEPTH} (tags of
 * scalars such as `BigInt` and `Date` count as scalars).
 */
function revive(value: unknown, depth: number): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) {
    if (depth >= MAX_DEPTH) return untaggedBeyondLimit(value);
    for (let i = 0; i < value.length; i++) value[i] = revive(value[i], depth + 1);
    return value;
  }
  const record = value as Record<string, unknown>;
  if (!hasOwn(record, TAG)) {
    if (depth >= MAX_DEPTH) return untaggedBeyondLimit(record);
    return reviveProperties(record, depth);
  }
  // Tags holding values are revived here, each by a small function: one short frame per level.
  switch (record[TAG]) {
    case "Map":
      return reviveMap(record, depth);
    case "Set":
      return reviveSet(record, depth);
    case "Object":
      if (!isRecord(record.v)) throw malformed("Object", "an object");
      if (depth >= MAX_DEPTH) untaggedBeyondLimit(record);
      return reviveProperties(record.v, depth);
    case "Error":
      if (depth >= MAX_DEPTH) untaggedBeyondLimit(record);
      return reviveError(record.v, depth);
    default:
      return reviveTagged(record);
  }
}

function reviveMap(record: Record<string, unknown>, depth: number): Map<unknown, unknown> {
  const v = record.v;
  if (!Array.isArray(v)) throw malformed("Map", "an array of [key, value] pairs");
  if (depth >= MAX_DEPTH) untaggedBeyondLimit(record);
  const map = new Map<unknown, unknown>();
  for (const entry of v) {
    if (!Array.isArray(entry) || entry.length !== 2) {
      throw malformed("Map", "an array of [key, value] pairs");
    }
    map.set(revive(entry[0], depth + 1), revive(entry[1], depth + 1));
  }
  return map;
}

function reviveSet(record: Record<string, unknown>, depth: number): Set<unknown> {
  const v = record.v;
  if (!Array.isArray(v)) throw malformed("Set", "an array");
  if (depth >= MAX_DEPTH) untaggedBeyondLimit(record);
  const set = new Set<unknown>();
  for (const member of v) set.add(revive(member, depth + 1));
  return set;
}

/**
 * A parsed value nested deeper than {@link MAX_DEPTH}: returned as it is when it holds no tagged
 * object (JSON from elsewhere: nothing to revive), else a `TypeError` is thrown (the encoder writes
 * no such value). Searched without recursion.
 */
function untaggedBeyondLimit(value: object): unknown {
  const pending: object[] = [value];
  while (pending.length > 0) {
    const node = pending.pop()!;
    if (Array.isArray(node)) {
      for (const item of node) if (typeof item === "object" && item !== null) pending.push(item);
      continue;
    }
    const record = node as Record<string, unknown>;
    if (hasOwn(record, TAG)) {
      throw new TypeError(
        `cannot decode a tagged value nested deeper than ${MAX_DEPTH} levels of objects and ` +
          `arrays (the most the codec takes)`,
      );
    }
    for (const key of Object.keys(record)) {
      const item = record[key];
      if (typeof item === "object" && item !== null) pending.push(item);
    }
  }
  return value;
}

/** Revives the property values of a parsed object in place (its own keys are taken literally). */
function reviveProperties(record: Record<string, unknown>, depth: number): Record<string, unknown> {
  for (const key of Object.keys(record)) setOwn(record, key, revive(record[key], depth + 1));
  return record;
}

/** Revives a tagged scalar (a tag whose payload holds no encoded value). */
function reviveTagged(record: Record<string, unknown>): unknown {
  const tag = record[TAG];
  if (typeof tag !== "string") {
    throw new TypeError(`invalid codec tag: "${TAG}" must be a string, got ${JSON.stringify(tag)}`);
  }
  const v = record.v;
  switch (tag) {
    case "undefined":
      return undefined;
    case "Future": {
      if (!isRecord(v) || typeof v.op !== "string" || typeof v.id !== "string") {
        throw malformed(tag, "an object with string op and id");
      }
      if (!resolving) {
        throw new TypeError(`a task reference (${v.op}/${v.id}) cannot be decoded here`);
      }
      return resolving({ op: v.op, id: v.id });
    }
    case "Number":
      switch (v) {
        case "NaN":
          return NaN;
        case "Infinity":
          return Infinity;
        case "-Infinity":
          return -Infinity;
        case "-0":
          return -0;
        default:
          throw malformed(tag, `"NaN", "Infinity", "-Infinity" or "-0"`);
      }
    case "BigInt":
      if (typeof v !== "string" || !/^-?\d+$/.test(v)) {
        throw malformed(tag, "a decimal integer string");
      }
      return BigInt(v);
    case "Date":
      if (v !== null && typeof v !== "string") throw malformed(tag, "an ISO date string or null");
      return new Date(v === null ? NaN : v);
    case "ArrayBuffer": {
      if (typeof v !== "string") throw malformed(tag, "a base64 string");
      const bytes = fromBase64(v, tag);
      return bytes.buffer.byteLength === bytes.byteLength ? bytes.buffer : bytes.slice().buffer;
    }
  }
  const ctor = TYPED_ARRAYS.get(tag);
  if (ctor !== undefined) {
    if (typeof v !== "string") throw malformed(tag, "a base64 string");
    const bytes = fromBase64(v, tag);
    if (tag === "Uint8Array") return bytes;
    if (bytes.byteLength % ctor.BYTES_PER_ELEMENT !== 0) {
      throw malformed(tag, `base64 of a multiple of ${ctor.BYTES_PER_ELEMENT} bytes`);
    }
    const copy = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.byteLength
      ? bytes
      : bytes.slice();
    return new ctor(copy.buffer as ArrayBuffer, 0, copy.byteLength / ctor.BYTES_PER_ELEMENT);
  }
  throw new TypeError(`unknown codec tag ${JSON.stringify(tag.slice(0, 100))}`);
}

function reviveError(v: unknown, depth: number): Error {
  if (!isRecord(v) || typeof v.name !== "string" || typeof v.message !== "string") {
    throw malformed("Error", "an object with string name and message");
  }
  let error: Error;
  if (v.name === "AggregateError" && Array.isArray(v.errors)) {
    error = new AggregateError(revive(v.errors, depth + 1) as unknown[], v.message);
  } else {
    const ctor = ERROR_CONSTRUCTORS.get(v.name) ?? Error;
    error = new ctor(v.message);
    if (Array.isArray(v.errors)) defineHidden(error, "errors", revive(v.errors, depth + 1));
  }
  if (error.name !== v.name) defineHidden(error, "name", v.name);
  if (typeof v.stack === "string") defineHidden(error, "stack", v.stack);
  if (hasOwn(v, "cause")) defineHidden(error, "cause", revive(v.cause, depth + 1));
  if (v.props !== undefined) {
    if (!isRecord(v.props)) throw malformed("Error", 'an object whose "props" is an object');
    const props = reviveProperties(v.props, depth);
    for (const key of Object.keys(props)) {
      if (!ERROR_FIELDS.has(key)) {
        setOwn(error as unknown as Record<string, unknown>, key, props[key]);
      }
    }
  }
  return error;
}

/**
 * Decodes JSON text produced by {@link encode} (or by any JSON writer) back into a value.
 *
 * Input is not trusted: keys such as `__proto__` become ordinary own properties and never
 * modify prototypes.
 *
 * @param text The JSON text.
 * @returns The decoded value.
 * @throws {SyntaxError} If `text` is not valid JSON.
 * @throws {TypeError} If `text` contains an unknown or malformed tagged value, or a tagged value
 * nested deeper than {@link MAX_DEPTH} levels (deeper plain JSON is returned as parsed).
 *
 * @example
 * ```ts
 * import { decode } from "./codec.ts";
 *
 * decode('{"$sf":"BigInt","v":"10"}'); // 10n
 * ```
 */
export function decode(text: string, resolveRef?: (ref: FutureRef) => unknown): unknown {
  const parsed: unknown = JSON.parse(text);
  // Tagged objects need the literal key "$sf" (or a "\u" escape spelling it).
  if (text.indexOf(TAG) === -1 && text.indexOf("\\u") === -1) return parsed;
  const previous = resolving;
  resolving = resolveRef;
  try {
    return revive(parsed, 0);
  } finally {
    resolving = previous;
  }
}

/** The resolver of `Future` tags of the `decode` call in progress. */
let resolving: ((ref: FutureRef) => unknown) | undefined;

/**
 * Returns the length of `text` encoded as UTF-8, in bytes, without encoding it. Lone surrogates
 * count as U+FFFD (3 bytes), as `TextEncoder` would write them.
 *
 * @param text The string.
 * @returns Its UTF-8 byte length.
 *
 * @example
 * ```ts
 * import { byteLength } from "./codec.ts";
 *
 * byteLength("héllo"); // 6
 * ```
 */
export function byteLength(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) {
      bytes += 1;
    } else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        // A surrogate pair: 2 UTF-16 units, 4 bytes.
        bytes += 2;
        i++;
      } else {
        bytes += 2;
      }
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

/**
 * False when `text` cannot be more than `limit` bytes as UTF-8 (at most 3 bytes per UTF-16 unit):
 * the cheap test before {@link checkPayloadSize}, for callers that build its message only when
 * needed.
 *
 * @param text The encoded text.
 * @param limit The largest size accepted, in bytes.
 * @returns Whether the text needs measuring.
 */
export function mayExceedPayload(text: string, limit: number): boolean {
  return text.length * 3 > limit;
}

/**
 * The JSON text of a plain JSON value (what {@link encode} writes for it), or `undefined` when the
 * value needs the codec's tags (or cannot be encoded): the fast path of callers that encode many
 * values and want no intermediate objects.
 *
 * @param value The value.
 * @returns `JSON.stringify(value)`, or `undefined`.
 */
export function plainJsonText(value: unknown): string | undefined {
  try {
    return isPlainJson(value, 0, null) ? JSON.stringify(value) : undefined;
  } catch {
    // A getter, `toJSON` or proxy trap that throws: the encoder names where.
    return undefined;
  }
}

/**
 * Throws a `RangeError` when `text` is longer than `limit` bytes in UTF-8 (counted only when it
 * could be: a string of n UTF-16 units has at most 3n bytes).
 *
 * @param text The encoded payload.
 * @param limit The largest accepted size in bytes.
 * @param what What the payload is, for the message (e.g. `"the arguments"`).
 */
export function checkPayloadSize(text: string, limit: number, what: string): void {
  if (!mayExceedPayload(text, limit)) return;
  const bytes = byteLength(text);
  if (bytes > limit) {
    throw new RangeError(
      `encoded size of ${what}: ${bytes} bytes, more than maxPayloadBytes (${limit}); ` +
        `raise maxPayloadBytes or pass a reference (a key, a URL) instead of the data`,
    );
  }
}
