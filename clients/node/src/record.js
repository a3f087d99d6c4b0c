// One record, checked by the service's rules and encoded as the NDJSON line the service stores:
// `{"timestamp":"…","path":"…","userAgent":"…"}`. A record the service would refuse is refused
// here, alone, rather than sent in a batch that the service refuses whole.

import { formatMillis, normalizeText } from "./timestamp.js";

// What Rust's `str::trim` removes (Unicode White_Space), which is not what JavaScript's trim
// removes (that one trims U+FEFF and keeps U+0085).
const WHITESPACE = "\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const EDGE_WHITESPACE = new RegExp(`^[${WHITESPACE}]+|[${WHITESPACE}]+$`, "g");
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const SURROGATE = /[\ud800-\udfff]/;
const NEEDS_ESCAPE = /["\\\u0000-\u001f]/;

/**
 * @typedef {{ timestamp: Date | number | string, path: string, userAgent: string }} LogRecord
 * @typedef {{ line: string, bytes: number, hour: string }} EncodedRecord
 * @typedef {{ field: "timestamp" | "path" | "userAgent" | "record", reason: string }} RecordError
 */

/**
 * The NDJSON line (newline included) the service stores for `record`, its size in UTF-8 bytes and
 * its UTC hour (`2025-11-22T14`); or why the service would refuse the record. Never throws.
 * @param {unknown} record
 * @param {number} maxFieldBytes the service's `ingestion.maxFieldBytes`
 * @returns {EncodedRecord | RecordError}
 */
export function encodeRecord(record, maxFieldBytes) {
  if (record === null || typeof record !== "object") {
    return { field: "record", reason: `must be an object, got ${record === null ? "null" : typeof record}` };
  }
  const { timestamp, path, userAgent } = /** @type {Record<string, unknown>} */ (record);
  const time = timestampText(timestamp);
  if ("reason" in time) return { field: "timestamp", reason: time.reason };
  const pathText = fieldText(path, maxFieldBytes);
  if (typeof pathText !== "string") return { field: "path", reason: pathText.reason };
  const agentText = fieldText(userAgent, maxFieldBytes);
  if (typeof agentText !== "string") return { field: "userAgent", reason: agentText.reason };
  const line = `{"timestamp":"${time.text}","path":${quote(pathText)},"userAgent":${quote(agentText)}}\n`;
  return { line, bytes: Buffer.byteLength(line), hour: time.text.slice(0, 13) };
}

/**
 * `value` trimmed as the service trims it, lone surrogates replaced by U+FFFD (what a UTF-8
 * encoder writes for them), cut to at most `maxBytes` UTF-8 bytes at a character boundary.
 * For the middleware, whose fields come from a request and must not cost the record.
 * @param {string} value
 * @param {number} maxBytes
 */
export function fitField(value, maxBytes) {
  const text = trimmed(wellFormed(value));
  if (text.length <= maxBytes / 3 || Buffer.byteLength(text) <= maxBytes) return text;
  const bytes = Buffer.from(text).subarray(0, maxBytes);
  // A cut inside a character leaves a partial sequence at the end, decoded as U+FFFD: drop it.
  return bytes.toString().replace(/\ufffd$/, "").replace(EDGE_WHITESPACE, "");
}

/**
 * `text` as a JSON string. JSON.stringify escapes exactly what serde_json escapes (`"`, `\\` and
 * control characters), in the same spelling, once lone surrogates are gone (fieldText replaced
 * them); text with none of those, nearly every path and user agent, is only quoted, which costs a
 * tenth as much.
 * @param {string} text
 */
function quote(text) {
  return NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`;
}

/** @returns {{ text: string } | { reason: string }} */
function timestampText(value) {
  if (typeof value === "string") return normalizeText(value);
  if (typeof value === "number") return formatMillis(value);
  if (value instanceof Date) return formatMillis(value.getTime());
  if (value === undefined) return { reason: "is missing" };
  return { reason: "must be an RFC 3339 string, a Date or milliseconds since the epoch" };
}

/** @returns {string | { reason: string }} */
function fieldText(value, maxBytes) {
  if (value === undefined) return { reason: "is missing" };
  if (typeof value !== "string") return { reason: `must be a string, got ${value === null ? "null" : typeof value}` };
  const text = trimmed(wellFormed(value));
  if (text.length === 0) return { reason: "is empty or only whitespace" };
  // A UTF-16 unit is at most 3 UTF-8 bytes: short strings need no count.
  if (text.length > maxBytes / 3) {
    const bytes = Buffer.byteLength(text);
    if (bytes > maxBytes) return { reason: `is ${bytes} bytes long; at most ${maxBytes} (ingestion.maxFieldBytes)` };
  }
  return text;
}

/** Trims only when an end is not printable ASCII (nearly always, nothing to trim). */
function trimmed(text) {
  const first = text.charCodeAt(0);
  const last = text.charCodeAt(text.length - 1);
  if (first > 0x20 && first < 0x7f && last > 0x20 && last < 0x7f) return text;
  return text.replace(EDGE_WHITESPACE, "");
}

function wellFormed(text) {
  return SURROGATE.test(text) ? text.replace(LONE_SURROGATE, "\ufffd") : text;
}
