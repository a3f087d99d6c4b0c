// The website for the benchmark: a node:http server answering "ok", with or without the client's
// middleware (argv: the service URL, or "none"). Prints its port once it listens.
import { createServer } from "node:http";
import { createClient } from "log-pipeline-client";

const serviceUrl = process.argv[2];
const server = createServer((_request, response) => response.end("ok"));
const client = serviceUrl === "none" ? undefined : createClient({ url: serviceUrl });
client?.attach(server);
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${/** @type {import("node:net").AddressInfo} */ (server.address()).port}\n`);
});
process.on("SIGTERM", async () => {
  server.close();
  const stats = await client?.close();
  process.stdout.write(`${JSON.stringify(stats ?? null)}\n`);
  process.exit(0);
});
