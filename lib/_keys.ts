/**
 * Every Redis key name streamfutures uses is built here, and only here. docs/protocol.md
 * describes each one.
 *
 * @module
 */

/** The consumer group every worker of a queue joins. */
export const GROUP = "workers";

/** The version of the stream entry format written by this library. */
export const PROTOCOL_VERSION = "1";

/** Status codes of the seed's `<app>:<op>:status` hash. */
export const Status = {
  NOT_STARTED: "0",
  RUNNING: "1",
  COMPLETE: "2",
  ERROR: "3",
  CANCELLED: "4",
} as const;

/** A status code as stored in Redis. */
export type StatusCode = typeof Status[keyof typeof Status];

/** Key names of one application (`<app>` prefix). */
export class Keys {
  /** The application prefix. */
  readonly app: string;

  constructor(app: string) {
    this.app = app;
  }

  /** `<app>:<op>:status` — hash `{taskId: status code}`. */
  status(op: string): string {
    return `${this.app}:${op}:status`;
  }

  /** `<app>:<op>:heartbeat` — hash `{taskId: epoch seconds}`. */
  heartbeat(op: string): string {
    return `${this.app}:${op}:heartbeat`;
  }

  /** `<app>:<op>:results` — hash `{taskId: "" | JSON | "<Name>: <message>"}`. */
  results(op: string): string {
    return `${this.app}:${op}:results`;
  }

  /** `<app>:queue:<queue>` — the task stream of a queue (consumer group {@link GROUP}). */
  queue(queue: string): string {
    return `${this.app}:queue:${queue}`;
  }

  /** `<app>:listeners:<queue>` — sorted set `{workerId: last heartbeat, ms (Redis TIME)}`. */
  listeners(queue: string): string {
    return `${this.app}:listeners:${queue}`;
  }

  /** `<app>:replies:<clientId>` — the stream a client reads completions from. */
  replies(clientId: string): string {
    return `${this.app}:replies:${clientId}`;
  }
}
