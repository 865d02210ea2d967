/**
 * The executor threads of a worker: tasks run there, never on the thread that reads Redis and
 * heartbeats. Each executor runs many tasks at once (they are mostly asynchronous); a new batch
 * goes to the least busy executors. An executor that must stop a task which ignores its abort
 * signal is terminated — that ends even a synchronous infinite loop — and replaced; the other
 * tasks it was running are reported lost, exactly as if their worker had died.
 *
 * In `"inline"` mode there is one executor, on the listener's own thread: no hop to another
 * thread and back, and no copy of arguments and results, but a task that does not stop when its
 * signal is aborted cannot be stopped (it is given up and runs on unwatched), and a synchronous
 * task holds up the listener, its heartbeats included, while it runs.
 *
 * @module
 */

import { type ExecutorInit, serveExecutor } from "./_executor_core.ts";
import {
  argsText,
  type DoneMessage,
  type EventMessage,
  packRunParts,
  type RunMessage,
  splitPacked,
} from "./_executor_codec.ts";
import {
  RawParts,
  startProcessThread,
  startThread,
  type ThreadHandle,
  type ThreadPort,
  threadsTerminate,
} from "./_runtime.ts";

export type { DoneMessage, EventMessage, RunMessage };

/**
 * How executors run: `"thread"` (a worker thread each), `"process"` (a process each) or
 * `"inline"` (on the listener's own thread). Threads are lighter than processes; a process is the
 * only way to stop a synchronous infinite loop on Deno 2.9, whose `Worker.terminate()` cannot
 * (denoland/deno#35657). Inline is the lightest and the fastest, for asynchronous (I/O-bound)
 * tasks only: a task there cannot be stopped against its will, and a synchronous one stalls the
 * listener's heartbeats. Default: threads where they can be terminated (Node), processes
 * elsewhere (Deno).
 */
export type ExecutorMode = "thread" | "process" | "inline";

/** The default {@link ExecutorMode} of this runtime. */
export const DEFAULT_EXECUTOR_MODE: ExecutorMode = threadsTerminate ? "thread" : "process";

