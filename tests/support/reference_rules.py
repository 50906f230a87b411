"""detection-rules.md read loop by loop in plain Python: the oracle the SQL scan is compared with.

Deliberately naive (nested loops over every row) and written from the rules' text, not from the SQL.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from billing_monitor.rules.finding import finding_id_for

BLANKS = " \t\r\n"
PAYPAL_ID = re.compile(r"I-[A-Z0-9]+")


@dataclass
class Sub:
    id: UUID
    contact_id: UUID | None
    kajabi_subscription_id: str | None
    paypal_subscription_id: str | None
    status: str
    amount: Decimal
    currency: str
    billing_cycle: str
    canceled_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime


@dataclass
class Tx:
    id: UUID
    contact_id: UUID | None
    subscription_id: UUID | None
    source: str
    amount: Decimal
    currency: str
    status: str
    transaction_date: datetime


def trim(text: str) -> str:
    return text.strip(BLANKS)


def holds_paypal_id(text: str | None) -> bool:
    return text is not None and PAYPAL_ID.fullmatch(trim(text)) is not None


def is_set(text: str | None) -> bool:
    return text is not None and trim(text) != ""


def is_paypal_sub(s: Sub) -> bool:
    return is_set(s.paypal_subscription_id) or holds_paypal_id(s.kajabi_subscription_id)


def paypal_id(s: Sub) -> str | None:
    if holds_paypal_id(s.paypal_subscription_id):
        return trim(s.paypal_subscription_id)
    if holds_paypal_id(s.kajabi_subscription_id):
        return trim(s.kajabi_subscription_id)
    if is_set(s.paypal_subscription_id):
        return trim(s.paypal_subscription_id)
    return None


def kajabi_text(s: Sub) -> str | None:
    return trim(s.kajabi_subscription_id) or None if s.kajabi_subscription_id is not None else None


def ended(s: Sub) -> bool:
    return trim(s.status).lower() in ("canceled", "cancelled", "expired")


def end_time(s: Sub) -> datetime:
    for value in (s.canceled_at, s.ended_at, s.updated_at):
        if value is not None:
            return value
    raise AssertionError("updated_at is never null")


# import-layouts.md: month = monthly, year = yearly = annual (= annually, issue 18); any other only equals itself
_CYCLE = {"monthly": "month", "yearly": "year", "annual": "year", "annually": "year"}


def cycle(s: Sub) -> str:
    word = trim(s.billing_cycle).lower()
    return _CYCLE.get(word, word)


def match(a: Sub, b: Sub, tol: Decimal) -> bool:
    return (a.contact_id is not None and a.contact_id == b.contact_id
            and cycle(a) == cycle(b)
            and trim(a.currency).lower() == trim(b.currency).lower()
            and abs(a.amount - b.amount) <= tol)


def is_charge(t: Tx) -> bool:
    return trim(t.status).lower() == "completed"


def is_for(t: Tx, s: Sub) -> bool:
    return t.subscription_id == s.id


def is_candidate(t: Tx, s: Sub, subs: list[Sub], tol: Decimal) -> bool:
    names_a_row = any(t.subscription_id == other.id for other in subs)
    return (not names_a_row and t.contact_id is not None and t.contact_id == s.contact_id
            and trim(t.currency).lower() == trim(s.currency).lower() and abs(t.amount - s.amount) <= tol)


def latest_ended(rows: list[Sub]) -> Sub:
    best = None
    for s in rows:
        if best is None or end_time(s) > end_time(best) or (end_time(s) == end_time(best) and s.id < best.id):
            best = s
    return best


def reference_findings(contact_ids: set[UUID], subs: list[Sub], txs: list[Tx], tol: Decimal) -> dict:
    """finding_id -> (check, severity, kajabi id, kajabi_canceled_at, charge ids, action PayPal id)."""
    out = {}
    kajabi_subs = [s for s in subs if not is_paypal_sub(s)]
    for p in subs:
        if not is_paypal_sub(p) or ended(p):
            continue
        matches = [k for k in kajabi_subs if match(p, k, tol)]
        live = [k for k in matches if not ended(k)]
        gone = [k for k in matches if ended(k)]
        if live:
            closest = None
            for k in live:
                if closest is None or abs(k.amount - p.amount) < abs(closest.amount - p.amount) or (
                        abs(k.amount - p.amount) == abs(closest.amount - p.amount) and k.id < closest.id):
                    closest = k
            out[finding_id_for("duplicate_subscription", str(p.id))] = (
                "duplicate_subscription", "warning", kajabi_text(closest), None, None, None)
        elif gone:
            k = latest_ended(gone)
            canceled = end_time(k)
            charges = frozenset(
                t.id for t in txs
                if is_charge(t) and trim(t.source).lower() == "paypal"
                and (is_for(t, p) or is_candidate(t, p, subs, tol)) and t.transaction_date > canceled)
            out[finding_id_for("billing_disconnect", str(p.id))] = (
                "billing_disconnect", "critical" if charges else "warning", kajabi_text(k), canceled, charges,
                paypal_id(p))
        else:
            out[finding_id_for("paypal_only", str(p.id))] = ("paypal_only", "info", None, None, None, None)

    groups: dict[tuple, list[UUID]] = defaultdict(list)
    for t in txs:
        if not is_charge(t):
            continue
        own = [s for s in subs if is_for(t, s)]
        matching = own if own else [s for s in subs if is_candidate(t, s, subs, tol)]
        if matching and not any(not ended(s) for s in matching) and t.transaction_date > max(
                end_time(s) for s in matching):
            groups[(t.contact_id, latest_ended(matching).id)].append(t.id)
    by_id = {s.id: s for s in subs}
    for (contact, sid), charge_ids in groups.items():
        s = by_id[sid]
        out[finding_id_for("post_cancellation_charge", f"{contact}:{sid}")] = (
            "post_cancellation_charge", "critical", None if is_paypal_sub(s) else kajabi_text(s), None,
            frozenset(charge_ids), paypal_id(s) if is_paypal_sub(s) else None)

    for s in subs:
        if s.contact_id is None or s.contact_id not in contact_ids:
            out[finding_id_for("orphaned_subscription", str(s.id))] = (
                "orphaned_subscription", "warning", None if is_paypal_sub(s) else kajabi_text(s), None, None, None)
        if holds_paypal_id(s.kajabi_subscription_id):
            out[finding_id_for("misfiled_paypal_id", str(s.id))] = (
                "misfiled_paypal_id", "info", None, None, None, None)
    for t in txs:
        if t.contact_id is None or t.contact_id not in contact_ids:
            out[finding_id_for("orphaned_transaction", str(t.id))] = (
                "orphaned_transaction", "warning", None, None, None, None)
    return out


def reference_stale_import(subs: list[Sub], imported_at: list[datetime], now: datetime,
                           stale_after_days: int = 14) -> dict:
    """alerts.md's stale_import, read plainly: the newest import older than stale_after_days at scan time, or
    no transaction while there are subscriptions."""
    newest = max(imported_at, default=None)
    stale = (newest is None and bool(subs)) or (newest is not None and now - newest > timedelta(days=stale_after_days))
    if not stale:
        return {}
    return {finding_id_for("stale_import", "public.transactions"): ("stale_import", "warning", None, None, None, None)}


def report_as_reference(report: dict) -> dict:
    """The same normalised view of an actual report."""
    def when(text):
        return None if text is None else datetime.fromisoformat(text)

    return {
        f["finding_id"]: (
            f["check"], f["severity"], f["kajabi_subscription_id"], when(f["kajabi_canceled_at"]),
            None if f["charges"] is None else frozenset(UUID(t) for t in f["charges"]["transactions"]),
            f["action"]["paypal_subscription_id"] if f["action"] else None,
        )
        for f in report["findings"]
    }


def cents(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.01")), "f")


def reference_money(findings: dict, txs: list[Tx]) -> tuple[dict, dict]:
    """The money of `reference_findings`: per finding with charges (count, total, first, last); per currency
    (trimmed, upper-cased) the count and total of every listed charge, each charge once.

    A charge *for* P counts in any currency; a finding's money is its total per currency (trimmed, upper-cased),
    never two currencies added into one figure."""
    by_id = {t.id: t for t in txs}
    per_finding = {}
    listed: set[UUID] = set()
    for fid, (_check, _sev, _kajabi, _canceled, charges, _action) in findings.items():
        if charges is None:
            continue
        rows = [by_id[t] for t in charges]
        listed |= set(charges)
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for t in rows:
            totals[trim(t.currency).upper()] += t.amount
        per_finding[fid] = (
            len(rows), {cur: cents(v) for cur, v in totals.items()},
            min((t.transaction_date for t in rows), default=None), max((t.transaction_date for t in rows), default=None))
    per_currency: dict[str, list[Decimal]] = defaultdict(list)
    for t in listed:
        per_currency[trim(by_id[t].currency).upper()].append(by_id[t].amount)
    return per_finding, {cur: {"count": len(a), "total": cents(sum(a, Decimal(0)))} for cur, a in per_currency.items()}


def report_money(report: dict) -> tuple[dict, dict]:
    """The same money read from an actual report."""
    def when(text):
        return None if text is None else datetime.fromisoformat(text)

    per_finding = {
        f["finding_id"]: (f["charges"]["count"], f["charges"]["totals"], when(f["charges"]["first"]),
                          when(f["charges"]["last"]))
        for f in report["findings"] if f["charges"] is not None
    }
    return per_finding, report["summary"]["charged_after_cancellation"]
