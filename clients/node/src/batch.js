// Batches. The open batch gathers encoded lines; sealing it makes one NDJSON body with its own
// `Idempotency-Key`, which every retry of that body reuses. A sealed body is one Buffer plus the
// offsets of its records, so it can be split (413) or have records taken out (400) without
// re-encoding, and costs the host little more memory than its bytes.

import { randomUUID } from "node:crypto";

/** @typedef {import("./record.js").EncodedRecord} EncodedRecord */

export class OpenBatch {
  /** @type {string[]} */
  lines = [];
  /** @type {number[]} end offset of each line in the body */
  ends = [];
  bytes = 0;
  /** @type {Set<string>} */
  hours = new Set();

  get records() {
    return this.lines.length;
  }

  /**
   * Whether `record` may join without taking the batch past a limit (an empty batch takes any
   * record, even one larger than the byte limit, so that every record can be sent).
   * @param {EncodedRecord} record
   * @param {{ maxBatchRecords: number, maxBatchBytes: number, maxBatchHours: number }} limits
   */
  admits(record, limits) {
    if (this.lines.length === 0) return true;
    return (
      this.lines.length < limits.maxBatchRecords &&
      this.bytes + record.bytes <= limits.maxBatchBytes &&
      (this.hours.size < limits.maxBatchHours || this.hours.has(record.hour))
    );
  }

  /** @param {EncodedRecord} record */
  add(record) {
    this.lines.push(record.line);
    this.bytes += record.bytes;
    this.ends.push(this.bytes);
    this.hours.add(record.hour);
  }

  /**
   * @param {{ maxBatchRecords: number, maxBatchBytes: number }} limits
   */
  isFull(limits) {
    return this.lines.length >= limits.maxBatchRecords || this.bytes >= limits.maxBatchBytes;
  }

  /**
   * The batch as a sealed body; the open batch is empty afterwards.
   * @param {number} seq the order of sealing, by which `flush()` knows what it waits for
   */
  seal(seq) {
    const offsets = new Uint32Array(this.ends.length + 1);
    offsets.set(this.ends, 1);
    const sealed = new SealedBatch(Buffer.from(this.lines.join("")), offsets, seq);
    this.lines = [];
    this.ends = [];
    this.bytes = 0;
    this.hours = new Set();
    return sealed;
  }
}

export class SealedBatch {
  /** One key for every attempt of this body: the service stores it once however often it is sent. */
  key = randomUUID();
  /** Attempts made so far of this body. */
  attempts = 0;

  /**
   * @param {Buffer} body NDJSON, one line per record
   * @param {Uint32Array} offsets where each record starts, and the body's length last
   * @param {number} seq
   * @param {number} [firstSentAt] when its records were first sent (ms, monotonic), for
   *   `retryForMs`: a part of a batch keeps the batch's
   */
  constructor(body, offsets, seq, firstSentAt) {
    this.body = body;
    this.offsets = offsets;
    this.seq = seq;
    this.firstSentAt = firstSentAt;
  }

  get records() {
    return this.offsets.length - 1;
  }

  /** The two halves (by records), each a new batch with its own key. */
  halves() {
    const middle = Math.floor(this.records / 2);
    return [this.#slice(0, middle), this.#slice(middle, this.records)];
  }

  /**
   * A new batch (with its own key) of the records not in `excluded`, or undefined if none is left.
   * @param {Set<number>} excluded record indexes
   */
  without(excluded) {
    const kept = [];
    for (let i = 0; i < this.records; i++) if (!excluded.has(i)) kept.push(this.#line(i));
    if (kept.length === 0) return undefined;
    const offsets = new Uint32Array(kept.length + 1);
    kept.forEach((line, i) => (offsets[i + 1] = offsets[i] + line.length));
    return new SealedBatch(Buffer.concat(kept), offsets, this.seq, this.firstSentAt);
  }

  /**
   * The records as objects (for reports), all or those at `indexes`.
   * @param {number[]} [indexes]
   */
  recordsAt(indexes) {
    const at = indexes ?? Array.from({ length: this.records }, (_, i) => i);
    return at.map((i) => JSON.parse(this.#line(i).toString()));
  }

  #line(i) {
    return this.body.subarray(this.offsets[i], this.offsets[i + 1]);
  }

  #slice(from, to) {
    const base = this.offsets[from];
    const offsets = this.offsets.slice(from, to + 1).map((offset) => offset - base);
    return new SealedBatch(this.body.subarray(base, this.offsets[to]), offsets, this.seq, this.firstSentAt);
  }
}
