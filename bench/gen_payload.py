#!/usr/bin/env python3
"""Generate a realistic POST /logs payload for the ingest benchmark.

Records look like real web-access logs: timestamps spread across one UTC hour (the current one
by default), RFC 3339 with a `Z`, about half with milliseconds; paths from a weighted mix of
pages, API calls with random ids, query strings and hashed static assets; user agents from a list
of common browsers, bots and CLI clients (several contain commas, so CSV quotes them).
As JSON a record is ~150-200 bytes.

Output is deterministic for a given --seed and --hour.

    python3 bench/gen_payload.py --format json --records 100 --out /tmp/json100.json
    python3 bench/gen_payload.py --format csv --records 100 --out /tmp/csv100.csv
"""

import argparse
import csv
import io
import json
import random
import sys
from datetime import datetime, timedelta, timezone

USER_AGENTS = [
    # (weight, user agent)
    (30, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0.0.0 Safari/537.36"),
    (14, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/18.1 Safari/605.1.15"),
    (12, "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
         "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"),
    (10, "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0.6778.81 Mobile Safari/537.36"),
    (8, "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"),
    (6, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.70"),
    (5, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    (3, "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
        "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36"),
    (2, "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"),
    (4, "curl/8.5.0"),
    (3, "python-requests/2.32.3"),
    (3, "Go-http-client/1.1"),
]

REFS = ["email", "newsletter", "twitter", "google", "partner_42", "homepage_banner"]
CATEGORIES = ["shoes", "electronics", "books", "garden", "toys", "kitchen", "sports"]
ASSET_NAMES = ["app", "vendor", "main", "runtime", "styles", "chunk-checkout"]


def _hex(rng, n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _path(rng):
    """One request path, from a weighted mix of what a storefront's access log holds."""
    kind = rng.choices(
        ["root", "page", "login", "user", "product", "product_ref", "search", "category",
         "orders", "static_js", "static_css", "image", "health", "checkout", "favicon"],
        weights=[10, 12, 6, 10, 12, 6, 6, 6, 5, 9, 5, 6, 2, 3, 1],
    )[0]
    if kind == "root":
        return "/"
    if kind == "page":
        return rng.choice(["/home", "/about", "/contact", "/pricing", "/blog", "/faq", "/cart"])
    if kind == "login":
        return rng.choice(["/login", "/logout", "/signup", "/login?next=%2Faccount"])
    if kind == "user":
        return f"/api/v1/users/{rng.randint(1, 99999)}" + rng.choice(["", "", "/profile", "/settings"])
    if kind == "product":
        return f"/products/{rng.randint(1, 9999)}"
    if kind == "product_ref":
        return f"/products/{rng.randint(1, 9999)}?ref={rng.choice(REFS)}"
    if kind == "search":
        q = rng.choice(["running+shoes", "usb-c+cable", "coffee", "desk+lamp", "lego", "headphones"])
        return f"/search?q={q}&page={rng.randint(1, 5)}"
    if kind == "category":
        return f"/category/{rng.choice(CATEGORIES)}?sort={rng.choice(['price', 'popular', 'new'])}"
    if kind == "orders":
        return f"/api/v1/orders/{rng.randint(100000, 999999)}"
    if kind == "static_js":
        return f"/static/{rng.choice(ASSET_NAMES)}.{_hex(rng, 5)}.js"
    if kind == "static_css":
        return f"/static/css/{rng.choice(ASSET_NAMES)}.{_hex(rng, 8)}.css"
    if kind == "image":
        return f"/images/products/{rng.randint(1, 9999)}_{rng.choice(['thumb', 'large'])}.webp"
    if kind == "health":
        return "/healthz"
    if kind == "checkout":
        return rng.choice(["/checkout", "/checkout/payment", "/checkout/confirm"])
    return "/favicon.ico"


def _timestamp(rng, hour_start):
    """A timestamp somewhere in the hour; about half carry milliseconds."""
    offset = rng.randrange(3600)
    ts = hour_start + timedelta(seconds=offset)
    text = ts.strftime("%Y-%m-%dT%H:%M:%S")
    if rng.random() < 0.5:
        text += f".{rng.randrange(1000):03d}"
    return text + "Z"


def records(n, seed, hour_start):
    rng = random.Random(seed)
    agents = [ua for _, ua in USER_AGENTS]
    weights = [w for w, _ in USER_AGENTS]
    for _ in range(n):
        yield {
            "timestamp": _timestamp(rng, hour_start),
            "path": _path(rng),
            "userAgent": rng.choices(agents, weights=weights)[0],
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", choices=["json", "csv"], required=True)
    parser.add_argument("--records", type=int, required=True, help="number of records (>= 1)")
    parser.add_argument("--out", required=True, help="output file, '-' for stdout")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--hour",
        help="UTC hour the timestamps fall in, e.g. 2025-11-27T17 (default: the current UTC hour)",
    )
    parser.add_argument("--csv-header", action="store_true", help="emit a timestamp,path,userAgent header row")
    args = parser.parse_args()
    if args.records < 1:
        parser.error("--records must be >= 1")

    if args.hour:
        hour_start = datetime.strptime(args.hour, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
    else:
        hour_start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)

    recs = list(records(args.records, args.seed, hour_start))
    if args.format == "json":
        # One record per line inside the array: readable, and what a batching client sends.
        body = "[\n" + ",\n".join(json.dumps(r, separators=(",", ":")) for r in recs) + "\n]\n"
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        if args.csv_header:
            writer.writerow(["timestamp", "path", "userAgent"])
        for r in recs:
            writer.writerow([r["timestamp"], r["path"], r["userAgent"]])
        body = buf.getvalue()

    data = body.encode("utf-8")
    if args.out == "-":
        sys.stdout.buffer.write(data)
    else:
        with open(args.out, "wb") as f:
            f.write(data)
    avg_json = sum(len(json.dumps(r, separators=(",", ":"))) for r in recs) / len(recs)
    print(
        f"gen_payload: {args.records} {args.format} records, {len(data)} bytes "
        f"(avg {avg_json:.0f} B/record as JSON), hour {hour_start:%Y-%m-%dT%H}Z, seed {args.seed}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
