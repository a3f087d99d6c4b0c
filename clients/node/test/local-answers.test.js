// Answers driven exactly, from a small local HTTP server: 429 with Retry-After at given attempts
// (the real service's 429 is in answers-live.test.js), a request that never gets an answer (the
// client's timeout), and how many batches are in flight at once.

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "log-pipeline-client";
import { numbered, waitFor } from "./support/records.js";

/**
 * A stand-in for `POST /logs`: `answer(request, body, n)` decides each answer (n counts requests
 * from 0), at once or later; undefined leaves the request unanswered.
 * @typedef {{ status: number, headers?: object, body?: object } | undefined} Reply
 * @param {(request: import("node:http").IncomingMessage, body: Buffer, n: number) => Reply | Promise<Reply>} answer
 */
async function localService(answer) {
  /** @type {{ key: string | undefined, body: Buffer, atMs: number }[]} */
  const requests = [];
  let active = 0;
  let maxActive = 0;
  const server = createServer(async (request, response) => {
    active++;
    maxActive = Math.max(maxActive, active);
    response.on("close", () => active--);
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const n = requests.length;
    requests.push({ key: /** @type {string | undefined} */ (request.headers["idempotency-key"]), body, atMs: Date.now() });
    const reply = await answer(request, body, n);
    if (reply === undefined) return;
    response.writeHead(reply.status, { "content-type": "application/json", ...reply.headers });
    response.end(JSON.stringify(reply.body ?? {}));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    get maxActive() {
      return maxActive;
    },
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

const accepted = (body) => ({ status: 202, body: { accepted: body.toString().split("\n").length - 1 } });

test("429 with Retry-After: the batch waits as told, then is sent again with the same key and body", async (t) => {
  const service = await localService((_request, body, n) =>
    n < 2 ? { status: 429, headers: { "retry-after": "1" }, body: { error: "rate_limited", message: "site over its limit" } } : accepted(body),
  );
  t.after(() => service.close());
  const client = createClient({ url: service.url, baseBackoffMs: 1, maxBackoffMs: 5000 });
  const retries = [];
  client.on("retry", (event) => retries.push(event));
  for (const record of numbered("limited", 50)) client.log(record);
  const stats = await client.close({ timeoutMs: 10_000 });

  assert.equal(service.requests.length, 3);
  assert.equal(new Set(service.requests.map((r) => r.key)).size, 1, "one Idempotency-Key for every attempt");
  assert.match(String(service.requests[0].key), /^[0-9a-f-]{36}$/);
  assert.ok(service.requests.every((r) => r.body.equals(service.requests[0].body)), "the same body every time");
  for (let i = 1; i < 3; i++) {
    const gap = service.requests[i].atMs - service.requests[i - 1].atMs;
    assert.ok(gap >= 990, `attempt ${i + 1} came ${gap} ms after the previous one (Retry-After: 1)`);
  }
  assert.deepEqual(retries.map((r) => [r.status, r.delayMs >= 1000]), [[429, true], [429, true]]);
  assert.deepEqual({ stored: stats.stored, retried: stats.retried, dropped: stats.dropped }, { stored: 50, retried: 2, dropped: 0 });
});


test("an answer that never comes: the attempt times out and is retried with the same key", async (t) => {
  const service = await localService((_request, body, n) => (n === 0 ? undefined : accepted(body)));
  t.after(() => service.close());
  const client = createClient({ url: service.url, requestTimeoutMs: 300, baseBackoffMs: 1 });
  const retries = [];
  client.on("retry", (event) => retries.push(event));
  for (const record of numbered("timeout", 10)) client.log(record);
  const stats = await client.close({ timeoutMs: 10_000 });

  assert.deepEqual(retries.map((r) => [r.status, r.error]), [[undefined, "request timed out"]]);
  assert.equal(service.requests.length, 2);
  assert.equal(service.requests[0].key, service.requests[1].key);
  assert.equal(stats.stored, 10);
});

test("at most maxInFlight batches are in flight at once, and the rest wait their turn", async (t) => {
  // Each answer takes 30 ms, so that the client has every reason to send more at once.
  const service = await localService(async (_request, body) => {
    await sleep(30);
    return accepted(body);
  });
  t.after(() => service.close());
  const client = createClient({ url: service.url, maxInFlight: 3, maxBatchRecords: 10 });
  for (const record of numbered("inflight", 400)) client.log(record);
  await waitFor(() => client.stats().inFlight > 0, "a request in flight");
  assert.ok(client.stats().inFlight <= 3);
  const stats = await client.close({ timeoutMs: 10_000 });
  assert.equal(stats.stored, 400);
  assert.equal(service.requests.length, 40);
  assert.ok(service.maxActive === 3, `3 at once, no more (saw ${service.maxActive})`);
});

test("close() gives up at its deadline: queued records are counted as dropped, never left pending", async (t) => {
  const service = await localService(() => ({ status: 503, headers: { "retry-after": "1" }, body: { error: "overloaded" } }));
  t.after(() => service.close());
  const client = createClient({ url: service.url, maxBatchRecords: 10, maxInFlight: 1 });
  const dropped = [];
  client.on("dropped", (event) => dropped.push(event));
  for (const record of numbered("deadline", 100)) client.log(record);
  const started = Date.now();
  const stats = await client.close({ timeoutMs: 500 });
  const took = Date.now() - started;

  assert.ok(took >= 490 && took < 2000, `close() took ${took} ms for a 500 ms deadline`);
  assert.deepEqual({ stored: stats.stored, buffered: stats.buffered, dropped: stats.dropped }, { stored: 0, buffered: 0, dropped: 100 });
  assert.equal(dropped.reduce((sum, event) => sum + event.count, 0), 100);
  assert.equal(client.log(numbered("after", 1)[0]), false, "a closed client takes no more records");
});
