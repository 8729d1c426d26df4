#!/usr/bin/env python3
"""Generate a synthetic inventory-service log for bench/agent_vs_mtail.sh.

One event per line, RFC 3339 UTC timestamps with milliseconds, strictly non-decreasing:

  2025-07-14T09:00:00.003Z level=warn msg="hard-delete" table=orders id=123 actor=admin
  2025-07-14T09:00:00.004Z level=info msg="stock decremented" order_id=o17 sku=s5 qty=1 backend=redis
  2025-07-14T09:00:00.350Z level=info msg="event published" order_id=o17 topic=orders backend=kafka
  2025-07-14T09:00:00.351Z level=info method=GET path=/api/v1/items/42 status=200 latency_ms=458

The mix: ~85% HTTP requests (varied methods, statuses, long-tailed latency), ~6% stock
decrements each followed by its publish (most within a second, some within 30 s, a few
late beyond 30 s, a few never), a few orphan publishes, ~1% hard deletes over several
tables, and some unrelated lines that no rule matches. Standard library only; the same
seed gives the same file.

Usage: gen_inventory_log.py --lines N --seed S --out FILE
"""

import argparse
import heapq
import random
import sys
import time

START_EPOCH_S = 1752483600  # 2025-07-14T09:00:00Z

METHODS = ["GET"] * 70 + ["POST"] * 15 + ["PUT"] * 8 + ["DELETE"] * 5 + ["PATCH"] * 2
STATUSES = (
    ["200"] * 70 + ["201"] * 6 + ["204"] * 4 + ["301"] * 1 + ["304"] * 4 + ["400"] * 3
    + ["401"] * 2 + ["403"] * 1 + ["404"] * 5 + ["409"] * 1 + ["429"] * 1 + ["500"] * 1
    + ["502"] * 1 + ["503"] * 1
)
PATHS = [
    "/api/v1/items/{}", "/api/v1/items/{}", "/api/v1/items/{}/stock", "/api/v1/orders/{}",
    "/api/v1/orders/{}", "/api/v1/carts/{}", "/api/v1/search?q=item{}", "/healthz",
]
TABLES = ["orders"] * 4 + ["items"] * 3 + ["carts"] * 2 + ["customers", "audit_log"]
ACTORS = ["admin", "ops", "gc-job", "support"]
TOPICS = ["orders", "stock", "orders"]
NOISE = [
    'level=info msg="cache warmed" entries={} backend=redis',
    'level=debug msg="gc pause" pause_us={}',
    'level=warn msg="slow query" table=orders duration_ms={}',
    'level=info msg="config reloaded" version={}',
    'level=error msg="upstream reset" peer=10.0.0.{}',
]


def latency_ms(rng):
    """Long-tailed request latency in whole milliseconds (>= 1)."""
    r = rng.random()
    if r < 0.60:
        return rng.randint(1, 60)
    if r < 0.85:
        return rng.randint(40, 300)
    if r < 0.97:
        return rng.randint(200, 1200)
    return rng.randint(1000, 5000)


def publish_delay_ms(rng):
    """Delay from decrement to publish, or None if it is never published."""
    r = rng.random()
    if r < 0.90:
        return rng.randint(1, 999)            # the usual case: within a second
    if r < 0.96:
        return rng.randint(1000, 29_000)      # slow but within the 30 s timeout
    if r < 0.98:
        return rng.randint(31_000, 120_000)   # late: counted unmatched, then orphan
    return None                               # never published


def generate(lines, seed, out):
    rng = random.Random(seed)
    rand = rng.random
    choice = rng.choice
    randint = rng.randint
    now_ms = 0
    second_cached = -1
    prefix = ""
    pending = []  # heap of (due_ms, seq, order_id, topic)
    seq = 0
    next_order = 1
    buf = []
    write = out.write
    for _ in range(lines):
        now_ms += randint(0, 4)
        second = now_ms // 1000
        if second != second_cached:
            second_cached = second
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(START_EPOCH_S + second))
        ts = "%s.%03dZ " % (prefix, now_ms % 1000)

        if pending and pending[0][0] <= now_ms:
            _, _, order_id, topic = heapq.heappop(pending)
            buf.append('%slevel=info msg="event published" order_id=%s topic=%s backend=kafka\n'
                       % (ts, order_id, topic))
        else:
            r = rand()
            if r < 0.86:
                buf.append("%slevel=info method=%s path=%s status=%s latency_ms=%d\n" % (
                    ts, choice(METHODS), choice(PATHS).format(randint(1, 5000)),
                    choice(STATUSES), latency_ms(rng)))
            elif r < 0.92:
                order_id = "o%d" % next_order
                next_order += 1
                buf.append('%slevel=info msg="stock decremented" order_id=%s sku=s%d qty=%d '
                           'backend=redis\n' % (ts, order_id, randint(1, 900), randint(1, 5)))
                delay = publish_delay_ms(rng)
                if delay is not None:
                    seq += 1
                    heapq.heappush(pending, (now_ms + delay, seq, order_id, choice(TOPICS)))
            elif r < 0.93:
                buf.append('%slevel=warn msg="hard-delete" table=%s id=%d actor=%s\n'
                           % (ts, choice(TABLES), randint(1, 10**6), choice(ACTORS)))
            elif r < 0.932:
                # Orphan: a publish whose decrement is not in this log.
                buf.append('%slevel=info msg="event published" order_id=x%d topic=orders '
                           'backend=kafka\n' % (ts, randint(1, 10**6)))
            else:
                buf.append("%s%s\n" % (ts, choice(NOISE).format(randint(1, 250))))
        if len(buf) >= 8192:
            write("".join(buf))
            buf.clear()
    write("".join(buf))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="-", help="output file, - for stdout")
    args = parser.parse_args()
    if args.lines < 0:
        parser.error("--lines must be >= 0")
    if args.out == "-":
        generate(args.lines, args.seed, sys.stdout)
    else:
        with open(args.out, "w", encoding="ascii", newline="\n") as out:
            generate(args.lines, args.seed, out)


if __name__ == "__main__":
    main()
