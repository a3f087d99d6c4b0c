// What the service stores is what the host logged, byte for byte, and the client refuses exactly
// what the service would refuse. The service itself is the oracle: every case is sent to it.

import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient, encodeRecord } from "log-pipeline-client";
import { Service } from "./support/service.js";

/** 2025-11-22T22:00:00Z: five hours from here cross midnight, so days change too. */
const START_MS = Date.UTC(2025, 10, 22, 22, 0, 0);
const HOUR_MS = 3600_000;

/**
 * Records over five hours, their timestamps in every form `log()` takes, their fields with what
 * JSON must escape, non-ASCII text, edges to trim and a lone surrogate; each with what the
 * service must store for it (fields trimmed, the lone surrogate as U+FFFD) and its instant.
 */
function sampleRecords(count) {
  const paths = ['/quote"d', "/tab\there", "/back\\slash", "/ctrl\u0001", "/emoji/😀", "/ünïcode", "/<b>&amp;", "/lone\ud800", "/del\u007f"];
  const agents = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "Go-http-client/1.1", "日本語 UA", 'quote "ua"'];
  const samples = [];
  for (let i = 0; i < count; i++) {
    const ms = START_MS + Math.floor((i * 5 * HOUR_MS) / count) + (i % 1000);
    const rawPath = `${paths[i % paths.length]}/${i}`;
    const rawAgent = agents[i % agents.length];
    const pad = i % 4 === 0 ? " \t" : "";
    const [timestamp, stamp] = timestampForms(ms, i);
    samples.push({
      record: { timestamp, path: `${pad}${rawPath}${pad}`, userAgent: `${rawAgent}${pad}` },
      path: rawPath.replace("\ud800", "\ufffd"),
      userAgent: rawAgent,
      ms,
      stamp,
    });
  }
  return samples;
}

/** `ms` as a Date, a number or text (at +02:00 with nanoseconds, at -05:30, lowercase with a space). */
function timestampForms(ms, i) {
  const local = (offsetMinutes) => new Date(ms + offsetMinutes * 60_000).toISOString().slice(0, 23);
  switch (i % 5) {
    case 0:
      return [new Date(ms), undefined];
    case 1:
      return [ms, undefined];
    case 2:
      return [`${local(120)}456789+02:00`, "456789Z"];
    case 3:
      return [`${local(-330)}-05:30`, undefined];
    default:
      return [`${local(0).replace("T", " ")}z`, undefined];
  }
}

for (const gzip of [true, false]) {
  test(`records arrive byte for byte as the service stores them, across hours, gzip ${gzip ? "on" : "off"}`, async (t) => {
    const service = await Service.start();
    t.after(() => service.stop());
    const client = createClient({ url: service.url, gzipAboveBytes: gzip ? 0 : Infinity, maxBatchRecords: 40 });
    const samples = sampleRecords(400);
    for (const { record } of samples) assert.equal(client.log(record), true);
    const stats = await client.close();

    const expected = new Map();
    for (const { record } of samples) {
      const { line } = /** @type {{ line: string }} */ (encodeRecord(record));
      const file = `${line.slice(14, 24)}/${line.slice(25, 27)}.log.json`;
      expected.set(file, [...(expected.get(file) ?? []), line.slice(0, -1)]);
    }
    const stored = service.hourFiles();
    assert.equal(stored.size, 5, "five hours from 22:00 (two days), an hour file each");
    // Batches may be stored in any order; each hour file holds exactly these lines.
    assert.deepEqual(new Map([...stored].map(([file, lines]) => [file, lines.sort()])), new Map([...expected].map(([file, lines]) => [file, lines.sort()])));

    const byPath = new Map([...stored.values()].flat().map((line) => [JSON.parse(line).path, JSON.parse(line)]));
    for (const sample of samples) {
      const line = byPath.get(sample.path);
      assert.ok(line, `${JSON.stringify(sample.path)} is stored`);
      assert.equal(line.userAgent, sample.userAgent);
      assert.equal(Date.parse(line.timestamp), sample.ms, `${JSON.stringify(sample.record.timestamp)} -> ${line.timestamp}`);
      if (sample.stamp) assert.ok(line.timestamp.endsWith(sample.stamp), `${line.timestamp} keeps its nanoseconds`);
    }
    const rawBytes = [...expected.values()].flat().reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0);
    assert.deepEqual(
      { stored: stats.stored, dropped: stats.dropped, buffered: stats.buffered, retried: stats.retried },
      { stored: samples.length, dropped: 0, buffered: 0, retried: 0 },
    );
    if (gzip) assert.ok(stats.bytesSent < rawBytes / 2, `gzip sent ${stats.bytesSent} of ${rawBytes} bytes`);
    else assert.equal(stats.bytesSent, rawBytes);
  });
}

