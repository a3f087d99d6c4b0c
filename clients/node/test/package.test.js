// The package as users get it: `npm pack`, installed into an empty directory with npm, then
// imported (ESM) and required (CommonJS) there and used against the real service.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { Service } from "./support/service.js";

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const manifest = JSON.parse(readFileSync(join(packageRoot, "package.json"), "utf8"));

const USE = (load) => `
${load}
const client = createClient({ url: process.argv[2] });
client.log({ timestamp: "2025-11-22T14:23:00Z", path: "/" + process.argv[3], userAgent: "packed" });
client.close().then((stats) => console.log(JSON.stringify({ stats, version: VERSION })));
`;

test("npm pack: the tarball installs into an empty directory and works from ESM and CommonJS", async (t) => {
  const service = await Service.start();
  t.after(() => service.stop());
  const work = mkdtempSync(join(tmpdir(), "log-pipeline-client-pack-"));
  t.after(() => rmSync(work, { recursive: true, force: true }));

  const [packed] = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", work], { cwd: packageRoot, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }));
  const files = packed.files.map((file) => file.path).sort();
  assert.ok(files.includes("src/index.js") && files.includes("dist/cjs/index.js") && files.includes("index.d.ts") && files.includes("README.md"), files.join(" "));
  assert.deepEqual(files.filter((file) => file.startsWith("test/") || file.startsWith("node_modules/") || file.startsWith("bench/")), []);

  const app = join(work, "app");
  execFileSync("mkdir", ["-p", app]);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true }));
  execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", join(work, packed.filename)], { cwd: app, stdio: "ignore" });
  const installed = JSON.parse(readFileSync(join(app, "node_modules", manifest.name, "package.json"), "utf8"));
  assert.equal(installed.version, manifest.version);

  writeFileSync(join(app, "use.mjs"), USE(`import { createClient, VERSION } from "${manifest.name}";`));
  writeFileSync(join(app, "use.cjs"), USE(`const { createClient, VERSION } = require("${manifest.name}");`));
  for (const [file, label] of [["use.mjs", "esm"], ["use.cjs", "cjs"]]) {
    const out = JSON.parse(execFileSync("node", [file, service.url, label], { cwd: app, encoding: "utf8" }));
    assert.equal(out.version, manifest.version, `${file}: VERSION is package.json's`);
    assert.equal(out.stats.stored, 1, `${file} stored its record`);
  }
  assert.deepEqual(service.storedLines().sort(), [
    '{"timestamp":"2025-11-22T14:23:00Z","path":"/cjs","userAgent":"packed"}',
    '{"timestamp":"2025-11-22T14:23:00Z","path":"/esm","userAgent":"packed"}',
  ]);
  assert.deepEqual(Object.keys(installed.dependencies ?? {}), [], "no runtime dependencies");
});
