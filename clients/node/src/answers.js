// What each answer of `POST /logs` means for a batch sent with an `Idempotency-Key`, as the
// service's README documents them, and how long to wait before a retry. The one place that
// decides retry, split or give up; pure functions, no I/O.
//
// With a key, a retry is always safe: a batch already stored is answered 202 again (replayed) and
// stored once. So every answer that does not say "this batch is wrong" is retried: no answer at
// all, 408 (body too slow), 409 (the same key still in flight), 429 (over a limit) and every 5xx
// (503: nothing stored; 500 `outcome_unknown`: maybe stored, the key makes the retry safe). A 413
// splits the batch. Any other answer (400, 401, 403, 404, 405, 415, 422, 3xx) says the batch or
// the configuration is wrong: retrying would get the same answer, so it is reported, not retried.

/**
 * @typedef {{ kind: "stored" }
 *   | { kind: "retry", retryAfterMs: number | undefined }
 *   | { kind: "split" }
 *   | { kind: "rejected" }} Verdict
 */

/**
 * @param {number} status the HTTP status
 * @param {string | null} retryAfter the `Retry-After` header
 * @param {number} records records in the batch
 * @param {number} nowMs for Retry-After given as a date
 * @returns {Verdict}
 */
export function verdict(status, retryAfter, records, nowMs) {
  if (status >= 200 && status < 300) return { kind: "stored" };
  if (status === 408 || status === 409 || status === 429 || status >= 500) {
    return { kind: "retry", retryAfterMs: parseRetryAfter(retryAfter, nowMs) };
  }
  if (status === 413 && records > 1) return { kind: "split" };
  return { kind: "rejected" };
}

/**
 * `Retry-After` in milliseconds: delay-seconds or an HTTP date (RFC 9110 10.2.3); undefined when
 * absent or unreadable.
 * @param {string | null} value
 * @param {number} nowMs
 */
export function parseRetryAfter(value, nowMs) {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // Every HTTP-date form starts with the day's name; Date.parse alone would take "-1" as a year.
  if (!/^[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/**
 * The wait before the next attempt after `failures` failures in a row: full jitter (AWS
 * Architecture Blog, "Exponential Backoff And Jitter"), a random time in
 * [0, min(maxBackoffMs, baseBackoffMs * 2^(failures - 1))), but never less than the service's
 * Retry-After, which is itself capped at maxBackoffMs.
 * @param {number} failures at least 1
 * @param {number | undefined} retryAfterMs
 * @param {{ baseBackoffMs: number, maxBackoffMs: number }} options
 * @param {() => number} random in [0, 1)
 */
export function retryDelayMs(failures, retryAfterMs, { baseBackoffMs, maxBackoffMs }, random = Math.random) {
  const ceiling = Math.min(maxBackoffMs, baseBackoffMs * 2 ** Math.min(failures - 1, 52));
  const jittered = Math.floor(random() * ceiling);
  return Math.max(jittered, Math.min(retryAfterMs ?? 0, maxBackoffMs));
}

/**
 * The records a 400 `invalid_records` names, by index in the batch. The service lists the first
 * 100 of `totalErrors`, so with more the rest of the batch is refused again, naming the next ones:
 * each round gives up at least one record, so it ends. Undefined when the body is not such an
 * answer or an index is not in the batch.
 * @param {unknown} body the parsed answer
 * @param {number} records records in the batch
 * @returns {Map<number, { field: string, reason: string }[]> | undefined}
 */
export function invalidRecords(body, records) {
  if (body === null || typeof body !== "object") return undefined;
  const { error, errors } = /** @type {{ error?: unknown, errors?: unknown }} */ (body);
  if (error !== "invalid_records" || !Array.isArray(errors) || errors.length === 0) return undefined;
  const byIndex = new Map();
  for (const entry of errors) {
    const index = entry?.index;
    if (!Number.isInteger(index) || index < 0 || index >= records) return undefined;
    const list = byIndex.get(index) ?? [];
    list.push({ field: String(entry.field), reason: String(entry.reason) });
    byIndex.set(index, list);
  }
  return byIndex;
}
