// `npm run bench` / `make bench-client`: what the client costs a website and what it delivers,
// against the real service (LOG_PIPELINE_BIN, as the tests):
//   1. the middleware's cost per request, in process (ns per call, the client delivering meanwhile);
//   2. a node:http host's latency under `hey -c 50` without and with the middleware (p50, p99, req/s);
//   3. the records per second the client sustains into the service (stored, counted by the client
//      and checked against the hour files).
// BENCH_SECONDS (default 10) is the length of each hey run and of the throughput run; ROUNDS
// (default 2) how many times each hey run is made, alternating.

import { spawn, execFileSync } from "node:child_process";
import { once } from "node:events";
import { performance } from "node:perf_hooks";
import { setImmediate as yieldToLoop, setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { createClient } from "log-pipeline-client";
import { Service } from "../test/support/service.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const HEY = process.env.HEY ?? "hey";
const HOST = fileURLToPath(new URL("./host.js", import.meta.url));
const REQUEST = { url: "/products/12345?ref=newsletter&utm_source=mail", headers: { "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36" } };

const service = await Service.start();
try {
  console.log(`log-pipeline-client benchmark: node ${process.version}, ${SECONDS} s runs, service ${service.url}`);
  await middlewareCost();
  await hostLatency();
  await throughput();
} finally {
  await service.stop();
}

/**
 * ns per middleware call, timed in chunks of 1,000 calls; between chunks the event loop runs, and
 * waits while the buffer is over 50,000 records, so that every call is a record taken (a full
 * buffer's drop would be cheaper) and delivery runs as it would in a host.
 */
async function middlewareCost() {
  const client = createClient({ url: service.url });
  const middleware = client.express();
  const next = () => {};
  const CHUNK = 1000;
  const CALLS = 300_000;
  let busyNs = 0;
  for (let calls = 0; calls < CALLS; calls += CHUNK) {
    while (client.stats().buffered > 50_000) await sleep(1);
    const start = process.hrtime.bigint();
    for (let i = 0; i < CHUNK; i++) middleware(REQUEST, undefined, next);
    busyNs += Number(process.hrtime.bigint() - start);
    await yieldToLoop();
  }
  const stats = await client.close({ timeoutMs: 30_000 });
  console.log(`1. middleware: ${(busyNs / CALLS).toFixed(0)} ns per request (${CALLS} calls; stored ${stats.stored}, dropped ${stats.dropped})`);
}

/**
 * hey against a host without and with the middleware, alternating, ROUNDS times each: on a shared
 * machine the load drifts, and alternating shows how much.
 */
async function hostLatency() {
  const rounds = Number(process.env.ROUNDS ?? 2);
  for (const withClient of Array.from({ length: rounds * 2 }, (_, i) => i % 2 === 1)) {
    const host = spawn("node", [HOST, withClient ? service.url : "none"], { stdio: ["ignore", "pipe", "inherit"] });
    host.stdout.setEncoding("utf8");
    const [line] = await once(host.stdout, "data");
    const port = Number(line.trim());
    execFileSync(HEY, ["-z", "2s", "-c", "50", `http://127.0.0.1:${port}${REQUEST.url}`], { stdio: "ignore" });
    const out = execFileSync(HEY, ["-z", `${SECONDS}s`, "-c", "50", "-H", `User-Agent: ${REQUEST.headers["user-agent"]}`, `http://127.0.0.1:${port}${REQUEST.url}`], { encoding: "utf8" });
    const closed = new Promise((resolve) => host.stdout.on("data", (text) => resolve(text.trim())));
    host.kill("SIGTERM");
    const hostStats = JSON.parse(/** @type {string} */ (await closed));
    const p = (pct) => Number(new RegExp(`${pct}% in ([0-9.]+) secs`).exec(out)?.[1]) * 1000;
    const rps = Number(/Requests\/sec:\s+([0-9.]+)/.exec(out)?.[1]);
    console.log(
      `2. host ${withClient ? "with" : "without"} the middleware: p50 ${p(50).toFixed(2)} ms, p99 ${p(99).toFixed(2)} ms, ${rps.toFixed(0)} req/s` +
        (hostStats ? ` (records logged ${hostStats.logged}, stored ${hostStats.stored}, dropped ${hostStats.dropped})` : ""),
    );
  }
}

/** Records/s stored, the client kept busy: it logs while its buffer is less than half full. */
async function throughput() {
  const client = createClient({ url: service.url });
  const linesBefore = service.storedLines().length;
  let n = 0;
  const warmUntil = performance.now() + 2000;
  let from;
  const until = warmUntil + SECONDS * 1000;
  while (performance.now() < until) {
    if (from === undefined && performance.now() >= warmUntil) from = { at: performance.now(), stored: client.stats().stored };
    while (client.stats().buffered < 50_000) {
      client.log({ timestamp: Date.now(), path: `/products/${n++}`, userAgent: REQUEST.headers["user-agent"] });
    }
    await sleep(1);
  }
  const to = { at: performance.now(), stored: client.stats().stored };
  const stats = await client.close({ timeoutMs: 60_000 });
  const lines = service.storedLines().length - linesBefore;
  const perSecond = ((to.stored - /** @type {{ stored: number }} */ (from).stored) * 1000) / (to.at - /** @type {{ at: number }} */ (from).at);
  console.log(
    `3. sustained: ${perSecond.toFixed(0)} records/s stored over ${SECONDS} s (after 2 s warm-up); ` +
      `in all ${stats.stored} stored in ${stats.requests} requests, ${lines} lines in the hour files, dropped ${stats.dropped}`,
  );
}
