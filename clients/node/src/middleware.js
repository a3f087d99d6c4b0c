// One record per request of the host's server: its start time, its path (query string removed
// unless asked: URLs carry tokens and personal data) and its User-Agent. What runs in the host's
// request path is synchronous, cannot throw into it and awaits nothing.

import { fitField } from "./record.js";

/** Apache's combined log format writes `-` for a missing header; the service needs a value. */
const NO_USER_AGENT = "-";
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * @typedef {{ keepQuery?: boolean }} RequestOptions
 * @typedef {{ url?: string, originalUrl?: string, headers?: Record<string, string | string[] | undefined> }} RequestLike
 */

/**
 * The record for `request`, started at `startMs`. Its fields always pass the service's checks
 * (a path or user agent over `maxFieldBytes` is cut, not refused).
 * @param {RequestLike} request a node:http IncomingMessage or an Express request
 * @param {number} startMs
 * @param {number} maxFieldBytes
 * @param {boolean} keepQuery
 */
export function requestRecord(request, startMs, maxFieldBytes, keepQuery) {
  // Express rewrites `url` inside mounted routers; `originalUrl` is what the client asked for.
  const target = request.originalUrl ?? request.url ?? "/";
  const end = keepQuery ? -1 : target.indexOf("?");
  const path = headerText(end === -1 ? target : target.slice(0, end));
  const agent = request.headers?.["user-agent"];
  const userAgent = typeof agent === "string" ? headerText(agent) : "";
  return {
    timestamp: startMs,
    path: fitField(path, maxFieldBytes) || "/",
    userAgent: fitField(userAgent, maxFieldBytes) || NO_USER_AGENT,
  };
}

/**
 * Node reads request lines and headers as Latin-1, so UTF-8 bytes arrive as one character each;
 * read them back as UTF-8 (invalid sequences become U+FFFD), which is what the client sent.
 * @param {string} text
 */
function headerText(text) {
  return NON_ASCII.test(text) ? Buffer.from(text, "latin1").toString("utf8") : text;
}

/**
 * An Express (or Connect) middleware logging each request through `logRequest`.
 * @param {(request: RequestLike) => boolean} logRequest never throws
 */
export function expressMiddleware(logRequest) {
  return function logPipeline(request, _response, next) {
    logRequest(request);
    next();
  };
}

/**
 * Logs every request `server` (node:http, https or http2 in compatibility mode; Fastify's
 * `fastify.server`, Koa's, ...) receives, before its own handlers run. Returns a function that
 * stops it.
 * @param {import("node:events").EventEmitter} server
 * @param {(request: RequestLike) => boolean} logRequest never throws
 */
export function attachToServer(server, logRequest) {
  const listener = (/** @type {RequestLike} */ request) => {
    logRequest(request);
  };
  server.prependListener("request", listener);
  return () => {
    server.removeListener("request", listener);
  };
}
