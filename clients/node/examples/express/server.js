// An Express site forwarding its access records to a log-pipeline service.
//
//   LOG_PIPELINE_URL=http://127.0.0.1:8082 [LOG_PIPELINE_KEY=...] [PORT=3000] npm start
//   curl localhost:3000/products/42?ref=mail     # stored as path /products/42
//
// The records land in the service's hour files within about a second (flushIntervalMs). Ctrl-C or
// SIGTERM delivers what is still buffered before the process ends.
import express from "express";
import { createClient } from "log-pipeline-client";

const logs = createClient({
  url: process.env.LOG_PIPELINE_URL ?? "http://127.0.0.1:8082",
  key: process.env.LOG_PIPELINE_KEY,
  flushOnExit: true,
});
logs.on("rejected", ({ status, error }) => console.error(`log-pipeline refused a batch: ${status}`, error));
logs.on("dropped", ({ reason, count }) => console.warn(`log-pipeline: ${count} records dropped (${reason})`));
logs.on("retry", ({ status, error, delayMs }) => console.warn(`log-pipeline: retrying in ${delayMs} ms after ${status ?? error}`));

const app = express();
// First, so that each record's time is the request's start.
app.use(logs.express());
app.get("/", (_request, response) => response.send("home\n"));
app.get("/products/:id", (request, response) => response.send(`product ${request.params.id}\n`));
app.get("/stats", (_request, response) => response.json(logs.stats()));

const server = app.listen(Number(process.env.PORT ?? 3000), () => {
  console.log(`listening on http://localhost:${server.address().port}, logging to ${process.env.LOG_PIPELINE_URL ?? "http://127.0.0.1:8082"}`);
});
// Ctrl-C: stop taking requests and deliver the buffer (SIGTERM is handled by flushOnExit).
process.on("SIGINT", async () => {
  server.close();
  const stats = await logs.close();
  console.log(`stored ${stats.stored}, dropped ${stats.dropped}`);
  process.exit(0);
});
