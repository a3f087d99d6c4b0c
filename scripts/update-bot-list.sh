#!/usr/bin/env bash
# Replaces assets/bots/isbot.json (the bot pattern list the analytics classify user agents with)
# and assets/bots/LICENSE with those of the npm package isbot at VERSION, e.g.
#   scripts/update-bot-list.sh 5.2.3
# It downloads the package tarball with `npm pack` (nothing is installed), reads the package's own
# exported `list` with Node, and writes one data file. Rebuild the binary afterwards: the list is
# embedded. Summaries classified with another list are reclassified as their hours are next read.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: scripts/update-bot-list.sh VERSION (see npm view isbot version)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "isbot@$version" >/dev/null && tar xzf isbot-*.tgz)
node -e '
const pkg = require(process.argv[1] + "/package/package.json");
const { list } = require(process.argv[1] + "/package");
if (!Array.isArray(list) || list.length === 0) throw new Error("isbot exports no pattern list");
const file = {
  name: pkg.name,
  version: pkg.version,
  license: pkg.license,
  source: "npm package " + pkg.name + "@" + pkg.version + ", its exported `list` (src/patterns.json of " + pkg.repository.url.replace(/^git\+/, "") + ")",
  patterns: list,
};
process.stdout.write(JSON.stringify(file, null, 2) + "\n");
' "$work" >assets/bots/isbot.json.tmp
mv assets/bots/isbot.json.tmp assets/bots/isbot.json
cp "$work/package/LICENSE" assets/bots/LICENSE
echo "assets/bots/isbot.json: isbot $version, $(grep -c '^    "' assets/bots/isbot.json) patterns"
