// The client: a bounded buffer of encoded records, cut into batches by count, bytes, hours and
// age, each delivered with its own Idempotency-Key by at most `maxInFlight` requests at once,
// retried as `answers.js` decides until it is stored, refused, or older than `retryForMs`.
//
// Nothing here runs in the host's request path but `log()`, which is synchronous, never throws
// and never waits: when the buffer is full the record is dropped and counted.

import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import { invalidRecords, retryDelayMs, verdict } from "./answers.js";
import { OpenBatch } from "./batch.js";
import { installExitHooks } from "./exit.js";
import { attachToServer, expressMiddleware, requestRecord } from "./middleware.js";
import { resolveOptions } from "./options.js";
import { encodeRecord } from "./record.js";
import { post, wireBody } from "./transport.js";

/** @typedef {import("./batch.js").SealedBatch} SealedBatch */
/** @typedef {import("./transport.js").Answer} Answer */

/** Why an attempt was aborted: its own timeout (retried) or `close()`'s deadline (given up). */
const TIMED_OUT = "request timed out";
const CLOSED = "client closed";
/** Per-record drops (a full buffer, `log()` after `close()`) are reported at most once a second. */
const DROP_REPORT_MS = 1000;

const now = () => performance.now();

export class LogClient extends EventEmitter {
  #options;
  #open = new OpenBatch();
  /** @type {NodeJS.Timeout | undefined} seals the open batch when its first record is old enough */
  #ageTimer;
  /** @type {SealedBatch[]} sealed batches waiting to be sent; retries go back to the front */
  #queue = [];
  /** @type {Map<SealedBatch, AbortController>} */
  #inFlight = new Map();
  /** No attempt starts before this (ms, monotonic): the backoff after a failure. */
  #pausedUntil = 0;
  #failuresInARow = 0;
  /** @type {NodeJS.Timeout | undefined} */
  #pumpTimer;
  #lastSeq = 0;
  /** Live batches by the seq of the batch they came from (a split makes two of one). */
  #pieces = new Map();
  /** @type {{ seq: number, resolve: () => void }[]} */
  #flushWaiters = [];
  #closed = false;
  /** Set at `close()`'s deadline: every batch still held is given up. */
  #abandoned = false;
  /** @type {Promise<ClientStats> | undefined} */
  #closing;
  /** @type {{ remove(): void } | undefined} */
  #exitHooks;
  #counts = {
    logged: 0,
    sent: 0,
    stored: 0,
    replayed: 0,
    retried: 0,
    requests: 0,
    bytesSent: 0,
    splits: 0,
    buffered: 0,
    bufferedBytes: 0,
  };
  #dropped = { invalid: 0, bufferFull: 0, rejected: 0, expired: 0, closed: 0, unconfirmed: 0 };
  #unreportedDrops = { bufferFull: 0, closed: 0 };
  /** @type {NodeJS.Timeout | undefined} */
  #dropReportTimer;

  /** @param {import("../index.js").ClientOptions} options */
  constructor(options) {
    super();
    this.#options = resolveOptions(options);
    if (this.#options.flushOnExit) this.#exitHooks = installExitHooks(this);
  }

  /**
   * Buffers one record. True if it was taken; false if it was invalid (an `invalid` event says
   * why), the buffer was full, or the client is closed (both counted, reported by `dropped`).
   * @param {import("../index.js").LogRecord} record
   */
  log(record) {
    this.#counts.logged++;
    if (this.#closed) return this.#dropOne("closed");
    const encoded = encodeRecord(record, this.#options.maxFieldBytes);
    if (!("line" in encoded)) {
      this.#dropped.invalid++;
      queueMicrotask(() => this.#emit("invalid", { record, field: encoded.field, reason: encoded.reason }));
      return false;
    }
    const counts = this.#counts;
    if (counts.buffered >= this.#options.maxBufferRecords || counts.bufferedBytes + encoded.bytes > this.#options.maxBufferBytes) {
      return this.#dropOne("bufferFull");
    }
    if (!this.#open.admits(encoded, this.#options)) this.#seal();
    this.#open.add(encoded);
    counts.buffered++;
    counts.bufferedBytes += encoded.bytes;
    if (this.#open.isFull(this.#options)) this.#seal();
    else if (this.#open.records === 1) {
      this.#ageTimer = setTimeout(() => this.#seal(), this.#options.flushIntervalMs).unref();
    }
    return true;
  }

  /**
   * Logs `request` (node:http or Express) as one record. Never throws.
   * @param {import("./middleware.js").RequestLike} request
   * @param {import("./middleware.js").RequestOptions} [options]
   */
  logRequest(request, options) {
    const startMs = Date.now();
    try {
      return this.log(requestRecord(request, startMs, this.#options.maxFieldBytes, options?.keepQuery === true));
    } catch {
      // Only a hostile request object (a throwing getter) gets here: drop it, never the request.
      this.#counts.logged++;
      this.#dropped.invalid++;
      return false;
    }
  }

  /** An Express middleware: `app.use(client.express())`. */
  express(/** @type {import("./middleware.js").RequestOptions} */ options) {
    return expressMiddleware((request) => this.logRequest(request, options));
  }

  /** Logs every request of a node:http server; returns a function that stops it. */
  attach(/** @type {import("node:events").EventEmitter} */ server, /** @type {import("./middleware.js").RequestOptions} */ options) {
    return attachToServer(server, (request) => this.logRequest(request, options));
  }

  /** Sends what is buffered; resolves when every record logged before the call is stored or dropped. */
  flush() {
    this.#seal();
    const seq = this.#lastSeq;
    if (this.#settledThrough(seq)) return Promise.resolve();
    return /** @type {Promise<void>} */ (
      new Promise((resolve) => {
        this.#flushWaiters.push({ seq, resolve });
        this.#pumpTimer?.ref();
      })
    );
  }

  /**
   * Stops taking records and delivers the buffer, for at most `timeoutMs`; what is left then is
   * dropped and counted. Resolves with the final counts; never rejects.
   * @param {{ timeoutMs?: number }} [options]
   */
  close(options) {
    this.#closing ??= this.#shutDown(options?.timeoutMs ?? this.#options.closeTimeoutMs);
    return this.#closing;
  }

  /** A snapshot of the counters (see the README's "Counters"). */
  stats() {
    const dropped = Object.values(this.#dropped).reduce((sum, n) => sum + n, 0);
    return { ...this.#counts, dropped, droppedBy: { ...this.#dropped }, inFlight: this.#inFlight.size };
  }

  async #shutDown(timeoutMs) {
    this.#closed = true;
    this.#exitHooks?.remove();
    /** @type {NodeJS.Timeout | undefined} */
    let timer;
    const deadline = new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs, CLOSED)));
    const outcome = await Promise.race([this.flush(), deadline]);
    clearTimeout(timer);
    if (outcome === CLOSED) {
      this.#abandoned = true;
      clearTimeout(this.#pumpTimer);
      this.#pumpTimer = undefined;
      for (const batch of this.#queue.splice(0)) this.#drop(batch, "closed");
      for (const controller of this.#inFlight.values()) controller.abort(CLOSED);
      await this.flush();
    }
    this.#reportDrops();
    return this.stats();
  }

  #seal() {
    clearTimeout(this.#ageTimer);
    this.#ageTimer = undefined;
    if (this.#open.records === 0) return;
    const batch = this.#open.seal(++this.#lastSeq);
    this.#pieces.set(batch.seq, 1);
    this.#queue.push(batch);
    this.#pump();
  }

  /** Starts attempts while there is room in flight and no backoff is running. */
  #pump() {
    while (this.#pumpTimer === undefined && this.#queue.length > 0 && this.#inFlight.size < this.#options.maxInFlight) {
      const wait = this.#pausedUntil - now();
      if (wait > 0) {
        this.#pumpTimer = setTimeout(() => {
          this.#pumpTimer = undefined;
          this.#pump();
        }, wait);
        // Backoff alone does not keep the host's process alive, unless someone awaits delivery.
        if (this.#flushWaiters.length === 0) this.#pumpTimer.unref();
        return;
      }
      // #attempt handles every failure of the request itself; this catch only keeps a bug of
      // ours from becoming an unhandled rejection, which would end the host's process.
      this.#attempt(/** @type {SealedBatch} */ (this.#queue.shift())).catch((error) => {
        process.emitWarning(`log-pipeline-client: ${error?.stack ?? error}`, "LogPipelineClientWarning");
      });
    }
  }

  /** @param {SealedBatch} batch */
  async #attempt(batch) {
    const controller = new AbortController();
    this.#inFlight.set(batch, controller);
    const timeout = setTimeout(() => controller.abort(TIMED_OUT), this.#options.requestTimeoutMs).unref();
    if (batch.firstSentAt === undefined) {
      batch.firstSentAt = now();
      this.#counts.sent += batch.records;
    } else {
      this.#counts.retried++;
    }
    batch.attempts++;
    this.#counts.requests++;
    /** @type {Answer | undefined} */
    let answer;
    let failure;
    try {
      const wire = await wireBody(batch.body, this.#options.gzipAboveBytes);
      this.#counts.bytesSent += wire.bytes.length;
      answer = await post(this.#options, wire, batch.key, controller.signal);
    } catch (error) {
      failure = error;
    } finally {
      clearTimeout(timeout);
      this.#inFlight.delete(batch);
    }
    if (controller.signal.reason === CLOSED) this.#drop(batch, "unconfirmed");
    else if (answer === undefined) this.#retry(batch, { error: describeFailure(failure, controller.signal) });
    else this.#decide(batch, answer);
    this.#pump();
  }

  /**
   * @param {SealedBatch} batch
   * @param {Answer} answer
   */
  #decide(batch, answer) {
    const next = verdict(answer.status, answer.retryAfter, batch.records, Date.now());
    if (next.kind === "stored") {
      this.#failuresInARow = 0;
      this.#counts.stored += batch.records;
      if (answer.replayed) this.#counts.replayed++;
      this.#forget(batch.records, batch.body.length);
      this.#settle(batch.seq);
    } else if (next.kind === "retry") {
      this.#retry(batch, { status: answer.status, error: answer.body }, next.retryAfterMs);
    } else if (next.kind === "split") {
      this.#counts.splits++;
      this.#pieces.set(batch.seq, this.#pieces.get(batch.seq) + 1);
      this.#requeue(batch.halves());
    } else {
      this.#reject(batch, answer);
    }
  }

  /**
   * @param {SealedBatch} batch
   * @param {{ status?: number, error: unknown }} cause
   * @param {number} [retryAfterMs]
   */
  #retry(batch, cause, retryAfterMs) {
    this.#failuresInARow++;
    const delayMs = retryDelayMs(this.#failuresInARow, retryAfterMs, this.#options);
    if (now() + delayMs - (batch.firstSentAt ?? now()) > this.#options.retryForMs) {
      this.#drop(batch, "expired", cause);
      return;
    }
    this.#pausedUntil = Math.max(this.#pausedUntil, now() + delayMs);
    this.#emit("retry", { ...cause, attempt: batch.attempts, delayMs, records: batch.records });
    this.#requeue([batch]);
  }

  /**
   * A refused batch: reported, not retried. When the service named the invalid records (400
   * `invalid_records`), only those are given up; the others are sent again as a new batch.
   * @param {SealedBatch} batch
   * @param {Answer} answer
   */
  #reject(batch, answer) {
    const invalid = answer.status === 400 ? invalidRecords(answer.body, batch.records) : undefined;
    if (invalid === undefined) {
      this.#emit("rejected", { status: answer.status, error: answer.body, records: batch.recordsAt() });
      this.#drop(batch, "rejected");
      return;
    }
    const indexes = [...invalid.keys()].sort((a, b) => a - b);
    const records = batch.recordsAt(indexes);
    const rest = batch.without(new Set(indexes));
    this.#dropped.rejected += indexes.length;
    this.#forget(indexes.length, batch.body.length - (rest?.body.length ?? 0));
    this.#emit("rejected", {
      status: answer.status,
      error: answer.body,
      records,
      invalid: indexes.map((index, i) => ({ index, record: records[i], errors: invalid.get(index) })),
    });
    if (rest === undefined) this.#settle(batch.seq);
    else this.#requeue([rest]);
  }

  /** Puts batches back at the front of the queue, in order (or gives them up after `close()`'s deadline). */
  #requeue(/** @type {SealedBatch[]} */ batches) {
    if (this.#abandoned) {
      for (const batch of batches) this.#drop(batch, "closed");
      return;
    }
    this.#queue.unshift(...batches);
  }

  /**
   * @param {SealedBatch} batch
   * @param {"rejected" | "expired" | "closed" | "unconfirmed"} reason
   * @param {{ status?: number, error: unknown }} [cause]
   */
  #drop(batch, reason, cause) {
    this.#dropped[reason] += batch.records;
    this.#forget(batch.records, batch.body.length);
    if (reason === "closed") this.#unreportedDrops.closed += batch.records;
    else if (reason !== "rejected") this.#emit("dropped", { reason, count: batch.records, ...cause });
    this.#settle(batch.seq);
  }

  /** @param {"bufferFull" | "closed"} reason */
  #dropOne(reason) {
    this.#dropped[reason]++;
    this.#unreportedDrops[reason]++;
    this.#dropReportTimer ??= setTimeout(() => this.#reportDrops(), DROP_REPORT_MS).unref();
    return false;
  }

  #reportDrops() {
    clearTimeout(this.#dropReportTimer);
    this.#dropReportTimer = undefined;
    for (const [reason, count] of Object.entries(this.#unreportedDrops)) {
      if (count === 0) continue;
      this.#unreportedDrops[/** @type {"bufferFull" | "closed"} */ (reason)] = 0;
      this.#emit("dropped", { reason, count });
    }
  }

  #forget(records, bytes) {
    this.#counts.buffered -= records;
    this.#counts.bufferedBytes -= bytes;
  }

  /** One batch of `seq` is done (stored or dropped); wakes the flushes that waited for it. */
  #settle(seq) {
    const left = this.#pieces.get(seq) - 1;
    if (left > 0) {
      this.#pieces.set(seq, left);
      return;
    }
    this.#pieces.delete(seq);
    this.#flushWaiters = this.#flushWaiters.filter((waiter) => {
      if (!this.#settledThrough(waiter.seq)) return true;
      waiter.resolve();
      return false;
    });
    if (this.#flushWaiters.length === 0) this.#pumpTimer?.unref();
  }

  /** Whether every batch sealed up to `seq` is done. Seqs enter `#pieces` in increasing order. */
  #settledThrough(seq) {
    const oldest = this.#pieces.keys().next();
    return oldest.done === true || oldest.value > seq;
  }

  /** Emits to the host's listeners; a listener that throws must not break delivery. */
  #emit(name, payload) {
    try {
      this.emit(name, payload);
    } catch (error) {
      process.emitWarning(`a "${name}" listener of log-pipeline-client threw: ${error}`, "LogPipelineClientWarning");
    }
  }
}

/**
 * @param {unknown} failure
 * @param {AbortSignal} signal
 */
function describeFailure(failure, signal) {
  if (signal.reason === TIMED_OUT) return TIMED_OUT;
  if (failure instanceof Error) {
    const cause = /** @type {{ cause?: { code?: string, message?: string } }} */ (failure).cause;
    return cause?.code ?? cause?.message ?? failure.message;
  }
  return String(failure);
}

/** @typedef {ReturnType<LogClient["stats"]>} ClientStats */
