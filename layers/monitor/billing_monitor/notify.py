"""What the owner is told (docs/spec/alerts.md), the part every channel shares, and the SNS message.

What the report says (who is at risk, owed, the money line, the counted line, each customer's line) is
here; the Slack message (Block Kit, with its buttons) is billing_monitor.slack.message, and posting to Slack
billing_monitor.slack.post. The Slack names are still importable from here. No I/O in this module.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from billing_monitor.money import money_str
from billing_monitor.report import (
    auto_cancel_note,
    by_due,
    charges_money,
    customer_label,
    display_money,
    due_text,
    money_line,
    paypal_view,
    prevented_line,
    scan_time,
)
from billing_monitor.rules.registry import (
    AT_RISK_CHECKS,
    CHECK_RANK,
    COUNTED_ONLY_CHECKS,
    CRITICAL,
    DATA_WARNING_CHECKS,
    NO_ACTION_CHECKS,
    OWED_CHECKS,
    SEVERITIES,
    SOURCE_SHRANK,
    WARNING,
    at_least,
)
from billing_monitor.store.scans import ScanDiff

MONTHLY, DAILY, MANUAL = "monthly", "daily", "manual"
SCHEDULES = (MONTHLY, DAILY, MANUAL)

SNS_LIMIT_BYTES = 256 * 1024
SNS_SUBJECT_MAX = 100
EMAIL_BUDGET_BYTES = 64 * 1024      # the plain-text body's share of the SNS message
SNS_MAX_PAYPAL_ERRORS = 50          # paypal.errors lines the SNS report keeps (the rest counted in errors_omitted)

LABEL_MAX = 300                     # a customer's name and e-mail, as shown (data can be anything)
APPROVE = "billing-monitor approve {finding_id} --by YOU@EXAMPLE.COM"
APPROVE_REFUND = "billing-monitor approve {finding_id} --refund --by YOU@EXAMPLE.COM"


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, with … when cut; never cuts an &amp;-style escape in two."""
    if len(text) <= limit:
        return text
    return re.sub(r"&[a-z]*$", "", text[: limit - 1]) + "…"


# ---------------------------------------------------------------- what the report says


def is_at_risk(f: dict) -> bool:
    return f["check"] in AT_RISK_CHECKS


def is_owed_only(f: dict) -> bool:
    """A customer whose charging stopped and who is still owed money (refund_owed): named under "owed"."""
    return f["check"] in OWED_CHECKS


def is_acknowledged(f: dict) -> bool:
    """Acknowledged by the owner and unchanged since (the report's `acknowledged` block, set from the store)."""
    return bool(f.get("acknowledged"))


def is_named(f: dict) -> bool:
    return is_at_risk(f) or is_owed_only(f)


def is_charged(f: dict) -> bool:
    return bool((f.get("charges") or {}).get("count"))


def _customer_key(f: dict) -> str:
    return (f.get("contact") or {}).get("id") or f.get("subscription_id") or f["finding_id"]


def at_risk_findings(report: dict) -> list[dict]:
    """The open findings that name a customer charged, or about to be charged, after canceling."""
    return [f for f in report["findings"] if is_at_risk(f)]


def owed_findings(report: dict) -> list[dict]:
    return [f for f in report["findings"] if is_owed_only(f)]


def paypal_status_line(report: dict) -> str | None:
    """What the reconciliation could not do: 'PayPal: 3 subscriptions could not be checked (…)'."""
    block = report.get("paypal")
    if not block or not (block.get("errors") or block.get("not_checked")):
        return None
    n = block.get("not_checked") or 0
    line = f"PayPal: {n} subscription{'s' if n != 1 else ''} could not be checked" if n else "PayPal"
    return f"{line} ({block['errors'][0]})" if block.get("errors") else line


def stale_findings(report: dict) -> list[dict]:
    """The findings about the data itself (a stale import, a table that shrank): shown first, no all-clear."""
    return [f for f in report["findings"] if f["check"] in DATA_WARNING_CHECKS]


def headline(report: dict) -> str:
    """The money line, and who is about to be charged: the Slack header, the SNS subject, the e-mail's first line."""
    line = money_line(report)
    charged = {_customer_key(f) for f in report["findings"] if is_charged(f)}
    about = {_customer_key(f) for f in at_risk_findings(report) if not is_charged(f)} - charged
    if not about:
        return line
    noun = "customer" if len(about) == 1 else "customers"
    if charged:
        return f"{line}; {len(about)} more about to be charged"
    return f"{len(about)} {noun} about to be charged after canceling (none charged yet)"


