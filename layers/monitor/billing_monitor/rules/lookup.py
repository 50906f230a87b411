"""One PayPal id judged with the scan's own rules, by a targeted read-only query (rules/sql/paypal_id_lookup.sql):
the rows holding the id and the subscriptions of their contacts, never the transactions.

The verdict is the scan's: a live row holding the id with no live Kajabi match and an ended one is a
billing_disconnect (about that row, canceled at the latest end of its ended matches); when every row holding the
id is ended it is paypal_still_active for a charge PayPal just took (about its latest-ended row, canceled at the
earlier of K and P, paypal-reconciliation.md); anything else is not a customer at risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing_monitor.rules.checks import _stream
from billing_monitor.rules.finding import Contact, finding_id_for
from billing_monitor.rules.registry import BILLING_DISCONNECT, PAYPAL_STILL_ACTIVE
from billing_monitor.source import Source


@dataclass(frozen=True)
class AtRisk:
    check: str                    # billing_disconnect | paypal_still_active
    finding_id: str
    paypal_id: str
    subscription_id: str
    contact: Contact | None
    canceled_at: datetime | None
    kajabi_subscription_id: str | None
    amount: Decimal | None
    currency: str | None
    billing_cycle: str | None
    #: live rows holding the PayPal id other than the finding's own (prevention.md's criterion 3: 0 to be unambiguous)
    other_live_rows: int = 0


def judge(rows: list, paypal_id: str) -> AtRisk | None:
    """The verdict on the rows paypal_id_lookup.sql returns (latest-ended first)."""
    if not rows:
        return None

    def contact(r):
        return None if r.orphaned or r.contact_id is None else Contact.from_row(r.contact_id, r.email, r.first_name,
                                                                                  r.last_name)
    live = [r for r in rows if not r.ended]
    for r in live:
        if not r.live_match and r.k_time is not None:
            return AtRisk(BILLING_DISCONNECT, finding_id_for(BILLING_DISCONNECT, str(r.subscription_id)), paypal_id,
                          str(r.subscription_id), contact(r), r.k_time, r.k_kajabi_id, r.amount, r.cur, r.cycle,
                          other_live_rows=len(live) - 1)
    if live:
        return None           # a live row whose Kajabi side is live (or that is PayPal-only): healthy
    k_times = [r.k_time for r in rows if r.k_time is not None]
    k = None if any(r.live_match for r in rows) or not k_times else max(k_times)
    ended = [r.end_time for r in rows if r.end_time is not None]
    p = max(ended) if ended else None
    canceled = min(t for t in (k, p) if t is not None) if (k or p) else None
    latest = rows[0]
    k_row = max((r for r in rows if r.k_time is not None), key=lambda r: r.k_time, default=None)
    return AtRisk(PAYPAL_STILL_ACTIVE, finding_id_for(PAYPAL_STILL_ACTIVE, paypal_id), paypal_id,
                  str(latest.subscription_id), contact(latest), canceled,
                  k_row.k_kajabi_id if k_row and k is not None else None, latest.amount, latest.cur, latest.cycle)


def look_up_paypal_id(conn, paypal_id: str, tolerance: Decimal, source: Source | None = None) -> AtRisk | None:
    """Read-only; `conn` on the source database (its snapshot)."""
    rows = list(_stream(conn, "paypal_id_lookup", {"paypal_id": paypal_id, "tol": tolerance}, source or Source()))
    return judge(rows, paypal_id)
