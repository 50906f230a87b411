"""What was done on an owner's approval: the audit rows, and the one write the monitor makes to production."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg.types.json import Jsonb

from billing_monitor.rules.registry import ENDED_STATUSES
from billing_monitor.source import DEFAULT_SOURCE_SCHEMA, quote_ident
from billing_monitor.store.migrations import SCHEMA

if TYPE_CHECKING:
    from billing_monitor.approvals import ApprovalMessage

# Outcomes of an approval (002_actions.sql's check constraint lists the same three).
CANCELED, ALREADY_CANCELED, REFUSED = "canceled", "already_canceled", "refused"
OUTCOMES = (CANCELED, ALREADY_CANCELED, REFUSED)


def mark_subscription_canceled(conn: psycopg.Connection, paypal_subscription_id: str,
                               source_schema: str = DEFAULT_SOURCE_SCHEMA) -> list[tuple[str, str, str]]:
    """Mark the live production rows of a PayPal subscription canceled (the only production write), in the
    source schema's `subscriptions`: a table, or a view over the owner's table (it writes `status`,
    `canceled_at` and `updated_at`, which such a view keeps plain columns: docs/owner-tables.md).

    Returns (row id, status before, status after) for each row marked. Its PayPal id may sit in either id
    column (the import bug); rows already ended are left as they are. A status may be an enum: compared as text.
    """
    subscriptions = f"{quote_ident(source_schema)}.subscriptions"
    return conn.execute(
        "with target as ("
        f"  select id, status::text as status from {subscriptions}"
        "  where (btrim(paypal_subscription_id, E' \\t\\r\\n') = %(pid)s"
        "         or btrim(kajabi_subscription_id, E' \\t\\r\\n') = %(pid)s)"
        "    and lower(btrim(status::text, E' \\t\\r\\n')) <> all(%(ended)s)"
        "  for update)"
        f" update {subscriptions} s set status = 'canceled',"
        "   canceled_at = coalesce(s.canceled_at, now()), updated_at = now()"
        " from target where s.id = target.id"
        " returning s.id, target.status, s.status::text",
        {"pid": paypal_subscription_id, "ended": list(ENDED_STATUSES)}).fetchall()


@dataclass
class ActionRecord:
    """One approval handled: what arrived, who provably sent it, what was decided, what PayPal showed."""
    key: str
    outcome: str
    detail: str
    message: object                       # the body as stored (approvals.stored_body: cut past 4 KB)
    approval: ApprovalMessage | None = None
    message_length: int | None = None
    sender_id: str | None = None
    sender_arn: str | None = None
    paypal_before: str | None = None
    paypal_after: str | None = None
    paypal_canceled_at: str | None = None
    reason: str | None = None             # what PayPal was told (the approval's reason, or why it was forced)


def record_action(conn: psycopg.Connection, record: ActionRecord, source_schema: str = DEFAULT_SOURCE_SCHEMA) -> dict:
    """The audit row and, for a cancellation, the subscriptions row marked canceled: one transaction."""
    if record.outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {record.outcome!r}")
    approval = record.approval
    rows = []
    if record.outcome in (CANCELED, ALREADY_CANCELED) and approval is not None:
        rows = mark_subscription_canceled(conn, approval.paypal_subscription_id, source_schema)
    conn.execute(
        f"insert into {SCHEMA}.actions (idempotency_key, action, finding_id, paypal_subscription_id, subscription_id,"
        " approved_by, reason, forced, outcome, detail, paypal_status_before, paypal_status_after,"
        " row_status_before, row_status_after, message, message_length, sender_id, sender_arn, paypal_canceled_at)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (record.key, approval and approval.action, approval and approval.finding_id,
         approval and approval.paypal_subscription_id, rows[0][0] if rows else None,
         approval and approval.approved_by, record.reason or (approval and approval.reason),
         bool(approval and approval.force), record.outcome, record.detail, record.paypal_before, record.paypal_after,
         ", ".join(r[1] for r in rows) or None, ", ".join(r[2] for r in rows) or None, Jsonb(record.message),
         record.message_length, record.sender_id, record.sender_arn, record.paypal_canceled_at))
    return {"outcome": record.outcome, "detail": record.detail, "rows_marked": [str(r[0]) for r in rows]}


def list_actions(conn: psycopg.Connection, limit: int = 50) -> list[dict]:
    rows = conn.execute(
        f"select handled_at, outcome, finding_id, paypal_subscription_id, approved_by, detail"
        f" from {SCHEMA}.actions order by handled_at desc, action_id desc limit %s", (limit,)).fetchall()
    keys = ("handled_at", "outcome", "finding_id", "paypal_subscription_id", "approved_by", "detail")
    return [dict(zip(keys, r, strict=False)) for r in rows]