def heartbeat_line(report: dict, schedule: str) -> str:
    """'Monthly scan of 2026-12-01: data current to 2026-11-30.'"""
    kind = {MONTHLY: "Monthly scan", DAILY: "Daily scan"}.get(schedule, "Scan")
    line = f"{kind} of {report['started_at'][:10]}"
    if "data_current_to" in report:         # the scan reports it (report-format.md)
        current = report["data_current_to"]
        line += f": data current to {current[:10]}" if current else ": no transactions imported yet"
    return line + "."


def counted_line(report: dict) -> str | None:
    """'85 duplicate_subscription, 85 misfiled_paypal_id, 7 paypal_only: no action needed' (None: none), and the
    PayPal subscriptions the imports never brought in, which need a look."""
    acknowledged = Counter(f["check"] for f in report["findings"] if is_acknowledged(f))
    by_check = {name: n - acknowledged[name] for name, n in report["summary"]["by_check"].items()}
    counts = sorted(((by_check.get(name, 0), name) for name in NO_ACTION_CHECKS if by_check.get(name)),
                    key=lambda c: (-c[0], CHECK_RANK[c[1]]))
    parts = [", ".join(f"{n} {name}" for n, name in counts) + ": no action needed"] if counts else []
    look = [(by_check.get(name, 0), name) for name in COUNTED_ONLY_CHECKS if name not in NO_ACTION_CHECKS
            and by_check.get(name)]
    parts += [f"{n} {name}: PayPal charges the account for them, no subscriptions row names them (`billing-monitor"
              " scan --paypal` lists them)" for n, name in look]
    if acknowledged:
        parts.append(f"{sum(acknowledged.values())} acknowledged, not counted (`billing-monitor unack` brings one back)")
    return "; ".join(parts) or None


def stale_line(f: dict) -> str:
    if f["check"] == SOURCE_SHRANK:
        return f"A table shrank: {f.get('detail') or f['finding_id']}. Every other finding may be wrong."
    detail = f.get("detail") or "the newest transaction is too old"
    return f"The imports have stopped: {detail}. Every other finding may be out of date."


def _months_charged(charges: dict) -> int:
    """Calendar months from the first to the last charge after canceling, both counted."""
    if not charges.get("first") or not charges.get("last"):
        return 0
    first, last = charges["first"][:7], charges["last"][:7]
    return (int(last[:4]) - int(first[:4])) * 12 + int(last[5:7]) - int(first[5:7]) + 1


def _what_happened(f: dict, bold) -> str:
    """The money, or why the customer is about to be charged (bold: how the important part is marked); after a
    reconciliation, PayPal's view too."""
    base = _what_happened_in_the_data(f, bold)
    return f"{base} · {paypal_view(f)}" if f.get("paypal") else base


def _what_happened_in_the_data(f: dict, bold) -> str:
    charges = f.get("charges") or {}
    currency = f.get("currency") or ""
    canceled = (f.get("kajabi_canceled_at") or (f.get("paypal") or {}).get("canceled_at") or "")[:10]
    if is_owed_only(f):
        owed = (f.get("refund") or {}).get("total") or "0.00"
        return (f"canceled in PayPal, {bold(f'owed {display_money(owed)} {currency}'.strip())}"
                f" ({charges.get('count', 0)} charges after canceling on {canceled or 'an unknown date'})")
    if is_charged(f):
        months = _months_charged(charges)
        money = charges_money(f)
        what = f"charged {charges['count']}x over {months} month{'s' if months != 1 else ''} after canceling, {bold(money)}"
        where = "in Kajabi " if f.get("kajabi_canceled_at") or f.get("kajabi_subscription_id") else ""
        return what + (f" (canceled {where}{canceled})" if canceled else "")
    price = ""          # when PayPal charges next: the due line (prevention.md)
    if f.get("amount"):
        cycle = f"/{f['billing_cycle']}" if f.get("billing_cycle") else ""
        price = f" ({f['amount']} {currency}".rstrip() + f"{cycle})"
    return f"{bold('about to be charged')}: canceled in Kajabi on {canceled or 'an unknown date'}{price}"


def _what_to_do(f: dict) -> str | None:
    if f.get("action"):
        return None                         # the approval command says it
    if f.get("refund"):
        return None                         # the refund state line says it
    return "nothing to cancel from here (no PayPal subscription): look these charges up where they were made"


