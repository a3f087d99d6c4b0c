// Builds the CommonJS entry (`require("log-pipeline-client")`) from the ES modules in src/:
// each file transpiled by TypeScript's `transpileModule` (imports become requires, nothing else
// changes) into dist/cjs/, marked CommonJS, with the same type declarations. Run by `npm pack`
// (prepack) and `npm test`.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "cjs");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const name of readdirSync(join(root, "src"))) {
  if (!name.endsWith(".js")) continue;
  const source = readFileSync(join(root, "src", name), "utf8");
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
    fileName: name,
  });
  writeFileSync(join(out, name), outputText);
}
writeFileSync(join(out, "package.json"), '{ "type": "commonjs" }\n');
copyFileSync(join(root, "index.d.ts"), join(out, "index.d.ts"));
