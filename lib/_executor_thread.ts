/**
 * Entry module of an executor thread or process: where a worker's tasks run, so that a busy task
 * never stalls the worker's heartbeats, reads and signal handling, and a task that will not stop
 * can be ended by terminating the thread. What it does, and its messages: {@link ./_executor_core.ts}.
 *
 * @module
 */

import { serveExecutor } from "./_executor_core.ts";
import { onUncaught, threadPort } from "./_runtime.ts";

const port = await threadPort();
await serveExecutor(port, true);
// Installed once the modules loaded (a module that fails to load ends the thread); no task
// message can arrive before it is.
onUncaught((error) => {
  port.post({
    t: "log",
    line: `an error escaped a task and was ignored: ${(error as Error)?.stack ?? String(error)}`,
  });
});