def refund_state(f: dict) -> str | None:
    """The customer's refund state: owed (not approved yet), refund approved (in progress), refunded (with PayPal's
    refund ids). From the finding's `refund` block and `refunds` (what the approvals function recorded)."""
    rows = {r["transaction_id"]: r for r in f.get("refunds") or ()}
    refund = f.get("refund") or {}
    charges = {c["transaction_id"]: c for c in refund.get("charges") or ()}
    parts = []
    owed = [t for t in refund.get("transactions") or () if t not in rows]
    if owed:
        amounts = [charges[t] for t in owed if t in charges]
        total = (display_money(money_str(sum((Decimal(c["amount"]) for c in amounts), Decimal("0"))))
                 + f" {amounts[0]['currency']}") if len(amounts) == len(owed) and amounts else refund.get("total")
        parts.append(f"owed {total} ({len(owed)} charge{'s' if len(owed) != 1 else ''}, refund not approved yet)")
    approved = [r for r in rows.values() if r["state"] == "pending"]
    if approved:
        parts.append(f"refund approved ({len(approved)} charge{'s' if len(approved) != 1 else ''}, in progress)")
    done = [r for r in rows.values() if r["state"] in ("refunded", "already_refunded")]
    if done:
        ids = ", ".join(r["paypal_refund_id"] or f"{r['transaction_id']} refunded in PayPal" for r in done)
        total = sum((Decimal(r["amount"]) for r in done if r.get("amount")), Decimal("0"))
        parts.append(f"refunded {display_money(money_str(total))} {done[0].get('currency') or ''}".rstrip()
                     + f" (PayPal refund {ids})")
    failed = [r for r in rows.values() if r["state"] == "failed"]
    if failed:
        parts.append(f"refund failed for {', '.join(r['transaction_id'] for r in failed)}")
    return "Refund: " + "; ".join(parts) if parts else None


def _refund_lines(f: dict, code) -> str:
    state = refund_state(f)
    if not state:
        return ""
    line = f"\n{state}"
    if any(t not in {r['transaction_id'] for r in f.get("refunds") or ()} for t in (f.get("refund") or {}).get(
            "transactions") or ()):
        line += f"\nApprove the refund: {code(APPROVE_REFUND.format(finding_id=f['finding_id']))}"
    return line

def _due_and_auto(f: dict, report: dict | None) -> list[str]:
    """For a customer at risk: the due (worded against the scan's time) and what auto-cancel did about them."""
    if report is None or not is_at_risk(f):
        return []
    lines = [due_text(f, scan_time(report))]
    note = auto_cancel_note(report, f)
    return [*lines, note] if note else lines


def auto_cancel_lines(report: dict) -> list[str]:
    """The run's own auto-cancel lines: over the cap, or no reconciliation (per-customer reasons are on their lines)."""
    auto = report.get("auto_cancel")
    return [auto["line"]] if auto and auto.get("line") else []


def customer_line_text(f: dict, report: dict | None = None) -> str:
    """The same, for a plain-text e-mail."""
    who = clip(customer_label(f.get("contact")), LABEL_MAX)
    line = f"- {who}, PayPal {f.get('paypal_subscription_id') or '-'}: {_what_happened(f, lambda s: s)}"
    line += "".join(f"\n  {x}" for x in _due_and_auto(f, report))
    if f.get("action"):
        line += f"\n  To stop it, approve the cancellation: {APPROVE.format(finding_id=f['finding_id'])}"
    elif _what_to_do(f):
        line += f"\n  {_what_to_do(f)}"
    return line + _refund_lines(f, lambda s: s).replace("\n", "\n  ")


# ---------------------------------------------------------------- SNS


@dataclass(frozen=True)
class SnsMessage:
    """What `sns.publish` takes: MessageStructure="json", Message=body, Subject=subject."""

    subject: str            # the headline, made safe for SNS
    body: str               # {"default": the report JSON, "email": plain text}
    attributes: dict        # highest_severity, critical_count (for subscription filters)

    @property
    def size(self) -> int:
        return len(self.body.encode()) + len(json.dumps(self.attributes)) + len(self.subject)


