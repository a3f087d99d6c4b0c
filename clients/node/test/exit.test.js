// flushOnExit: the buffer is delivered when the host's process ends on its own (beforeExit) or is
// sent SIGTERM, which then still ends it. Without it, a process that ends loses its buffer.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { Service } from "./support/service.js";
import { assertStoredOnce, numbered } from "./support/records.js";

const HOST = fileURLToPath(new URL("./support/exit-host.js", import.meta.url));

/** Runs the exit host; for "sigterm", signals it once it has logged. Resolves with how it ended. */
async function runHost(url, mode, count, flushOnExit) {
  const child = spawn("node", [HOST, url, mode, String(count), String(flushOnExit)], { stdio: ["ignore", "pipe", "inherit"] });
  if (mode === "sigterm") {
    child.stdout.setEncoding("utf8");
    await once(child.stdout, "data");
    child.kill("SIGTERM");
  }
  const [code, signal] = await once(child, "exit");
  return { code, signal };
}

test("flushOnExit: the buffer is delivered on beforeExit and on SIGTERM, and SIGTERM still ends the process", async (t) => {
  const service = await Service.start();
  t.after(() => service.stop());
  assert.deepEqual(await runHost(service.url, "beforeexit", 300, true), { code: 0, signal: null });
  assert.deepEqual(await runHost(service.url, "sigterm", 200, true), { code: null, signal: "SIGTERM" });
  assertStoredOnce(service, [...numbered("beforeexit", 300), ...numbered("sigterm", 200)]);
});

test("without flushOnExit, records still in the buffer when the process ends are lost (the documented limit)", async (t) => {
  const service = await Service.start();
  t.after(() => service.stop());
  assert.deepEqual(await runHost(service.url, "beforeexit", 300, false), { code: 0, signal: null });
  assert.deepEqual(service.storedLines(), []);
});
