/**
 * `Listener`: the worker loop. It joins the consumer group of one or more queues, proves it is
 * alive by heartbeat, takes at most as many tasks as it has free slots, runs them, and writes
 * status, heartbeat and result into the seed's hashes. The `worker.ts` CLI and a pool's local
 * listeners (`workers: N`) both run this loop.
 *
 * @module
 */

import { decode, encode } from "./codec.ts";
import { runInTask } from "./current_task.ts";
import { describeThrown, formatErrorLine, ProtocolError, StreamFuturesError } from "./errors.ts";
import { GROUP, Keys, PROTOCOL_VERSION, Status } from "./_keys.ts";
import { FINISH } from "./_lua/finish.ts";
import { HEARTBEAT } from "./_lua/heartbeat.ts";
import { REGISTER } from "./_lua/register.ts";
import { START } from "./_lua/start.ts";
import { duration, heartbeats, keyName, positiveInt } from "./_options.ts";
import {
  type BlockingReader,
  checkConnectionOptions,
  connect,
  type ConnectionOptions,
  connectReader,
  type RedisConnection,
} from "./_redis.ts";
import { hostname, pid } from "./_runtime.ts";
import { parseStreamReply, type StreamEntry } from "./_stream.ts";
import { checkTaskModules, loadTasks, type TaskModules, type TaskRegistry } from "./_tasks.ts";

/** Options of a {@link Listener} (and of the `worker.ts` CLI). */
export interface ListenerOptions {
  /** Where Redis is (default `redis://127.0.0.1:6379`). */
  url?: ConnectionOptions;
  /** The `<application>` key prefix (default `"streamfutures"`). */
  app?: string;
  /** The queues to serve (default `["default"]`). */
  queues?: readonly string[];
  /** Task modules (paths relative to the working directory, or URLs). */
  tasks: TaskModules;
  /** Tasks run at once (default 8). */
  concurrency?: number;
  /** How often to refresh heartbeats, ms (default 1000). */
  heartbeatInterval?: number;
  /** A heartbeat older than this (ms) means dead (default 5000). */
  heartbeatTimeout?: number;
  /** How long a graceful stop waits for running tasks, ms (default 10000). */
  grace?: number;
  /** How long one blocking read waits for work, ms (default 1000). */
  block?: number;
  /** Identifies this listener in the registry and as a consumer (default host:pid:random). */
  id?: string;
  /** Receives log lines (default: stderr). */
  log?: (line: string) => void;
}

/** The task-running error name used when a worker stops before a task finished. */
export class WorkerInterrupted extends StreamFuturesError {
  /**
   * @param message Why the worker stopped, e.g. `"SIGTERM"`.
   * @param options `cause` is kept on the error.
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WorkerInterrupted";
  }
}

/** Raised on the worker (and reported to the client) for a task name no module exports. */
export class UnknownTaskError extends StreamFuturesError {
  /**
   * @param message Which name was unknown.
   * @param options `cause` is kept on the error.
   */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "UnknownTaskError";
  }
}

interface RunningTask {
  readonly taskId: string;
  readonly op: string;
  readonly entry: StreamEntry;
  /** True once the start script let the task run (its heartbeat is then refreshed). */
  started: boolean;
  readonly controller: AbortController;
  readonly finished: Promise<void>;
}

const ID = /^[A-Za-z0-9_.\-]+$/;

function heartbeatNow(): string {
  return ((performance.timeOrigin + performance.now()) / 1000).toFixed(6);
}

/**
 * The worker loop.
 *
 * @example
 * ```ts ignore
 * const listener = new Listener({ tasks: "./tasks.ts", url: "redis://127.0.0.1:6379", concurrency: 4 });
 * await listener.start();
 * // ... later
 * await listener.stop({ reason: "SIGTERM" });
 * ```
 */
export class Listener {
  /** This listener's id (its consumer name and registry member). */
  readonly id: string;
  readonly #url: ConnectionOptions;
  readonly #keys: Keys;
  readonly #queues: readonly string[];
  readonly #streams: readonly string[];
  readonly #modules: (string | URL)[];
  readonly #concurrency: number;
  readonly #heartbeatInterval: number;
  readonly #heartbeatTimeout: number;
  readonly #grace: number;
  readonly #block: number;
  readonly #log: (line: string) => void;
  #tasks: TaskRegistry | undefined;
  #cmd: RedisConnection | undefined;
  #reader: BlockingReader | undefined;
  #active = new Map<string, RunningTask>();
  #state: "new" | "starting" | "running" | "stopping" | "stopped" = "new";
  #loop: Promise<void> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #beating = false;
  #slotFree: (() => void) | undefined;
  #stopped: Promise<void> | undefined;
  #rotation = 0;
  #completed = 0;
  #failed = 0;

