"""What was done on an owner's approval: the audit rows, and the one write the monitor makes to production."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import psycopg
from psycopg.types.json import Jsonb

from billing_monitor.money import money_str
from billing_monitor.rules.registry import ENDED_STATUSES
from billing_monitor.source import DEFAULT_SOURCE_SCHEMA, quote_ident
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


#: a subscriptions row holding PayPal id %(pid)s in either id column (trimmed), and a live row (detection-rules.md;
#: a status may be an enum: compared as text)
HOLDS_ID = ("(btrim(paypal_subscription_id, E' \\t\\r\\n') = %(pid)s"
            " or btrim(kajabi_subscription_id, E' \\t\\r\\n') = %(pid)s)")
IS_LIVE = "lower(btrim(status::text, E' \\t\\r\\n')) <> all(%(ended)s)"


def live_rows_holding(conn: psycopg.Connection, paypal_ids: list[str],
                      source_schema: str = DEFAULT_SOURCE_SCHEMA) -> dict[str, list[str]]:
    """PayPal id -> the live subscriptions rows holding it (auto-cancel's criterion 3), in one query."""
    if not paypal_ids:
        return {}
    found: dict[str, list[str]] = defaultdict(list)
    rows = conn.execute(
        f"select ids.pid, s.id::text from unnest(%(pids)s::text[]) as ids(pid) join {quote_ident(source_schema)}.subscriptions s"
        " on btrim(s.paypal_subscription_id, E' \\t\\r\\n') = ids.pid or btrim(s.kajabi_subscription_id, E' \\t\\r\\n') = ids.pid"
        " where lower(btrim(s.status::text, E' \\t\\r\\n')) <> all(%(ended)s) order by 1, 2",
        {"pids": paypal_ids, "ended": list(ENDED_STATUSES)}).fetchall()
    for pid, row in rows:
        found[pid].append(row)
    return dict(found)


def mark_subscription_canceled(conn: psycopg.Connection, paypal_subscription_id: str,
                               source_schema: str = DEFAULT_SOURCE_SCHEMA) -> Marked:
    """Mark the live production rows of a PayPal subscription canceled (the only production write), in the
    source schema's `subscriptions`: a table, or a view over the owner's table (it writes `status`,
    `canceled_at` and `updated_at`, which such a view keeps plain columns: docs/owner-tables.md). A status may
    be an enum: compared as text.

    Its PayPal id may sit in either id column (the import bug); rows already ended are left as they are, and a
    subscription whose every row already ended needs no mark. An UPDATE that touches none of its live rows (row
    level security hiding them, a missing grant, the row gone) is returned as a problem, in the caller's
    transaction, which goes on (a savepoint takes the failed statement back).
    """
    params = {"pid": paypal_subscription_id, "ended": list(ENDED_STATUSES)}
    holds, live = HOLDS_ID, IS_LIVE
    subscriptions = f"{quote_ident(source_schema)}.subscriptions"
    try:
        with conn.transaction():
            rows = conn.execute(
                f"with target as (select id, status::text as status from {subscriptions} where {holds} and {live}"
                " for update)"
                f" update {subscriptions} s set status = 'canceled',"
                "   canceled_at = coalesce(s.canceled_at, now()), updated_at = now()"
                " from target where s.id = target.id"
                " returning s.id, target.status, s.status::text", params).fetchall()
            # what is left: a live row the UPDATE could not touch (row level security lets the writer read it but
            # not update it), or no row visible at all
            seen, still_live = conn.execute(
                f"select count(*), count(*) filter (where {live}) from {subscriptions} where {holds}",
                params).fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        return Marked([], f"{first_line(exc)} (docs/deploy.md step 1 grants it)")
    except (psycopg.ProgrammingError, psycopg.DataError, psycopg.NotSupportedError, psycopg.IntegrityError) as exc:
        # through a view: a column that is an expression, a status enum without the label 'canceled', a check
        # constraint; the connection itself is fine, so the audit is still written (a lost connection raises)
        return Marked([], f"{first_line(exc)} (docs/owner-tables.md: the columns the mark writes)")
    user = conn.execute("select current_user").fetchone()[0]
    if not seen:
        return Marked(rows, f"no subscriptions row holding {paypal_subscription_id} is visible to {user} (row level"
                            " security without a policy for it, or the row is gone): `billing-monitor doctor` prints the fix")
    if still_live:
        return Marked(rows, f"{still_live} live row(s) holding {paypal_subscription_id} were not updated: row level"
                            f" security lets {user} read them but not update them (`billing-monitor doctor` prints the fix)")
    return Marked(rows)        # marked; or every row holding it had already ended: the database already says so


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
    handled_at: datetime | None = None    # the cancel function's clock (None: the database's now())
    prevented_due: datetime | None = None         # the charge this cancellation prevented (prevention.md) ...
    prevented_amount: Decimal | None = None       # ... at the amount PayPal would have taken
    prevented_currency: str | None = None


def record_action(conn: psycopg.Connection, record: ActionRecord, source_schema: str = DEFAULT_SOURCE_SCHEMA) -> dict:
    """The audit row and, for a cancellation, the subscriptions row marked canceled: one transaction."""
    if record.outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {record.outcome!r}")
    approval = record.approval
    marked = Marked([])
    if record.outcome in (CANCELED, ALREADY_CANCELED) and approval is not None:
        marked = mark_subscription_canceled(conn, approval.paypal_subscription_id, source_schema)
    rows, detail = marked.rows, record.detail
    if marked.problem:
        detail = f"{detail}; {MARK_FAILED}: {marked.problem}"
    conn.execute(
        f"insert into {SCHEMA}.actions (idempotency_key, action, finding_id, paypal_subscription_id, subscription_id,"
        " approved_by, reason, forced, outcome, detail, paypal_status_before, paypal_status_after,"
        " row_status_before, row_status_after, message, message_length, sender_id, sender_arn, paypal_canceled_at,"
        " mark_problem, handled_at, prevented_due, prevented_amount, prevented_currency)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " coalesce(%s, now()), %s, %s, %s)",
        (record.key, approval and approval.action, approval and approval.finding_id,
         approval and approval.paypal_subscription_id, rows[0][0] if rows else None,
         approval and approval.approved_by, record.reason or (approval and approval.reason),
         bool(approval and approval.force), record.outcome, detail, record.paypal_before, record.paypal_after,
         ", ".join(r[1] for r in rows) or None, ", ".join(r[2] for r in rows) or None, Jsonb(record.message),
         record.message_length, record.sender_id, record.sender_arn, record.paypal_canceled_at, marked.problem,
         record.handled_at, record.prevented_due if record.outcome == CANCELED else None,
         record.prevented_amount if record.outcome == CANCELED else None,
         record.prevented_currency if record.outcome == CANCELED else None))
    return {"outcome": record.outcome, "detail": detail, "rows_marked": [str(r[0]) for r in rows],
            "mark_problem": marked.problem}