const TIMESTAMP_CASES = [
  "2025-11-22T14:23:00Z",
  "2025-11-22t14:23:00z",
  "2025-11-22 14:23:00Z",
  "2025-11-22T16:23:00.5+02:00",
  "2025-11-22T14:23:00.000000000Z",
  "2025-11-22T14:23:00.100Z",
  "2025-11-22T00:30:00+01:00",
  "2025-11-22T23:30:00-01:00",
  "2025-11-22T14:23:00\u221202:00",
  "2024-02-29T12:00:00Z",
  "0000-01-01T00:00:00Z",
  "9999-12-31T23:59:59.999999999Z",
  "2025-11-22T14:23:00+23:59",
  "2025-11-22T14:23:00-00:00",
  "2025-11-22T14:23:00",
  "2025-11-22T14:23:00.1234567891Z",
  "2025-11-22T14:23:60Z",
  "2016-12-31T23:59:60.5Z",
  "2025-02-29T00:00:00Z",
  "2025-13-01T00:00:00Z",
  "2025-04-31T00:00:00Z",
  "2025-11-22T24:00:00Z",
  "2025-11-22T14:60:00Z",
  "2025-11-22T14:23:00+24:00",
  "2025-11-22T14:23:00+02:60",
  "2025-11-22T14:23:00+0200",
  "2025-11-22T14:23:00.Z",
  "0000-01-01T00:30:00+01:00",
  "9999-12-31T23:30:00-01:00",
  "2025-11-22T14:23Z",
  " 2025-11-22T14:23:00Z",
  "2025-11-22T14:23:00Z ",
  "+2025-11-22T14:23:00Z",
  "2025-1-22T14:23:00Z",
  "\uff12025-11-22T14:23:00Z",
  "2025-11-22T14:23:00.5 +02:00",
  "2025-11-22T14:23:00UTC",
  `2025-11-22T14:23:00.${"0".repeat(50)}Z`,
  "",
];

const FIELD_CASES = [
  " /padded ",
  "/nel\u0085",
  "\ufeff/bom",
  "\u00a0/nbsp\u3000",
  "\u2028/separators\u2029",
  "",
  "   ",
  "\t\n",
  "a".repeat(8192),
  "a".repeat(8193),
  "é".repeat(4096),
  "é".repeat(4097),
  "😀".repeat(2048),
  `${"😀".repeat(2047)}ab`,
  "/nul\u0000",
  "/del\u007f",
];

test("the client accepts exactly the timestamps and fields the service accepts, and sends what it stores", async (t) => {
  const service = await Service.start();
  t.after(() => service.stop());
  const cases = [
    ...TIMESTAMP_CASES.map((timestamp, i) => ({ timestamp, path: `/timestamp/${i}`, userAgent: "oracle" })),
    ...FIELD_CASES.flatMap((text, i) => [
      { timestamp: "2025-11-22T14:23:00Z", path: text, userAgent: `path-${i}` },
      { timestamp: "2025-11-22T14:23:00Z", path: `/agent/${i}`, userAgent: text },
    ]),
  ];
  const disagreements = [];
  for (const record of cases) {
    const response = await fetch(`${service.url}/logs`, {
      method: "POST",
      headers: { "content-type": "application/x-ndjson" },
      body: `${JSON.stringify(record)}\n`,
    });
    const answer = await response.json();
    const encoded = encodeRecord(record);
    const serviceAccepts = response.status === 202;
    if (serviceAccepts !== "line" in encoded) {
      disagreements.push({ record, service: answer, client: encoded });
    } else if (!serviceAccepts) {
      assert.equal(response.status, 400);
      assert.equal(answer.errors[0].field, /** @type {{ field: string }} */ (encoded).field, JSON.stringify(record));
    }
  }
  assert.deepEqual(disagreements, []);

  const stored = new Set(service.storedLines().map((line) => `${line}\n`));
  const accepted = cases.map((record) => encodeRecord(record)).filter((encoded) => "line" in encoded);
  assert.ok(accepted.length > 30 && accepted.length < cases.length, `${accepted.length} of ${cases.length} accepted`);
  for (const { line } of /** @type {{ line: string }[]} */ (accepted)) assert.ok(stored.has(line), `stored as sent: ${line}`);
});
