// Numbered records and the check every delivery test ends with: each record logged is stored
// exactly once, read back from the service's hour files (what a user of the service sees).

import assert from "node:assert/strict";

/** 2025-11-22T14:00:00Z: records a millisecond apart stay in one or two hours. */
export const BASE_MS = Date.UTC(2025, 10, 22, 14, 0, 0);

/**
 * Records whose paths are `/<label>/<n>`, unique across a test, `n` from `from`.
 * @param {string} label
 * @param {number} count
 * @param {{ from?: number, pathBytes?: number }} [options] pathBytes pads each path to about that size
 */
export function numbered(label, count, { from = 0, pathBytes = 0 } = {}) {
  return Array.from({ length: count }, (_, i) => {
    const n = from + i;
    const path = `/${label}/${n}`;
    return {
      timestamp: BASE_MS + n,
      path: pathBytes > path.length ? `${path}/${"p".repeat(pathBytes - path.length - 1)}` : path,
      userAgent: "Mozilla/5.0 (test)",
    };
  });
}

/**
 * Asserts that the service stored every one of `records` (by path) exactly once, and nothing else.
 * @param {import("./service.js").Service} service
 * @param {{ path: string }[]} records
 */
export function assertStoredOnce(service, records) {
  const stored = service.storedLines().map((line) => JSON.parse(line).path);
  const counts = new Map();
  for (const path of stored) counts.set(path, (counts.get(path) ?? 0) + 1);
  const twice = [...counts].filter(([, n]) => n > 1).map(([path]) => path);
  const missing = records.filter((record) => !counts.has(record.path)).map((record) => record.path);
  assert.deepEqual({ twice: twice.slice(0, 5), missing: missing.slice(0, 5) }, { twice: [], missing: [] });
  assert.equal(stored.length, records.length, "lines in the hour files");
}

/**
 * Waits until `condition()` is true, polling; fails with `what` after `timeoutMs`.
 * @param {() => boolean | Promise<boolean>} condition
 * @param {string} what
 * @param {number} [timeoutMs]
 */
export async function waitFor(condition, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
