"""The refunds table (005_refunds.sql): a capture is claimed 'pending' before PayPal is asked, then completed."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from billing_monitor.store.migrations import SCHEMA

PENDING, REFUNDED, ALREADY_REFUNDED, FAILED = "pending", "refunded", "already_refunded", "failed"
DONE = (REFUNDED, ALREADY_REFUNDED, FAILED)


@dataclass
class RefundRow:
    transaction_id: str
    finding_id: str
    state: str
    request_id: str
    paypal_refund_id: str | None = None
    paypal_status: str | None = None
    amount: str | None = None
    currency: str | None = None
    detail: str | None = None


def refund_request_id(finding_id: str, transaction_id: str) -> str:
    """The PayPal-Request-Id of one charge's refund: stable, so every retry is the same request to PayPal."""
    return f"billing-monitor-refund-{finding_id}-{transaction_id}"


def refunds_of(conn: psycopg.Connection, transaction_ids: list[str]) -> dict[str, RefundRow]:
    rows = conn.execute(
        f"select transaction_id, finding_id, state, request_id, paypal_refund_id, paypal_status, amount::text,"
        f" currency, detail from {SCHEMA}.refunds where transaction_id = any(%s)", (list(transaction_ids),)).fetchall()
    return {r[0]: RefundRow(*r) for r in rows}


def claim_refund(conn: psycopg.Connection, finding_id: str, transaction_id: str, *, paypal_subscription_id,
                 amount, currency, approved_by, sender_arn, message_id, charged_at=None) -> RefundRow:
    """Insert the 'pending' row (or keep the one there): the capture is this finding's to refund."""
    conn.execute(
        f"insert into {SCHEMA}.refunds (transaction_id, finding_id, paypal_subscription_id, request_id, state, amount,"
        " currency, approved_by, sender_arn, message_id, charged_at)"
        " values (%s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s)"
        " on conflict (transaction_id) do nothing",
        (transaction_id, finding_id, paypal_subscription_id, refund_request_id(finding_id, transaction_id), amount,
         currency, approved_by, sender_arn, message_id, charged_at))
    return refunds_of(conn, [transaction_id])[transaction_id]


def complete_refund(conn: psycopg.Connection, transaction_id: str, *, state: str, paypal_refund_id, paypal_status,
                    amount, currency, detail) -> None:
    conn.execute(
        f"update {SCHEMA}.refunds set state = %s, paypal_refund_id = coalesce(%s, paypal_refund_id),"
        " paypal_status = coalesce(%s, paypal_status), amount = coalesce(%s::numeric, amount),"
        " currency = coalesce(%s, currency), detail = %s, recorded_at = now()"
        " where transaction_id = %s and state = 'pending'",
        (state, paypal_refund_id, paypal_status, amount, currency, detail, transaction_id))


def list_refunds(conn: psycopg.Connection, limit: int = 50) -> list[dict]:
    cur = conn.execute(
        f"select coalesce(recorded_at, requested_at) as handled_at, state, finding_id, paypal_subscription_id,"
        f" transaction_id, amount::text as amount, currency, paypal_refund_id, paypal_status, approved_by, detail,"
        f" charged_at"
        f" from {SCHEMA}.refunds order by coalesce(recorded_at, requested_at) desc, transaction_id limit %s", (limit,))
    return [dict(zip([d.name for d in cur.description], r, strict=False)) for r in cur.fetchall()]


def refunds_of_finding(conn: psycopg.Connection, finding_id: str) -> list[dict]:
    cur = conn.execute(
        f"select transaction_id, state, amount::text as amount, currency, charged_at, paypal_refund_id, paypal_status"
        f" from {SCHEMA}.refunds where finding_id = %s order by charged_at nulls last, transaction_id", (finding_id,))
    return [dict(zip([d.name for d in cur.description], r, strict=False)) for r in cur.fetchall()]


def refunds_by_finding(conn: psycopg.Connection) -> dict[str, list[dict]]:
    """finding_id -> its refunds, JSON-ready (times as ISO text): one query."""
    cur = conn.execute(
        f"select finding_id, transaction_id, state, amount::text as amount, currency, charged_at, paypal_refund_id,"
        f" paypal_status from {SCHEMA}.refunds order by finding_id, charged_at nulls last, transaction_id")
    out: dict[str, list[dict]] = {}
    for row in cur.fetchall():
        item = dict(zip([d.name for d in cur.description][1:], row[1:], strict=False))
        item["charged_at"] = item["charged_at"] and item["charged_at"].isoformat()
        out.setdefault(row[0], []).append(item)
    return out