def sns_subject(text: str) -> str:
    """At most 100 characters, printable ASCII, one line, starting with a letter, digit or punctuation."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in " ".join(text.split()))
    safe = safe.strip() or "billing-monitor scan"
    return safe if len(safe) <= SNS_SUBJECT_MAX else safe[: SNS_SUBJECT_MAX - 3].rstrip() + "..."


def email_text(report: dict, diff: ScanDiff | None, *, schedule: str, budget: int = EMAIL_BUDGET_BYTES) -> str:
    """The plain-text body an e-mail subscriber reads: the money line, the stale import, each customer at
    risk with what to do, the counted line, what changed, the heartbeat line."""
    head = [headline(report), "", heartbeat_line(report, schedule), ""]
    head += [f"WARNING: {stale_line(f)}\n" for f in stale_findings(report)]
    at_risk = by_due(at_risk_findings(report))
    tail = [""]
    counted = counted_line(report)
    if counted:
        tail.append(counted + ".")
    if diff is not None:
        changed = sum(o.changed for o in diff.still_open)
        tail.append(f"Since the last scan: {len(diff.new)} new, {changed} changed, {len(diff.resolved)} resolved.")
    owed = owed_findings(report)
    if paypal_status_line(report):
        tail.append(paypal_status_line(report) + ".")
    tail += auto_cancel_lines(report)
    if schedule != DAILY and prevented_line(report):
        tail.append(prevented_line(report) + ".")
    if not at_risk and not owed and not stale_findings(report) and not paypal_status_line(report):
        tail.append("All clear: nobody is charged, or about to be charged, after canceling.")
    tail.append(f"Scan {report['scan_id']}. The full report: `billing-monitor scan --format json`, or this"
                " message's JSON on any other subscription.")
    if at_risk:
        head.append(f"Customers at risk ({len(at_risk)}):")
    used = len("\n".join(head + tail).encode()) + 200
    lines = []
    named = at_risk + owed
    for i, f in enumerate(named):
        if f is (owed[0] if owed else None):
            lines.append(f"Owed, charging stopped ({len(owed)}):")
        line = customer_line_text(f, report)
        used += len(line.encode()) + 1
        if used > budget:
            lines.append(f"...and {len(named) - i} more: billing-monitor scan")
            break
        lines.append(line)
    return "\n".join(head + lines + tail)


def sns_message(report: dict, diff: ScanDiff | None, *, schedule: str = MONTHLY,
                limit: int = SNS_LIMIT_BYTES) -> SnsMessage:
    """The report for machines and a text for people, in one SNS message under its size limit.

    `default` is the report JSON (plus the new/open/resolved view). Too large: keep the critical and warning
    findings and say how many were left out; still too large: the critical ones only; then the summary alone.
    Never split, never dropped. `email` is email_text, shortened further only if the summary alone does not fit.
    """
    by_severity = report["summary"]["by_severity"]
    highest = next((s for s in SEVERITIES if by_severity.get(s)), "none")
    attributes = {
        "highest_severity": {"DataType": "String", "StringValue": highest},
        "critical_count": {"DataType": "Number", "StringValue": str(by_severity.get(CRITICAL, 0))},
    }
    subject = sns_subject(headline(report))
    budget = limit - 1024       # SNS counts the message, its attributes and the subject; keep a margin

    def envelope(document: dict, email: str) -> SnsMessage:
        body = json.dumps({"default": json.dumps(document), "email": email})
        return SnsMessage(subject, body, attributes)

    email_budget = EMAIL_BUDGET_BYTES
    email = email_text(report, diff, schedule=schedule, budget=email_budget)
    document = dict(report)
    paypal = report.get("paypal")
    if paypal and len(paypal.get("errors") or ()) > SNS_MAX_PAYPAL_ERRORS:     # PayPal down: one line per id
        document["paypal"] = dict(paypal, errors=paypal["errors"][:SNS_MAX_PAYPAL_ERRORS],
                                  errors_omitted=len(paypal["errors"]) - SNS_MAX_PAYPAL_ERRORS)
    if diff is not None:
        document["changes"] = diff.as_dict()
    message = envelope(document, email)
    for keep in (at_least(WARNING), at_least(CRITICAL), ()):
        if message.size <= budget:
            return message
        kept = [f for f in report["findings"] if f["severity"] in keep]
        document = dict(document, findings=kept, findings_omitted=len(report["findings"]) - len(kept),
                        note=f"Report over SNS's 256 KB limit: only {' and '.join(keep) or 'no'} findings are"
                             f" included; run `billing-monitor scan` for the full report.")
        if "changes" in document and not keep:
            document["changes"] = {"previous_scan_id": diff.previous_scan_id, "new": len(diff.new),
                                   "still_open": len(diff.still_open), "resolved": len(diff.resolved)}
        message = envelope(document, email)
    while message.size > budget and email_budget > 1024:
        email_budget //= 2
        message = envelope(document, email_text(report, diff, schedule=schedule, budget=email_budget))
    return message


# The Slack side moved to billing_monitor.slack (message.py, post.py); its names stay importable from here.
_SLACK_NAMES = {
    "SLACK_MAX_BLOCKS": "message", "SLACK_SECTION_MAX": "message", "SLACK_HEADER_MAX": "message",
    "SLACK_TEXT_BUDGET": "message", "MORE_COMMAND": "message", "slack_escape": "message",
    "customer_line_slack": "message", "has_news": "message", "slack_message": "message",
    "failure_message": "message", "SlackError": "post", "post_to_slack": "post",
}


def __getattr__(name: str):
    if name in _SLACK_NAMES:
        from importlib import import_module

        return getattr(import_module(f"billing_monitor.slack.{_SLACK_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
