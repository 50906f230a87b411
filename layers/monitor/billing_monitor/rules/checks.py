"""Run the seven checks in Postgres and turn their rows into Findings.

Two set-based queries, read-only, inside one REPEATABLE READ snapshot:
  subscription_findings  one pass over subscriptions: billing_disconnect, duplicate_subscription,
                         paypal_only (every live PayPal subscription is in exactly one), and
                         orphaned_subscription, misfiled_paypal_id
  transaction_findings   one pass over transactions: orphaned_transaction, each billing_disconnect's
                         charges after its cancellation, post_cancellation_charge
(and ended_subscriptions, one row of array literals that transaction_findings' first stage takes
as parameters: PostgreSQL hashes a constant array once, where a join would cost a node per row).
Rows are streamed (libpq chunked-rows mode, which keeps parallel plans): only the rows that are
findings reach Python, never the transactions as a whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.string import TextLoader

from billing_monitor.rules.finding import Charge, Contact, Finding
from billing_monitor.rules.registry import (
    BILLING_DISCONNECT,
    CHECKS,
    DEFAULT_STALE_AFTER_DAYS,
    MISFILED_PAYPAL_ID,
    ORPHANED_SUBSCRIPTION,
    ORPHANED_TRANSACTION,
    POST_CANCELLATION_CHARGE,
    SHRANK_BELOW_SHARE,
    SHRANK_MIN_ROWS,
    SOURCE_RELATIONS,
    SOURCE_SHRANK,
    STALE_IMPORT,
)

NEWEST_IMPORT = "newest_import"            # transaction_findings' last row: the newest transactions.created_at
_STREAM_CHUNK = 2000 if psycopg.capabilities.has_stream_chunked() else 1
_USES = re.compile(r"^-- uses:(.*)$", re.MULTILINE)


@cache
def load_query(name: str) -> str:
    """A query file with the shared CTEs it names on its `-- uses:` line put in front."""
    sql_dir = resources.files("billing_monitor.rules") / "sql"
    text = (sql_dir / f"{name}.sql").read_text()
    uses = [u.strip() for u in _USES.search(text).group(1).split(",") if u.strip()]
    if not uses:
        return text
    ctes = [(sql_dir / f"{u}.sql").read_text().strip() for u in uses]
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--")).lstrip()
    if body.lower().startswith("select"):
        return "with " + ",\n".join(ctes) + "\n" + text
    return "with " + ",\n".join([*ctes, text])


def _cursor(conn: psycopg.Connection) -> psycopg.Cursor:
    """A cursor that loads uuids as their text: the report prints them, and str(UUID) is slow."""
    cur = conn.cursor(row_factory=namedtuple_row)
    cur.adapters.register_loader("uuid", TextLoader)
    return cur


def _stream(conn: psycopg.Connection, name: str, params: dict):
    with _cursor(conn) as cur:
        # chunks of rows (libpq >= 17; one row at a time with an older libpq): the memory of a
        # chunk, without the cost of one result object per row
        yield from cur.stream(load_query(name), params, size=_STREAM_CHUNK)


def find_subscription_findings(conn, tol: Decimal) -> list[Finding]:
    """Checks 1-3 and the subscription rows of checks 5 and 6.

    billing_disconnects come back with empty charges; find_transaction_findings fills them.
    """
    findings = []
    for r in _stream(conn, "subscription_findings", {"tol": tol}):
        row = {
            "key": r.subscription_id, "subscription_id": r.subscription_id, "paypal_subscription_id": r.paypal_id,
            "contact_id": r.contact_id, "amount": r.amount, "currency": r.cur, "billing_cycle": r.cycle,
            "contact": None if r.orphaned else Contact.from_row(r.contact_id, r.email, r.first_name, r.last_name),
        }
        own_kajabi_id = None if r.paypal_id else r.kajabi_id_text
        if r.check_name:
            disconnect = r.check_name == BILLING_DISCONNECT
            findings.append(Finding(
                check=CHECKS[r.check_name].name, **row,
                kajabi_subscription_id=r.match_kajabi_id, kajabi_canceled_at=r.kajabi_canceled_at,
                charges=[] if disconnect else None, action_paypal_id=r.paypal_id if disconnect else None,
            ))
        if r.orphaned:
            findings.append(Finding(check=ORPHANED_SUBSCRIPTION, **row,
                                    kajabi_subscription_id=own_kajabi_id))
        if r.misfiled:
            findings.append(Finding(check=MISFILED_PAYPAL_ID, **row,
                                    kajabi_subscription_id=own_kajabi_id))
    return findings


def _disconnect_params(disconnects: list[Finding]) -> dict:
    return {
        "d_pid": [f.subscription_id for f in disconnects],
        "d_contact": [f.contact_id for f in disconnects],
        "d_cur": [f.currency for f in disconnects],
        "d_amount": [f.amount for f in disconnects],
        "d_canceled": [f.kajabi_canceled_at for f in disconnects],
    }


def _ended_params(conn) -> dict:
    """The ended subscriptions as array literals (text from the server, sent back as it is)."""
    with _cursor(conn) as cur:
        return cur.execute(load_query("ended_subscriptions")).fetchone()._asdict()


def _newest_hint(conn) -> datetime | None:
    """A lower bound of the newest transactions.created_at (the last pages); the exact max when they are empty."""
    hint = conn.execute(load_query("newest_hint")).fetchone()[0]
    if hint is None:    # empty table, or rows deleted at its end: ask for it exactly (a pass, rarely)
        hint = conn.execute("select max(created_at) from public.transactions").fetchone()[0]
    return hint


@dataclass
class TransactionPass:
    findings: list[Finding]
    newest_import: datetime | None      # the newest transactions.created_at (None: no transaction)


def find_transaction_findings(conn, tol: Decimal, disconnects: list[Finding]) -> TransactionPass:
    """orphaned_transaction and post_cancellation_charge findings, and the newest import; fills each
    disconnect's charges."""
    by_subscription = {f.subscription_id: f for f in disconnects}
    orphans: list[Finding] = []
    post_cancellation: dict[tuple, Finding] = {}
    newest_import = None
    hint = _newest_hint(conn)
    params = {"tol": tol, **_disconnect_params(disconnects), **_ended_params(conn),
              "newest_hint": hint if hint is not None else datetime.max.replace(tzinfo=UTC)}
    for r in _stream(conn, "transaction_findings", params):
        if r.kind == NEWEST_IMPORT:          # the newest of the rows after the bound, else the bound itself
            newest_import = max(filter(None, (r.transaction_date, hint)), default=None)
            continue
        charge = Charge(r.transaction_id, r.transaction_date, r.amount, r.cur)
        if r.kind == ORPHANED_TRANSACTION:
            orphans.append(Finding(
                check=ORPHANED_TRANSACTION, key=r.transaction_id,
                subscription_id=r.subscription_id, transaction_id=r.transaction_id,
                contact_id=r.contact_id, amount=r.amount, currency=r.cur,
            ))
        elif r.kind == "disconnect_charge":
            by_subscription[r.subscription_id].charges.append(charge)
        else:  # unexplained_charge: one finding per (contact, latest-ended subscription)
            group = (r.contact_id, r.subscription_id)
            if group not in post_cancellation:
                post_cancellation[group] = Finding(
                    check=POST_CANCELLATION_CHARGE,
                    key=f"{r.contact_id}:{r.subscription_id}", subscription_id=r.subscription_id,
                    paypal_subscription_id=r.paypal_id,
                    kajabi_subscription_id=None if r.paypal_id else r.kajabi_id_text,
                    contact_id=r.contact_id, amount=r.subscription_amount, currency=r.subscription_cur,
                    billing_cycle=r.subscription_cycle, charges=[], action_paypal_id=r.paypal_id,
                )
            post_cancellation[group].charges.append(charge)
    return TransactionPass(orphans + list(post_cancellation.values()), newest_import)


