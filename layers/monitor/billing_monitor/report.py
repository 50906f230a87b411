"""The report of report-format.md (a public interface) and its ten-second table."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from billing_monitor.money import money_str, to_money
from billing_monitor.rules.finding import Finding
from billing_monitor.rules.registry import (
    AT_RISK_CHECKS,
    BILLING_DISCONNECT,
    CANCEL_PAYPAL_SUBSCRIPTION,
    CHECK_NAMES,
    CHECK_RANK,
    PAYPAL_CHECKS,
    PAYPAL_STILL_ACTIVE,
    PAYPAL_SUBSCRIPTION_NOT_IMPORTED,
    POST_CANCELLATION_CHARGE,
    REFUND_OWED,
    SEVERITIES,
    SEVERITY_RANK,
)

#: the checks whose charges are charges after canceling (the money line's customers)
CHARGED_AFTER_CANCELING_CHECKS = (BILLING_DISCONNECT, POST_CANCELLATION_CHARGE, PAYPAL_STILL_ACTIVE, REFUND_OWED)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with its offset: 2023-08-16T00:00:00+00:00."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _text(value) -> str | None:
    return None if value is None else str(value)


def finding_to_dict(f: Finding) -> dict:
    charges = None
    if f.charges is not None:
        charges = {
            "count": len(f.charges),
            "total": money_str(f.charged_total),          # in the finding's currency
            "totals": {cur: money_str(v) for cur, v in f.totals_by_currency().items()},
            "first": iso(f.charges[0].date) if f.charges else None,
            "last": iso(f.charges[-1].date) if f.charges else None,
            "transactions": [str(c.transaction_id) for c in f.charges],
            "external_ids": [c.external_id for c in f.charges],
        }
    return {
        "finding_id": f.finding_id,
        "check": f.check,
        "severity": f.severity,
        "subscription_id": _text(f.subscription_id),
        "paypal_subscription_id": f.paypal_subscription_id,
        "kajabi_subscription_id": f.kajabi_subscription_id,
        "transaction_id": _text(f.transaction_id),
        "contact": None if f.contact is None else {
            "id": _text(f.contact.id), "email": f.contact.email, "name": f.contact.name,
        },
        "amount": None if f.amount is None else money_str(f.amount),
        "currency": f.currency,
        "billing_cycle": f.billing_cycle,
        "kajabi_canceled_at": iso(f.kajabi_canceled_at),
        "charges": charges,
        "action": None if not f.action_paypal_id else {
            "type": CANCEL_PAYPAL_SUBSCRIPTION, "paypal_subscription_id": f.action_paypal_id,
        },
        "detail": f.detail,
        "paypal": f.paypal,
        "refund": f.refund,
        "acknowledged": None,     # {"by", "at", "note", "until"} when the owner acknowledged it (store/acks.py)
    }


def _sort_key(f: Finding):
    return (SEVERITY_RANK[f.severity], CHECK_RANK[f.check], -f.charged_total, f.finding_id)


def charged_after_cancellation(findings: list[Finding]) -> dict[str, dict]:
    """Per currency, every charge that a billing_disconnect or post_cancellation_charge lists, once."""
    seen: dict[str, object] = {}
    for f in findings:
        if f.check not in (BILLING_DISCONNECT, POST_CANCELLATION_CHARGE):
            continue
        for c in f.charges or ():
            seen[str(c.transaction_id)] = c
    per_currency: dict[str, list] = defaultdict(list)
    for c in seen.values():
        per_currency[c.currency.strip().upper()].append(c.amount)
    return {
        cur: {"count": len(amounts), "total": money_str(sum(amounts, Decimal(0)))}
        for cur, amounts in sorted(per_currency.items())
    }


def owed(findings: list[Finding]) -> dict[str, dict]:
    """Per currency, the customers owed something and the total owed, each PayPal transaction counted once.

    Customers are distinct contacts (a finding whose contact is missing counts once per PayPal id)."""
    amounts: dict[str, dict[str, Decimal]] = defaultdict(dict)
    customers: dict[str, set] = defaultdict(set)
    for f in findings:
        for c in f.owed_charges or ():
            currency = c.currency.upper()
            amounts[currency][str(c.transaction_id)] = c.amount
            customers[currency].add(f.contact.id if f.contact is not None and f.contact.id is not None
                                    else f"paypal:{f.paypal_subscription_id}")
    return {
        cur: {"customers": len(customers[cur]), "total": money_str(sum(amounts[cur].values(), Decimal(0)))}
        for cur in sorted(amounts)
    }


def _tolerance_text(tolerance: Decimal) -> str:
    """'1.00' for whole cents; a finer tolerance keeps its digits ('0.005')."""
    return money_str(tolerance) if tolerance == to_money(tolerance) else format(tolerance, "f")


def build_report(scan) -> dict:
    """`scan` is a ScanResult; the dict is the report JSON (money as strings, times with offset)."""
    findings = sorted(scan.findings, key=_sort_key)
    paypal = getattr(scan, "paypal", None)
    # the PayPal checks are counted only when PayPal was asked: a 0 would say "checked, none" otherwise
    by_check = dict.fromkeys((c for c in CHECK_NAMES if paypal is not None or c not in PAYPAL_CHECKS), 0)
    by_severity = dict.fromkeys(SEVERITIES, 0)
    for f in findings:
        by_check[f.check] += 1
        by_severity[f.severity] += 1
    return {
        "scan_id": scan.scan_id,
        "started_at": iso(scan.started_at),
        "finished_at": iso(scan.finished_at),
        "tolerance": _tolerance_text(scan.tolerance),
        "data_current_to": iso(scan.data_current_to),
        "summary": {
            "by_check": by_check,
            "by_severity": by_severity,
            "charged_after_cancellation": charged_after_cancellation(findings),
            "owed": owed(findings),
        },
        "paypal": paypal,
        # the rows read in each of the four tables (a saved scan keeps them: source_shrank)
        "row_counts": getattr(scan, "row_counts", None),
        "findings": [finding_to_dict(f) for f in findings],
    }


# ---------------------------------------------------------------- the due: PayPal's next charge (prevention.md)


def scan_time(report: dict) -> datetime:
    """The time the scan ran at: what every due is worded against (never the clock of whoever formats it)."""
    return datetime.fromisoformat(report["started_at"])


def due_of(f: dict) -> datetime | None:
    """An at-risk customer's due: PayPal's next_billing_time for the PayPal id, as the scan's reconciliation read it."""
    when = (f.get("paypal") or {}).get("next_billing_time")
    return datetime.fromisoformat(when) if when else None


