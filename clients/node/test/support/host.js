// A website's process for the tests that watch a host from outside: it logs numbered records at a
// steady rate through the client and reports its counters and memory (heap after a full GC, array
// buffers, RSS) to its parent over IPC. Started with --expose-gc by `startHost`.
//
// Parent -> host: "close" (close the client, report, exit). Host -> parent: { kind: "sample" | "closed", ... }.

import { createClient } from "log-pipeline-client";
import { numbered } from "./records.js";

const { url, options, perTick, tickMs, pathBytes } = JSON.parse(process.env.HOST_CONFIG ?? "{}");
const client = createClient({ url, ...options });
let next = 0;
let accepted = 0;

const logger = setInterval(() => {
  for (const record of numbered("host", perTick, { from: next, pathBytes })) if (client.log(record)) accepted++;
  next += perTick;
}, tickMs);

function sample(kind) {
  /** @type {any} */ (globalThis).gc();
  const memory = process.memoryUsage();
  process.send?.({ kind, offered: next, accepted, stats: client.stats(), heapUsed: memory.heapUsed, arrayBuffers: memory.arrayBuffers, rss: memory.rss });
}
const sampler = setInterval(() => sample("sample"), 250);

process.on("message", async (message) => {
  if (message !== "close") return;
  clearInterval(logger);
  clearInterval(sampler);
  await client.close({ timeoutMs: 30_000 });
  sample("closed");
  process.disconnect();
});
