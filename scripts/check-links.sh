#!/usr/bin/env bash
# Checks every relative link and every `#anchor` in the project's Markdown: README.md, docs/**/*.md
# and clients/**/README.md (node_modules excluded). Anchors follow GitHub's rules: the heading's
# text without its Markdown (code spans, links, emphasis), lowercased, punctuation dropped except
# `-` and `_`, spaces turned into `-`, and `-1`, `-2`, ... for repeated headings. Links inside
# code (fenced blocks, code spans) and to other sites are not checked.
#
#   scripts/check-links.sh               check the repository's files; exit 1 naming each broken link
#   scripts/check-links.sh FILE...       check these files only
#   scripts/check-links.sh --self-test   prove the checker finds broken links and anchors
#
# `make lint` runs both the check and the self-test. Needs Python 3 (standard library only).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == --self-test ]]; then
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    mkdir -p "$dir/docs/design"
    cat >"$dir/README.md" <<'EOF'
# Title

## Storage and durability
## Idempotency keys (`make bench-idempotency`: `cargo bench --bench idempotency`)
## Storage and durability

[fine](#storage-and-durability) [fine](#storage-and-durability-1)
[fine](#idempotency-keys-make-bench-idempotency-cargo-bench---bench-idempotency)
[fine](docs/design/a.md#why-it-holds) [fine](docs/design/) [fine](https://example.com/#nowhere)
`[ignored in code](missing.md)`
```
[ignored in a fence](missing.md)
```
[broken anchor](#storage-and-durability-2)
[broken file](docs/missing.md)
[broken anchor in another file](docs/design/a.md#nowhere)
EOF
    printf '# A\n\n## Why it holds\n\n[back](../../README.md#title) [broken](../../READ.md)\n' \
        >"$dir/docs/design/a.md"
    out=$(bash "$0" --root "$dir" "$dir/README.md" "$dir/docs/design/a.md" 2>&1) && {
        echo "check-links self-test: the checker passed files with broken links:" >&2
        echo "$out" >&2
        exit 1
    }
    expected=(
        "README.md:14: #storage-and-durability-2: no such heading in README.md"
        "README.md:15: docs/missing.md: no such file"
        "README.md:16: docs/design/a.md#nowhere: no such heading in docs/design/a.md"
        "docs/design/a.md:5: ../../READ.md: no such file"
    )
    for line in "${expected[@]}"; do
        grep -qxF "$line" <<<"$out" || {
            printf 'check-links self-test: expected the line\n  %s\nin the output:\n%s\n' \
                "$line" "$out" >&2
            exit 1
        }
    done
    count=$(grep -c ': no such ' <<<"$out")
    [[ "$count" == "${#expected[@]}" ]] || {
        printf 'check-links self-test: %s broken links reported, %s expected:\n%s\n' \
            "$count" "${#expected[@]}" "$out" >&2
        exit 1
    }
    echo "check-links self-test: ok (4 broken links found; 6 good ones and 1 to another site passed)"
    exit 0
fi

exec python3 - "$@" <<'PY'
import os
import re
import sys

args = sys.argv[1:]
root = "."
if args[:1] == ["--root"]:
    root, args = args[1], args[2:]
root = os.path.abspath(root)


def markdown_files():
    found = [os.path.join(root, "README.md")]
    for top, names in (("docs", None), ("clients", "README.md")):
        for here, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(d for d in dirs if d != "node_modules")
            for name in sorted(files):
                if (names is None and name.endswith(".md")) or name == names:
                    found.append(os.path.join(here, name))
    return [f for f in found if os.path.isfile(f)]


FENCE = re.compile(r"^\s{0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(path):
    """(line number, text) of the lines outside fenced code blocks."""
    fence = None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            opened = FENCE.match(line)
            if fence:
                if opened and opened.group(1) == fence:
                    fence = None
            elif opened:
                fence = opened.group(1)
            else:
                yield number, line.rstrip("\n")


def slug(heading):
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("*", "").strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


anchors_of = {}


def anchors(path):
    if path not in anchors_of:
        seen = {}
        found = set()
        for _, line in prose_lines(path):
            m = HEADING.match(line)
            if not m:
                continue
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        for _, line in prose_lines(path):
            found.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", line))
        anchors_of[path] = found
    return anchors_of[path]


def targets(line):
    line_wo_code = CODE_SPAN.sub("C", line)
    yield from LINK.findall(line_wo_code)
    m = REFERENCE.match(line_wo_code)
    if m:
        yield m.group(1)


def check(path):
    problems = []
    shown = os.path.relpath(path, root)
    for number, line in prose_lines(path):
        for target in targets(line):
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # another site, a mail address
            file_part, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            if not os.path.exists(dest):
                problems.append(f"{shown}:{number}: {target}: no such file")
                continue
            if anchor and dest.endswith(".md") and os.path.isfile(dest):
                if anchor not in anchors(dest):
                    problems.append(
                        f"{shown}:{number}: {target}: no such heading in {os.path.relpath(dest, root)}"
                    )
    return problems


files = [os.path.abspath(a) for a in args] or markdown_files()
problems = [p for f in files for p in check(f)]
for p in problems:
    print(p)
if problems:
    print(f"check-links: {len(problems)} broken link(s) in {len(files)} file(s)", file=sys.stderr)
    sys.exit(1)
print(f"check-links: every relative link and anchor resolves ({len(files)} files)")
PY
