/**
 * What an executor does, wherever it runs: loads the task modules, runs the tasks it is sent, each
 * in its own `currentTask()` context, and sends back their outcomes, progress values and yielded
 * values. An executor thread or process ({@link ./_executor_thread.ts}) serves it over its port;
 * an inline executor (`executorMode: "inline"`) serves it on the listener's own thread.
 *
 * Messages (all batched: one message per event-loop turn at most, each direction; across a thread
 * or process boundary, batches of tasks and of values travel as one string, fields separated by
 * NUL — structured cloning of nested arrays costs far more — which no field can contain: ids and
 * names are validated, JSON text escapes control characters; arguments and values of
 * `PIECE_MIN` characters or more are pieces of their own, and `p` is then the array of the pieces
 * that make the string together: see `_executor_codec.ts`):
 * - in: `{ t: "run", p: packed [seq, fn, args, taskId, operationId, attempt, queue, deps]... }`,
 *   or, inline, `{ t: "run", tasks: RunMessage[] }`
 * - in: `{ t: "abort", seq, name, message }` — aborts the task's `currentTask().signal`
 * - out: `{ t: "ready", names }` once the task modules are loaded, or `{ t: "error", error }`
 * - out: `{ t: "done", p: packed [seq, encodedValue]..., r: [...] }`: `p` the tasks that completed
 *   (inline: "", and they are in `r` as `[seq, 1, encodedValue]`), `r` in order:
 *   `[seq, 0, name, message, stack, detail?]` failed, `[seq, 2, "p" | "y", index, encoded]` a progress value
 *   or a value yielded by a generator task (an event of a task comes before its outcome: `r` is
 *   handled before `p`)
 * - out: `{ t: "log", line }` for errors no task could catch
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { checkPayloadSize, decode, encode } from "./codec.ts";
import { runInTask } from "./current_task.ts";
import {
  CancelledError,
  describeThrown,
  ProtocolError,
  TimeoutError,
  UnknownTaskError,
  WorkerInterrupted,
  WorkerLostError,
} from "./errors.ts";
import { RawParts, type ThreadPort } from "./_runtime.ts";
import { connect, type ConnectionOptions, type RedisConnection } from "./_redis.ts";
import { KeyValueStore, reconnectingCommander } from "./kv.ts";
import { loadTasks, type TaskRegistry } from "./_tasks.ts";
import { chunkedTaskName, isGenerator, runChunk } from "./_chunks.ts";
import {
  argsText,
  type DoneMessage,
  type EventMessage,
  PIECE_MIN,
  type RunMessage,
  SEP,
  unpackRun,
} from "./_executor_codec.ts";

/** The settings an executor starts with. */
export interface ExecutorInit {
  /** Task module URLs. */
  modules: string[];
  /** The largest encoded result accepted, in bytes. */
  maxPayloadBytes: number;
  /** Where Redis is, for `currentTask().kv` (connected on first use). */
  url: ConnectionOptions;
  /** The app whose key-value store tasks see. */
  app: string;
}

const REASONS: Record<string, new (message: string) => Error> = {
  TimeoutError,
  CancelledError,
  WorkerInterrupted,
  WorkerLostError,
};

/**
 * Serves an executor on `port` (whose `data` is its {@link ExecutorInit}): loads the task
 * modules, then answers "ready" and runs what it is sent. `packed`: whether completed tasks go
 * back packed in one string (across a thread or process boundary) or as messages (inline).
 */
export async function serveExecutor(port: ThreadPort, packed: boolean): Promise<void> {
  const init = port.data as ExecutorInit;
  let tasks: TaskRegistry;
  try {
    tasks = await loadTasks(init.modules);
  } catch (error) {
    port.post({ t: "error", error: String((error as Error)?.stack ?? error) });
    throw error;
  }
  const executor = new Executor(port, init, tasks, packed);
  port.onMessage((message) => executor.receive(message));
  port.post({ t: "ready", names: [...tasks.byName.keys()] });
}

/**
 * What a task sees as `currentTask()`. Its abort controller and its `progress` function are made
 * on first use: most tasks never touch them, and a run costs less without them.
 */
