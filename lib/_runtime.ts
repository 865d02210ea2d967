/**
 * The one module that knows whether it runs on Deno or on Node. Everything that differs between
 * the two — environment, arguments, OS signals, exit, threads, child processes, module paths —
 * goes through here. `node:` modules are imported lazily, only where needed.
 *
 * @module
 */

/** The subset of the `Deno` namespace this library uses (declared here so tsc builds for Node). */
interface DenoLike {
  env: { get(name: string): string | undefined; toObject(): Record<string, string> };
  args: string[];
  pid: number;
  ppid: number;
  exit(code?: number): never;
  execPath(): string;
  hostname(): string;
  addSignalListener(signal: string, handler: () => void): void;
  removeSignalListener(signal: string, handler: () => void): void;
  Command: new (command: string, options: {
    args: string[];
    cwd?: string;
    env?: Record<string, string>;
    stdin: "null" | "piped";
    stdout: "piped" | "inherit";
    stderr: "piped" | "inherit";
  }) => {
    spawn(): {
      pid: number;
      kill(signal?: string): void;
      stdin: WritableStream<Uint8Array>;
      stdout: ReadableStream<Uint8Array>;
      stderr: ReadableStream<Uint8Array>;
      status: Promise<{ code: number; signal: string | null }>;
    };
  };
  stdout: { writable: WritableStream<Uint8Array> };
  stdin: { readable: ReadableStream<Uint8Array> };
  makeTempDir(options: { prefix: string }): Promise<string>;
  remove(path: string, options: { recursive: boolean }): Promise<void>;
  listen(options: { transport: "unix"; path: string }): {
    accept(): Promise<DenoConn>;
    close(): void;
  };
  connect(options: { transport: "unix"; path: string }): Promise<DenoConn>;
}

/** A connection of `Deno.listen` / `Deno.connect`. */
interface DenoConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(buffer: Uint8Array): Promise<number>;
  close(): void;
}

/** The subset of Node's `process` this library uses. */
interface ProcessLike {
  env: Record<string, string | undefined>;
  argv: string[];
  pid: number;
  execPath: string;
  exit(code?: number): never;
  on(event: string, handler: (...args: unknown[]) => void): unknown;
  off(event: string, handler: (...args: unknown[]) => void): unknown;
}

const deno = (globalThis as { Deno?: DenoLike }).Deno;
const nodeProcess = (globalThis as { process?: ProcessLike }).process;

/** True when running on Deno (false on Node). */
export const isDeno: boolean = deno !== undefined;

function proc(): ProcessLike {
  if (!nodeProcess) throw new Error("neither Deno nor a Node-compatible process is available");
  return nodeProcess;
}

/** Reads an environment variable; `undefined` when unset or when env access is not permitted. */
export function getEnv(name: string): string | undefined {
  try {
    return deno ? deno.env.get(name) : proc().env[name];
  } catch {
    return undefined;
  }
}

/** The whole environment as an object (for child processes). */
export function envObject(): Record<string, string> {
  if (deno) return deno.env.toObject();
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(proc().env)) if (v !== undefined) out[k] = v;
  return out;
}

/** Command-line arguments after the script name. */
export function getArgs(): string[] {
  return deno ? [...deno.args] : proc().argv.slice(2);
}

/** The process id. */
export function pid(): number {
  return deno ? deno.pid : proc().pid;
}

/** The host name (used in worker ids). */
export function hostname(): string {
  try {
    return deno ? deno.hostname() : (proc().env.HOSTNAME ?? "localhost");
  } catch {
    return "localhost";
  }
}

/** The number of CPUs this process may use (at least 1). */
export async function cpuCount(): Promise<number> {
  try {
    const os = await import("node:os");
    return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  } catch {
    return 1;
  }
}

/**
 * Keeps a thread alive through errors thrown where nobody can catch them (a task's stray
 * `setTimeout` callback, an unhandled rejection): they are passed to `handler` instead of ending
 * the thread.
 */
export function onUncaught(handler: (error: unknown) => void): void {
  if (deno) {
    // Structural types: the Node build's compiler has no DOM event types.
    type UncaughtEvent = {
      preventDefault(): void;
      error?: unknown;
      message?: string;
      reason?: unknown;
    };
    const scope = globalThis as unknown as {
      addEventListener(type: string, listener: (event: UncaughtEvent) => void): void;
    };
    scope.addEventListener("error", (event) => {
      event.preventDefault();
      handler(event.error ?? event.message);
    });
    scope.addEventListener("unhandledrejection", (event) => {
      event.preventDefault();
      handler(event.reason);
    });
    return;
  }
  const p = proc();
  p.on("uncaughtException", (error) => handler(error));
  p.on("unhandledRejection", (reason) => handler(reason));
}