def find_stale_import(conn, newest_import: datetime | None, now: datetime, stale_after_days: int) -> list[Finding]:
    """stale_import: the newest import is older than `stale_after_days`, or transactions is empty while
    subscriptions is not (the imports have stopped; every other finding may be out of date)."""
    if newest_import is None:
        if not conn.execute("select exists (select 1 from public.subscriptions)").fetchone()[0]:
            return []                                       # an empty database is not a stopped import
        detail = "no transaction imported, but subscriptions are: the imports have stopped or never ran"
    else:
        age = now - newest_import
        if age <= timedelta(days=stale_after_days):
            return []
        detail = (f"newest transaction imported {newest_import.astimezone(UTC):%Y-%m-%d}, {age.days} days before"
                  f" the scan (stale after {stale_after_days} days): every other finding may be out of date")
    return [Finding(check=STALE_IMPORT, key="public.transactions", detail=detail)]


def find_row_counts(conn) -> dict[str, int]:
    """How many rows each of the four tables holds, in the scan's snapshot."""
    with _cursor(conn) as cur:
        return cur.execute(load_query("row_counts")).fetchone()._asdict()


def find_source_shrank(counts: dict[str, int], previous: tuple[dict[str, int], datetime] | None) -> list[Finding]:
    """source_shrank: a table holding less than half of what the previous saved scan read (which read at least 20):
    a truncated import, a changed policy or grant, the wrong database; every other finding may be wrong."""
    if previous is None:
        return []
    before, when = previous
    findings = []
    for table in SOURCE_RELATIONS:
        was, now = before.get(table), counts.get(table)
        if was is None or now is None or was < SHRANK_MIN_ROWS or now >= was * SHRANK_BELOW_SHARE:
            continue
        findings.append(Finding(check=SOURCE_SHRANK, key=f"public.{table}", detail=(
            f"public.{table} holds {now:,} rows; the previous saved scan ({when.astimezone(UTC):%Y-%m-%d}) read"
            f" {was:,}: an import that emptied it, a changed policy or grant, or the wrong database")))
    return findings


