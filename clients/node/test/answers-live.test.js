// The service's refusals, from the real service: 503 under tiny in-flight limits (retried, stored
// once), 413 (split until the halves fit), a wrong key (reported once, never retried) and
// records the service finds invalid (reported with its field-level errors, the rest stored).

import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "log-pipeline-client";
import { Service } from "./support/service.js";
import { assertStoredOnce, numbered, waitFor } from "./support/records.js";
import { connect } from "node:net";
import { once } from "node:events";

test("503 overloaded under tiny in-flight limits: batches are retried and stored exactly once", async (t) => {
  // Room for 100 KB of bodies in flight; another client's upload holds 45 KB of it (a body and its
  // batch are held at once while it is decoded, so no body over half the budget is ever taken: the
  // service answers those 413). The client's 40 KB batches are read, but with their decoded batch
  // need more than is free: 503 until the upload ends.
  const service = await Service.start({ server: { maxInflightBytes: 100_000 } });
  t.after(() => service.stop());
  const hog = await slowUpload(service.port, 45_000);
  const client = createClient({ url: service.url, gzipAboveBytes: Infinity, maxBatchRecords: 200, maxInFlight: 4, baseBackoffMs: 10, maxBackoffMs: 200 });
  const statuses = [];
  client.on("retry", (event) => statuses.push(event.status));
  const records = numbered("overloaded", 4000, { pathBytes: 150 });
  for (const record of records) assert.equal(client.log(record), true);
  await waitFor(() => statuses.length >= 8, "eight 503s");
  assert.equal(client.stats().stored, 0, "nothing stored while the budget is held");
  hog.destroy();
  const stats = await client.close({ timeoutMs: 60_000 });

  assertStoredOnce(service, records);
  assert.deepEqual([...new Set(statuses)], [503]);
  const refusedByService = await service.metric("ingest_inflight_rejections_total");
  assert.equal(refusedByService, statuses.length, "every 503 the service counted was retried");
  assert.deepEqual({ stored: stats.stored, dropped: stats.dropped, buffered: stats.buffered }, { stored: records.length, dropped: 0, buffered: 0 });
  assert.equal(stats.retried, statuses.length, "one request per retry event");
});

test("429 from the real service: a site over its rate waits as Retry-After says and every record is stored once, under its site", async (t) => {
  // The site may send 200 records a second, 400 at once; the client offers 1,500 at once.
  const sites = "sites:\n- id: shop\n  ingestKeys: [shop-ingest]\n  limits: {recordsPerSecond: 200, burst: 400}\n";
  const service = await Service.start({}, { sites, site: "shop" });
  t.after(() => service.stop());
  const client = createClient({ url: service.url, key: "shop-ingest", gzipAboveBytes: Infinity, maxBatchRecords: 100, baseBackoffMs: 10, maxBackoffMs: 5000 });
  const retries = [];
  client.on("retry", (event) => retries.push(event));
  const records = numbered("rate-limited", 1500);
  const started = Date.now();
  for (const record of records) assert.equal(client.log(record), true);
  const stats = await client.close({ timeoutMs: 60_000 });
  const tookMs = Date.now() - started;

  assertStoredOnce(service, records);
  assert.ok(retries.length > 0, "the service refused some batches");
  assert.deepEqual([...new Set(retries.map((r) => r.status))], [429]);
  assert.ok(retries.every((r) => r.delayMs >= 1000), "each waited the whole seconds Retry-After said");
  const refused = await service.metric("site_batches_refused_total", { site: "shop", reason: "rate_limited" });
  assert.equal(refused, retries.length, "every 429 the service counted was retried");
  // 1,100 records beyond the burst at 200 a second take at least 5.5 s.
  assert.ok(tookMs >= 5000, `all stored after ${tookMs} ms: faster than the site's rate allows`);
  assert.deepEqual({ stored: stats.stored, dropped: stats.dropped, buffered: stats.buffered }, { stored: records.length, dropped: 0, buffered: 0 });
});

test("413 over_burst from the real service: a batch larger than its site's burst is split until it fits", async (t) => {
  const sites = "sites:\n- id: shop\n  ingestKeys: [shop-ingest]\n  limits: {recordsPerSecond: 1000000, burst: 40}\n";
  const service = await Service.start({}, { sites, site: "shop" });
  t.after(() => service.stop());
  const client = createClient({ url: service.url, key: "shop-ingest", maxBatchRecords: 100 });
  const records = numbered("over-burst", 300);
  for (const record of records) assert.equal(client.log(record), true);
  const stats = await client.close({ timeoutMs: 30_000 });

  assertStoredOnce(service, records);
  const refused = await service.metric("site_batches_refused_total", { site: "shop", reason: "over_burst" });
  assert.ok(refused >= 3, `${refused} batches over the burst: each 100-record batch was`);
  assert.deepEqual({ stored: stats.stored, dropped: stats.dropped }, { stored: records.length, dropped: 0 });
});

/**
 * A POST /logs whose body stops after `bytes` bytes of a longer Content-Length (that still fits the
 * budget, or it would be refused before it is read): it holds that much
 * of the service's in-flight budget until the socket is destroyed.
 * @param {number} port
 * @param {number} bytes
 */
async function slowUpload(port, bytes) {
  const socket = connect(port, "127.0.0.1");
  await once(socket, "connect");
  socket.write(`POST /logs HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/x-ndjson\r\ncontent-length: ${bytes + 4_000}\r\n\r\n`);
  socket.write(Buffer.alloc(bytes, " "));
  socket.on("error", () => {});
  // The service has taken the bytes once the kernel's send buffer is drained to it.
  await waitFor(() => socket.writableLength === 0, "the upload's bytes to leave");
  return socket;
}