/** Exits the process. */
export function exit(code: number): never {
  return deno ? deno.exit(code) : proc().exit(code);
}

/** The OS signals a worker handles. */
export type ShutdownSignal = "SIGINT" | "SIGTERM";

/**
 * Listens for an OS signal (`Deno.addSignalListener` on Deno, `process.on` on Node).
 * Returns a function that removes the listener.
 */
export function onSignal(signal: ShutdownSignal, handler: () => void): () => void {
  if (deno) {
    deno.addSignalListener(signal, handler);
    return () => deno.removeSignalListener(signal, handler);
  }
  const p = proc();
  p.on(signal, handler);
  return () => void p.off(signal, handler);
}

/** True when `importMeta` belongs to the program's entry module. */
export function isMainModule(importMeta: ImportMeta): boolean {
  const main = (importMeta as { main?: boolean }).main;
  if (typeof main === "boolean") return main;
  const argv1 = nodeProcess?.argv[1];
  if (!argv1) return false;
  // Node resolves symlinks in the entry module's URL (a package installed by `npm link`, a
  // `file:` dependency, pnpm), not in argv[1]: both are compared as real paths where possible.
  const builtin = (nodeProcess as { getBuiltinModule?: (id: string) => unknown })
    .getBuiltinModule;
  const fs = builtin?.("node:fs") as { realpathSync?(path: string): string } | undefined;
  const url = builtin?.("node:url") as { fileURLToPath?(url: string): string } | undefined;
  const real = (path: string) => {
    try {
      return fs?.realpathSync?.(path) ?? path;
    } catch {
      return path;
    }
  };
  const path = url?.fileURLToPath?.(importMeta.url) ??
    decodeURIComponent(new URL(importMeta.url).pathname);
  const script = real(argv1);
  return script === path || real(`${argv1}.js`) === path || argv1 === path ||
    argv1 === path.replace(/\.js$/, "") ||
    // bin shims: node_modules/.bin/streamfutures-worker is a symlink to worker.js
    (argv1.endsWith("streamfutures-worker") && path.endsWith("worker.js"));
}

/** The file URL of this package's `worker` entry in the running build (worker.ts or worker.js). */
export function workerEntryUrl(): URL {
  return siblingUrl(new URL("../worker.ts", import.meta.url));
}

/** The command line that starts a worker process in this runtime: `[exe, ...args]`. */
export function workerCommand(): string[] {
  const entry = decodeURIComponent(workerEntryUrl().pathname);
  return deno ? [deno.execPath(), "run", "-A", entry] : [proc().execPath, entry];
}

/** True when this module was loaded from compiled JavaScript (the npm build). */
const compiled = import.meta.url.endsWith(".js");

/**
 * Maps a source `.ts` URL to the file this runtime can load: in the npm build (`.js` files), a
 * `foo.ts` URL becomes `foo.js` when that file is part of the build. Other URLs are unchanged.
 */
export function siblingUrl(url: URL): URL {
  if (!compiled || url.protocol !== "file:" || !url.pathname.endsWith(".ts")) return url;
  return new URL(url.href.replace(/\.ts$/, ".js"));
}

/**
 * Resolves a task module specifier (a URL, an absolute path, or a path relative to the working
 * directory) to a URL string `import()` can load in this runtime.
 */
export async function resolveModuleUrl(spec: string | URL): Promise<string> {
  let url: URL;
  if (spec instanceof URL) url = spec;
  else if (/^[a-z][a-z0-9+.-]*:/i.test(spec) && !/^[a-z]:[\\/]/i.test(spec)) url = new URL(spec);
  else {
    const { pathToFileURL } = await import("node:url");
    const { resolve } = await import("node:path");
    url = pathToFileURL(resolve(spec));
  }
  if (!isDeno && url.protocol === "file:" && url.pathname.endsWith(".ts")) {
    // Node 20 cannot import TypeScript; use the compiled sibling when there is one.
    const js = new URL(url.href.replace(/\.ts$/, ".js"));
    const { existsSync } = await import("node:fs");
    const { fileURLToPath } = await import("node:url");
    if (existsSync(fileURLToPath(js))) url = js;
  }
  return url.href;
}

