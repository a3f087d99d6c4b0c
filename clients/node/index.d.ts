// Types of log-pipeline-client (hand-written; `npm run lint` checks them against their use in
// test/types.ts and the sources with `tsc --noEmit`).

import type { EventEmitter } from "node:events";

/** One access record. */
export interface LogRecord {
  /** When the request started: a Date, milliseconds since the epoch, or RFC 3339 text with an offset. */
  timestamp: Date | number | string;
  /** The request's path (a non-empty string, at most `maxFieldBytes` UTF-8 bytes after trimming). */
  path: string;
  /** The request's User-Agent (same rules as `path`). */
  userAgent: string;
}

/** Options of `createClient`; every one but `url` has a default (see `DEFAULTS` and the README). */
export interface ClientOptions {
  /** The service's base URL, e.g. `http://127.0.0.1:8082`; records go to `<url>/logs`. */
  url: string | URL;
  /** The site's ingest key, sent as `Authorization: Bearer <key>`. */
  key?: string;
  maxBatchRecords?: number;
  maxBatchBytes?: number;
  maxBatchHours?: number;
  flushIntervalMs?: number;
  /** Bodies from this many bytes on are gzip-compressed; `Infinity` never, `0` always. */
  gzipAboveBytes?: number;
  maxBufferRecords?: number;
  maxBufferBytes?: number;
  maxInFlight?: number;
  requestTimeoutMs?: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  retryForMs?: number;
  maxFieldBytes?: number;
  closeTimeoutMs?: number;
  /** Deliver the buffer on `beforeExit` and `SIGTERM` (installs process handlers). */
  flushOnExit?: boolean;
}

export interface RequestOptions {
  /** Keep the query string in the logged path (default false: URLs carry tokens and personal data). */
  keepQuery?: boolean;
}

/** What the middleware reads from a request: node:http's IncomingMessage and Express's request both fit. */
export interface RequestLike {
  url?: string;
  originalUrl?: string;
  headers?: Record<string, string | string[] | undefined>;
}

export interface ClientStats {
  /** Calls of `log()` (and requests logged by the middleware). */
  logged: number;
  /** Records sent at least once. */
  sent: number;
  /** Records the service acknowledged (202): stored. */
  stored: number;
  /** Batches whose 202 was a replay: an earlier attempt that got no answer had stored them. */
  replayed: number;
  /** Requests that sent records again (retries, halves of a split, the valid rest of a refused batch). */
  retried: number;
  /** Requests made. */
  requests: number;
  /** Body bytes sent (compressed when gzip was used). */
  bytesSent: number;
  /** Batches split in two after a 413. */
  splits: number;
  /** Records held: not yet stored nor dropped (in flight included). */
  buffered: number;
  /** Encoded bytes of the records held. */
  bufferedBytes: number;
  /** Records dropped, all reasons. `logged = stored + dropped + buffered`. */
  dropped: number;
  droppedBy: {
    /** Refused by `log()`: the service would refuse them (an `invalid` event says why). */
    invalid: number;
    /** Logged while the buffer was full. */
    bufferFull: number;
    /** Refused by the service (a `rejected` event has its answer). */
    rejected: number;
    /** Still not stored `retryForMs` after their first attempt. */
    expired: number;
    /** Logged after `close()`, or not yet sent at its deadline. */
    closed: number;
    /** In a request cut off by `close()`'s deadline: the service may have stored them. */
    unconfirmed: number;
  };
  /** Requests in flight now. */
  inFlight: number;
}

export interface InvalidEvent {
  record: unknown;
  field: "timestamp" | "path" | "userAgent" | "record";
  reason: string;
}

export interface RejectedEvent {
  /** The HTTP status (400, 401, 413, ...). */
  status: number;
  /** The service's error body (`{"error": "...", "message": "...", ...}`), or the text of another answer. */
  error: unknown;
  /** The records given up. */
  records: { timestamp: string; path: string; userAgent: string }[];
  /** With 400 `invalid_records`: each invalid record with the service's errors for it. */
  invalid?: { index: number; record: { timestamp: string; path: string; userAgent: string }; errors: { field: string; reason: string }[] }[];
}

export interface DroppedEvent {
  reason: "bufferFull" | "expired" | "closed" | "unconfirmed";
  count: number;
  /** With `expired`: the last failure's status, if there was an answer. */
  status?: number;
  /** With `expired`: the last failure (the answer's body, or what went wrong on the network). */
  error?: unknown;
}

export interface RetryEvent {
  /** The answer's status; absent when there was none (network error, timeout). */
  status?: number;
  error: unknown;
  /** Attempts made of this batch so far. */
  attempt: number;
  /** The wait before the next attempt. */
  delayMs: number;
  records: number;
}

export interface LogClientEvents {
  invalid: [InvalidEvent];
  rejected: [RejectedEvent];
  dropped: [DroppedEvent];
  retry: [RetryEvent];
}

export declare class LogClient extends EventEmitter {
  constructor(options: ClientOptions);
  /** Buffers one record; false if it was invalid, the buffer was full or the client is closed. Never throws. */
  log(record: LogRecord): boolean;
  /** Logs a request as one record (start time, path, User-Agent). Never throws. */
  logRequest(request: RequestLike, options?: RequestOptions): boolean;
  /** An Express (or Connect) middleware. */
  express(options?: RequestOptions): (request: RequestLike, response: unknown, next: () => void) => void;
  /** Logs every request of a node:http server (or Fastify's `fastify.server`); returns a function that stops it. */
  attach(server: EventEmitter, options?: RequestOptions): () => void;
  /** Resolves when every record logged before the call is stored or dropped. */
  flush(): Promise<void>;
  /** Delivers the buffer within `timeoutMs` (default `closeTimeoutMs`), then drops the rest; resolves with the final counts. */
  close(options?: { timeoutMs?: number }): Promise<ClientStats>;
  stats(): ClientStats;

  on<E extends keyof LogClientEvents>(event: E, listener: (...args: LogClientEvents[E]) => void): this;
  once<E extends keyof LogClientEvents>(event: E, listener: (...args: LogClientEvents[E]) => void): this;
  off<E extends keyof LogClientEvents>(event: E, listener: (...args: LogClientEvents[E]) => void): this;
}

export declare function createClient(options: ClientOptions): LogClient;

/** The NDJSON line (with its newline) sent and stored for `record`, or why the service would refuse it. */
export declare function encodeRecord(
  record: unknown,
  options?: { maxFieldBytes?: number },
): { line: string } | { field: InvalidEvent["field"]; reason: string };

export declare const DEFAULTS: Readonly<Required<Omit<ClientOptions, "url" | "key">>>;

/** The package's version (also sent in the User-Agent). */
export declare const VERSION: string;

export declare const SERVICE_LIMITS: Readonly<{
  maxBodyBytes: number;
  maxRecords: number;
  maxHoursPerBatch: number;
  maxFieldBytes: number;
}>;
