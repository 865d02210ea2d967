/**
 * Entry module of an executor thread: the thread a worker's tasks run on, so that a busy task
 * never stalls the worker's heartbeats, reads and signal handling, and a task that will not stop
 * can be ended by terminating the thread.
 *
 * Messages (all batched: one message per event-loop turn at most, each direction; batches of
 * tasks and of values travel as one string, fields separated by NUL — structured cloning of
 * nested arrays costs far more — which no field can contain: ids and names are validated, JSON
 * text escapes control characters):
 * - in: `{ t: "run", p: packed [seq, fn, args, taskId, operationId, attempt, queue, deps]... }`
 * - in: `{ t: "abort", seq, name, message }` — aborts the task's `currentTask().signal`
 * - out: `{ t: "ready", names }` once the task modules are loaded, or `{ t: "error", error }`
 * - out: `{ t: "done", s: packed [seq, encodedValue]..., r: [...] }`: `s` the tasks that completed,
 *   `r` in order: `[seq, 0, name, message, stack]` failed, `[seq, 2, "p" | "y", index, encoded]` a
 *   progress value or a value yielded by a generator task (an event of a task comes before its
 *   outcome: `r` is handled before `s`)
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
import { onUncaught, threadPort } from "./_runtime.ts";
import { connect, type ConnectionOptions, type RedisConnection } from "./_redis.ts";
import { KeyValueStore } from "./kv.ts";
import { loadTasks, type TaskRegistry } from "./_tasks.ts";
import {
  type DoneMessage,
  type EventMessage,
  type RunMessage,
  SEP,
  unpackRun,
} from "./_executor_codec.ts";

export type { DoneMessage, EventMessage, RunMessage };

/** The settings an executor thread starts with. */
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

const port = await threadPort();
const init = port.data as ExecutorInit;
let tasks: TaskRegistry;
try {
  tasks = await loadTasks(init.modules);
} catch (error) {
  port.post({ t: "error", error: String((error as Error)?.stack ?? error) });
  throw error;
}
onUncaught((error) => {
  port.post({
    t: "log",
    line: `an error escaped a task and was ignored: ${(error as Error)?.stack ?? String(error)}`,
  });
});

// One Redis connection per executor thread, opened when a task first uses currentTask().kv.
let kvConnection: Promise<RedisConnection> | undefined;
const kv = new KeyValueStore({
  sendCommand: async (args) => {
    kvConnection ??= connect(init.url, "streamfutures-task-kv");
    let connection: RedisConnection;
    try {
      connection = await kvConnection;
    } catch (error) {
      kvConnection = undefined; // the next use tries again
      throw error;
    }
    return await connection.sendCommand(args);
  },
}, init.app);

/**
 * What a task sees as `currentTask()`. Its abort controller and its `progress` function are made
 * on first use: most tasks never touch them, and a run costs less without them.
 */
class Context {
  readonly taskId: string;
  readonly operationId: string;
  readonly attempt: number;
  readonly queue: string;
  readonly kv: KeyValueStore = kv;
  /** Set when the task ended: later progress values are dropped. */
  finished = false;
  readonly #seq: number;
  #controller: AbortController | undefined;
  #aborted: { reason: unknown } | undefined;
  #progress: ((value: unknown) => void) | undefined;

  constructor(seq: number, taskId: string, operationId: string, attempt: number, queue: string) {
    this.#seq = seq;
    this.taskId = taskId;
    this.operationId = operationId;
    this.attempt = attempt;
    this.queue = queue;
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
      const encoded = encode(value, "progress");
      checkPayloadSize(encoded, init.maxPayloadBytes, "the progress value");
      done([this.#seq, 2, "p", index++, encoded]);
    };
  }

  abort(reason: unknown): void {
    if (this.#controller) this.#controller.abort(reason);
    else this.#aborted ??= { reason };
  }
}

const contexts = new Map<number, Context>();
let outbox: (DoneMessage | EventMessage)[] = [];
/** Completed tasks, packed: `seq SEP value SEP ...`. */
let completed = "";
// Sent once the current burst of completions (all microtasks) is over, so that a batch of tasks
// finishing together goes back in one message, without a timer's delay (setImmediate).
let flushing = false;
function flush(): void {
  flushing = false;
  const r = outbox;
  const s = completed;
  outbox = [];
  completed = "";
  port.post({ t: "done", s, r });
}
function done(message: DoneMessage | EventMessage): void {
  if (message[1] === 1) completed += `${message[0]}${SEP}${message[2]}${SEP}`;
  else outbox.push(message);
  if (!flushing) {
    flushing = true;
    setImmediate(flush);
  }
}

async function run(message: RunMessage): Promise<void> {
  const [seq, name, argsText, taskId, operationId, attempt, queue, deps] = message;
  const context = new Context(seq, taskId, operationId, attempt, queue);
  contexts.set(seq, context);
  try {
    const fn = tasks.byName.get(name);
    if (!fn) {
      throw new UnknownTaskError(
        `no task named ${JSON.stringify(name)} (known: ${[...tasks.byName.keys()].join(", ")})`,
      );
    }
    let args: unknown;
    try {
      args = decode(argsText, deps ? parentValues(deps) : undefined);
    } catch (error) {
      throw new ProtocolError(
        `the arguments of task ${taskId} cannot be decoded: ${(error as Error)?.message}`,
        { cause: error },
      );
    }
    if (!Array.isArray(args)) {
      throw new ProtocolError(`the arguments of task ${taskId} are not an array`);
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
        const encoded = encode(step.value, `yielded value ${index}`);
        checkPayloadSize(encoded, init.maxPayloadBytes, `yielded value ${index}`);
        done([seq, 2, "y", index++, encoded]);
      }
    });
    context.finished = true;
    const encoded = encode(value, "result");
    checkPayloadSize(encoded, init.maxPayloadBytes, "the result");
    done([seq, 1, encoded]);
  } catch (thrown) {
    const info = describeThrown(thrown);
    done([seq, 0, info.name, info.message, info.stack ?? ""]);
  } finally {
    context.finished = true;
    contexts.delete(seq);
  }
}

/** True for generator objects (sync or async), whose values are yielded one by one. */
function isGenerator(value: unknown): boolean {
  if (value === null || typeof value !== "object") return false;
  const tag = Object.prototype.toString.call(value);
  return tag === "[object AsyncGenerator]" || tag === "[object Generator]";
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

port.onMessage((message) => {
  const m = message as { t: string; p?: string; seq?: number; name?: string };
  if (m.t === "run") {
    for (const task of unpackRun(m.p!)) void run(task);
  } else if (m.t === "abort") {
    const Reason = REASONS[m.name!] ?? Error;
    contexts.get(m.seq!)?.abort(new Reason((message as { message: string }).message));
  }
});
port.post({ t: "ready", names: [...tasks.byName.keys()] });
