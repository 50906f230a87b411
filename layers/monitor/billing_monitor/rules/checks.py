"""Run the seven checks in Postgres and turn their rows into Findings.

Four set-based queries, all read-only and inside one REPEATABLE READ snapshot:
  paypal_findings      checks 1-3 (every live PayPal subscription is in exactly one of them)
  transaction_rows     one pass over transactions: orphaned_transaction, and the charges of each
                       billing_disconnect after its Kajabi cancellation
  unexplained_charges  check 4, post_cancellation_charge (hash anti-join, no per-row work)
  subscription_rows    orphaned_subscription and misfiled_paypal_id
Transactions are streamed (libpq single-row mode), never loaded whole: only the rows that are
findings reach Python.
"""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal
from functools import cache
from importlib import resources
from uuid import UUID

import psycopg
from psycopg.rows import namedtuple_row

from billing_monitor.rules.finding import (
    BILLING_DISCONNECT, CRITICAL, INFO, MISFILED_PAYPAL_ID, ORPHANED_SUBSCRIPTION,
    ORPHANED_TRANSACTION, POST_CANCELLATION_CHARGE, WARNING, Charge, Contact, Finding,
)

_SEVERITY_OF = {"duplicate_subscription": WARNING, "paypal_only": INFO}
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
    return "with " + ",\n".join(ctes + [text])


def _stream(conn: psycopg.Connection, name: str, params: dict):
    with conn.cursor(row_factory=namedtuple_row) as cur:
        yield from cur.stream(load_query(name), params)


def find_live_paypal_findings(conn, tol: Decimal) -> dict[UUID, Finding]:
    """Checks 1-3; billing_disconnects get their charges and severity later."""
    findings = {}
    for r in _stream(conn, "paypal_findings", {"tol": tol}):
        disconnect = r.check_name == BILLING_DISCONNECT
        findings[r.subscription_id] = Finding(
            check=r.check_name, severity=_SEVERITY_OF.get(r.check_name, WARNING),
            key=str(r.subscription_id), subscription_id=r.subscription_id,
            paypal_subscription_id=r.paypal_id, kajabi_subscription_id=r.kajabi_id,
            contact_id=r.contact_id, amount=r.amount, currency=r.cur, billing_cycle=r.cycle,
            kajabi_canceled_at=r.kajabi_canceled_at,
            charges=[] if disconnect else None,
            action_paypal_id=r.paypal_id if disconnect else None,
        )
    return findings


def find_transaction_findings(conn, tol: Decimal, paypal_findings: dict[UUID, Finding]) -> list[Finding]:
    """orphaned_transaction findings; adds each billing_disconnect's charges after cancellation."""
    orphans: dict[UUID, Finding] = {}
    for r in _stream(conn, "transaction_rows", {"tol": tol}):
        if r.orphaned and r.transaction_id not in orphans:
            orphans[r.transaction_id] = Finding(
                check=ORPHANED_TRANSACTION, severity=WARNING, key=str(r.transaction_id),
                subscription_id=r.subscription_id, transaction_id=r.transaction_id,
                contact_id=r.contact_id, amount=r.amount, currency=r.cur,
            )
        if r.disconnect_subscription_id is not None:
            paypal_findings[r.disconnect_subscription_id].charges.append(
                Charge(r.transaction_id, r.transaction_date, r.amount, r.cur))
    for finding in paypal_findings.values():
        if finding.check == BILLING_DISCONNECT:
            finding.severity = CRITICAL if finding.charges else WARNING
    return list(orphans.values())


def find_post_cancellation_charges(conn, tol: Decimal) -> list[Finding]:
    """Check 4: one finding per (contact, latest-ended subscription), listing its charges."""
    findings: dict[tuple, Finding] = {}
    for r in _stream(conn, "unexplained_charges", {"tol": tol}):
        group = (r.contact_id, r.subscription_id)
        finding = findings.get(group)
        if finding is None:
            finding = findings[group] = Finding(
                check=POST_CANCELLATION_CHARGE, severity=CRITICAL,
                key=f"{r.contact_id}:{r.subscription_id}", subscription_id=r.subscription_id,
                paypal_subscription_id=r.paypal_id,
                kajabi_subscription_id=None if r.paypal_id else r.kajabi_id_text,
                contact_id=r.contact_id, amount=r.subscription_amount, currency=r.subscription_cur,
                billing_cycle=r.subscription_cycle, charges=[], action_paypal_id=r.paypal_id,
            )
        finding.charges.append(Charge(r.transaction_id, r.transaction_date, r.amount, r.cur))
    return list(findings.values())


def find_subscription_row_findings(conn, tol: Decimal) -> list[Finding]:
    """Checks 5 (orphaned_subscription) and 6 (misfiled_paypal_id)."""
    findings = []
    for r in _stream(conn, "subscription_rows", {"tol": tol}):
        common = dict(
            key=str(r.subscription_id), subscription_id=r.subscription_id,
            paypal_subscription_id=r.paypal_id,
            kajabi_subscription_id=None if r.paypal_id else r.kajabi_id_text,
            contact_id=r.contact_id, amount=r.amount, currency=r.cur, billing_cycle=r.cycle,
        )
        if r.orphaned:
            findings.append(Finding(check=ORPHANED_SUBSCRIPTION, severity=WARNING, **common))
        if r.misfiled:
            findings.append(Finding(check=MISFILED_PAYPAL_ID, severity=INFO, **common))
    return findings


def attach_contacts(conn, findings: list[Finding]) -> None:
    ids = sorted({f.contact_id for f in findings if f.contact_id is not None}, key=str)
    if not ids:
        return
    contacts = {
        r.id: Contact(r.id, r.email, r.name)
        for r in _stream(conn, "contacts", {"ids": ids})
    }
    for finding in findings:
        finding.contact = contacts.get(finding.contact_id)


def run_checks(conn: psycopg.Connection, tolerance: Decimal) -> list[Finding]:
    """All seven checks of detection-rules.md against the production tables, read-only."""
    paypal = find_live_paypal_findings(conn, tolerance)
    orphaned_transactions = find_transaction_findings(conn, tolerance, paypal)
    findings = [
        *paypal.values(),
        *find_post_cancellation_charges(conn, tolerance),
        *find_subscription_row_findings(conn, tolerance),
        *orphaned_transactions,
    ]
    for finding in findings:
        if finding.charges:
            finding.charges.sort(key=lambda c: (c.date, str(c.transaction_id)))
    attach_contacts(conn, findings)
    return findings
