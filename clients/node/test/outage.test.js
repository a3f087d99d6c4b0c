// The service away for 30 s while the host keeps logging 4,000 records a second: the host's memory
// stays within the client's buffer bound (measured in the host's process, after full GCs), what
// does not fit is dropped and counted, and delivery resumes when the service returns.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Service } from "./support/service.js";
import { startHost } from "./support/host-process.js";

const OUTAGE_MS = 30_000;
const MAX_BUFFER_RECORDS = 20_000;
const MAX_BUFFER_BYTES = 4 * 1024 * 1024;
const MIB = 1024 * 1024;

test("service down for 30 s: host memory stays within the buffer bound, drops are counted, logging resumes", { timeout: 90_000 }, async (t) => {
  const service = await Service.start();
  t.after(() => service.stop());
  // 40 records every 10 ms, paths of 250 bytes: about 300 bytes a record, so the byte bound
  // (about 14,000 records) binds first, and the outage offers about 120,000 records (36 MB).
  const host = startHost({
    url: service.url,
    options: { maxBufferRecords: MAX_BUFFER_RECORDS, maxBufferBytes: MAX_BUFFER_BYTES, maxBatchRecords: 500, maxBackoffMs: 1000 },
    perTick: 40,
    tickMs: 10,
    pathBytes: 250,
  });
  t.after(() => host.kill());
  const before = await host.until((s) => s.stats.stored >= 5000, "5,000 records stored before the outage");

  await service.kill9();
  const outageStart = Date.now();
  const full = await host.until((s) => s.stats.droppedBy.bufferFull > 0, "the buffer to fill");
  await host.until((s) => s.atMs - outageStart >= OUTAGE_MS, "30 s of outage", OUTAGE_MS + 10_000);
  const during = host.samples.filter((s) => s.atMs >= outageStart);
  await service.restart();
  const outageEnd = Date.now();
  const resumedFrom = during[during.length - 1];
  const resumed = await host.until((s) => s.stats.stored > resumedFrom.stats.stored + MAX_BUFFER_RECORDS / 2 && s.stats.buffered < 2000, "the buffer to drain after the restart");
  const final = await host.close();

  // Bounded: the counted buffer never passes its limits, and the host's memory does not grow with
  // what it offers: from the moment the buffer is full to the end of the outage, it offered far more
  // than the buffer holds while its memory stayed put.
  const held = (s) => s.heapUsed + s.arrayBuffers;
  const peak = during.reduce((max, s) => (held(s) > held(max) ? s : max));
  const last = during[during.length - 1];
  for (const s of during) {
    assert.ok(s.stats.buffered <= MAX_BUFFER_RECORDS && s.stats.bufferedBytes <= MAX_BUFFER_BYTES, `buffer ${s.stats.buffered} records, ${s.stats.bufferedBytes} bytes`);
  }
  const offeredWhileFull = last.offered - full.offered;
  const offeredBytes = offeredWhileFull * 300;
  t.diagnostic(
    `before: heap+buffers ${(held(before) / MIB).toFixed(1)} MiB, rss ${(before.rss / MIB).toFixed(1)} MiB; ` +
      `outage peak: heap+buffers ${(held(peak) / MIB).toFixed(1)} MiB, rss ${(Math.max(...during.map((s) => s.rss)) / MIB).toFixed(1)} MiB; ` +
      `offered while full: ${offeredWhileFull} records (~${(offeredBytes / MIB).toFixed(0)} MiB), dropped ${last.stats.droppedBy.bufferFull}`,
  );
  assert.ok(offeredBytes > 5 * MAX_BUFFER_BYTES, `the outage offered ${offeredWhileFull} records beyond the buffer`);
  assert.ok(held(peak) - held(before) < 3 * MAX_BUFFER_BYTES, `heap + buffers grew ${((held(peak) - held(before)) / MIB).toFixed(1)} MiB for a ${MAX_BUFFER_BYTES / MIB} MiB buffer`);
  assert.ok(Math.max(...during.map((s) => s.rss)) - before.rss < 64 * MIB, "RSS grew by less than 64 MiB");
  assert.ok(Math.abs(held(last) - held(full)) < MAX_BUFFER_BYTES, "memory flat while records are dropped");

  // Counted: each record is stored, dropped or (at the end) nothing else; drops are buffer-full ones.
  assert.equal(last.stats.stored, resumedFrom.stats.stored, "nothing stored while the service is down");
  assert.ok(last.stats.droppedBy.bufferFull >= offeredWhileFull - MAX_BUFFER_RECORDS);
  assert.equal(final.stats.logged, final.stats.stored + final.stats.dropped + final.stats.buffered);
  assert.deepEqual({ buffered: final.stats.buffered, notBufferFull: final.stats.dropped - final.stats.droppedBy.bufferFull }, { buffered: 0, notBufferFull: 0 });
  assert.equal(final.accepted, final.stats.stored, "every record the client took is stored");

  // Resumed: the records logged after the restart are stored, each once.
  const stored = service.storedLines().map((line) => Number(JSON.parse(line).path.split("/")[2]));
  assert.equal(new Set(stored).size, stored.length, "no record stored twice");
  assert.equal(stored.length, final.stats.stored);
  const loggedAfter = final.offered - resumed.offered;
  const storedAfter = stored.filter((n) => n >= resumed.offered).length;
  assert.ok(loggedAfter > 0 && storedAfter === loggedAfter, `logged after the drain ${loggedAfter}, stored ${storedAfter}`);
  t.diagnostic(`back in ${((resumed.atMs - outageEnd) / 1000).toFixed(1)} s after the restart`);
});