@dataclass
class CheckResults:
    findings: list[Finding]
    data_current_to: datetime | None    # the newest transactions.created_at
    row_counts: dict[str, int] | None = None   # the rows read in each of the four tables


def run_checks(conn: psycopg.Connection, tolerance: Decimal, *, stale_after_days: int = DEFAULT_STALE_AFTER_DAYS,
               now: datetime | None = None,
               previous_counts: tuple[dict[str, int], datetime] | None = None) -> CheckResults:
    """Every check of the registry against the production tables, read-only. `previous_counts`: the row counts
    of the previous saved scan and when it started (source_shrank; None: nothing to compare with)."""
    counts = find_row_counts(conn)
    findings = find_subscription_findings(conn, tolerance)
    disconnects = [f for f in findings if f.check == BILLING_DISCONNECT]
    transactions = find_transaction_findings(conn, tolerance, disconnects)
    findings += transactions.findings
    findings += find_stale_import(conn, transactions.newest_import, now or datetime.now(UTC), stale_after_days)
    findings += find_source_shrank(counts, previous_counts)
    for finding in findings:
        if finding.charges:
            finding.charges.sort(key=lambda c: (c.date, str(c.transaction_id)))
    attach_contacts(conn, findings)
    attach_external_ids(conn, findings)
    return CheckResults(findings, transactions.newest_import, counts)


def attach_external_ids(conn, findings: list[Finding]) -> None:
    """Each listed charge's transactions.external_id, so that the owner can find it in PayPal (by primary key)."""
    ids = sorted({str(c.transaction_id) for f in findings for c in f.charges or ()})
    if not ids:
        return
    external = {r.id: r.external_id for r in _stream(conn, "external_ids", {"ids": ids})}
    for finding in findings:
        if finding.charges:
            finding.charges = [replace(c, external_id=external.get(str(c.transaction_id))) for c in finding.charges]


def attach_contacts(conn, findings: list[Finding]) -> None:
    """Contact details for the findings that do not have them yet (one set-based query)."""
    findings = [f for f in findings if f.contact is None and f.contact_id is not None]
    ids = sorted({f.contact_id for f in findings})
    if not ids:
        return
    contacts = {
        r.id: Contact.from_row(r.id, r.email, r.first_name, r.last_name)
        for r in _stream(conn, "contacts", {"ids": ids})
    }
    for finding in findings:
        finding.contact = contacts.get(finding.contact_id)
