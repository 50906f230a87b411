"""What was done on an owner's approval: the audit rows, and the one write the monitor makes to production."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg.types.json import Jsonb

from billing_monitor.rules.registry import ENDED_STATUSES
from billing_monitor.store.migrations import SCHEMA

if TYPE_CHECKING:
    from billing_monitor.actions.approval import ApprovalMessage

# Outcomes of an approval (002_actions.sql's check constraint lists the same three).
CANCELED, ALREADY_CANCELED, REFUSED = "canceled", "already_canceled", "refused"
OUTCOMES = (CANCELED, ALREADY_CANCELED, REFUSED)


@dataclass
class Marked:
    """What the one production write did: the rows marked (row id, status before, status after), or, when it could
    mark none of the live rows holding the PayPal id, why (alerts.md: never passed over)."""
    rows: list[tuple[str, str, str]]
    problem: str | None = None


def mark_subscription_canceled(conn: psycopg.Connection, paypal_subscription_id: str) -> Marked:
    """Mark the live production rows of a PayPal subscription canceled (the only production write).

    Its PayPal id may sit in either id column (the import bug); rows already ended are left as they are, and a
    subscription whose every row already ended needs no mark. An UPDATE that touches none of its live rows (row
    level security hiding them, a missing grant, the row gone) is returned as a problem, in the caller's
    transaction, which goes on (a savepoint takes the failed statement back).
    """
    params = {"pid": paypal_subscription_id, "ended": list(ENDED_STATUSES)}
    holds = ("(btrim(paypal_subscription_id, E' \\t\\r\\n') = %(pid)s"
             " or btrim(kajabi_subscription_id, E' \\t\\r\\n') = %(pid)s)")
    live = "lower(btrim(status, E' \\t\\r\\n')) <> all(%(ended)s)"
    try:
        with conn.transaction():
            rows = conn.execute(
                f"with target as (select id, status from public.subscriptions where {holds} and {live} for update)"
                " update public.subscriptions s set status = 'canceled',"
                "   canceled_at = coalesce(s.canceled_at, now()), updated_at = now()"
                " from target where s.id = target.id"
                " returning s.id, target.status, s.status", params).fetchall()
            if rows:
                return Marked(rows)
            seen, still_live = conn.execute(
                f"select count(*), count(*) filter (where {live}) from public.subscriptions where {holds}",
                params).fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        return Marked([], f"{first_line(exc)} (docs/deploy.md step 1 grants it)")
    user = conn.execute("select current_user").fetchone()[0]
    if not seen:
        return Marked([], f"no subscriptions row holding {paypal_subscription_id} is visible to {user} (row level"
                          " security without a policy for it, or the row is gone): `billing-monitor doctor` prints the fix")
    if still_live:
        return Marked([], f"{still_live} live row(s) holding {paypal_subscription_id} were not updated: row level"
                          f" security lets {user} read them but not update them (`billing-monitor doctor` prints the fix)")
    return Marked([])          # every row holding it had already ended: the database already says so


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


MARK_FAILED = "PayPal canceled; the database row could not be marked"


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


def record_action(conn: psycopg.Connection, record: ActionRecord) -> dict:
    """The audit row and, for a cancellation, the subscriptions row marked canceled: one transaction."""
    if record.outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {record.outcome!r}")
    approval = record.approval
    marked = Marked([])
    if record.outcome in (CANCELED, ALREADY_CANCELED) and approval is not None:
        marked = mark_subscription_canceled(conn, approval.paypal_subscription_id)
    rows, detail = marked.rows, record.detail
    if marked.problem:
        detail = f"{detail}; {MARK_FAILED}: {marked.problem}"
    conn.execute(
        f"insert into {SCHEMA}.actions (idempotency_key, action, finding_id, paypal_subscription_id, subscription_id,"
        " approved_by, reason, forced, outcome, detail, paypal_status_before, paypal_status_after,"
        " row_status_before, row_status_after, message, message_length, sender_id, sender_arn, paypal_canceled_at,"
        " mark_problem)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (record.key, approval and approval.action, approval and approval.finding_id,
         approval and approval.paypal_subscription_id, rows[0][0] if rows else None,
         approval and approval.approved_by, record.reason or (approval and approval.reason),
         bool(approval and approval.force), record.outcome, detail, record.paypal_before, record.paypal_after,
         ", ".join(r[1] for r in rows) or None, ", ".join(r[2] for r in rows) or None, Jsonb(record.message),
         record.message_length, record.sender_id, record.sender_arn, record.paypal_canceled_at, marked.problem))
    return {"outcome": record.outcome, "detail": detail, "rows_marked": [str(r[0]) for r in rows],
            "mark_problem": marked.problem}


def list_actions(conn: psycopg.Connection, limit: int = 50) -> list[dict]:
    rows = conn.execute(
        f"select handled_at, outcome, finding_id, paypal_subscription_id, approved_by, detail"
        f" from {SCHEMA}.actions order by handled_at desc, action_id desc limit %s", (limit,)).fetchall()
    keys = ("handled_at", "outcome", "finding_id", "paypal_subscription_id", "approved_by", "detail")
    return [dict(zip(keys, r, strict=False)) for r in rows]
