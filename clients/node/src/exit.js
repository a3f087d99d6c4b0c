// Delivering the buffer when the host's process ends, if the host asked (`flushOnExit`): on
// `beforeExit` (the event loop ran out of work) and on SIGTERM. A SIGTERM handler replaces Node's
// default of dying at once, so once the buffer is delivered (or `closeTimeoutMs` has passed) the
// signal is raised again for that default, unless the host has SIGTERM handlers of its own: then
// the host decides when to exit.

/**
 * @param {{ close(): Promise<unknown> }} client
 * @returns {{ remove(): void }}
 */
export function installExitHooks(client) {
  const onBeforeExit = () => {
    void client.close();
  };
  const onSigterm = () => {
    void client.close().finally(() => {
      if (process.listenerCount("SIGTERM") === 0) process.kill(process.pid, "SIGTERM");
    });
  };
  process.on("beforeExit", onBeforeExit);
  process.on("SIGTERM", onSigterm);
  return {
    remove() {
      process.off("beforeExit", onBeforeExit);
      process.off("SIGTERM", onSigterm);
    },
  };
}
