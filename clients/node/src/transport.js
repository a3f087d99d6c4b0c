// One attempt of one batch over HTTP: the body (gzip from a size on), the headers the service
// reads, Node's global fetch, and the answer read whole (so that the connection is reused).

import { promisify } from "node:util";
import { gzip } from "node:zlib";
import { VERSION } from "./version.js";

const gzipAsync = promisify(gzip);
const USER_AGENT = `log-pipeline-client/${VERSION} node/${process.versions.node}`;
/** Longest error text kept from an answer that is not JSON (a proxy's HTML page, say). */
const MAX_TEXT_CHARS = 2000;

/**
 * The bytes to send for `body`: itself, or gzip-compressed when it has at least `gzipAboveBytes`.
 * The service's size limit counts decompressed bytes, so compression never changes whether a
 * batch fits.
 * @param {Buffer} body
 * @param {number} gzipAboveBytes
 * @returns {Promise<{ bytes: Buffer, gzip: boolean }>}
 */
export async function wireBody(body, gzipAboveBytes) {
  if (body.length < gzipAboveBytes) return { bytes: body, gzip: false };
  return { bytes: await gzipAsync(body), gzip: true };
}

/**
 * @typedef {{ status: number, retryAfter: string | null, replayed: boolean, body: unknown }} Answer
 */

/**
 * POSTs one body. Rejects on no answer (refused, reset, timed out or aborted through `signal`).
 * @param {{ url: string, key: string | undefined }} target
 * @param {{ bytes: Buffer, gzip: boolean }} wire
 * @param {string} idempotencyKey
 * @param {AbortSignal} signal
 * @returns {Promise<Answer>}
 */
export async function post(target, wire, idempotencyKey, signal) {
  /** @type {Record<string, string>} */
  const headers = {
    "content-type": "application/x-ndjson",
    "idempotency-key": idempotencyKey,
    "user-agent": USER_AGENT,
  };
  if (wire.gzip) headers["content-encoding"] = "gzip";
  if (target.key !== undefined) headers.authorization = `Bearer ${target.key}`;
  // `manual`: a redirect would turn the POST into a GET (301, 302, 303); it is reported instead.
  const response = await fetch(target.url, { method: "POST", headers, body: /** @type {Uint8Array<ArrayBuffer>} */ (wire.bytes), redirect: "manual", signal });
  const text = await response.text();
  return {
    status: response.status,
    retryAfter: response.headers.get("retry-after"),
    replayed: response.headers.get("idempotent-replayed") === "true",
    body: parseBody(text),
  };
}

/** The service answers JSON; anything else (a proxy's page) is kept as text, shortened. */
function parseBody(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text.length > MAX_TEXT_CHARS ? `${text.slice(0, MAX_TEXT_CHARS)}…` : text;
  }
}
