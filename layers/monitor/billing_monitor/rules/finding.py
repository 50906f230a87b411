"""The Finding model: what one check reports about one row (or one contact's charges)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property

from billing_monitor.rules.registry import CHECKS

_ZERO = Decimal("0.00")


def finding_id_for(check: str, key: str) -> str:
    """Stable id: the same check about the same row gives the same id in every scan."""
    return hashlib.sha256(f"{check}:{key}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Contact:
    id: str
    email: str
    name: str | None

    @classmethod
    def from_row(cls, contact_id: str, email: str, first_name: str | None, last_name: str | None) -> Contact:
        name = " ".join(part.strip() for part in (first_name, last_name) if part and part.strip())
        return cls(contact_id, email, name or None)


@dataclass(frozen=True)
class Charge:
    """One completed transaction counted against a finding."""
    transaction_id: str
    date: datetime
    amount: Decimal
    currency: str
    external_id: str | None = None      # transactions.external_id (trimmed); for a PayPal charge: its own id once imported


@dataclass
class Finding:
    check: str
    key: str                              # what the finding is about; finding_id derives from it
    subscription_id: str | None = None
    paypal_subscription_id: str | None = None
    kajabi_subscription_id: str | None = None
    transaction_id: str | None = None
    contact_id: str | None = None
    contact: Contact | None = None
    amount: Decimal | None = None
    currency: str | None = None
    billing_cycle: str | None = None
    kajabi_canceled_at: datetime | None = None
    charges: list[Charge] | None = None   # billing_disconnect and post_cancellation_charge only
    action_paypal_id: str | None = None   # set when the suggested action is to cancel in PayPal
    detail: str | None = None             # a sentence for checks that are not about a row (stale_import)
    paypal: dict | None = None            # PayPal's view of a watched id, as the report has it (reconcile.py)
    refund: dict | None = None            # the refund_paypal_charges to approve, when something is owed
    owed_charges: list[Charge] | None = None   # PayPal's charges after cancellation still COMPLETED (summary.owed)

    @cached_property
    def finding_id(self) -> str:             # check and key never change once a finding is made
        return finding_id_for(self.check, self.key)

    @property
    def severity(self) -> str:
        """Decided by the check's registry entry alone (rules/registry.py)."""
        return CHECKS[self.check].severity_for(charged=bool(self.charges))

    @property
    def charged_total(self) -> Decimal:
        """What the charges come to in the finding's own currency (totals_by_currency has every currency)."""
        return self.totals_by_currency().get((self.currency or "").strip().upper(), _ZERO)

    def totals_by_currency(self) -> dict[str, Decimal]:
        """The charges' total per currency: a charge *for* P counts whatever its currency, and money in two
        currencies is never added into one figure."""
        totals: dict[str, Decimal] = {}
        for c in self.charges or ():
            currency = c.currency.strip().upper()        # as summary.charged_after_cancellation keys it
            totals[currency] = totals.get(currency, _ZERO) + c.amount
        return dict(sorted(totals.items()))