/** Checks an `executorMode` option (or gives this runtime's default). */
export function executorMode(value: unknown): ExecutorMode {
  if (value === undefined) return DEFAULT_EXECUTOR_MODE;
  if (value !== "thread" && value !== "process" && value !== "inline") {
    throw new TypeError(
      `executorMode must be "thread", "process" or "inline", got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** Options of {@link ExecutorPool}. */
export interface ExecutorPoolOptions extends ExecutorInit {
  /** How many executor threads to keep running (inline: always one). */
  size: number;
  /** Threads, processes or inline (default {@link DEFAULT_EXECUTOR_MODE}). */
  mode?: ExecutorMode;
  /** Receives log lines. */
  log(line: string): void;
}

/** Who gets the outcomes of the tasks it runs (a listener; several may share a pool). */
export interface ExecutorSink {
  /** Receives the outcomes of finished tasks (and what running tasks published), in batches. */
  onDone(results: (DoneMessage | EventMessage)[]): void;
  /** Receives the tasks lost with an executor that was terminated or died, and why. */
  onLost(seqs: number[], why: string): void;
}

interface Executor {
  readonly index: number;
  thread: ThreadHandle | undefined;
  ready: boolean;
  readonly running: Set<number>;
  /** Tasks given to it before it was ready. */
  backlog: RunMessage[];
  /** Set while a replacement is being started (tried again and again until one starts). */
  restarting: boolean;
  /** The timer of the next restart attempt. */
  retryTimer?: ReturnType<typeof setTimeout>;
}

/** The first wait before another attempt to restart an executor, ms (doubled each time). */
const RESTART_DELAY_MIN = 100;
/** The longest wait between attempts to restart an executor, ms. */
const RESTART_DELAY_MAX = 5_000;

/** The executor threads of one worker. */
export class ExecutorPool {
  readonly #options: ExecutorPoolOptions;
  readonly #executors: Executor[] = [];
  readonly #where = new Map<number, Executor>();
  readonly #sinks = new Map<number, ExecutorSink>();
  #names: string[] = [];
  #closed = false;
  #seq = 0;
  #idleWaiters: (() => void)[] = [];

  constructor(options: ExecutorPoolOptions) {
    this.#options = options;
  }

  /** What the executors are. */
  get mode(): ExecutorMode {
    return this.#noun;
  }

  /** How many executor threads there are. */
  get size(): number {
    return this.#noun === "inline" ? 1 : this.#options.size;
  }

  /** The task names the modules export (known once {@link start} resolved). */
  get names(): readonly string[] {
    return this.#names;
  }

  /** Starts the threads; resolves when all have loaded the task modules. */
  async start(): Promise<void> {
    const starts: Promise<void>[] = [];
    for (let i = 0; i < this.size; i++) {
      const executor: Executor = {
        index: i,
        thread: undefined,
        ready: false,
        running: new Set(),
        backlog: [],
        restarting: false,
      };
      this.#executors.push(executor);
      starts.push(this.#launch(executor));
    }
    await Promise.all(starts);
  }

  /** A number that identifies a task in this pool (the first field of a {@link RunMessage}). */
  seq(): number {
    return this.#seq++;
  }

  /**
   * Starts tasks, spread over the least busy executors that are ready (an executor being
   * restarted gets tasks only when none is ready); their outcomes go to `sink`.
   */
  run(tasks: readonly RunMessage[], sink: ExecutorSink): void {
    if (this.#closed) return;
    for (const task of tasks) this.#sinks.set(task[0], sink);
    this.#dispatch(tasks);
  }

  /** Hands tasks whose sinks are known to the least busy executors, ready ones first. */
  #dispatch(tasks: readonly RunMessage[]): void {
    const batches = new Map<Executor, RunMessage[]>();
    for (const task of tasks) {
      let best: Executor | undefined;
      for (const executor of this.#executors) {
        if (
          !best || executor.ready && !best.ready ||
          executor.ready === best.ready && executor.running.size < best.running.size
        ) best = executor;
      }
      if (!best) continue;
      best.running.add(task[0]);
      this.#where.set(task[0], best);
      let batch = batches.get(best);
      if (!batch) batches.set(best, batch = []);
      batch.push(task);
    }
    for (const [executor, batch] of batches) {
      if (!executor.ready) executor.backlog.push(...batch);
      else this.#post(executor.thread!, batch);
    }
  }

  /** Whether arguments may be given as bytes ({@link RunMessage}): the executors are processes. */
  get takesBytes(): boolean {
    return this.#noun === "process";
  }

  /** Sends tasks to an executor, packed as it takes them. */
  #post(thread: ThreadHandle, batch: RunMessage[]): void {
    if (this.#noun === "inline") thread.post({ t: "run", tasks: batch });
    else if (thread.rawParts) thread.post({ t: "run", p: new RawParts(packRunParts(batch)) });
    else {
      const parts = packRunParts(batch).map(argsText);
      thread.post({ t: "run", p: parts.length === 1 ? parts[0] : parts });
    }
  }

  /** Aborts a task's signal with an error of the given name and message. */
  abort(seq: number, name: string, message: string): void {
    const executor = this.#where.get(seq);
    if (executor?.ready) executor.thread!.post({ t: "abort", seq, name, message });
  }

  /**
   * Terminates the executor running `seq` (the only way to stop a task that ignores its signal)
   * and starts a replacement. Its other tasks are reported through `onLost`.
   */
  kill(seq: number, why: string): void {
    const executor = this.#where.get(seq);
    if (!executor || this.#closed) return;
    executor.running.delete(seq);
    this.#where.delete(seq);
    this.#sinks.delete(seq);
    if (this.#noun === "inline") {
      // Nothing can stop code on this thread: the task is given up, and its outcome dropped.
      this.#checkIdle();
      return;
    }
    if (!executor.ready) {
      // Not started yet: it waits in the backlog of an executor that is starting.
      executor.backlog = executor.backlog.filter((task) => task[0] !== seq);
      this.#checkIdle();
      return;
    }
    this.#replace(executor, `its executor ${this.#noun} was terminated to stop task ${why}`);
  }

  /** Resolves once no task runs on the executors any more, or after `timeout` ms. */
  idle(timeout: number): Promise<void> {
    if (this.#where.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeout);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#idleWaiters.push(done);
    });
  }

  #checkIdle(): void {
    if (this.#where.size > 0 || this.#idleWaiters.length === 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const done of waiters) done();
  }

  /** Stops every thread at once. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const executor of this.#executors) clearTimeout(executor.retryTimer);
    await Promise.all(this.#executors.map((e) => e.thread?.terminate().catch(() => {})));
  }

  #replace(executor: Executor, why: string): void {
    this.#lose(executor, why);
    const old = executor.thread;
    executor.thread = undefined;
    executor.ready = false;
    void old?.terminate().catch(() => {});
    if (this.#closed) return;
    void this.#restart(executor);
  }

  /** Reports the tasks of an executor (running, or waiting in its backlog) lost. */
  #lose(executor: Executor, why: string): void {
    const lost = new Map<ExecutorSink, number[]>();
    for (const seq of executor.running) {
      this.#where.delete(seq);
      const sink = this.#sinks.get(seq);
      this.#sinks.delete(seq);
      if (!sink) continue;
      let list = lost.get(sink);
      if (!list) lost.set(sink, list = []);
      list.push(seq);
    }
    executor.running.clear();
    executor.backlog = [];
    for (const [sink, seqs] of lost) sink.onLost(seqs, why);
    this.#checkIdle();
  }

  /**
   * Starts a replacement for an executor that died or was terminated, trying again after a
   * failure (a task module that fails to load for a while) with a growing delay. Meanwhile tasks
   * go to the other executors; the tasks that waited for this one (none was ready) move to an
   * executor that is ready, or are reported lost, after each failure.
   */
  async #restart(executor: Executor): Promise<void> {
    if (executor.restarting) return;
    executor.restarting = true;
    let delay = RESTART_DELAY_MIN;
    try {
      while (!this.#closed) {
        try {
          await this.#launch(executor);
          return;
        } catch (error) {
          const failed = executor.thread;
          executor.thread = undefined;
          executor.ready = false;
          void failed?.terminate().catch(() => {});
          if (this.#closed) return;
          const message = firstLine((error as Error)?.message ?? String(error));
          this.#options.log(
            `could not restart executor ${executor.index} (${message}); trying again in ${delay} ms`,
          );
          if (this.#executors.some((e) => e.ready)) {
            const waiting = executor.backlog;
            executor.backlog = [];
            for (const task of waiting) {
              executor.running.delete(task[0]);
              this.#where.delete(task[0]);
            }
            this.#dispatch(waiting);
          } else {
            this.#lose(executor, `its executor ${this.#noun} could not be restarted: ${message}`);
          }
          await new Promise((resolve) => executor.retryTimer = setTimeout(resolve, delay));
          delay = Math.min(delay * 2, RESTART_DELAY_MAX);
        }
      }
    } finally {
      executor.restarting = false;
    }
  }

  /** What an executor is, for messages: "thread" or "process". */
  get #noun(): ExecutorMode {
    return this.#options.mode ?? DEFAULT_EXECUTOR_MODE;
  }

  async #launch(executor: Executor): Promise<void> {
    const init: ExecutorInit = {
      modules: this.#options.modules,
      maxPayloadBytes: this.#options.maxPayloadBytes,
      url: this.#options.url,
      app: this.#options.app,
    };
    const thread = this.#noun === "inline"
      ? startInline(init)
      : await (this.#noun === "process" ? startProcessThread : startThread)(
        new URL("./_executor_thread.ts", import.meta.url),
        init,
      );
    if (this.#closed) {
      // Closed while it started: nobody would stop it.
      await thread.terminate().catch(() => {});
      throw new Error("the executor pool was closed");
    }
    executor.thread = thread;
    await new Promise<void>((resolve, reject) => {
      thread.onError((error) => {
        if (executor.thread !== thread) return; // a thread already replaced
        if (!executor.ready) return reject(error);
        this.#options.log(
          `executor ${executor.index} died (${(error as Error)?.message ?? error}); restarting it`,
        );
        this.#replace(executor, `its executor ${this.#noun} died`);
      });
      thread.onMessage((message) => {
        const m = message as {
          t: string;
          p?: string | string[];
          r?: (DoneMessage | EventMessage)[];
          names?: string[];
          error?: string;
          line?: string;
        };
        if (m.t === "done") {
          // Usually one sink (listener); the batch is split when several share the pool.
          const bySink = new Map<ExecutorSink, (DoneMessage | EventMessage)[]>();
          const all: (DoneMessage | EventMessage)[] = m.r!;
          if (m.p) {
            const f = splitPacked(m.p);
            for (let i = 0; i + 2 <= f.length; i += 2) all.push([Number(f[i]), 1, f[i + 1]]);
          }
          for (const r of all) {
            const sink = this.#sinks.get(r[0]);
            if (r[1] !== 2) {
              executor.running.delete(r[0]);
              this.#where.delete(r[0]);
              this.#sinks.delete(r[0]);
            }
            if (!sink) continue;
            const list = bySink.get(sink);
            if (list) list.push(r);
            else bySink.set(sink, [r]);
          }
          for (const [sink, list] of bySink) sink.onDone(list);
          this.#checkIdle();
        } else if (m.t === "ready") {
          if (executor.thread !== thread) return;
          this.#names = m.names!;
          executor.ready = true;
          const backlog = executor.backlog;
          executor.backlog = [];
          if (backlog.length > 0) this.#post(thread, backlog);
          resolve();
        } else if (m.t === "log") {
          this.#options.log(`executor ${executor.index}: ${m.line}`);
        } else if (m.t === "error") {
          reject(new Error(`an executor thread failed to load the task modules: ${m.error}`));
        }
      });
    });
  }
}