  constructor(options: ListenerOptions) {
    this.#url = checkConnectionOptions(options.url);
    this.#keys = new Keys(keyName(options.app, "app", "streamfutures"));
    const queues = options.queues ?? ["default"];
    if (!Array.isArray(queues) || queues.length === 0) {
      throw new TypeError("queues must be a non-empty array of queue names");
    }
    this.#queues = queues.map((q, i) => keyName(q, `queues[${i}]`, "default"));
    this.#streams = this.#queues.map((q) => this.#keys.queue(q));
    this.#modules = checkTaskModules(options.tasks);
    if (this.#modules.length === 0) throw new TypeError("tasks must name at least one task module");
    this.#concurrency = positiveInt(options.concurrency, "concurrency", 8);
    ({ heartbeatInterval: this.#heartbeatInterval, heartbeatTimeout: this.#heartbeatTimeout } =
      heartbeats(options.heartbeatInterval, options.heartbeatTimeout));
    this.#grace = duration(options.grace, "grace", 10_000, true);
    this.#block = positiveInt(options.block, "block", 1000);
    this.id = options.id ?? `${hostname()}:${pid()}:${Math.random().toString(36).slice(2, 8)}`;
    this.#log = options.log ?? ((line) => console.error(line));
  }

  /** The number of tasks running now. */
  get active(): number {
    return this.#active.size;
  }

  /** Counts of tasks this listener finished: `completed` (value) and `failed` (error). */
  get counts(): { completed: number; failed: number } {
    return { completed: this.#completed, failed: this.#failed };
  }

  /**
   * Loads the task modules, connects, joins the consumer groups, registers in the listener
   * registry, and starts taking work. Resolves once the listener is live.
   */
  async start(): Promise<void> {
    if (this.#state !== "new") throw new Error(`listener ${this.id} was already started`);
    this.#state = "starting";
    this.#tasks = await loadTasks(this.#modules);
    this.#cmd = await connect(this.#url, "streamfutures-worker");
    this.#reader = await connectReader(this.#url, "streamfutures-worker-read");
    for (const stream of this.#streams) await this.#ensureGroup(stream);
    await this.#beat();
    this.#timer = setInterval(() => void this.#beat(), this.#heartbeatInterval);
    this.#state = "running";
    this.#loop = this.#readLoop();
    this.#log(
      `streamfutures worker ${this.id} serving ${
        this.#queues.join(", ")
      } of app ${this.#keys.app} ` +
        `(concurrency ${this.#concurrency}, tasks: ${[...this.#tasks.byName.keys()].join(", ")})`,
    );
  }

  /**
   * Stops taking work at once, lets running tasks finish within `grace` ms, then aborts the rest
   * and records them as failed with `WorkerInterrupted: <reason>`. Leaves the registry, and
   * closes the connections. Safe to call more than once.
   */
  stop(options: { grace?: number; reason?: string } = {}): Promise<void> {
    this.#stopped ??= this.#stop(
      duration(options.grace, "grace", this.#grace, true),
      options.reason ?? "stopped",
    );
    return this.#stopped;
  }

  async #stop(grace: number, reason: string): Promise<void> {
    if (this.#state === "new") {
      this.#state = "stopped";
      return;
    }
    this.#state = "stopping";
    this.#slotFree?.();
    // End the blocking read now; entries it already received are still run.
    await this.#reader?.unblock(this.#cmd!).catch(() => {});
    await this.#loop?.catch(() => {});
    if (this.#active.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all([...this.#active.values()].map((t) => t.finished)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, grace))),
      ]);
      clearTimeout(timer);
    }
    const interrupted = [...this.#active.values()];
    if (interrupted.length > 0) {
      this.#log(
        `streamfutures worker ${this.id}: interrupting ${interrupted.length} task(s) (${reason})`,
      );
      const error = new WorkerInterrupted(reason);
      await Promise.all(interrupted.map((t) => {
        t.controller.abort(error);
        return this.#interrupt(t, error);
      }));
    }
    clearInterval(this.#timer);
    try {
      const cmd = this.#cmd!;
      await Promise.all(
        this.#queues.map((q) => cmd.sendCommand(["ZREM", this.#keys.listeners(q), this.id])),
      );
      await Promise.all(
        this.#streams.map((s) => cmd.sendCommand(["XGROUP", "DELCONSUMER", s, GROUP, this.id])),
      );
    } catch (error) {
      this.#log(
        `streamfutures worker ${this.id}: could not leave the registry: ${
          (error as Error).message
        }`,
      );
    }
    this.#reader?.close();
    this.#cmd?.close();
    this.#state = "stopped";
    this.#log(`streamfutures worker ${this.id} stopped (${reason})`);
  }

  async #ensureGroup(stream: string): Promise<void> {
    try {
      // "0": entries added before any worker existed (requireWorkers: false) are delivered too.
      await this.#cmd!.sendCommand(["XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"]);
    } catch (error) {
      if (!String((error as Error)?.message).startsWith("BUSYGROUP")) throw error;
    }
  }