/** A thread started with {@link startThread}. */
export interface ThreadHandle {
  /** Sends a structured-clonable message to the thread. */
  post(message: unknown): void;
  /** `post()` takes a message's `p` as {@link RawParts} (an executor process on a socket). */
  readonly rawParts?: boolean;
  /** Registers the handler of messages from the thread. */
  onMessage(handler: (message: unknown) => void): void;
  /** Registers the handler of an uncaught error in the thread. */
  onError(handler: (error: unknown) => void): void;
  /** Stops the thread at once. */
  terminate(): Promise<void>;
}

/**
 * Starts a module in a new thread (a Web Worker on Deno, `node:worker_threads` on Node). The
 * thread receives `data` as its first message, read with {@link threadPort}.
 */
export async function startThread(url: URL, data: unknown): Promise<ThreadHandle> {
  const target = siblingUrl(url);
  let terminated = false;
  let onError: (e: unknown) => void = () => {};
  const report = (error: unknown) => {
    if (!terminated) onError(error);
  };
  if (deno) {
    const WorkerCtor =
      (globalThis as unknown as { Worker: new (u: string, o: object) => WebWorker })
        .Worker;
    const w = new WorkerCtor(target.href, { type: "module" });
    let onMessage: (m: unknown) => void = () => {};
    w.onerror = (e: { message?: string; preventDefault?: () => void }) => {
      e.preventDefault?.();
      report(new Error(e.message ?? "thread error"));
    };
    // A Web Worker has no exit event: the thread says it is going away (threadPort's exit).
    w.onmessage = (e: { data: unknown }) => {
      const m = e.data as Record<string, unknown> | null;
      if (m && typeof m === "object" && THREAD_EXIT in m) {
        report(new Error(`the executor thread exited (code ${m[THREAD_EXIT]})`));
      } else onMessage(m);
    };
    w.postMessage({ init: data });
    return {
      post: (m) => w.postMessage(m),
      onMessage: (h) => (onMessage = h),
      onError: (h) => (onError = h),
      terminate: () => {
        terminated = true;
        return Promise.resolve(w.terminate());
      },
    };
  }
  const { Worker } = await import("node:worker_threads");
  const w = new Worker(target);
  w.on("error", report);
  // `process.exit()` in a task ends the thread without an error: as dead as a crashed one.
  w.on("exit", (code: number) => report(new Error(`the executor thread exited (code ${code})`)));
  w.postMessage({ init: data });
  return {
    post: (m) => w.postMessage(m),
    onMessage: (h) => void w.on("message", h),
    onError: (h) => (onError = h),
    terminate: async () => {
      terminated = true;
      await w.terminate();
    },
  };
}

/** The key of the message a Deno thread sends when a task ends it (see {@link threadPort}). */
const THREAD_EXIT = "\u0001sf:exit";

interface WebWorker {
  postMessage(m: unknown): void;
  terminate(): void;
  onmessage: ((e: { data: unknown }) => void) | null;
  onerror: ((e: { message?: string; preventDefault?: () => void }) => void) | null;
}

/** The environment variable that tells an executor it runs as a process of its own. */
const PROCESS_THREAD = "STREAMFUTURES_EXECUTOR_PROCESS";

/** Marks the protocol lines of a process thread on a pipe (any other output is the task's own). */
const MARK = "\u0001SF:";

/** The environment variable that gives an executor process the Unix socket to its worker. */
const PROCESS_SOCKET = "STREAMFUTURES_EXECUTOR_SOCKET";

/**
 * True when threads can be stopped by force here. Deno 2.9 cannot terminate a worker thread that
 * runs a synchronous loop (`Worker.terminate()` waits for its event loop: denoland/deno#35657),
 * so there a "thread" that must be stoppable is a process of its own ({@link startProcessThread}).
 */
export const threadsTerminate: boolean = !deno;

/**
 * In an executor process: a watchdog thread that kills this process (SIGKILL) once its parent is
 * gone — also when the main thread is stuck in a synchronous loop, where nothing else could run.
 * Without it, a worker killed with SIGKILL would leave its executors running.
 */
function watchParent(): void {
  const code = `import process from "node:process";
const parent = ${deno!.ppid};
setInterval(() => {
  try {
    process.kill(parent, 0);
  } catch {
    process.kill(process.pid, "SIGKILL");
  }
}, 250);`;
  const url = URL.createObjectURL(new Blob([code], { type: "application/javascript" }));
  const WorkerCtor = (globalThis as unknown as { Worker: new (u: string, o: object) => unknown })
    .Worker;
  new WorkerCtor(url, { type: "module" });
}

/** Kills a child process (SIGKILL) and waits until it has exited. */
async function kill(
  child: { kill(signal?: string): void; status: Promise<unknown> },
): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch {
    // already gone
  }
  await child.status.catch(() => {});
}

