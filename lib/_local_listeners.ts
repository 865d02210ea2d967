/**
 * A pool's local listeners (`workers: N`): listener threads of the pool's process, started and
 * stopped with it.
 *
 * @module
 */

import type { ListenerOptions } from "./listener.ts";
import { startThread, type ThreadHandle } from "./_runtime.ts";

/** Local listener threads that can be stopped gracefully. */
export interface LocalListeners {
  /** Stops every listener (as on SIGTERM: running tasks finish or are interrupted). */
  stop(): Promise<void>;
}

/** Starts `count` listener threads with `options`; resolves once all are live. */
export async function startLocalListeners(
  count: number,
  options: ListenerOptions,
): Promise<LocalListeners> {
  const threads: ThreadHandle[] = [];
  const starts: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    starts.push((async () => {
      const thread = await startThread(new URL("./_listener_thread.ts", import.meta.url), options);
      threads.push(thread);
      await new Promise<void>((resolve, reject) => {
        thread.onError(reject);
        thread.onMessage((message) => {
          const m = message as { type: string; error?: string };
          if (m.type === "ready") resolve();
          else if (m.type === "error") {
            reject(new Error(`a local listener failed to start: ${m.error}`));
          }
        });
      });
    })());
  }
  const stop = () =>
    Promise.all(
      threads.splice(0).map(async (thread) => {
        const stopped = new Promise<void>((resolve) => {
          thread.onMessage((message) => {
            if ((message as { type: string }).type === "stopped") resolve();
          });
          thread.onError(() => resolve());
        });
        thread.post({ type: "stop" });
        await stopped;
        await thread.terminate();
      }),
    ).then(() => {});
  try {
    await Promise.all(starts);
  } catch (error) {
    await Promise.all(threads.splice(0).map((t) => t.terminate().catch(() => {})));
    throw error;
  }
  return { stop };
}