  async #beat(): Promise<void> {
    if (this.#beating) return;
    this.#beating = true;
    try {
      const cmd = this.#cmd!;
      const now = heartbeatNow();
      const writes: Promise<unknown>[] = this.#queues.map((q) =>
        REGISTER.run(cmd, [this.#keys.listeners(q)], [this.id, String(this.#heartbeatTimeout * 4)])
      );
      const running = [...this.#active.values()].filter((t) => t.started);
      if (running.length > 0) {
        writes.push(HEARTBEAT.run(
          cmd,
          [
            ...running.map((t) => this.#keys.status(t.op)),
            ...running.map((t) => this.#keys.heartbeat(t.op)),
          ],
          [now, ...running.map((t) => t.taskId)],
        ));
      }
      await Promise.all(writes);
    } catch (error) {
      if (this.#state === "running") {
        this.#log(`streamfutures worker ${this.id}: heartbeat failed: ${(error as Error).message}`);
      }
    } finally {
      this.#beating = false;
    }
  }

  async #readLoop(): Promise<void> {
    const reader = this.#reader!;
    let backoff = 50;
    while (this.#state === "running") {
      const free = this.#concurrency - this.#active.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.#slotFree = resolve));
        this.#slotFree = undefined;
        continue;
      }
      // XREADGROUP's COUNT applies per stream: read at most `free` streams with COUNT
      // floor(free / streams) so one read never returns more entries than there are free slots.
      // The streams rotate so that no queue starves when slots are scarce.
      const streams = this.#streams.length <= free
        ? this.#streams
        : Array.from({ length: free }, (_, i) =>
          this.#streams[(this.#rotation + i) % this.#streams.length]);
      this.#rotation = (this.#rotation + 1) % this.#streams.length;
      const count = Math.floor(free / streams.length);
      let reply: unknown;
      try {
        reply = await reader.sendCommand([
          "XREADGROUP",
          "GROUP",
          GROUP,
          this.id,
          "COUNT",
          String(count),
          "BLOCK",
          String(this.#block),
          "STREAMS",
          ...streams,
          ...streams.map(() => ">"),
        ]);
        backoff = 50;
      } catch (error) {
        if (this.#state !== "running") break;
        const message = String((error as Error)?.message);
        if (message.startsWith("NOGROUP")) {
          for (const stream of this.#streams) await this.#ensureGroup(stream).catch(() => {});
        } else {
          this.#log(`streamfutures worker ${this.id}: read failed (${message}); retrying`);
          await new Promise((resolve) => setTimeout(resolve, backoff * (0.5 + Math.random())));
          backoff = Math.min(backoff * 2, 2000);
        }
        continue;
      }
      for (const entry of parseStreamReply(reply)) this.#start(entry);
    }
  }

  #start(entry: StreamEntry): void {
    const { fields } = entry;
    const taskId = fields.id;
    const op = fields.op;
    const reply = fields.reply;
    if (
      !taskId || !ID.test(taskId) || !op || !ID.test(op) || !reply ||
      !reply.startsWith(`${this.#keys.app}:replies:`)
    ) {
      this.#log(
        `streamfutures worker ${this.id}: dropped malformed entry ${entry.id} of ${entry.stream} ` +
          `(it lacks a valid id, op or reply field)`,
      );
      void this.#cmd!.sendCommand(["XACK", entry.stream, GROUP, entry.id])
        .then(() => this.#cmd!.sendCommand(["XDEL", entry.stream, entry.id]))
        .catch(() => {});
      return;
    }
    const controller = new AbortController();
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const task: RunningTask = { taskId, op, entry, controller, finished, started: false };
    this.#active.set(taskId, task);
    this.#run(task).catch((error) => {
      this.#log(
        `streamfutures worker ${this.id}: task ${taskId} could not be recorded: ${
          (error as Error)?.message
        }`,
      );
    }).finally(() => {
      this.#active.delete(taskId);
      done();
      this.#slotFree?.();
    });
  }

  async #run(task: RunningTask): Promise<void> {
    const { entry } = task;
    const { fields } = entry;
    const cmd = this.#cmd!;
    const keys = this.#keys;
    const claimed = await START.run(
      cmd,
      [keys.status(task.op), keys.heartbeat(task.op), fields.reply, entry.stream],
      [task.taskId, heartbeatNow(), GROUP, entry.id],
    );
    if (claimed !== 1) return; // cancelled, released, or taken already: nothing to run
    task.started = true;

    let code: string = Status.COMPLETE;
    let stored: string;
    let payload: string;
    try {
      const value = await this.#execute(fields, task);
      stored = payload = encode(value, "result");
    } catch (thrown) {
      const info = describeThrown(thrown);
      code = Status.ERROR;
      stored = formatErrorLine(info.name, info.message);
      payload = JSON.stringify(info);
    }
    if (task.controller.signal.aborted) return; // interrupted: stop() recorded the outcome
    const recorded = await this.#finish(task, code, stored, payload);
    if (recorded === 1) {
      if (code === Status.COMPLETE) this.#completed++;
      else this.#failed++;
    }
  }

  async #execute(fields: Record<string, string>, task: RunningTask): Promise<unknown> {
    if (fields.v !== PROTOCOL_VERSION) {
      throw new ProtocolError(
        `unsupported stream entry version ${
          JSON.stringify(fields.v ?? null)
        } (this worker reads version ${PROTOCOL_VERSION})`,
      );
    }
    const name = fields.fn;
    const fn = name === undefined ? undefined : this.#tasks!.byName.get(name);
    if (!fn) {
      throw new UnknownTaskError(
        `no task named ${JSON.stringify(name ?? null)} on worker ${this.id} (known: ${
          [...this.#tasks!.byName.keys()].join(", ")
        })`,
      );
    }
    let args: unknown;
    try {
      args = decode(fields.args ?? "");
    } catch (error) {
      throw new ProtocolError(
        `the arguments of task ${task.taskId} cannot be decoded: ${(error as Error)?.message}`,
        {
          cause: error,
        },
      );
    }
    if (!Array.isArray(args)) {
      throw new ProtocolError(`the arguments of task ${task.taskId} are not an array`);
    }
    const attempt = Number(fields.attempt) || 1;
    return await runInTask(
      { taskId: task.taskId, operationId: task.op, attempt, signal: task.controller.signal },
      () => fn(...args),
    );
  }

  async #interrupt(task: RunningTask, error: WorkerInterrupted): Promise<void> {
    // The task is abandoned: record it as failed (unless it finished meanwhile), tell its client,
    // and acknowledge its entry, exactly as if it had thrown.
    try {
      await this.#finish(
        task,
        Status.ERROR,
        formatErrorLine(error.name, error.message),
        JSON.stringify({
          name: error.name,
          message: error.message,
        }),
      );
    } catch (e) {
      this.#log(
        `streamfutures worker ${this.id}: could not record interruption of ${task.taskId}: ${
          (e as Error).message
        }`,
      );
    }
  }

  #finish(task: RunningTask, code: string, stored: string, payload: string): Promise<unknown> {
    const keys = this.#keys;
    return FINISH.run(
      this.#cmd!,
      [keys.status(task.op), keys.results(task.op), task.entry.fields.reply, task.entry.stream],
      [task.taskId, code, stored, payload, GROUP, task.entry.id],
    );
  }
}
