// The service killed with -9 in the middle of a stream, and started again: every record the host
// logged before `close()` is stored exactly once. Batches cut off by the kill are retried with
// their Idempotency-Key; the service remembers the keys it stored across the crash (its journal),
// so a batch stored just before the kill is answered as a replay, not stored twice.

import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";
import { createClient } from "log-pipeline-client";
import { Service } from "./support/service.js";
import { assertStoredOnce, numbered, waitFor } from "./support/records.js";

const KILLS = 3;
const PER_TICK = 100;
const TICK_MS = 5;

test("kill -9 and restart of the service mid-stream: every record logged before close() stored exactly once", async (t) => {
  const service = await Service.start();
  t.after(() => service.stop());
  const client = createClient({ url: service.url, maxBatchRecords: 250, flushIntervalMs: 20, baseBackoffMs: 20, maxBackoffMs: 300 });
  const retries = [];
  client.on("retry", (event) => retries.push(event));
  const records = [];
  let logging = true;
  // The host: logs PER_TICK records every TICK_MS until told to stop, whatever the service does.
  const host = (async () => {
    while (logging) {
      for (const record of numbered("crash", PER_TICK, { from: records.length })) {
        records.push(record);
        assert.equal(client.log(record), true, "the buffer is never full in this test");
      }
      await sleep(TICK_MS);
    }
  })();

  for (let kill = 1; kill <= KILLS; kill++) {
    const before = client.stats().stored;
    await waitFor(() => client.stats().stored >= before + 2000, "records to be stored between kills");
    await service.kill9();
    const logged = records.length;
    await waitFor(() => records.length >= logged + 1000, "the host to log on while the service is down");
    await service.restart();
  }
  const before = client.stats().stored;
  await waitFor(() => client.stats().stored >= before + 2000, "records to be stored after the last restart");
  logging = false;
  await host;
  const stats = await client.close({ timeoutMs: 30_000 });
  t.diagnostic(JSON.stringify({ records: records.length, retried: stats.retried, replayed: stats.replayed, requests: stats.requests }));

  assertStoredOnce(service, records);
  assert.deepEqual({ logged: stats.logged, stored: stats.stored, dropped: stats.dropped }, { logged: records.length, stored: records.length, dropped: 0 });
  assert.ok(retries.length >= KILLS, `each kill made batches retry (${retries.length} retries)`);
  assert.ok(retries.some((event) => event.status === undefined), "some attempts got no answer at all");
});
