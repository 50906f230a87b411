"""What the owner is told: the Slack message (Block Kit) and the SNS message, built from the report."""

from __future__ import annotations

import json
import logging

import requests

from billing_monitor.http import DEFAULT_TIMEOUT, retrying_session
from billing_monitor.report import customer_label, money_line
from billing_monitor.rules.registry import BILLING_DISCONNECT, CRITICAL, SEVERITIES, WARNING, at_least
from billing_monitor.store.scans import ScanDiff

log = logging.getLogger(__name__)

SNS_LIMIT_BYTES = 256 * 1024
SLACK_MAX_DETAILED = 15     # new critical findings shown one by one; the rest are counted


class SlackError(Exception):
    """Slack did not take the message (after retries)."""


def slack_escape(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as markup: escape them in any text that comes from data."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _months_charged(charges: dict) -> int:
    """Calendar months from the first to the last charge after canceling, both counted."""
    if not charges.get("first") or not charges.get("last"):
        return 0
    first, last = charges["first"][:7], charges["last"][:7]
    return (int(last[:4]) - int(first[:4])) * 12 + int(last[5:7]) - int(first[5:7]) + 1


def _critical_line(f: dict) -> str:
    charges = f.get("charges") or {}
    months = _months_charged(charges)
    what = (f"charged {charges.get('count', 0)}x over {months} month{'s' if months != 1 else ''} after canceling,"
            f" *{charges.get('total', '0.00')} {f['currency']}*")
    if f["check"] == BILLING_DISCONNECT and f.get("kajabi_canceled_at"):
        what += f" (canceled in Kajabi {f['kajabi_canceled_at'][:10]})"
    line = f"*{slack_escape(customer_label(f.get('contact')))}* · PayPal `{f.get('paypal_subscription_id') or '-'}` · {what}"
    if f.get("action"):
        line += f"\nApprove: `billing-monitor approve {f['finding_id']} --by YOU@EXAMPLE.COM`"
    return line


def slack_message(report: dict, diff: ScanDiff) -> dict | None:
    """The Block Kit payload, or None when there is nothing the owner has not already been told."""
    has_news = diff.new or diff.resolved or diff.changed or diff.reminder_due
    if not has_news:
        return None
    critical_count = report["summary"]["by_severity"][CRITICAL]
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": money_line(report)[:150]}}]
    new_critical = [f for f in diff.new if f["severity"] == CRITICAL]
    changed_critical = [o.finding for o in diff.changed if o.finding["severity"] == CRITICAL]
    reminded = [o.finding for o in diff.still_open
                if diff.reminder_due and not o.changed and o.finding["severity"] == CRITICAL]
    for title, group in (("New: charged after canceling", new_critical),
                         ("Changed since the last report", changed_critical),
                         ("Still open (monthly reminder)", reminded)):
        if not group:
            continue
        lines = [_critical_line(f) for f in group[:SLACK_MAX_DETAILED]]
        if len(group) > SLACK_MAX_DETAILED:
            lines.append(f"…and {len(group) - SLACK_MAX_DETAILED} more in the report (SNS / `billing-monitor scan`).")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}})
        blocks.extend({"type": "section", "text": {"type": "mrkdwn", "text": line[:2900]}} for line in lines)
    other_new = len(diff.new) - len(new_critical)
    status = []
    if other_new:
        status.append(f"{other_new} new warning/info finding(s)")
    if diff.still_open and (diff.reminder_due or diff.changed):
        oldest = max(o.months_open for o in diff.still_open)
        status.append(f"Still open: {len(diff.still_open)} (oldest {oldest} month(s))")
    if diff.resolved:
        status.append(f"Resolved since the last scan: {len(diff.resolved)}")
    if critical_count == 0:
        status.append(":white_check_mark: All clear: nobody is being charged after canceling.")
    if status:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(status)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"scan {report['scan_id']}"}]})
    return {"text": money_line(report), "blocks": blocks}


def post_to_slack(webhook_url: str, payload: dict, session: requests.Session | None = None) -> None:
    """POST to an incoming webhook; 429 and 5xx are retried with back-off. Raises SlackError."""
    session = session or retrying_session(methods=("POST",))
    try:
        answer = session.post(webhook_url, json=payload, timeout=DEFAULT_TIMEOUT)
    except requests.RequestException as exc:
        raise SlackError(f"Slack unreachable: {type(exc).__name__}") from None
    if answer.status_code != 200:
        raise SlackError(f"Slack answered {answer.status_code}: {answer.text[:200]}")


def sns_message(report: dict, diff: ScanDiff | None, limit: int = SNS_LIMIT_BYTES) -> tuple[str, dict]:
    """The report (plus the new/open/resolved view) as one JSON document under SNS's size limit.

    Too large: keep the critical and warning findings and say how many were left out; still too large:
    the critical ones only; then the summary alone. Never split, never dropped.
    """
    by_severity = report["summary"]["by_severity"]
    highest = next((s for s in SEVERITIES if by_severity.get(s)), "none")
    attributes = {
        "highest_severity": {"DataType": "String", "StringValue": highest},
        "critical_count": {"DataType": "Number", "StringValue": str(by_severity.get(CRITICAL, 0))},
    }
    document = dict(report)
    if diff is not None:
        document["changes"] = diff.as_dict()
    budget = limit - len(json.dumps(attributes)) - 1024
    body = json.dumps(document)
    for keep in (at_least(WARNING), at_least(CRITICAL), ()):
        if len(body.encode()) <= budget:
            break
        kept = [f for f in report["findings"] if f["severity"] in keep]
        document = dict(document, findings=kept, findings_omitted=len(report["findings"]) - len(kept),
                        note=f"Report over SNS's 256 KB limit: only {' and '.join(keep) or 'no'} findings are"
                             f" included; run `billing-monitor scan` for the full report.")
        if "changes" in document and not keep:
            document["changes"] = {"previous_scan_id": diff.previous_scan_id, "new": len(diff.new),
                                   "still_open": len(diff.still_open), "resolved": len(diff.resolved)}
        body = json.dumps(document)
    return body, attributes