class Context {
  readonly taskId: string;
  readonly operationId: string;
  readonly attempt: number;
  readonly queue: string;
  readonly kv: KeyValueStore;
  /** Set when the task ended: later progress values are dropped. */
  finished = false;
  /**
   * In a chunk task, the call running (its progress values go out as `[call, value]`, for the
   * client to hand to that call's future); -1 otherwise.
   */
  call = -1;
  readonly #seq: number;
  readonly #executor: Executor;
  #controller: AbortController | undefined;
  #aborted: { reason: unknown } | undefined;
  #progress: ((value: unknown) => void) | undefined;

  constructor(executor: Executor, message: RunMessage) {
    this.#executor = executor;
    this.#seq = message[0];
    this.taskId = message[3];
    this.operationId = message[4];
    this.attempt = message[5];
    this.queue = message[6];
    this.kv = executor.kv;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#aborted.reason);
    }
    return this.#controller.signal;
  }

  get progress(): (value: unknown) => void {
    let index = 0;
    return this.#progress ??= (value) => {
      if (this.finished) return;
      let encoded = encode(value, "progress");
      checkPayloadSize(encoded, this.#executor.maxPayloadBytes, "the progress value");
      if (this.call >= 0) encoded = `[${this.call},${encoded}]`;
      this.#executor.done([this.#seq, 2, "p", index++, encoded]);
    };
  }

  abort(reason: unknown): void {
    if (this.#controller) this.#controller.abort(reason);
    else this.#aborted ??= { reason };
  }
}

