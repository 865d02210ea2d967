/**
 * Entry module of an executor thread: the thread a worker's tasks run on, so that a busy task
 * never stalls the worker's heartbeats, reads and signal handling, and a task that will not stop
 * can be ended by terminating the thread.
 *
 * Messages (all batched: one message per event-loop turn at most, each direction):
 * - in: `{ t: "run", tasks: [[seq, fn, args, taskId, operationId, attempt, queue, deps], ...] }`
 * - in: `{ t: "abort", seq, name, message }` — aborts the task's `currentTask().signal`
 * - out: `{ t: "ready", names }` once the task modules are loaded, or `{ t: "error", error }`
 * - out: `{ t: "done", r: [...] }`, in order: `[seq, 1, encodedValue]` completed,
 *   `[seq, 0, name, message, stack]` failed, `[seq, 2, "p" | "y", index, encoded]` a progress
 *   value or a value yielded by a generator task (before its outcome)
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

/** What the worker sends to start one task. */
export type RunMessage = [
  seq: number,
  fn: string,
  args: string,
  taskId: string,
  operationId: string,
  attempt: number,
  queue: string,
  /** The entry's `deps` field: the parents' outcomes (JSON), or "". */
  deps: string,
];

/** A task's outcome: its encoded value, or the error it failed with. */
export type DoneMessage =
  | [seq: number, ok: 1, value: string]
  | [seq: number, ok: 0, name: string, message: string, stack: string];

/** Something a running task published: a progress value ("p") or a yielded value ("y"). */
export type EventMessage = [seq: number, kind: 2, event: "p" | "y", index: number, value: string];

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
    return await (await kvConnection).sendCommand(args);
  },
}, init.app);

const controllers = new Map<number, AbortController>();
let outbox: (DoneMessage | EventMessage)[] = [];
// Sent once the current burst of completions (all microtasks) is over, so that a batch of tasks
// finishing together goes back in one message, without a timer's delay (setImmediate).
let flushing = false;
function flush(): void {
  flushing = false;
  const r = outbox;
  outbox = [];
  port.post({ t: "done", r });
}
function done(message: DoneMessage | EventMessage): void {
  outbox.push(message);
  if (!flushing) {
    flushing = true;
    setImmediate(flush);
  }
}

async function run(message: RunMessage): Promise<void> {
  const [seq, name, argsText, taskId, operationId, attempt, queue, deps] = message;
  const controller = new AbortController();
  controllers.set(seq, controller);
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
    let finished = false;
    let progressed = 0;
    const progress = (value: unknown) => {
      if (finished) return;
      const encoded = encode(value, "progress");
      checkPayloadSize(encoded, init.maxPayloadBytes, "the progress value");
      done([seq, 2, "p", progressed++, encoded]);
    };
    const context = {
      taskId,
      operationId,
      attempt,
      queue,
      signal: controller.signal,
      progress,
      kv,
    };
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
    finished = true;
    const encoded = encode(value, "result");
    checkPayloadSize(encoded, init.maxPayloadBytes, "the result");
    done([seq, 1, encoded]);
  } catch (thrown) {
    const info = describeThrown(thrown);
    done([seq, 0, info.name, info.message, info.stack ?? ""]);
  } finally {
    controllers.delete(seq);
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
  const m = message as { t: string; tasks?: RunMessage[]; seq?: number; name?: string };
  if (m.t === "run") {
    for (const task of m.tasks!) void run(task);
  } else if (m.t === "abort") {
    const controller = controllers.get(m.seq!);
    const Reason = REASONS[m.name!] ?? Error;
    controller?.abort(new Reason((message as { message: string }).message));
  }
});
port.post({ t: "ready", names: [...tasks.byName.keys()] });