def due_text(f: dict, now: datetime) -> str:
    """'PayPal charges 22.00 USD on 2026-12-16 (in 12 days)', '(due today)', '(due tomorrow)'; unknown without PayPal.

    Days are counted between UTC calendar dates, so a charge at 10:00 today is "due today" at 09:00 and at 11:00."""
    due = due_of(f)
    block = f.get("paypal")
    if due is None:
        if not block:
            return "PayPal's next charge: unknown (not checked with PayPal)"
        if block.get("status") is None:
            return "PayPal's next charge: unknown (PayPal could not be checked)"
        return f"PayPal's next charge: none scheduled (PayPal shows {block['status']})"
    days = (due.astimezone(UTC).date() - now.astimezone(UTC).date()).days
    when = {0: "due today", 1: "due tomorrow"}.get(days) or (f"in {days} days" if days > 1 else
                                                              f"{-days} day{'s' if days != -1 else ''} ago")
    price = f"{f['amount']} {f.get('currency') or ''}".rstrip() + " " if f.get("amount") else ""
    return f"PayPal charges {price}on {due.astimezone(UTC).date().isoformat()} ({when})"


def auto_cancel_note(report: dict, f: dict) -> str | None:
    """'auto-cancel: approval queued (policy unambiguous)', or 'not auto-canceled: <why>' (None: auto-cancel off)."""
    auto = report.get("auto_cancel")
    if not auto:
        return None
    if f["finding_id"] in auto.get("queued", ()):
        if auto.get("preview"):
            return f"auto-cancel would queue an approval (policy {auto['policy']}; a preview: nothing sent)"
        return f"auto-cancel: approval queued (policy {auto['policy']})"
    why = (auto.get("not_queued") or {}).get(f["finding_id"])
    return f"not auto-canceled: {why}" if why else None


def by_due(findings: list[dict]) -> list[dict]:
    """At-risk customers soonest due first, unknown due last; otherwise (and among equals) in the given order."""
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(findings, key=lambda f: (due_of(f) or far) if f["check"] in AT_RISK_CHECKS else far)


