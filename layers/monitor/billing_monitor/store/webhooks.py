"""The monitor's memory of PayPal's webhooks and the hourly net (009_paypal_webhooks.sql): events handled once by
their id, sales once by their sale id, the subscriptions' announced statuses, and how far the net has looked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg

from billing_monitor.store.migrations import SCHEMA


def claim_event(conn: psycopg.Connection, event_id: str, event_type: str, resource_id: str | None,
                created_at: datetime | None, now: datetime, via: str) -> bool:
    """Record the event as being handled; False when it was handled before (PayPal redelivers). A delivery of
    the same event in parallel waits here until the first one's transaction ends."""
    row = conn.execute(
        f"insert into {SCHEMA}.paypal_events (event_id, event_type, resource_id, created_at, received_at, via, outcome)"
        " values (%s, %s, %s, %s, %s, %s, 'handling') on conflict (event_id) do nothing returning event_id",
        (event_id, event_type, resource_id, created_at, now, via)).fetchone()
    return row is not None


def set_outcome(conn: psycopg.Connection, event_id: str, outcome: str) -> None:
    conn.execute(f"update {SCHEMA}.paypal_events set outcome = %s where event_id = %s", (outcome[:500], event_id))


def event_seen(conn: psycopg.Connection, event_ids: list[str]) -> set[str]:
    if not event_ids:
        return set()
    return {r[0] for r in conn.execute(f"select event_id from {SCHEMA}.paypal_events where event_id = any(%s)",
                                       (event_ids,))}


@dataclass(frozen=True)
class Sale:
    sale_id: str
    paypal_subscription_id: str
    amount: Decimal
    currency: str
    charged_at: datetime


def claim_sale(conn: psycopg.Connection, sale: Sale, now: datetime, via: str, event_id: str | None) -> bool:
    """Record the sale; False when it was recorded before (by a webhook, the listing or the search)."""
    row = conn.execute(
        f"insert into {SCHEMA}.paypal_sales (sale_id, paypal_subscription_id, amount, currency, charged_at, via,"
        " event_id, recorded_at) values (%s, %s, %s, %s, %s, %s, %s, %s) on conflict (sale_id) do nothing"
        " returning sale_id",
        (sale.sale_id, sale.paypal_subscription_id, sale.amount, sale.currency, sale.charged_at, via, event_id,
         now)).fetchone()
    return row is not None


def mark_sale_at_risk(conn: psycopg.Connection, sale_id: str, check: str, finding_id: str,
                      canceled_at: datetime | None, posted_at: datetime | None) -> None:
    conn.execute(f"update {SCHEMA}.paypal_sales set check_name = %s, finding_id = %s, canceled_at = %s,"
                 " posted_at = %s where sale_id = %s", (check, finding_id, canceled_at, posted_at, sale_id))


def refund_sale(conn: psycopg.Connection, sale_id: str, amount: Decimal, state: str) -> dict | None:
    """A refund (or reversal) of a recorded sale: what stays owed goes down. None: no such sale recorded."""
    row = conn.execute(
        f"update {SCHEMA}.paypal_sales set refunded = least(amount, refunded + %s),"
        " state = case when least(amount, refunded + %s) >= amount then %s else state end"
        " where sale_id = %s returning paypal_subscription_id, amount, refunded, currency, finding_id",
        (amount, amount, state, sale_id)).fetchone()
    if row is None:
        return None
    return {"paypal_subscription_id": row[0], "amount": row[1], "refunded": row[2], "currency": row[3],
            "finding_id": row[4]}


def recorded_sales(conn: psycopg.Connection, paypal_ids: list[str]) -> list[dict]:
    """The recorded sales of these PayPal ids, oldest first (money still owed: amount - refunded)."""
    if not paypal_ids:
        return []
    cur = conn.execute(
        f"select sale_id, paypal_subscription_id, amount, refunded, currency, charged_at, state from {SCHEMA}.paypal_sales"
        " where paypal_subscription_id = any(%s) order by charged_at, sale_id", (paypal_ids,))
    return [dict(zip([d.name for d in cur.description], r, strict=True)) for r in cur.fetchall()]


def remember_status(conn: psycopg.Connection, paypal_id: str, status: str, event_type: str, event_id: str,
                    when: datetime) -> str | None:
    """The subscription's status as PayPal announced it; returns the status it had before (None: not known)."""
    before = conn.execute(f"select status from {SCHEMA}.paypal_subscription_events where paypal_subscription_id = %s",
                          (paypal_id,)).fetchone()
    conn.execute(
        f"insert into {SCHEMA}.paypal_subscription_events (paypal_subscription_id, status, event_type, event_id, changed_at)"
        " values (%s, %s, %s, %s, %s) on conflict (paypal_subscription_id) do update set status = excluded.status,"
        " event_type = excluded.event_type, event_id = excluded.event_id, changed_at = excluded.changed_at",
        (paypal_id, status, event_type, event_id, when))
    return before[0] if before else None


def forget_settled(conn: psycopg.Connection, paypal_id: str) -> bool:
    """An id PayPal announced active again is no longer settled: the reconciliation asks about it again."""
    return conn.execute(f"delete from {SCHEMA}.paypal_settled where paypal_subscription_id = %s",
                        (paypal_id,)).rowcount > 0


@dataclass
class NetState:
    name: str
    looked_to: datetime | None = None
    failing_since: datetime | None = None
    failure_told_at: datetime | None = None
    last_error: str | None = None


def net_state(conn: psycopg.Connection, name: str) -> NetState:
    row = conn.execute(f"select looked_to, failing_since, failure_told_at, last_error from {SCHEMA}.paypal_net"
                       " where name = %s for update", (name,)).fetchone()
    return NetState(name, *row) if row else NetState(name)


def save_net_state(conn: psycopg.Connection, state: NetState, now: datetime) -> None:
    conn.execute(
        f"insert into {SCHEMA}.paypal_net (name, looked_to, failing_since, failure_told_at, last_error, updated_at)"
        " values (%s, %s, %s, %s, %s, %s) on conflict (name) do update set looked_to = excluded.looked_to,"
        " failing_since = excluded.failing_since, failure_told_at = excluded.failure_told_at,"
        " last_error = excluded.last_error, updated_at = excluded.updated_at",
        (state.name, state.looked_to, state.failing_since, state.failure_told_at, state.last_error, now))


_SALES_READABLE = ("select coalesce(bool_and(has_schema_privilege(n.oid, 'usage') and has_table_privilege(c.oid, 'select')),"
                   " false) from pg_namespace n join pg_class c on c.relnamespace = n.oid and c.relname = 'paypal_sales'"
                   " where n.nspname = 'billing_monitor'")


def posted_sales(conn: psycopg.Connection, finding_ids: list[str]) -> list[dict]:
    """The sales a webhook (or the net) posted about these findings and that were not refunded or reversed: the
    scan counts them until the imports bring them in. Empty when the table is absent or unreadable (checked in
    the catalog first: a denied read would abort the scan's transaction)."""
    if not finding_ids or not conn.execute(_SALES_READABLE).fetchone()[0]:
        return []
    cur = conn.execute(
        f"select sale_id, finding_id, amount, currency, charged_at from {SCHEMA}.paypal_sales"
        " where finding_id = any(%s) and state = 'completed' and refunded = 0 order by charged_at, sale_id",
        (finding_ids,))
    return [dict(zip([d.name for d in cur.description], r, strict=True)) for r in cur.fetchall()]
