// Type-checked by `npm run lint` (tsc --noEmit), never run: the declarations in index.d.ts used
// as the README shows them, so that a change to one that breaks the other fails the lint.
import { createClient, encodeRecord, DEFAULTS, type ClientStats, type RejectedEvent } from "log-pipeline-client";
import { createServer } from "node:http";

const client = createClient({ url: "http://127.0.0.1:8082", key: "site-key", maxBatchRecords: 500 });
const accepted: boolean = client.log({ timestamp: new Date(), path: "/home", userAgent: "curl/8" });
client.log({ timestamp: Date.now(), path: "/a", userAgent: "ua" });
client.log({ timestamp: "2025-11-22T14:23:00Z", path: "/a", userAgent: "ua" });
client.on("rejected", (event: RejectedEvent) => console.error(event.status, event.error, event.invalid?.[0]?.errors));
client.on("dropped", ({ reason, count }) => console.warn(reason, count));
client.on("invalid", ({ field, reason }) => console.warn(field, reason));
client.on("retry", ({ status, delayMs }) => console.info(status, delayMs));
const server = createServer((_request, response) => response.end("ok"));
const detach: () => void = client.attach(server, { keepQuery: true });
const middleware = client.express();
middleware({ url: "/a", headers: {} }, {}, () => {});
const line = encodeRecord({ timestamp: 0, path: "/", userAgent: "ua" }, { maxFieldBytes: DEFAULTS.maxFieldBytes });
if ("line" in line) console.log(line.line.length);
else console.log(line.field, line.reason);
void client.flush().then(async () => {
  detach();
  const stats: ClientStats = await client.close({ timeoutMs: 5000 });
  console.log(accepted, stats.stored + stats.dropped + stats.buffered === stats.logged, stats.droppedBy.bufferFull);
});
