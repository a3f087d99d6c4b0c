// A host that logs `count` records with `flushOnExit` and then either simply runs out of work
// (`beforeExit`) or waits to be sent SIGTERM: the tests check what reached the service.
import { createClient } from "log-pipeline-client";
import { numbered } from "./records.js";

const [url, mode, count, flushOnExit] = process.argv.slice(2);
const client = createClient({ url, flushOnExit: flushOnExit === "true", flushIntervalMs: 60_000 });
for (const record of numbered(mode, Number(count))) client.log(record);
if (mode === "sigterm") {
  // Keeps the process alive, as a server would, until the signal.
  setInterval(() => {}, 1000);
  process.stdout.write("ready\n");
}