/** One executor's running tasks and its outbox. */
class Executor {
  /** `currentTask().kv`: one Redis connection per executor, opened on first use. */
  readonly kv: KeyValueStore;
  readonly maxPayloadBytes: number;
  readonly #port: ThreadPort;
  readonly #tasks: TaskRegistry;
  readonly #packed: boolean;
  readonly #contexts = new Map<number, Context>();
  #outbox: (DoneMessage | EventMessage)[] = [];
  /** Completed tasks, packed: `seq SEP value SEP ...`. */
  #completed = "";
  /** What was packed before each long value, and the value: pieces of their own (PIECE_MIN). */
  #pieces: string[] = [];
  #flushing = false;
  readonly #flush = () => {
    this.#flushing = false;
    const r = this.#outbox;
    const pieces = this.#pieces;
    const p = pieces.length === 0
      ? this.#completed
      : this.#port.rawParts
      ? new RawParts([...pieces, this.#completed])
      : [...pieces, this.#completed];
    this.#outbox = [];
    this.#completed = "";
    this.#pieces = [];
    this.#port.post({ t: "done", p, r });
  };

  constructor(port: ThreadPort, init: ExecutorInit, tasks: TaskRegistry, packed: boolean) {
    this.#port = port;
    this.#tasks = tasks;
    this.#packed = packed;
    this.maxPayloadBytes = init.maxPayloadBytes;
    let connection: Promise<RedisConnection> | undefined;
    const open = async (): Promise<RedisConnection> => {
      connection ??= connect(init.url, "streamfutures-task-kv");
      try {
        return await connection;
      } catch (error) {
        connection = undefined; // the next use tries again
        throw error;
      }
    };
    // (30 s, the default reconnectDeadline, for a blip of Redis during a task's call.)
    this.kv = new KeyValueStore(reconnectingCommander(open, 30_000), init.app);
  }

  receive(message: unknown): void {
    const m = message as {
      t: string;
      p?: string | string[];
      tasks?: RunMessage[];
      seq?: number;
    };
    if (m.t === "run") {
      for (const task of m.tasks ?? unpackRun(m.p!)) void this.#run(task);
    } else if (m.t === "abort") {
      const { name, message: text } = message as { name: string; message: string };
      const Reason = REASONS[name] ?? Error;
      this.#contexts.get(m.seq!)?.abort(new Reason(text));
    }
  }

  /**
   * Queues an outcome or event. Across a thread or process boundary, a burst of them goes back in
   * one message at the end of the event-loop turn (setImmediate: without a timer's delay). Inline,
   * where a message costs nothing, they go back after the current microtasks: a task that settles
   * in a timer's callback frees its slot before the next timer's callback runs, instead of waiting
   * for every timer due in the same turn (the listener still sends one FINISH per turn).
   */
  done(message: DoneMessage | EventMessage): void {
    if (message[1] === 1 && this.#packed) {
      const value = message[2];
      if (value.length >= PIECE_MIN) {
        this.#pieces.push(`${this.#completed}${message[0]}${SEP}`, value);
        this.#completed = SEP;
      } else this.#completed += `${message[0]}${SEP}${value}${SEP}`;
    } else this.#outbox.push(message);
    if (!this.#flushing) {
      this.#flushing = true;
      if (this.#packed) setImmediate(this.#flush);
      else queueMicrotask(this.#flush);
    }
  }

  async #run(message: RunMessage): Promise<void> {
    const [seq, name, encodedArgs, taskId, , , , deps] = message;
    const context = new Context(this, message);
    this.#contexts.set(seq, context);
    try {
      const chunked = chunkedTaskName(name);
      const fn = this.#tasks.byName.get(chunked ?? name);
      if (!fn) {
        throw new UnknownTaskError(
          `no task named ${JSON.stringify(chunked ?? name)} (known: ${
            [...this.#tasks.byName.keys()].join(", ")
          })`,
        );
      }
      let args: unknown;
      try {
        args = decode(argsText(encodedArgs), deps ? parentValues(deps) : undefined);
      } catch (error) {
        throw new ProtocolError(
          `the arguments of task ${taskId} cannot be decoded: ${(error as Error)?.message}`,
          { cause: error },
        );
      }
      if (!Array.isArray(args)) {
        throw new ProtocolError(`the arguments of task ${taskId} are not an array`);
      }
      if (chunked !== undefined) {
        if (args.length !== 1) {
          throw new ProtocolError(`chunk task ${taskId} has ${args.length} arguments, not 1`);
        }
        const calls = args[0];
        const outcomes = await runInTask(
          context,
          () =>
            runChunk(fn, calls, context.signal, this.maxPayloadBytes, (i) => (context.call = i)),
        );
        context.finished = true;
        checkPayloadSize(outcomes, this.maxPayloadBytes, "the results of the chunk");
        this.done([seq, 1, outcomes]);
        return;
      }
      const value = await runInTask(context, async () => {
        const result = fn(...args);
        if (!isGenerator(result)) return await result;
        // A generator task: each yielded value is a partial result; its return value is the final.
        let index = 0;
        const iterator = result as AsyncIterator<unknown> | Iterator<unknown>;
        for (;;) {
          const step = await iterator.next();
          if (step.done) return step.value;
          let encoded: string;
          try {
            encoded = encode(step.value, `yielded value ${index}`);
            checkPayloadSize(encoded, this.maxPayloadBytes, `yielded value ${index}`);
          } catch (error) {
            // As when a for-of loop's body throws: the generator's finally blocks run (and an
            // error of theirs does not replace this one).
            await Promise.resolve(iterator.return?.()).catch(() => {});
            throw error;
          }
          this.done([seq, 2, "y", index++, encoded]);
        }
      });
      context.finished = true;
      const encoded = encode(value, "result");
      checkPayloadSize(encoded, this.maxPayloadBytes, "the result");
      this.done([seq, 1, encoded]);
    } catch (thrown) {
      const info = describeThrown(thrown);
      this.done(
        info.detail === undefined
          ? [seq, 0, info.name, info.message, info.stack ?? ""]
          : [seq, 0, info.name, info.message, info.stack ?? "", info.detail],
      );
    } finally {
      context.finished = true;
      this.#contexts.delete(seq);
    }
  }
}

/**
 * Resolves the task references in a child task's arguments to its parents' outcomes, from the
 * entry's `deps` field `{"<op>/<id>": [status, stored result]}`: the decoded value of a parent
 * that completed, or an `Error` with the remote name and message of one that failed or was
 * cancelled (the child only runs with such a parent under `onParentError: "pass"`).
 */
function parentValues(deps: string): (ref: { op: string; id: string }) => unknown {
  const outcomes = JSON.parse(deps) as Record<string, [string, string]>;
  return (ref) => {
    const outcome = outcomes[`${ref.op}/${ref.id}`];
    if (!outcome) throw new ProtocolError(`no outcome of parent task ${ref.id} in the entry`);
    const [status, stored] = outcome;
    if (status === "2") return decode(stored);
    const colon = stored.indexOf(": ");
    const error = new Error(colon === -1 ? stored : stored.slice(colon + 2));
    error.name = colon === -1 ? "Error" : stored.slice(0, colon);
    return error;
  };
}
