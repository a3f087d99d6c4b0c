// Starts test/support/host.js as a child process and collects what it reports.

import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { waitFor } from "./records.js";

const HOST = fileURLToPath(new URL("./host.js", import.meta.url));

/**
 * @typedef {{ kind: string, offered: number, accepted: number, stats: import("log-pipeline-client").ClientStats,
 *   heapUsed: number, arrayBuffers: number, rss: number, atMs: number }} HostSample
 */

/**
 * @param {{ url: string, options: object, perTick: number, tickMs: number, pathBytes?: number }} config
 */
export function startHost(config) {
  const child = fork(HOST, { env: { ...process.env, HOST_CONFIG: JSON.stringify(config) }, execArgv: ["--expose-gc"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  /** @type {HostSample[]} */
  const samples = [];
  child.on("message", (message) => samples.push({ .../** @type {HostSample} */ (message), atMs: Date.now() }));
  return {
    samples,
    /** The latest sample (waits for the first). */
    async latest() {
      await waitFor(() => samples.length > 0, "the host's first sample");
      return samples[samples.length - 1];
    },
    /** Waits for a sample taken after now that satisfies `condition`. */
    async until(/** @type {(sample: HostSample) => boolean} */ condition, /** @type {string} */ what, timeoutMs = 20_000) {
      const from = samples.length;
      await waitFor(() => samples.slice(from).some(condition), what, timeoutMs);
      return /** @type {HostSample} */ (samples.slice(from).find(condition));
    },
    /** Closes the host's client and returns its last report. */
    async close() {
      child.send("close");
      await waitFor(() => samples.some((sample) => sample.kind === "closed"), "the host to close its client", 40_000);
      return /** @type {HostSample} */ (samples.find((sample) => sample.kind === "closed"));
    },
    kill() {
      child.kill("SIGKILL");
    },
  };
}