def list_actions(conn: psycopg.Connection, limit: int = 50) -> list[dict]:
    rows = conn.execute(
        f"select handled_at, outcome, finding_id, paypal_subscription_id, approved_by, detail"
        f" from {SCHEMA}.actions order by handled_at desc, action_id desc limit %s", (limit,)).fetchall()
    keys = ("handled_at", "outcome", "finding_id", "paypal_subscription_id", "approved_by", "detail")
    return [dict(zip(keys, r, strict=False)) for r in rows]


# ---------------------------------------------------------------- prevention (issue 19)


def canceled_before(conn: psycopg.Connection, paypal_ids: list[str]) -> set[str]:
    """The ids an approval canceled before, or auto-cancel queued before (auto-cancel's criterion 6)."""
    if not paypal_ids:
        return set()
    return {r[0] for r in conn.execute(
        f"select paypal_subscription_id from {SCHEMA}.actions where outcome = %(c)s and paypal_subscription_id = any(%(p)s)"
        f" union select paypal_subscription_id from {SCHEMA}.auto_cancel_queued where paypal_subscription_id = any(%(p)s)",
        {"c": CANCELED, "p": paypal_ids})}


def remember_queued(conn: psycopg.Connection, message: dict, scan_id: str, when: datetime) -> bool:
    """Record an approval auto-cancel is about to queue; False when that PayPal id was queued before."""
    return conn.execute(
        f"insert into {SCHEMA}.auto_cancel_queued (paypal_subscription_id, finding_id, scan_id, queued_at, policy, message)"
        " values (%s, %s, %s, %s, %s, %s) on conflict (paypal_subscription_id) do nothing returning 1",
        (message["paypal_subscription_id"], message["finding_id"], scan_id, when, message["policy"], Jsonb(message)),
    ).fetchone() is not None


def _prevented(rows) -> dict[str, dict]:
    totals: dict[str, list] = {}
    for currency, count, total in rows:
        totals[currency or "?"] = [count, total]
    return {cur: {"count": n, "total": money_str(t)} for cur, (n, t) in sorted(totals.items())}


def prevented_between(conn: psycopg.Connection, since: datetime | None, until: datetime) -> dict[str, dict]:
    """Per currency, the cancellations that prevented a charge, handled after `since` (None: ever) up to `until`."""
    return _prevented(conn.execute(
        f"select prevented_currency, count(*), sum(prevented_amount) from {SCHEMA}.actions"
        " where prevented_due is not null and (%(since)s::timestamptz is null or handled_at > %(since)s)"
        " and handled_at <= %(until)s group by 1", {"since": since, "until": until}).fetchall())


def prevented_by_month(conn: psycopg.Connection, limit: int = 12) -> list[tuple[str, dict[str, dict]]]:
    """('2026-12', per currency {count, total}) for the months with a prevented charge, newest first (UTC months)."""
    months: dict[str, list] = {}
    for month, currency, count, total in conn.execute(
            f"select to_char(handled_at at time zone 'UTC', 'YYYY-MM'), prevented_currency, count(*), sum(prevented_amount)"
            f" from {SCHEMA}.actions where prevented_due is not null group by 1, 2 order by 1 desc, 2").fetchall():
        months.setdefault(month, []).append((currency, count, total))
    return [(m, _prevented(rows)) for m, rows in list(months.items())[:limit]]
