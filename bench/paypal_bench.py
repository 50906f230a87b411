#!/usr/bin/env python3
"""Reconciliation against the PayPal stand-in answering each call in 100 ms, with 20,000 watched ids.

    python bench/paypal_bench.py                 # 20,000 ids, 100 ms a call
    python bench/paypal_bench.py --ids 2000 --latency 0.05

Builds, in the embedded PostgreSQL, 20,000 PayPal subscriptions that the database says are over (rows canceled,
each matching a canceled Kajabi row: all watched, kind 2), and a PayPal world in a process of its own (so that
the stand-in never competes with the scan for the interpreter): 1 in 20 still ACTIVE and charging, 1 in 50
CANCELLED with a charge never refunded, the rest CANCELLED with nothing owed (settled). Then two saved scans:
  1. the first run asks about every id: calls, wall time, calls per second (target: within 10 minutes);
  2. the second, with the settled ids remembered, asks only the others.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "monitor"))

BUILD = """
insert into public.contacts (id, email, first_name, last_name)
select md5('c' || i)::uuid, 'member' || i || '@example.com', 'Member', i::text from generate_series(1, %(n)s) i;
insert into public.subscriptions (id, contact_id, kajabi_subscription_id, paypal_subscription_id, status, amount,
                                  currency, billing_cycle, canceled_at, updated_at)
select md5('k' || i)::uuid, md5('c' || i)::uuid, (100000000 + i)::text, null, 'canceled', 22.00, 'USD', 'month',
       timestamptz '2025-01-16', timestamptz '2025-01-16' from generate_series(1, %(n)s) i
union all
select md5('p' || i)::uuid, md5('c' || i)::uuid, null, 'I-BENCH' || lpad(i::text, 8, '0'), 'canceled', 22.00, 'USD',
       'month', null, timestamptz '2025-06-01' from generate_series(1, %(n)s) i;
insert into public.transactions (id, contact_id, source, external_id, amount, currency, status, transaction_date)
select md5('t' || i)::uuid, md5('c' || i)::uuid, 'paypal', 'BENCHTXN' || i, 22.00, 'USD', 'completed',
       timestamptz '2024-12-16' from generate_series(1, %(n)s) i;
analyze;
"""


def serve(n: int, latency: float, ready, stop) -> None:
    from billing_monitor.paypal_standin import PayPalStandIn

    with PayPalStandIn(latency_s=latency) as standin:
        for i in range(1, n + 1):
            pid = f"I-BENCH{i:08d}"
            if i % 20 == 0:
                standin.add(pid, "ACTIVE", next_billing_time=datetime(2026, 12, 16, tzinfo=UTC))
                standin.charge(pid, "2025-02-16T00:00:00Z")
            elif i % 50 == 0:
                standin.add(pid, "CANCELLED")
                standin.charge(pid, "2025-02-16T00:00:00Z")
            else:
                standin.add(pid, "CANCELLED")
        ready.put(standin.url)
        stop.wait()
        ready.put(standin.api_calls())


def run(dsn: str, options, label: str) -> dict:
    from billing_monitor.report import build_report
    from billing_monitor.scan import run_scan
    from billing_monitor.store import open_store, save_scan

    started = time.monotonic()
    result = run_scan(dsn, paypal=options)
    wall = time.monotonic() - started
    report = build_report(result)
    with open_store(dsn) as conn:
        save_scan(conn, report, result.settled)
    block = report["paypal"]
    by_check = report["summary"]["by_check"]
    print(f"{label}: watched {block['watched']}, remembered settled {block['remembered_settled']},"
          f" calls {block['asked']}, wall {wall:.1f} s, {block['asked'] / wall:.1f} calls/s;"
          f" {by_check['paypal_still_active']} paypal_still_active, {by_check['refund_owed']} refund_owed,"
          f" {len(result.settled)} newly settled, {block['not_checked']} not checked, errors {len(block['errors'])}")
    return block


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the stand-in takes to answer each call")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    import psycopg

    from billing_monitor.demo import embedded_postgres, load_schema
    from billing_monitor.paypal_standin import CLIENT_ID, CLIENT_SECRET
    from billing_monitor.reconcile import PayPalOptions

    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(args.ids, args.latency, ready, stop), daemon=True)
    server.start()
    try:
        url = ready.get(timeout=300)
        with embedded_postgres() as dsn:
            with psycopg.connect(dsn, autocommit=True) as conn:
                load_schema(conn)
                for statement in filter(str.strip, BUILD.replace("%(n)s", str(int(args.ids))).split(";")):
                    conn.execute(statement)
            options = PayPalOptions(url, CLIENT_ID, CLIENT_SECRET, workers=args.workers, max_seconds=3600,
                                    max_calls=10 * args.ids + 100)
            print(f"{args.ids} watched ids, the stand-in answering each call in {args.latency * 1000:.0f} ms,"
                  f" {args.workers} concurrent requests")
            first = run(dsn, options, "first run ")
            second = run(dsn, options, "second run")
        stop.set()
        served = ready.get(timeout=60)
        print(f"the stand-in served {served} API calls (the token excluded)")
        unsettled = sum(1 for i in range(1, args.ids + 1) if i % 20 == 0 or i % 50 == 0)
        assert second["watched"] == unsettled, (second["watched"], unsettled)     # only the ids not settled are asked
        assert first["asked"] + second["asked"] == served
    finally:
        stop.set()
        server.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
