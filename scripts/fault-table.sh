#!/usr/bin/env bash
# Prints the summary rows (JSON lines) of the fault and scale suites as a Markdown table.
set -euo pipefail
python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
columns = ["scenario", "runs", "acknowledged", "refused", "lost", "duplicated",
           "refused_yet_stored", "torn", "never_sent", "server_errors", "notes"]
titles = ["scenario", "runs", "acknowledged", "refused", "lost", "duplicated",
          "refused yet stored", "torn", "never sent", "5xx", "notes"]
print()
print("| " + " | ".join(titles) + " |")
print("|" + "|".join("---" for _ in titles) + "|")
for row in rows:
    print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
PY