for (const [limit, config] of [
  ["too_many_records", { ingestion: { maxRecords: 100 } }],
  ["body_too_large", { server: { maxBodyBytes: 20_000 } }],
  ["too_many_hours", { ingestion: { maxHoursPerBatch: 2 } }],
]) {
  test(`413 ${limit}: the batch is split until the halves fit, every record stored once`, async (t) => {
    const service = await Service.start(config);
    t.after(() => service.stop());
    const client = createClient({ url: service.url, maxBatchRecords: 800, gzipAboveBytes: 0 });
    const refusals = [];
    client.on("rejected", (event) => refusals.push(event));
    // Records an hour apart for too_many_hours; gzip on: the limit counts decompressed bytes.
    const records = numbered(limit, 800, { pathBytes: 100 }).map((record, i) =>
      limit === "too_many_hours" ? { ...record, timestamp: Number(record.timestamp) + (i % 8) * 3_600_000 } : record,
    );
    for (const record of records) client.log(record);
    const stats = await client.close({ timeoutMs: 30_000 });

    assertStoredOnce(service, records);
    assert.deepEqual(refusals, []);
    assert.ok(stats.splits >= 3, `${stats.splits} splits`);
    assert.equal(stats.requests, 1 + 2 * stats.splits, "each split sends two halves in place of one batch");
    assert.equal(stats.dropped, 0);
  });
}

test("a wrong key is reported once with the service's answer and never retried", async (t) => {
  const service = await Service.start({ auth: { tokens: ["right-key"] } });
  t.after(() => service.stop());
  const client = createClient({ url: service.url, key: "wrong-key", maxBatchRecords: 1000 });
  const refusals = [];
  const retries = [];
  client.on("rejected", (event) => refusals.push(event));
  client.on("retry", (event) => retries.push(event));
  for (const record of numbered("unauthorized", 300)) client.log(record);
  const stats = await client.close({ timeoutMs: 10_000 });

  assert.equal(refusals.length, 1);
  assert.equal(refusals[0].status, 401);
  assert.equal(/** @type {{ error: string }} */ (refusals[0].error).error, "unauthorized");
  assert.equal(refusals[0].records.length, 300);
  assert.deepEqual(retries, []);
  assert.deepEqual({ requests: stats.requests, rejected: stats.droppedBy.rejected, stored: stats.stored }, { requests: 1, rejected: 300, stored: 0 });
  assert.deepEqual(service.storedLines(), []);

  const right = createClient({ url: service.url, key: "right-key" });
  const records = numbered("authorized", 10);
  for (const record of records) right.log(record);
  assert.equal((await right.close()).stored, 10, "the right key is taken");
  assertStoredOnce(service, records);
});

test("records the service finds invalid are reported with its field-level errors, never resent; the rest are stored", async (t) => {
  // The service takes shorter fields than the client was told: the client cannot refuse them first.
  const service = await Service.start({ ingestion: { maxFieldBytes: 40 } });
  t.after(() => service.stop());
  const client = createClient({ url: service.url, maxBatchRecords: 100 });
  const refusals = [];
  client.on("rejected", (event) => refusals.push(event));
  const records = numbered("fields", 100);
  const long = new Set([3, 50, 99]);
  const sent = records.map((record, i) => (long.has(i) ? { ...record, path: `${record.path}/${"x".repeat(60)}` } : record));
  for (const record of sent) client.log(record);
  const stats = await client.close({ timeoutMs: 10_000 });

  assert.equal(refusals.length, 1);
  const [refusal] = refusals;
  assert.equal(refusal.status, 400);
  assert.equal(/** @type {{ error: string }} */ (refusal.error).error, "invalid_records");
  assert.deepEqual(
    refusal.invalid?.map(({ index, record, errors }) => ({ index, path: record.path, fields: errors.map((e) => e.field) })),
    [...long].map((i) => ({ index: i, path: sent[i].path, fields: ["path"] })),
  );
  for (const entry of refusal.invalid ?? []) assert.match(entry.errors[0].reason, /40/, "the service's reason names its limit");
  assertStoredOnce(service, records.filter((_, i) => !long.has(i)));
  assert.deepEqual(
    { requests: stats.requests, stored: stats.stored, rejected: stats.droppedBy.rejected, retried: stats.retried },
    { requests: 2, stored: 97, rejected: 3, retried: 1 },
  );
});

test("more invalid records than the service lists (100): each answer's are reported, the valid ones stored", async (t) => {
  const service = await Service.start({ ingestion: { maxFieldBytes: 40 } });
  t.after(() => service.stop());
  const client = createClient({ url: service.url, maxBatchRecords: 300 });
  const refusals = [];
  client.on("rejected", (event) => refusals.push(event));
  const records = numbered("many", 300).map((record, i) => (i % 6 === 0 ? record : { ...record, path: `${record.path}/${"x".repeat(60)}` }));
  for (const record of records) client.log(record);
  const stats = await client.close({ timeoutMs: 10_000 });

  assert.deepEqual(refusals.map((refusal) => [refusal.error.totalErrors, refusal.invalid?.length]), [[250, 100], [150, 100], [50, 50]]);
  const reported = refusals.flatMap((refusal) => refusal.invalid ?? []).map((entry) => entry.record.path);
  assert.equal(new Set(reported).size, 250, "each invalid record reported once");
  assertStoredOnce(service, records.filter((_, i) => i % 6 === 0));
  assert.deepEqual({ stored: stats.stored, rejected: stats.droppedBy.rejected, requests: stats.requests }, { stored: 50, rejected: 250, requests: 4 });
});
