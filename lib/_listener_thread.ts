/**
 * Entry module of a pool's local listener thread: runs a {@link Listener} with the options the
 * pool sent, reports "ready" once it is live, and stops gracefully when asked.
 *
 * @module
 */

import { Listener, type ListenerOptions } from "./listener.ts";
import { threadPort } from "./_runtime.ts";

const port = await threadPort();
let listener: Listener | undefined;
try {
  listener = new Listener({ ...(port.data as ListenerOptions), log: () => {} });
  await listener.start();
  port.post({ type: "ready" });
} catch (error) {
  port.post({ type: "error", error: String((error as Error)?.stack ?? error) });
}
port.onMessage(async (message) => {
  if ((message as { type?: string })?.type !== "stop") return;
  await listener?.stop({ reason: "pool shutdown" }).catch(() => {});
  port.post({ type: "stopped" });
  port.close();
});
