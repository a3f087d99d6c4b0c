// Timestamps as the service reads and stores them: any RFC 3339 text it accepts (chrono's
// `parse_from_rfc3339` plus the service's own rules) is turned into the form it stores, UTC with
// `Z` and the fraction trimmed of trailing zeros (Go's RFC3339Nano). A record sent in that form
// takes the service's fastest path and is stored byte for byte as sent.

/** Milliseconds since the epoch of 0000-01-01T00:00:00Z and of 10000-01-01T00:00:00Z. */
const FIRST_MS = -62167219200000;
const END_MS = 253402300800000;

// chrono's grammar: `T`, `t` or a space between date and time; 1 or more fraction digits (the
// service refuses more than 9); `Z`, `z` or an offset whose sign may be U+2212 and whose minutes
// are 00-59. The service refuses texts over 64 bytes before parsing them.
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+\-\u2212])(\d{2}):([0-5]\d))$/;
const MAX_TEXT_BYTES = 64;

/** The last second formatted by formatMillis, and its text (`2025-11-22T14:23:00`). */
let lastSecond = NaN;
let lastSeconds = "";

/**
 * Formats milliseconds since the epoch in the stored form, or returns an error reason.
 * @param {number} ms
 * @returns {{ text: string } | { reason: string }}
 */
export function formatMillis(ms) {
  if (!Number.isFinite(ms)) return { reason: "is not a finite number of milliseconds" };
  if (ms < FIRST_MS || ms >= END_MS) return { reason: "is outside years 0000-9999 in UTC" };
  const whole = Math.floor(ms);
  const second = Math.floor(whole / 1000);
  // Records come in time order, many a second: the date and time of day are formatted once a
  // second (toISOString costs more than the rest of a record).
  if (second !== lastSecond) {
    // toISOString writes four-digit years in this range: `2025-11-22T14:23:00.120Z`.
    lastSeconds = new Date(second * 1000).toISOString().slice(0, 19);
    lastSecond = second;
  }
  const millis = whole - second * 1000;
  return { text: millis === 0 ? `${lastSeconds}Z` : trimFraction(lastSeconds, String(millis).padStart(3, "0")) };
}

/**
 * Reads an RFC 3339 text the way the service does and returns it in the stored form, or the
 * reason the service would give for refusing it.
 * @param {string} text
 * @returns {{ text: string } | { reason: string }}
 */
export function normalizeText(text) {
  if (Buffer.byteLength(text) > MAX_TEXT_BYTES) {
    return { reason: `is ${Buffer.byteLength(text)} bytes long, not an RFC 3339 timestamp` };
  }
  const m = RFC3339.exec(text);
  if (m === null) return { reason: `${JSON.stringify(text)} is not an RFC 3339 timestamp with offset` };
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const fraction = m[7] ?? "";
  if (fraction.length > 9) {
    return { reason: `${JSON.stringify(text)} has ${fraction.length} fractional-second digits; at most 9 (nanoseconds)` };
  }
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) {
    return { reason: `${JSON.stringify(text)} is not a valid date` };
  }
  if (hour > 23 || minute > 59 || second > 60) {
    return { reason: `${JSON.stringify(text)} is not a valid time of day` };
  }
  if (second === 60) {
    return { reason: `${JSON.stringify(text)} is a leap second, which is not supported` };
  }
  let offsetMinutes = 0;
  if (m[8] !== undefined) {
    const hours = Number(m[9]);
    if (hours > 23) return { reason: `${JSON.stringify(text)} has an offset beyond 23:59` };
    offsetMinutes = (m[8] === "+" ? 1 : -1) * (hours * 60 + Number(m[10]));
  }
  const seconds =
    daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offsetMinutes * 60;
  const ms = seconds * 1000;
  if (ms < FIRST_MS || ms >= END_MS) {
    return { reason: `${JSON.stringify(text)} is outside years 0000-9999 in UTC` };
  }
  return { text: trimFraction(new Date(ms).toISOString().slice(0, 19), fraction) };
}

/** `2025-11-22T14:23:00` and `500` -> `2025-11-22T14:23:00.5Z`; `000` -> no fraction. */
function trimFraction(seconds, fraction) {
  let end = fraction.length;
  while (end > 0 && fraction.charCodeAt(end - 1) === 48) end--;
  return end === 0 ? `${seconds}Z` : `${seconds}.${fraction.slice(0, end)}Z`;
}

function daysInMonth(year, month) {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`). */
function daysFromCivil(year, month, day) {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}
