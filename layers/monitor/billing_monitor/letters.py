"""The letter to a customer charged after canceling (issue 14): subject and body from a Jinja2 template the owner
can replace (`billing-monitor letter FINDING --template PATH`). Every date and amount comes from the report (the
finding's `refund.charges`) or from the refunds the monitor recorded for it; nothing is computed but the total."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from billing_monitor.errors import MonitorError
from billing_monitor.money import money_str

BUILTIN_TEMPLATE = """\
Subject: Your refund of {{ total }} {{ currency }}{% if not refunded %} is on its way{% endif %}

Dear {{ name }},


You canceled your membership on {{ canceled_on }}, but PayPal kept charging you afterwards. We are sorry.
The charges after your cancellation:
{% for c in charges %}
  - {{ c.date }}: {{ c.amount }} {{ c.currency }} (PayPal transaction {{ c.transaction_id }})
    {%- if c.refund_id %}, refunded (PayPal refund {{ c.refund_id }}){% endif %}

{% endfor %}

Total: {{ total }} {{ currency }}.
{% if refunded %}
All of it has been refunded to your PayPal account.
{% else %}
We are refunding all of it to your PayPal account; PayPal will show it within a few days.
{% endif %}

Kind regards,
{{ sender }}
"""

REFUNDED_STATES = ("refunded", "already_refunded")


def letter_context(finding: dict, refunds: list[dict], sender: str = "The team") -> dict:
    """What the template may use. Raises MonitorError when nothing is owed or refunded."""
    by_id: dict[str, dict] = {}
    for c in (finding.get("refund") or {}).get("charges") or ():
        by_id[c["transaction_id"]] = {"transaction_id": c["transaction_id"], "date": c["time"][:10],
                                      "amount": c["amount"], "currency": c["currency"], "refund_id": None,
                                      "refunded": False}
    for r in refunds:
        if r["state"] not in REFUNDED_STATES:
            continue
        known = by_id.get(r["transaction_id"], {})
        date = r["charged_at"].date().isoformat() if r.get("charged_at") else known.get("date")
        if date is None or r.get("amount") is None:
            raise MonitorError(f"the refund of {r['transaction_id']} has no recorded date or amount: no letter")
        by_id[r["transaction_id"]] = {"transaction_id": r["transaction_id"], "date": date, "amount": r["amount"],
                                      "currency": r["currency"], "refund_id": r.get("paypal_refund_id"),
                                      "refunded": True}
    charges = sorted(by_id.values(), key=lambda c: (c["date"], c["transaction_id"]))
    if not charges:
        raise MonitorError(f"finding {finding['finding_id']} ({finding['check']}) has nothing owed or refunded:"
                           " no letter (scan with --paypal to see what PayPal charged)")
    currencies = {c["currency"] for c in charges}
    if len(currencies) != 1:
        raise MonitorError(f"finding {finding['finding_id']} has charges in {', '.join(sorted(currencies))}:"
                           " write this letter by hand")
    canceled = finding.get("kajabi_canceled_at") or (finding.get("paypal") or {}).get("canceled_at")
    if not canceled:
        raise MonitorError(f"finding {finding['finding_id']} has no cancellation date: no letter")
    contact = finding.get("contact") or {}
    return {"name": contact.get("name") or contact.get("email") or "customer", "email": contact.get("email"),
            "canceled_on": canceled[:10], "charges": charges, "currency": currencies.pop(),
            "total": money_str(sum((Decimal(c["amount"]) for c in charges), Decimal("0"))),
            "refunded": all(c["refunded"] for c in charges), "finding_id": finding["finding_id"],
            "paypal_subscription_id": (finding.get("refund") or {}).get("paypal_subscription_id")
            or finding.get("paypal_subscription_id"), "sender": sender}


def render_letter(context: dict, template_path: str | Path | None = None) -> tuple[str, str]:
    """(subject, body). The template's first line is `Subject: ...`; an unknown name in it is an error."""
    import jinja2

    text = Path(template_path).read_text() if template_path else BUILTIN_TEMPLATE
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, autoescape=False)   # a plain-text e-mail
    try:
        rendered = env.from_string(text).render(**context)
    except jinja2.TemplateError as exc:
        raise MonitorError(f"the letter template {template_path or '(built-in)'} failed: {exc}") from None
    first, _, body = rendered.partition("\n")
    if not first.startswith("Subject:"):
        raise MonitorError("the letter template must start with a line 'Subject: ...'")
    return first.removeprefix("Subject:").strip(), body.strip() + "\n"
