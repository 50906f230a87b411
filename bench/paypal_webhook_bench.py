#!/usr/bin/env python3
"""From a PayPal webhook's arrival to the Slack post, on a large database (issue 21: under 2 s warm).

    .venv/bin/python bench/paypal_webhook_bench.py --contacts 400000 --runs 10

Builds scan_bench.py's synthetic database (400,000 contacts: about 5 million transactions) in the embedded
PostgreSQL, starts the PayPal stand-in (it signs each delivery and answers verify-webhook-signature, and lists
the subscription's charges for the running total) and a loopback Slack that notes when each post arrives. Then
hands WebhookService.handle_delivery (what PayPalWebhookFunction runs) a signed PAYMENT.SALE.COMPLETED of a
disconnected member (a new sale each run): the first in a fresh service (cold: token, connections), the rest
warm. Prints each run's time from the call to the Slack post's arrival, best / median / worst, a charge on a
healthy subscription (nothing posted), and the targeted look-up's plan (EXPLAIN ANALYZE): it must read no
transactions (the count of plan nodes on `transactions` is printed: 0).
Not a timed test: figures to read. Lambda adds its own overhead (API Gateway, ~10-30 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "monitor"), str(ROOT / "bench"), str(ROOT)]

from scan_bench import build, counts_of, database  # noqa: E402

from billing_monitor.paypal import PayPalClient  # noqa: E402
from billing_monitor.paypal_standin import CLIENT_ID, CLIENT_SECRET, LoopbackServer, PayPalStandIn  # noqa: E402
from billing_monitor.rules.checks import load_query  # noqa: E402
from billing_monitor.slack.buttons import ButtonMac  # noqa: E402
from billing_monitor.webhooks import WebhookService  # noqa: E402
from scripts.paypal_webhook_event import WEBHOOK_ID, api_gateway_event  # noqa: E402


class ClockedSlack(LoopbackServer):
    """An incoming webhook that notes when each post arrived (time.perf_counter)."""

    def __init__(self):
        super().__init__()
        self.arrivals: list[float] = []
        self.posted = threading.Event()

    def on_request(self, http, method: str) -> None:
        http.rfile.read(int(http.headers.get("Content-Length", 0)))
        self.arrivals.append(time.perf_counter())
        http.send_response(200)
        http.send_header("Content-Length", "2")
        http.end_headers()
        http.wfile.write(b"ok")
        self.posted.set()


def paypal_id(i: int) -> str:
    """scan_bench.py's PayPal id of member i."""
    import hashlib

    return "I-" + hashlib.md5(f"p{i}".encode()).hexdigest()[:12].upper()


def disconnects(n: int, contacts: int) -> list[str]:
    """Members whose kind is 'disconnect' in scan_bench.py (i % 1000 in 50..52, contact present)."""
    out = [paypal_id(i) for i in range(1, contacts + 1) if 50 <= i % 1000 <= 52 and i % 997 != 0]
    return out[:n]


def plan(dsn: str, pid: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        query = load_query("paypal_id_lookup")
        return [r[0] for r in conn.execute("explain (analyze, buffers, costs off) " + query,
                                           {"paypal_id": pid, "tol": Decimal("1.00")})]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--dsn", help="an empty database to fill (default: the embedded PostgreSQL)")
    parser.add_argument("--no-build", action="store_true", help="--dsn is already built")
    args = parser.parse_args()
    with database(args.dsn) as dsn:
        counts = counts_of(dsn) if args.no_build else build(dsn, args.contacts)
        print(f"database: {counts['contacts']:,} contacts, {counts['subscriptions']:,} subscriptions,"
              f" {counts['transactions']:,} transactions" + (f" (built in {counts['build_s']:.0f} s)" if 'build_s' in counts else ""))
        ids = disconnects(args.runs + 1, args.contacts)
        with PayPalStandIn() as paypal, ClockedSlack() as slack:
            for pid in ids:
                paypal.add(pid, "ACTIVE")
                paypal.monthly(pid, "2024-02-10T10:00:00Z", 6, "22.00")        # charges since the Kajabi cancellation
            service = WebhookService(client=PayPalClient(paypal.url, CLIENT_ID, CLIENT_SECRET), dsn=dsn, store_dsn=dsn,
                                     webhook_id=WEBHOOK_ID, slack_webhook=slack.url, buttons=ButtonMac("bench"))
            times = []
            for n, pid in enumerate(ids):
                headers, body = paypal.deliver(paypal.sale_completed(pid, datetime.now(UTC)), WEBHOOK_ID)
                event = api_gateway_event(headers, body)
                slack.posted.clear()
                start = time.perf_counter()
                answer = service.handle_delivery(event)
                if not slack.posted.wait(10) or answer["statusCode"] != 200:
                    print(f"run {n}: no Slack post ({answer})")
                    return 1
                times.append(slack.arrivals[-1] - start)
                print(f"run {n} ({'cold' if n == 0 else 'warm'}): {pid} arrival -> Slack post {times[-1] * 1000:.0f} ms")
            warm = times[1:]
            print(f"warm: best {min(warm) * 1000:.0f} ms, median {statistics.median(warm) * 1000:.0f} ms,"
                  f" worst {max(warm) * 1000:.0f} ms (target < 2000 ms); cold {times[0] * 1000:.0f} ms")
            healthy = paypal_id(7)           # i % 1000 = 7: a member (healthy)
            paypal.add(healthy, "ACTIVE")
            headers, body = paypal.deliver(paypal.sale_completed(healthy, datetime.now(UTC)), WEBHOOK_ID)
            start = time.perf_counter()
            answer = service.handle_delivery(api_gateway_event(headers, body))
            print(f"healthy charge {healthy}: answered {answer['statusCode']} in"
                  f" {(time.perf_counter() - start) * 1000:.0f} ms, Slack posts {len(slack.arrivals)} (as before)")
        lines = plan(dsn, ids[0])
        on_transactions = sum(1 for line in lines if " on transactions" in line)
        print(f"the look-up's plan ({ids[0]}): plan nodes on transactions: {on_transactions}")
        for line in lines:
            print("   ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
