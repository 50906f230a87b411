"""Build production rows in a real PostgreSQL, one readable call per row."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from billing_monitor.money import parse_tolerance
from billing_monitor.report import build_report
from billing_monitor.scan import run_scan

_counter = itertools.count(1)


def ts(text: str) -> datetime:
    """'2024-03-16' or '2024-03-16T12:00' as a UTC datetime."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class ProductionDB:
    """The four production tables of one test database."""

    def __init__(self, dsn: str):
        self.dsn = dsn

    def execute(self, sql: str, params=None):
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else None

    def truncate(self) -> None:
        self.execute("truncate public.contacts, public.products, public.subscriptions, public.transactions")

    def contact(self, email: str | None = None, first: str | None = "Test", last: str | None = None) -> uuid.UUID:
        n = next(_counter)
        cid = uuid.uuid4()
        self.execute(
            "insert into public.contacts (id, email, first_name, last_name) values (%s, %s, %s, %s)",
            (cid, email or f"member{n}@example.com", first, last if last is not None else f"Member{n}"),
        )
        return cid

    def subscription(self, contact, *, status="active", amount="22.00", currency="USD", cycle="month",
                     kajabi=None, paypal=None, canceled_at=None, ended_at=None,
                     updated_at="2025-06-01") -> uuid.UUID:
        sid = uuid.uuid4()
        self.execute(
            "insert into public.subscriptions (id, contact_id, kajabi_subscription_id, paypal_subscription_id,"
            " status, amount, currency, billing_cycle, canceled_at, ended_at, updated_at)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (sid, contact, kajabi, paypal, status, Decimal(amount), currency, cycle,
             canceled_at and ts(canceled_at), ended_at and ts(ended_at), ts(updated_at)),
        )
        return sid

    def kajabi(self, contact, **kw) -> uuid.UUID:
        return self.subscription(contact, kajabi=kw.pop("kajabi", str(100000 + next(_counter))), **kw)

    def paypal(self, contact, **kw) -> uuid.UUID:
        return self.subscription(contact, paypal=kw.pop("paypal", f"I-TEST{next(_counter):08d}"), **kw)

    def charge(self, contact, amount="22.00", date="2025-01-16", *, source="paypal", status="completed",
               currency="USD", subscription=None) -> uuid.UUID:
        tid = uuid.uuid4()
        self.execute(
            "insert into public.transactions (id, contact_id, subscription_id, source, amount, currency,"
            " status, transaction_date) values (%s, %s, %s, %s, %s, %s, %s, %s)",
            (tid, contact, subscription, source, Decimal(amount), currency, status, ts(date)),
        )
        return tid

    def monthly_charges(self, contact, amount, first: str, count: int, **kw) -> list[uuid.UUID]:
        start = ts(first)
        ids = []
        for i in range(count):
            month = start.month - 1 + i
            ids.append(self.charge(contact, amount, start.replace(year=start.year + month // 12,
                                                                  month=month % 12 + 1).isoformat(), **kw))
        return ids

    def scan(self, tolerance: str = "1.00") -> dict:
        return build_report(run_scan(self.dsn, parse_tolerance(tolerance)))


def findings_of(report: dict, check: str) -> list[dict]:
    return [f for f in report["findings"] if f["check"] == check]


def only(report: dict, check: str) -> dict:
    found = findings_of(report, check)
    assert len(found) == 1, f"expected one {check}, got {len(found)}: {found}"
    return found[0]
