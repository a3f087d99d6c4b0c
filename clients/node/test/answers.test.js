// The client's reading of every answer in the service's `POST /logs` table (README, "API
// reference"), of Retry-After, and the backoff's bounds. Pure functions: no service needed.

import assert from "node:assert/strict";
import { test } from "node:test";
import { invalidRecords, parseRetryAfter, retryDelayMs, verdict } from "../src/answers.js";

test("each documented answer is stored, retried, split or reported", () => {
  const cases = [
    [202, "stored"],
    // Nothing stored (408, 409, 503) or outcome unknown (500, no answer): the key makes a retry safe.
    [408, "retry"],
    [409, "retry"],
    [429, "retry"],
    [500, "retry"],
    [502, "retry"],
    [503, "retry"],
    [504, "retry"],
    // body_too_large, too_many_records, too_many_hours: halves fit.
    [413, "split"],
    // The batch or the configuration is wrong: the same request gets the same answer.
    [400, "rejected"],
    [401, "rejected"],
    [403, "rejected"],
    [404, "rejected"],
    [405, "rejected"],
    [415, "rejected"],
    [422, "rejected"],
    [301, "rejected"],
    [307, "rejected"],
  ];
  for (const [status, kind] of cases) assert.equal(verdict(status, null, 10, 0).kind, kind, `status ${status}`);
  assert.equal(verdict(413, null, 1, 0).kind, "rejected", "a single record too large for the service cannot be split");
});

test("Retry-After is read as seconds or as an HTTP date, and ignored when unreadable", () => {
  const now = Date.parse("Mon, 07 Dec 2026 10:00:00 GMT");
  assert.equal(parseRetryAfter("1", now), 1000);
  assert.equal(parseRetryAfter(" 120 ", now), 120_000);
  assert.equal(parseRetryAfter("Mon, 07 Dec 2026 10:00:05 GMT", now), 5000);
  assert.equal(parseRetryAfter("Mon, 07 Dec 2026 09:00:00 GMT", now), 0);
  assert.equal(parseRetryAfter(null, now), undefined);
  assert.equal(parseRetryAfter("soon", now), undefined);
  assert.equal(parseRetryAfter("-1", now), undefined);
  assert.equal(verdict(503, "2", 5, now).kind === "retry" && verdict(503, "2", 5, now).retryAfterMs, 2000);
});

test("backoff is full jitter under an exponential cap, never shorter than Retry-After, both capped", () => {
  const options = { baseBackoffMs: 100, maxBackoffMs: 10_000 };
  const top = () => 0.999999;
  const bottom = () => 0;
  assert.equal(retryDelayMs(1, undefined, options, bottom), 0);
  assert.equal(retryDelayMs(1, undefined, options, top), 99);
  assert.equal(retryDelayMs(4, undefined, options, top), 799);
  assert.equal(retryDelayMs(30, undefined, options, top), 9999, "capped at maxBackoffMs");
  assert.equal(retryDelayMs(2000, undefined, options, top), 9999, "no overflow after many failures");
  assert.equal(retryDelayMs(1, 1000, options, bottom), 1000, "Retry-After is a floor");
  assert.equal(retryDelayMs(1, 3_600_000, options, bottom), 10_000, "a Retry-After of an hour waits maxBackoffMs");
  const spread = new Set(Array.from({ length: 200 }, () => retryDelayMs(6, undefined, options)));
  assert.ok(spread.size > 50, `jitter spreads the waits (${spread.size} distinct of 200)`);
  for (const delay of spread) assert.ok(delay >= 0 && delay < 3200);
});

test("a 400 invalid_records answer is read by record index; any other body is not", () => {
  const body = {
    error: "invalid_records",
    totalErrors: 3,
    errors: [
      { index: 0, line: 1, field: "path", reason: "is 30 bytes long; at most 20" },
      { index: 0, line: 1, field: "userAgent", reason: "is empty" },
      { index: 4, line: 5, field: "timestamp", reason: "is missing" },
    ],
  };
  const byIndex = invalidRecords(body, 5);
  assert.deepEqual([...(byIndex ?? new Map()).keys()], [0, 4]);
  assert.equal(byIndex?.get(0)?.length, 2);
  assert.equal(invalidRecords(body, 4), undefined, "an index outside the batch: not this batch's answer");
  assert.equal(invalidRecords({ error: "malformed_body", line: 1, column: 1 }, 5), undefined);
  assert.equal(invalidRecords("<html>bad gateway</html>", 5), undefined);
});
