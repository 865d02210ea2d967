/**
 * What a future settles with, from what Redis holds: a reply notice's payload, or a task's
 * status and results-hash value (for futures attached after the task finished).
 *
 * @module
 */

import { decode } from "./codec.ts";
import {
  CancelledError,
  DependencyError,
  ProtocolError,
  RemoteTaskError,
  TaskNotFoundError,
  TaskTimeoutError,
  WorkerLostError,
} from "./errors.ts";
import type { FutureControl } from "./future.ts";

interface ErrorInfo {
  name?: unknown;
  message?: unknown;
  stack?: unknown;
  detail?: unknown;
  attempts?: unknown;
  parent?: { id?: unknown; status?: unknown; error?: unknown };
}

/**
 * How deep {@link errorFromInfo} rebuilds the causes of a `DependencyError`. The scripts write a
 * chain of at most three errors (the child's, the parent's summed up as the failure at the root of
 * the graph, the root's own; see `dependency_error` in `_lua/_common.ts`); lines written
 * otherwise (an older version's, which nested one level per task) stop here: deeper levels stay
 * text in the message, so rebuilding an error never costs one parse per level of the graph.
 */
const MAX_CAUSE_DEPTH = 3;

/**
 * The error a future rejects with, from `{name, message, stack?, attempts?, parent?}`: the
 * library's own verdicts (lost worker, timeout, failed parent) as their classes, anything the
 * task threw as a `RemoteTaskError`; all with `attempts`. `depth`: how many errors up the cause
 * chain this one is.
 */
function errorFromInfo(info: ErrorInfo, depth = 0): Error {
  const name = String(info.name ?? "Error");
  const message = String(info.message ?? "");
  const attempts = Number(info.attempts) >= 0 ? Number(info.attempts) : 1;
  switch (name) {
    case "WorkerLostError":
      return new WorkerLostError(message, { attempts });
    case "TaskTimeoutError":
      return new TaskTimeoutError(message, { attempts });
    case "CancelledError":
      return new CancelledError(message);
    case "TaskNotFoundError":
      return new TaskNotFoundError(message);
    case "DependencyError": {
      // From a notice ({parent: {id, status, error}}), or parsed back from the results line
      // "parent task <id> failed: <line>" / "parent task <id> was cancelled: <line>". A parent
      // that failed with a DependencyError itself is named by the failure at the root of the
      // graph, "DependencyError: root task <id> failed: <line>": the cause is then a
      // DependencyError with that message (no parentId: its parent is not named), whose cause is
      // the root's error.
      let parent = info.parent;
      let isParent = true;
      if (!parent && depth < MAX_CAUSE_DEPTH) {
        const match = /^(parent|root) task (\S+) (failed|was cancelled): (.*)$/s.exec(message);
        if (match) {
          isParent = match[1] === "parent";
          parent = { id: match[2], status: match[3] === "failed" ? "3" : "4", error: match[4] };
        }
      }
      const line = String(parent?.error ?? "");
      const cause = parent === undefined || depth >= MAX_CAUSE_DEPTH
        ? undefined
        : String(parent.status) === "4"
        ? new CancelledError(line.replace(/^CancelledError: /, ""))
        : errorFromLine(line, depth + 1);
      return new DependencyError(message, {
        cause,
        parentId: parent?.id === undefined || !isParent ? undefined : String(parent.id),
      });
    }
  }
  return new RemoteTaskError({
    name,
    message,
    stack: typeof info.stack === "string" ? info.stack : undefined,
    detail: typeof info.detail === "string" ? info.detail : undefined,
  }, { attempts });
}

/** The error of a reply notice's payload (JSON `{name, message, ...}`). */
export function errorFromPayload(id: string, payload: string | undefined): Error {
  try {
    return errorFromInfo(JSON.parse(payload ?? "") as ErrorInfo);
  } catch (error) {
    return new ProtocolError(`the error of task ${id} cannot be decoded`, { cause: error });
  }
}

/**
 * The error of a results-hash line `"<ErrorName>: <message>"` (`depth`: see
 * {@link errorFromInfo}).
 */
export function errorFromLine(line: string, depth = 0): Error {
  const colon = line.indexOf(": ");
  return errorFromInfo(
    colon === -1
      ? { name: "Error", message: line }
      : { name: line.slice(0, colon), message: line.slice(colon + 2) },
    depth,
  );
}

/** Settles a future from a final status and the results-hash value. */
export function settleStored(
  control: FutureControl,
  id: string,
  status: string,
  stored: string,
): void {
  if (status === "2") {
    try {
      control.resolve(decode(stored));
    } catch (error) {
      control.reject(
        new ProtocolError(`the result of task ${id} cannot be decoded`, { cause: error }),
      );
    }
  } else if (status === "3") {
    control.reject(errorFromLine(stored));
  } else if (status === "4") {
    control.cancel(new CancelledError(stored.replace(/^CancelledError: /, "") || undefined));
  } else {
    control.reject(
      new ProtocolError(
        `task ${id} has the status ${JSON.stringify(status)} in Redis, which is none this ` +
          'library writes ("0" to "4"): something else wrote it',
      ),
    );
  }
}
