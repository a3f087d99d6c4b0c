// The client's options: every default, why it is what it is, and the checks made once when a
// client is created (a bad option throws there, naming it, never later in the host's requests).

/** The service's defaults for the limits a batch must respect (docs/configuration.md). */
export const SERVICE_LIMITS = Object.freeze({
  /** `server.maxBodyBytes`: largest body, counted after decompression. */
  maxBodyBytes: 16 * 1024 * 1024,
  /** `ingestion.maxRecords`: most records in one batch. */
  maxRecords: 100_000,
  /** `ingestion.maxHoursPerBatch`: most distinct UTC event hours in one batch. */
  maxHoursPerBatch: 168,
  /** `ingestion.maxFieldBytes`: longest path or user agent, in UTF-8 bytes after trimming. */
  maxFieldBytes: 8192,
});

export const DEFAULTS = Object.freeze({
  // A batch is sent when it holds this many records, this many bytes or this many hours, or when
  // its first record is this old. 1,000 records (about 150 KB of typical access records) per
  // request keeps the service's per-request cost (one fsync round) small per record, and is a
  // hundredth of its `maxRecords`; 1 MiB is a sixteenth of its `maxBodyBytes`, so one batch plus
  // its largest possible record (two fields at `maxFieldBytes`, each escaped to at most 6 bytes a
  // byte) always fits; the hours are the service's `maxHoursPerBatch`.
  maxBatchRecords: 1000,
  maxBatchBytes: 1024 * 1024,
  maxBatchHours: SERVICE_LIMITS.maxHoursPerBatch,
  /** A record waits at most this long for its batch to fill: logs arrive within about a second. */
  flushIntervalMs: 1000,
  /** Bodies from this size on are sent gzip-compressed (access records shrink 5-10x). */
  gzipAboveBytes: 16 * 1024,
  // What the client holds while the service is slow or away: records logged beyond it are dropped
  // and counted. 100,000 records are about 100 s of a site serving 1,000 requests a second;
  // 16 MiB of encoded records keeps the host's memory bounded whatever the records' sizes.
  maxBufferRecords: 100_000,
  maxBufferBytes: 16 * 1024 * 1024,
  /** Batches sent at once. Two keeps one request on the wire while the next is prepared. */
  maxInFlight: 2,
  /** An answer not received by then is an unknown outcome, retried with the batch's key. */
  requestTimeoutMs: 30_000,
  // Retries: full jitter, a random wait in [0, min(max, base * 2^(failures - 1))], never shorter
  // than the service's Retry-After (itself capped by maxBackoffMs).
  baseBackoffMs: 100,
  maxBackoffMs: 10_000,
  // A batch is retried for this long after its first attempt, then dropped as expired: well within
  // the service's `idempotency.retention` (24 h), after which a retry could store it twice.
  retryForMs: 60 * 60 * 1000,
  /** The service's `ingestion.maxFieldBytes`: longer fields are refused here (or cut by the middleware). */
  maxFieldBytes: SERVICE_LIMITS.maxFieldBytes,
  /** `close()` waits this long for the buffer to be delivered. */
  closeTimeoutMs: 10_000,
  /** Deliver the buffer on `beforeExit` and `SIGTERM`: installs process handlers, so only when asked. */
  flushOnExit: false,
});

/**
 * Checks the options and fills in the defaults. Throws a TypeError or RangeError naming the option.
 * @param {object} given
 */
export function resolveOptions(given) {
  if (given === null || typeof given !== "object") {
    throw new TypeError("createClient(options): options must be an object with at least `url`");
  }
  const options = /** @type {Record<string, unknown>} */ (given);
  const unknown = Object.keys(options).filter((name) => !(name in DEFAULTS) && name !== "url" && name !== "key");
  if (unknown.length > 0) throw new TypeError(`unknown option(s): ${unknown.join(", ")}`);
  const resolved = { ...DEFAULTS, ...dropUndefined(options) };
  const endpoint = logsEndpoint(options.url);
  const key = options.key === undefined ? undefined : checkKey(options.key);
  for (const name of Object.keys(DEFAULTS)) {
    if (name === "flushOnExit") continue;
    checkNumber(name, resolved[name], name === "gzipAboveBytes" ? 0 : 1);
  }
  if (typeof resolved.flushOnExit !== "boolean") throw new TypeError("flushOnExit must be a boolean");
  if (resolved.maxBatchRecords > resolved.maxBufferRecords) {
    throw new RangeError("maxBatchRecords must be at most maxBufferRecords");
  }
  if (resolved.maxBatchBytes > resolved.maxBufferBytes) {
    throw new RangeError("maxBatchBytes must be at most maxBufferBytes");
  }
  if (resolved.baseBackoffMs > resolved.maxBackoffMs) {
    throw new RangeError("baseBackoffMs must be at most maxBackoffMs");
  }
  return Object.freeze({ ...resolved, url: endpoint, key });
}

function dropUndefined(options) {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
}

/** `http://host:8082` or `http://host/prefix/` -> `http://host:8082/logs`, `http://host/prefix/logs`. */
function logsEndpoint(url) {
  if (typeof url !== "string" && !(url instanceof URL)) {
    throw new TypeError("url must be the service's base URL, e.g. \"http://127.0.0.1:8082\"");
  }
  let base;
  try {
    base = new URL(String(url));
  } catch {
    throw new TypeError(`url ${JSON.stringify(String(url))} is not a URL`);
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new TypeError(`url must be http: or https:, not ${base.protocol}`);
  }
  if (base.search !== "" || base.hash !== "") throw new TypeError("url must have no query or fragment");
  base.pathname = `${base.pathname.replace(/\/+$/, "")}/logs`;
  return base.href;
}

/** The service's rule for tokens: printable ASCII, spaces and tabs, none at either end. */
function checkKey(key) {
  if (typeof key !== "string" || !/^[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?$/.test(key)) {
    throw new TypeError("key must be the site's ingest key: printable ASCII, no space at either end");
  }
  return key;
}

function checkNumber(name, value, min) {
  if (typeof value !== "number" || Number.isNaN(value)) throw new TypeError(`${name} must be a number`);
  if (value < min) throw new RangeError(`${name} must be at least ${min}`);
  if (!Number.isInteger(value) && !(name === "gzipAboveBytes" && value === Infinity)) {
    throw new RangeError(`${name} must be an integer${name === "gzipAboveBytes" ? " or Infinity" : ""}`);
  }
}