/**
 * The parent's handle on an executor process, whatever carries its messages: the handlers the
 * transport's reader calls, the report of an exit nobody asked for, and the kill.
 */
class ProcessThread implements ThreadHandle {
  /** What the reader hands each message to. */
  message: (m: unknown) => void = () => {};
  /** What the reader and an unexpected exit report to. */
  error: (e: unknown) => void = () => {};
  terminated = false;
  /** Set for a process whose messages travel in frames ({@link frameMessage}). */
  rawParts = false;

  /**
   * `exited` runs when the process has exited, before the error report; `closed` after a
   * {@link terminate}.
   */
  constructor(
    readonly child: { kill(signal?: string): void; status: Promise<ProcessStatus> },
    readonly post: (message: unknown) => void,
    readonly closed?: () => void,
    exited?: () => void,
  ) {
    void child.status.then((status) => {
      exited?.();
      if (!this.terminated) {
        this.error(
          new Error(`the executor process exited (code ${status.code}, ${status.signal})`),
        );
      }
    });
  }

  onMessage(handler: (message: unknown) => void): void {
    this.message = handler;
  }

  onError(handler: (error: unknown) => void): void {
    this.error = handler;
  }

  async terminate(): Promise<void> {
    this.terminated = true;
    await kill(this.child);
    this.closed?.();
  }
}

/** How a child process ended. */
interface ProcessStatus {
  code: number;
  signal: string | null;
}

let sharedStdout: WritableStreamDefaultWriter<Uint8Array> | undefined;
/** One writer of this process's stdout, shared (a stream has one writer at a time). */
function stdoutWriter(): WritableStreamDefaultWriter<Uint8Array> {
  return sharedStdout ??= deno!.stdout.writable.getWriter();
}

/**
 * {@link startProcessThread} where Unix sockets are not available (Windows): messages travel as
 * JSON lines on the process's stdin / stdout, marked so that what tasks print passes through to
 * this process's stdout.
 */
