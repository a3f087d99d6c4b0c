#!/usr/bin/env bash
# Builds the release binary if needed and prints its path, as cargo reports it: right wherever the
# target directory is (the default target/, CARGO_TARGET_DIR, or a target-dir in a cargo config).
# Cargo's progress and errors go to stderr. Used by the Makefile and the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin log-pipeline --message-format=json-render-diagnostics |
    python3 -c '
import json, sys
paths = [m["executable"] for m in map(json.loads, sys.stdin)
         if m.get("reason") == "compiler-artifact" and m.get("executable")]
if not paths:
    sys.exit("release-binary.sh: cargo reported no executable")
print(paths[-1])
'