def prevented_words(by_currency: dict[str, dict]) -> str | None:
    """'3 subscriptions canceled before PayPal charged again: 66.00 USD not charged' (None: nothing prevented)."""
    count = sum(v["count"] for v in by_currency.values())
    if not count:
        return None
    money = " + ".join(f"{display_money(v['total'])} {cur}" for cur, v in sorted(by_currency.items()))
    return f"{count} subscription{'s' if count != 1 else ''} canceled before PayPal charged again: {money} not charged"


def prevented_line(report: dict) -> str | None:
    """The report's `prevented` (the charges cancellations prevented since the previous monthly message), in words."""
    block = report.get("prevented")
    return prevented_words(block["by_currency"]) if block else None


# ---------------------------------------------------------------- the table a person reads


def display_money(total: str | Decimal) -> str:
    """'1,089.00': money as a person reads it (the report keeps '1089.00')."""
    return f"{Decimal(total):,.2f}"


def money_line(report: dict) -> str:
    """'4 customers charged after canceling: 41 charges, 990.00 USD' (or that nobody was), then, after a
    reconciliation, what is owed: '; 4 customers owed 1,089.00 USD'. PayPal's charges on subscriptions the
    database says are over count as charged after canceling too."""
    charged = {cur: (v["count"], Decimal(v["total"])) for cur, v in report["summary"]["charged_after_cancellation"].items()}
    for f in report["findings"]:
        if f["check"] in (PAYPAL_STILL_ACTIVE, REFUND_OWED) and f["charges"] and f["charges"]["count"]:
            cur = (f["currency"] or "").upper()
            count, total = charged.get(cur, (0, Decimal(0)))
            charged[cur] = (count + f["charges"]["count"], total + Decimal(f["charges"]["total"]))
    customers = {
        (f["contact"] or {}).get("id") or f["subscription_id"] or f["paypal_subscription_id"]
        for f in report["findings"] if f["check"] in CHARGED_AFTER_CANCELING_CHECKS and f["charges"] and f["charges"]["count"]
    }
    if not charged:
        line = "No customer charged after canceling."
    else:
        count = sum(c for c, _ in charged.values())
        totals = " + ".join(f"{display_money(t)} {cur}" for cur, (_, t) in sorted(charged.items()))
        noun = "customer" if len(customers) == 1 else "customers"
        line = f"{len(customers)} {noun} charged after canceling: {count} charges, {totals}"
    owed = report["summary"].get("owed") or {}
    if owed:
        people = max(v["customers"] for v in owed.values())
        totals = " + ".join(f"{display_money(v['total'])} {cur}" for cur, v in owed.items())
        line = f"{line.rstrip('.')}; {people} {'customer' if people == 1 else 'customers'} owed {totals}"
    return line


def charges_money(f: dict) -> str:
    """'462.00 USD', or '22.00 USD + 20.00 EUR' when a finding's charges are in more than one currency."""
    charges = f.get("charges") or {}
    totals = charges.get("totals") or {f.get("currency") or "": charges.get("total") or "0.00"}
    return " + ".join(f"{total} {cur}".strip() for cur, total in totals.items())


def customer_label(contact: dict | None) -> str:
    """How a customer is shown everywhere (table, Slack, CLI): 'Ada Lovelace <ada@example.com>'."""
    if not contact:
        return "(contact missing)"
    return f"{contact['name']} <{contact['email']}>" if contact.get("name") else contact["email"]


def _describe(f: dict, now: datetime | None = None, auto: dict | None = None) -> str:
    ids = " ".join(x for x in (
        f["paypal_subscription_id"] and f"PayPal {f['paypal_subscription_id']}",
        f["kajabi_subscription_id"] and f"Kajabi {f['kajabi_subscription_id']}",
        f["transaction_id"] and f"transaction {f['transaction_id']}",
    ) if x)
    price = ""
    if f["amount"] is not None:
        price = f"{f['amount']} {f['currency']}" + (f"/{f['billing_cycle']}" if f["billing_cycle"] else "")
    line = f"  {f['finding_id']}  {f['check']:<24} {customer_label(f['contact'])}  {ids}  {price}".rstrip()
    details = [f["detail"]] if f.get("detail") else []
    if f["kajabi_canceled_at"]:
        details.append(f"canceled in Kajabi {f['kajabi_canceled_at'][:10]}")
    charges = f["charges"]
    if f["check"] == PAYPAL_SUBSCRIPTION_NOT_IMPORTED and charges:
        details.append(f"paid {charges['count']}x in PayPal, {charges['total']} {f['currency'] or ''}".rstrip()
                       + "; no subscriptions row names it")
    elif charges and charges["count"]:
        details.append(
            f"charged {charges['count']}x since, {charges_money(f)}"
            f" ({charges['first'][:10]} to {charges['last'][:10]})")
    elif charges is not None:
        details.append("not charged yet; PayPal bills at the next cycle")
    if f.get("paypal"):
        details.append(paypal_view(f))
    if now is not None and f["check"] in AT_RISK_CHECKS:
        details.append(due_text(f, now))
    if auto is not None and auto_cancel_note(auto, f):
        details.append(auto_cancel_note(auto, f))
    if f["action"]:
        details.append(f"approve: billing-monitor approve {f['finding_id']} --by YOU@EXAMPLE.COM")
    return line + "".join(f"\n      {d}" for d in details)