async function startPipeProcessThread(url: URL, data: unknown): Promise<ThreadHandle> {
  if (!deno) return await startThread(url, data);
  const { fileURLToPath } = await import("node:url");
  const child = new deno.Command(deno.execPath(), {
    args: ["run", "-A", fileURLToPath(siblingUrl(url))],
    env: { [PROCESS_THREAD]: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const encoder = new TextEncoder();
  const handle = new ProcessThread(child, (message: unknown) => {
    writer.write(encoder.encode(JSON.stringify(message) + "\n")).catch(() => {});
  });
  const passThrough = stdoutWriter();
  const split = lineSplitter((line) => {
    const mark = line.indexOf(MARK);
    if (mark === -1) {
      passThrough.write(encoder.encode(line + "\n")).catch(() => {});
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(line.slice(mark + MARK.length));
    } catch {
      // Not one of ours after all (a task printed the marker): it is output.
      passThrough.write(encoder.encode(line + "\n")).catch(() => {});
      return;
    }
    if (mark > 0) passThrough.write(encoder.encode(line.slice(0, mark))).catch(() => {});
    handle.message(message);
  });
  void (async () => {
    for await (const chunk of child.stdout) split(chunk);
  })().catch((error) => handle.error(error));
  handle.post({ init: data });
  return handle;
}

/**
 * Reads newline-terminated JSON messages from `readable` and hands each to `onMessage`; resolves
 * at the end of the stream (the pipe an executor process reads where there is no Unix socket).
 */
async function readJsonLines(
  source: ReadableStream<Uint8Array>,
  onMessage: (m: unknown) => void,
): Promise<void> {
  const split = lineSplitter((line) => onMessage(JSON.parse(line)));
  for await (const chunk of source) split(chunk);
}

/**
 * Reads the frames of {@link frameMessage} from a socket and hands each message to `onMessage`;
 * resolves at the end of the stream. The socket is read into one reused buffer: its
 * ReadableStream hands out a new chunk of about 54 KB per read, 3-5 times slower for a message of
 * megabytes (5 MB: 2.5-6.3 ms against 0.8-1.2 ms).
 */
async function readFrames(source: DenoConn, onMessage: (m: unknown) => void): Promise<void> {
  const read = frameReader(onMessage);
  const buffer = new Uint8Array(READ_BUFFER);
  for (let n; (n = await source.read(buffer)) !== null;) read(buffer.subarray(0, n));
}

/** The buffer an executor socket is read into, bytes. */
const READ_BUFFER = 1 << 20;

/** The length of a frame's header: the JSON part's length and the raw part's length + 1. */
const FRAME_HEADER = 8;

/**
 * A message's `p` given as pieces: the UTF-8 of each string and each byte array as it is, in
 * order, make the raw part of its frame (see {@link frameMessage}). The receiver gets `p` as the
 * array of the pieces decoded one by one (one piece: a string). Long arguments read from Redis as
 * bytes go into a frame without being decoded, joined into a string and encoded again, and come
 * out as strings of their own size: a whole batch decoded at once is a string of megabytes, for
 * which V8 maps fresh memory each time (about 25 page faults per 100 KB, each costly on a VM).
 */
export class RawParts {
  constructor(readonly parts: readonly (string | Uint8Array)[]) {}
}

/**
 * The frames of the socket between a worker and an executor process: a message is the UTF-8
 * bytes of its JSON after an 8-byte header (two little-endian 32-bit lengths: that of the JSON
 * part and, plus one, that of the raw part; 0 for none). A message's string field `p` (a packed
 * batch of tasks or of their values, megabytes with long arguments) travels raw: its UTF-8 bytes
 * after the JSON of the rest, neither escaped, nor searched for a line's end, nor parsed (as a
 * JSON line it cost 4-5 times as much CPU: the escaping, the search and the parse of megabytes).
 * `p` may also be {@link RawParts}, whose byte arrays are written as they are. Returns the buffers
 * to write, in order.
 */
export function frameMessage(message: unknown): Uint8Array[] {
  let raw: Uint8Array[] | undefined;
  let rawLength = 0;
  let rest = message;
  const p = message !== null && typeof message === "object"
    ? (message as { p?: unknown }).p
    : undefined;
  if (typeof p === "string" || p instanceof RawParts) {
    const { p: _, ...others } = message as { p: unknown };
    rest = others;
    raw = [];
    for (const part of typeof p === "string" ? [p] : p.parts) {
      const bytes = typeof part === "string" ? textEncoder.encode(part) : part;
      if (bytes.length === 0) continue;
      raw.push(bytes);
      rawLength += bytes.length;
    }
    // Several pieces: their lengths, for the receiver to decode them one by one.
    if (p instanceof RawParts && raw.length > 1) {
      (rest as Record<string, unknown>)[PIECES] = raw.map((bytes) => bytes.length);
    }
  }
  const json = textEncoder.encode(JSON.stringify(rest));
  const head = new Uint8Array(FRAME_HEADER + json.length);
  const view = new DataView(head.buffer);
  view.setUint32(0, json.length, true);
  view.setUint32(4, raw ? rawLength + 1 : 0, true);
  head.set(json, FRAME_HEADER);
  return raw ? [head, ...raw] : [head];
}

const textEncoder = new TextEncoder();

/** The field of a frame's JSON part that lists the byte lengths of the pieces of `p`. */
const PIECES = "$n";

/** The largest buffer {@link frameReader} keeps for frames that span chunks, bytes. */
const KEEP_FRAME_BUFFER = 16 << 20;

/**
 * Returns a function that takes the chunks of a stream of {@link frameMessage} frames, in order
 * and of any size, and calls `onMessage` with each message. A frame that lies in one chunk is
 * decoded from it; one that spans chunks is copied once into a buffer, kept for the next such
 * frame (up to 16 MB): a batch of tasks with long arguments is megabytes, and fresh memory costs
 * a page fault per 4 KB (about 3 per 100 KB task for an executor process).
 */
export function frameReader(onMessage: (message: unknown) => void): (chunk: Uint8Array) => void {
  const decoder = new TextDecoder();
  const header = new Uint8Array(FRAME_HEADER);
  const headerView = new DataView(header.buffer);
  let headerFill = 0;
  let jsonLength = 0;
  let rawLength = 0;
  let body: Uint8Array | undefined;
  let bodyFill = 0;
  /** Kept for the next frame that spans chunks: each new one costs a page fault per 4 KB. */
  let spare: Uint8Array | undefined;
  const deliver = (bytes: Uint8Array) => {
    const message = JSON.parse(decoder.decode(bytes.subarray(0, jsonLength)));
    const pieces: number[] | undefined = message[PIECES];
    if (pieces) {
      delete message[PIECES];
      let at = jsonLength;
      message.p = pieces.map((length) => decoder.decode(bytes.subarray(at, at += length)));
    } else if (rawLength > 0) message.p = decoder.decode(bytes.subarray(jsonLength));
    onMessage(message);
  };
  return (chunk) => {
    let at = 0;
    while (at < chunk.length) {
      if (body === undefined) {
        if (headerFill === 0 && chunk.length - at >= FRAME_HEADER) {
          const view = new DataView(chunk.buffer, chunk.byteOffset + at, FRAME_HEADER);
          jsonLength = view.getUint32(0, true);
          rawLength = view.getUint32(4, true);
          at += FRAME_HEADER;
        } else {
          const n = Math.min(FRAME_HEADER - headerFill, chunk.length - at);
          header.set(chunk.subarray(at, at + n), headerFill);
          headerFill += n;
          at += n;
          if (headerFill < FRAME_HEADER) return;
          headerFill = 0;
          jsonLength = headerView.getUint32(0, true);
          rawLength = headerView.getUint32(4, true);
        }
        const size = jsonLength + Math.max(0, rawLength - 1);
        if (chunk.length - at >= size) {
          // The whole frame is in this chunk.
          deliver(chunk.subarray(at, at + size));
          at += size;
          continue;
        }
        if (!spare || spare.length < size) {
          const grown = new Uint8Array(size);
          if (size <= KEEP_FRAME_BUFFER) spare = grown;
          body = grown;
        } else body = spare.subarray(0, size);
        bodyFill = 0;
      }
      const n = Math.min(body.length - bodyFill, chunk.length - at);
      body.set(chunk.subarray(at, at + n), bodyFill);
      bodyFill += n;
      at += n;
      if (bodyFill === body.length) {
        const bytes = body;
        body = undefined;
        deliver(bytes);
      }
    }
  };
}

/** Chunks queued to a socket are joined into one write while they add up to at most this. */
const JOIN_WRITES = 64 * 1024;

/**
 * Writes to a socket in order with `write()`, the messages queued while a write is in progress
 * going out together in the next one (its WritableStream costs more per message); a large chunk
 * is written as it is, not copied into a joined one. Errors (the other side gone) end the
 * writing silently: the reader sees the socket close.
 */
function connWriter(conn: DenoConn): (bytes: Uint8Array) => void {
  let queue: Uint8Array[] = [];
  let writing = false;
  const pump = async () => {
    writing = true;
    try {
      while (queue.length > 0) {
        const chunks = queue;
        queue = [];
        for (let i = 0; i < chunks.length;) {
          let j = i + 1;
          let length = chunks[i].length;
          while (j < chunks.length && length + chunks[j].length <= JOIN_WRITES) {
            length += chunks[j].length;
            j++;
          }
          let chunk = j === i + 1 ? chunks[i] : concatBytes(chunks.slice(i, j));
          i = j;
          while (chunk.length > 0) chunk = chunk.subarray(await conn.write(chunk));
        }
      }
    } catch {
      queue = [];
    } finally {
      writing = false;
    }
  };
  return (bytes) => {
    queue.push(bytes);
    if (!writing) void pump();
  };
}

/** The bytes of `parts`, in order, in one array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Returns a function that takes the chunks of a UTF-8 stream and calls `onLine` with each
 * complete line (without its newline). Each chunk is searched once, and a line that spans
 * chunks is joined once, when its end arrives: a message of megabytes (a batch of tasks with
 * long arguments) arrives in many chunks, and searching or copying all that was buffered at every
 * chunk cost time quadratic in its length.
 */
export function lineSplitter(onLine: (line: string) => void): (chunk: Uint8Array) => void {
  const decoder = new TextDecoder();
  let parts: string[] = [];
  return (chunk) => {
    const text = decoder.decode(chunk, { stream: true });
    let start = 0;
    let newline;
    while ((newline = text.indexOf("\n", start)) !== -1) {
      let line = text.slice(start, newline);
      if (parts.length > 0) {
        parts.push(line);
        line = parts.join("");
        parts = [];
      }
      start = newline + 1;
      onLine(line);
    }
    if (start < text.length) parts.push(start === 0 ? text : text.slice(start));
  };
}

/**
 * Starts a module as a separate process that behaves like a thread of {@link startThread} (Deno
 * only): messages travel in frames ({@link frameMessage}) over a Unix socket the process connects
 * to (Deno reads a socket on its event loop; a pipe on stdin costs a hand-off to a blocking thread
 * per read); its stdout and stderr are this process's; `terminate()` kills it (SIGKILL), which
 * ends even a synchronous infinite loop.
 */
export async function startProcessThread(url: URL, data: unknown): Promise<ThreadHandle> {
  if (!deno) return await startThread(url, data);
  const { fileURLToPath } = await import("node:url");
  let dir: string | undefined;
  let path: string;
  let listener: ReturnType<DenoLike["listen"]>;
  try {
    dir = await deno.makeTempDir({ prefix: "sf-exec-" });
    path = `${dir}/s`;
    listener = deno.listen({ transport: "unix", path });
  } catch {
    // No Unix sockets here (Windows), a path too long for one, or no permission to make one
    // (`--allow-read` / `--allow-write`): a pipe, slower but everywhere.
    if (dir) await deno.remove(dir, { recursive: true }).catch(() => {});
    return await startPipeProcessThread(url, data);
  }
  const child = new deno.Command(deno.execPath(), {
    args: ["run", "-A", fileURLToPath(siblingUrl(url))],
    env: { [PROCESS_THREAD]: "1", [PROCESS_SOCKET]: path },
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  let write: ((bytes: Uint8Array) => void) | undefined;
  let conn: { close(): void } | undefined;
  /** Messages posted before the process connected. */
  const waiting: Uint8Array[] = [];
  const post = (message: unknown) => {
    for (const bytes of frameMessage(message)) {
      if (write) write(bytes);
      else waiting.push(bytes);
    }
  };
  const closeListener = () => {
    try {
      listener.close();
    } catch {
      // closed already
    }
    deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const handle = new ProcessThread(child, post, () => {
    try {
      conn?.close();
    } catch {
      // closed already
    }
  }, closeListener);
  handle.rawParts = true;
  void (async () => {
    const accepted = await listener.accept();
    closeListener();
    conn = accepted;
    if (handle.terminated) return accepted.close();
    const w = connWriter(accepted);
    write = w;
    for (const bytes of waiting.splice(0)) w(bytes);
    await readFrames(accepted, (m) => handle.message(m));
  })().catch((error) => {
    if (!handle.terminated) handle.error(error);
  });
  post({ init: data });
  return handle;
}

/** The parent side of a thread, seen from inside it. */
export interface ThreadPort {
  /** The `data` given to {@link startThread}. */
  data: unknown;
  /** Sends a message to the parent. */
  post(message: unknown): void;
  /** `post()` takes a message's `p` as {@link RawParts} (a process on a socket). */
  readonly rawParts?: boolean;
  /** Registers the handler of later messages from the parent. */
  onMessage(handler: (message: unknown) => void): void;
  /** Lets the thread end once its work is done (Node keeps a listening port alive otherwise). */
  close(): void;
}

/** Inside a thread started by {@link startThread}: waits for the init message. */
export async function threadPort(): Promise<ThreadPort> {
  let handler: (m: unknown) => void = () => {};
  if (deno && getEnv(PROCESS_THREAD) === "1") {
    // A process started by startProcessThread: frames over the Unix socket it names, or, from
    // startPipeProcessThread, on stdin / stdout (its lines marked, as tasks print there too).
    const path = getEnv(PROCESS_SOCKET);
    const conn = path ? await deno.connect({ transport: "unix", path }) : undefined;
    let post: (m: unknown) => void;
    if (conn) {
      const write = connWriter(conn);
      post = (m) => {
        for (const bytes of frameMessage(m)) write(bytes);
      };
    } else {
      const stdout = stdoutWriter();
      const encoder = new TextEncoder();
      post = (m) =>
        void stdout.write(encoder.encode(MARK + JSON.stringify(m) + "\n")).catch(() => {});
    }
    let init!: (data: unknown) => void;
    const data = new Promise<unknown>((resolve) => (init = resolve));
    const receive = (m: unknown) => {
      if (m && typeof m === "object" && "init" in m) init((m as { init: unknown }).init);
      else handler(m);
    };
    void (async () => {
      await (conn ? readFrames(conn, receive) : readJsonLines(deno.stdin.readable, receive))
        .catch(() => {});
      deno.exit(0); // the parent went away
    })();
    watchParent();
    // A terminal's Ctrl-C, or a SIGTERM to the whole process group (systemd, timeout(1), a
    // container runtime), reaches this process too: it is the worker's to handle. The worker
    // gives its running tasks their grace period, then ends this process (SIGKILL); were this
    // process to die at the signal, its tasks would be lost at once.
    for (const signal of ["SIGINT", "SIGTERM"] as const) deno.addSignalListener(signal, () => {});
    return {
      data: await data,
      post,
      rawParts: conn !== undefined,
      onMessage: (h) => (handler = h),
      close: () => deno.exit(0),
    };
  }
  if (deno) {
    const scope = globalThis as unknown as {
      onmessage: ((e: { data: unknown }) => void) | null;
      postMessage(m: unknown): void;
      close(): void;
    };
    const exiting = exitThreadOnExit(scope);
    const data = await new Promise<unknown>((resolve) => {
      scope.onmessage = (e) => {
        const m = e.data as { init?: unknown };
        if (m && typeof m === "object" && "init" in m) resolve(m.init);
        else handler(e.data);
      };
    });
    return {
      data,
      post: (m) => {
        if (!exiting()) scope.postMessage(m);
      },
      onMessage: (h) => (handler = h),
      close: () => (scope.onmessage = null),
    };
  }
  const { parentPort } = await import("node:worker_threads");
  if (!parentPort) throw new Error("threadPort() called outside a thread");
  const data = await new Promise<unknown>((resolve) => {
    parentPort.on("message", (m: { init?: unknown }) => {
      if (m && typeof m === "object" && "init" in m) resolve(m.init);
      else handler(m);
    });
  });
  return {
    data,
    post: (m) => parentPort.postMessage(m),
    onMessage: (h) => (handler = h),
    close: () => parentPort.close(),
  };
}

/**
 * In a Deno Web Worker (no exit event reaches its parent): makes `Deno.exit()` and `process.exit()`
 * tell the parent that the thread is going away ({@link startThread} reports it as an error, as a
 * dead executor), then close the thread. The call throws, so that the code after it does not run
 * on as if it had returned; nothing the thread posts afterwards reaches the parent. Returns
 * whether the thread is exiting.
 */
function exitThreadOnExit(scope: { postMessage(m: unknown): void; close(): void }): () => boolean {
  let exiting = false;
  const exit = (code?: number): never => {
    if (!exiting) {
      exiting = true;
      scope.postMessage({ [THREAD_EXIT]: code ?? 0 });
      scope.close();
    }
    throw new Error(`the executor thread is exiting (code ${code ?? 0})`);
  };
  const targets = [deno, nodeProcess] as ({ exit: unknown } | undefined)[];
  for (const target of targets) {
    try {
      if (target) target.exit = exit;
    } catch {
      // not replaceable here: such an exit goes unnoticed, as before
    }
  }
  return () => exiting;
}

/** A child process started with {@link spawnProcess}. */
export interface ChildProcessHandle {
  /** The OS process id. */
  readonly pid: number;
  /** Sends a signal (default SIGTERM). */
  kill(signal?: string): void;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** Everything written to stdout so far. */
  stdout(): string;
  /** Everything written to stderr so far. */
  stderr(): string;
}

/** Options of {@link spawnProcess}. */
export interface SpawnOptions {
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables (merged over this process's environment). */
  env?: Record<string, string>;
  /** Echo the child's output to this process's stderr, prefixed (for debugging). */
  echo?: string;
}

/**
 * Starts a child process with piped output: `Deno.Command` on Deno (its `node:child_process`
 * reports a child that handled SIGTERM and exited 0 as killed by the signal), `node:child_process`
 * on Node.
 */
export async function spawnProcess(
  command: string,
  args: string[],
  options: SpawnOptions = {},
): Promise<ChildProcessHandle> {
  let out = "";
  let err = "";
  const onData = (stream: "out" | "err", text: string) => {
    if (stream === "out") out += text;
    else err += text;
    if (options.echo) console.error(`[${options.echo}] ${text.trimEnd()}`);
  };
  if (deno) {
    const child = new deno.Command(command, {
      args,
      cwd: options.cwd,
      env: options.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pump = async (stream: ReadableStream<Uint8Array>, name: "out" | "err") => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) onData(name, decoder.decode(chunk, { stream: true }));
    };
    const pumps = Promise.all([pump(child.stdout, "out"), pump(child.stderr, "err")]);
    const exited = child.status.then(async (status) => {
      await pumps.catch(() => {});
      return { code: status.signal ? null : status.code, signal: status.signal };
    });
    return {
      pid: child.pid,
      kill: (signal = "SIGTERM") => {
        try {
          child.kill(signal);
        } catch {
          // already exited
        }
      },
      exited,
      stdout: () => out,
      stderr: () => err,
    };
  }
  const { spawn } = await import("node:child_process");
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { ...envObject(), ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.setEncoding("utf8");
  child.stderr?.setEncoding("utf8");
  child.stdout?.on("data", (d: string) => onData("out", d));
  child.stderr?.on("data", (d: string) => onData("err", d));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", () => resolve());
    child.once("error", reject);
  });
  return {
    pid: child.pid!,
    kill: (signal = "SIGTERM") => void child.kill(signal as "SIGTERM"),
    exited,
    stdout: () => out,
    stderr: () => err,
  };
}