/**
 * An executor on this thread, behind the interface of a thread: messages to it are delivered in a
 * microtask (so a task never runs inside the caller's code), messages from it at once.
 * `terminate()` cuts it off: what it sends later is dropped (its tasks cannot be stopped).
 */
function startInline(init: ExecutorInit): ThreadHandle {
  let live = true;
  let toExecutor: (message: unknown) => void = () => {};
  let toListener: (message: unknown) => void = () => {};
  let onError: (error: unknown) => void = () => {};
  const port: ThreadPort = {
    data: init,
    post: (message) => {
      if (live) toListener(message);
    },
    onMessage: (handler) => (toExecutor = handler),
    close: () => {},
  };
  queueMicrotask(() => {
    serveExecutor(port, false).catch((error) => {
      // A module that fails to load has already said so ({ t: "error" }).
      if (live) onError(error);
    });
  });
  return {
    post: (message) => {
      queueMicrotask(() => {
        if (live) toExecutor(message);
      });
    },
    onMessage: (handler) => (toListener = handler),
    onError: (handler) => (onError = handler),
    terminate: () => {
      live = false;
      return Promise.resolve();
    },
  };
}

/** The first line of a message (a load failure's message may hold a whole stack). */
function firstLine(text: string): string {
  const end = text.indexOf("\n");
  return end === -1 ? text : text.slice(0, end);
}