def paypal_view(f: dict) -> str:
    """'PayPal: ACTIVE (bills next 2025-07-16); 22 charges after canceling 484.00, refunded 0.00, owed 484.00 USD,
    22 not imported' (or why PayPal could not say)."""
    block = f["paypal"]
    if block.get("status") is None:
        return f"PayPal: could not be checked ({block.get('error')})"
    head = f"PayPal: {block['status']}"
    if block.get("next_billing_time"):
        head += f" (bills next {block['next_billing_time'][:10]})"
    charges = block.get("charges_after_cancellation")
    if not charges:
        return head
    cur = f.get("currency") or ""
    text = (f"{head}; {charges['count']} charges after canceling {display_money(charges['total'])},"
            f" refunded {display_money(charges['refunded'])}, owed {display_money(charges['owed'])} {cur}".rstrip())
    if charges.get("partially_refunded"):
        text += f", {len(charges['partially_refunded'])} partially refunded (look them up)"
    if charges.get("not_imported"):
        text += f", {len(charges['not_imported'])} not imported"
    return text


def paypal_line(report: dict) -> str | None:
    """'PayPal (live): 12 watched, 3 remembered settled, 24 calls; 1 not found; 2 could not be checked.'"""
    block = report.get("paypal")
    if block is None:
        return None
    line = (f"PayPal ({block['environment']}): {block['watched']} watched, {block['remembered_settled']} remembered"
            f" settled, {block['asked']} calls")
    if block["not_found"]:
        line += f"; {len(block['not_found'])} not found"
    if block.get("not_checked"):
        line += f"; {block['not_checked']} could not be checked"
    if block["errors"]:
        line += f"; {len(block['errors'])} error(s): {block['errors'][0]}"
    return line + "."


def data_currency_line(report: dict) -> str:
    """'Data current to 2026-11-30.': the newest imported transaction (alerts.md's heartbeat)."""
    newest = report.get("data_current_to")
    return f"Data current to {newest[:10]}." if newest else "No transaction imported yet."


def render_table(report: dict, *, max_listed: int = 10) -> str:
    """Money line, then findings by severity (every critical one; the first `max_listed` of the rest)."""
    lines = [money_line(report), data_currency_line(report)]
    if paypal_line(report):
        lines.append(paypal_line(report))
    if (report.get("auto_cancel") or {}).get("line"):
        lines.append(report["auto_cancel"]["line"])
    lines.append("")
    for severity in SEVERITIES:
        group = [f for f in report["findings"] if f["severity"] == severity]
        if not group:
            continue
        group = by_due(group)
        shown = group if severity == SEVERITIES[0] else group[:max_listed]
        lines.append(f"{severity.upper()} ({len(group)})")
        now = scan_time(report) if report.get("paypal") is not None else None
        lines.extend(_describe(f, now, report if report.get("auto_cancel") else None) for f in shown)
        if len(group) > len(shown):
            lines.append(f"  ... and {len(group) - len(shown)} more (--format json lists all)")
        lines.append("")
    summary = report["summary"]
    counts = ", ".join(f"{n} {c}" for c, n in summary["by_check"].items() if n) or "no findings"
    sev = ", ".join(f"{n} {s}" for s, n in summary["by_severity"].items())
    lines.append(f"Findings: {counts}.")
    lines.append(f"By severity: {sev}. Tolerance {report['tolerance']}. Scan {report['scan_id']}.")
    return "\n".join(lines)
