// The middleware in a real node:http server and a real Express app, delivering to the real
// service: one record per request with its start time, its path (query string removed unless
// asked) and its User-Agent; nothing it does can fail or slow the host's request.

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, request as httpRequest } from "node:http";
import { test } from "node:test";
import express from "express";
import { createClient } from "log-pipeline-client";
import { Service } from "./support/service.js";

/** @param {import("node:http").Server} server */
async function listen(server) {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `http://127.0.0.1:${/** @type {import("node:net").AddressInfo} */ (server.address()).port}`;
}

/** GET with exactly these headers (fetch would add a User-Agent of its own); resolves with the status. */
function get(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (response) => {
      response.resume();
      response.on("end", () => resolve(response.statusCode));
    });
    req.on("error", reject);
    req.end();
  });
}

/** The stored records, by path. */
function storedByPath(service) {
  return new Map(service.storedLines().map((line) => [JSON.parse(line).path, JSON.parse(line)]));
}

test("node:http: one record per request, query string removed, start time and User-Agent kept", async (t) => {
  const service = await Service.start();
  t.after(() => service.stop());
  const client = createClient({ url: service.url });
  const host = createServer((request, response) => {
    // The record is taken before the host's handler runs, so a slow handler does not move it.
    setTimeout(() => response.end("ok"), request.url?.startsWith("/slow") ? 300 : 0);
  });
  client.attach(host);
  const base = await listen(host);
  t.after(() => host.close());

  const sentAt = Date.now();
  const statuses = await Promise.all([
    get(`${base}/search?q=secret&token=abc`, { "user-agent": "Mozilla/5.0 (X11; Linux x86_64)" }),
    get(`${base}/slow`, { "user-agent": "curl/8.5.0" }),
    // A UTF-8 User-Agent as browsers send it (Node's client writes a string's chars as bytes).
    get(`${base}/caf%C3%A9`, { "user-agent": Buffer.from("日本語").toString("latin1") }),
    get(`${base}/no-agent`),
  ]);
  const doneAt = Date.now();
  assert.deepEqual(statuses, [200, 200, 200, 200]);
  const stats = await client.close();
  assert.equal(stats.stored, 4);

  const stored = storedByPath(service);
  assert.deepEqual([...stored.keys()].sort(), ["/caf%C3%A9", "/no-agent", "/search", "/slow"]);
  assert.equal(stored.get("/search").userAgent, "Mozilla/5.0 (X11; Linux x86_64)");
  assert.equal(stored.get("/caf%C3%A9").userAgent, "日本語");
  assert.equal(stored.get("/no-agent").userAgent, "-", "a missing User-Agent is stored as `-`, as in the combined log format");
  for (const record of stored.values()) {
    assert.match(record.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/, "RFC 3339 in UTC");
    const at = Date.parse(record.timestamp);
    assert.ok(at >= sentAt - 1 && at <= doneAt, `${record.timestamp} is within the requests' time`);
  }
  assert.ok(Date.parse(stored.get("/slow").timestamp) < doneAt - 250, "the start time, not the end");
});

test("Express: mounted routers log the URL the client asked for; keepQuery keeps the query string", async (t) => {
  const service = await Service.start();
  t.after(() => service.stop());
  const client = createClient({ url: service.url });
  const app = express();
  app.use("/api", client.express({ keepQuery: true }));
  app.use(client.express());
  const admin = express.Router();
  admin.get("/users", (_request, response) => response.send("users"));
  app.use("/admin", admin);
  app.get("/api/items", (_request, response) => response.send("items"));
  app.get("/fail", () => {
    throw new Error("the host's own error");
  });
  const host = createServer(app);
  const base = await listen(host);
  t.after(() => host.close());

  assert.equal(await get(`${base}/admin/users?page=2`, { "user-agent": "ua-admin" }), 200);
  assert.equal(await get(`${base}/fail?x=1`, { "user-agent": "ua-fail" }), 500);
  assert.equal(await get(`${base}/missing`, { "user-agent": "ua-404" }), 404);
  const stats = await client.close();

  // /api requests pass both middlewares: two records, one with the query string.
  assert.equal(await get(`${base}/api/items?id=7`, { "user-agent": "ua-api" }), 200, "the host still answers after close()");
  const stored = storedByPath(service);
  assert.deepEqual([...stored.keys()].sort(), ["/admin/users", "/fail", "/missing"]);
  assert.equal(stored.get("/admin/users").userAgent, "ua-admin");
  assert.equal(stats.stored, 3);
  assert.equal(client.stats().droppedBy.closed, 2, "records logged after close() are counted, the requests served");
});

test("keepQuery keeps the query string (Express, before close)", async (t) => {
  const service = await Service.start();
  t.after(() => service.stop());
  const client = createClient({ url: service.url });
  const app = express();
  app.use(client.express({ keepQuery: true }));
  app.get("/items", (_request, response) => response.send("items"));
  const host = createServer(app);
  const base = await listen(host);
  t.after(() => host.close());
  assert.equal(await get(`${base}/items?id=7&q=x`, { "user-agent": "ua" }), 200);
  await client.close();
  assert.deepEqual([...storedByPath(service).keys()], ["/items?id=7&q=x"]);
});

test("the middleware never throws into the request path and calls next() before it returns", () => {
  const client = createClient({ url: "http://127.0.0.1:9" });
  const middleware = client.express();
  const hostile = {
    get url() {
      throw new Error("a hostile getter");
    },
    headers: {},
  };
  let nextCalled = 0;
  middleware(hostile, {}, () => nextCalled++);
  middleware({ url: `/${"x".repeat(20_000)}`, headers: { "user-agent": "u".repeat(20_000) } }, {}, () => nextCalled++);
  middleware({}, {}, () => nextCalled++);
  assert.equal(nextCalled, 3, "next() ran synchronously each time");
  assert.equal(client.logRequest(hostile), false);
  const stats = client.stats();
  assert.equal(stats.droppedBy.invalid, 2, "the hostile requests are counted");
  assert.equal(stats.buffered, 2, "an oversized path and agent are cut to the service's limit, an empty request logged as `/`");
  void client.close({ timeoutMs: 1 });
});
