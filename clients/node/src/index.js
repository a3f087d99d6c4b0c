// log-pipeline-client: forwards a website's access records to a log-pipeline service, each
// stored once, with bounded memory. The public surface; the README describes it.

import { LogClient } from "./client.js";
import { encodeRecord as encode } from "./record.js";
import { DEFAULTS, SERVICE_LIMITS } from "./options.js";
import { VERSION } from "./version.js";

export { LogClient, DEFAULTS, SERVICE_LIMITS, VERSION };

/**
 * A client for the service at `options.url`.
 * @param {import("../index.js").ClientOptions} options
 */
export function createClient(options) {
  return new LogClient(options);
}

/**
 * The NDJSON line the client sends, and the service stores, for `record`; or why the service
 * would refuse it.
 * @param {unknown} record
 * @param {{ maxFieldBytes?: number }} [options]
 */
export function encodeRecord(record, options) {
  const encoded = encode(record, options?.maxFieldBytes ?? DEFAULTS.maxFieldBytes);
  return "line" in encoded ? { line: encoded.line } : encoded;
}
