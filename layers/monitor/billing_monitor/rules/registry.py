"""One home for the vocabulary of detection-rules.md and for every check the scan makes.

Adding a check: one `Check` entry here, the query that produces its rows (rules/sql/), and the branch
that turns those rows into Findings (rules/checks.py). The report's counts and order, Slack's grouping,
the CLI's `--fail-on` and the SQL labels all read this module. The SQL keeps its own copy of a term only
where a query must spell it out (the ended statuses, the PayPal id pattern, the check labels); tests
check that the copies agree with this file (tests/unit/test_registry.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# ---------------------------------------------------------------- terms (detection-rules.md, "Terms")

#: Blanks trimmed from both ends of any text before it is compared (rule-choices.md: "Trimmed").
BLANKS = " \t\r\n"
#: A PayPal billing subscription id (case-sensitive, after trimming).
PAYPAL_ID_PATTERN = r"^I-[A-Z0-9]+$"
PAYPAL_ID = re.compile(PAYPAL_ID_PATTERN)
#: `status` values (trimmed, lower-cased) that make a subscription ended; every other status is live.
ENDED_STATUSES: tuple[str, ...] = ("canceled", "cancelled", "expired")


#: Billing cycles are compared after folding the usual spellings (import-layouts.md): each spelling (trimmed,
#: lower-cased) here becomes the one the rules compare and the report prints; any other value only equals itself.
BILLING_CYCLE_FOLDS: dict[str, str] = {"monthly": "month", "yearly": "year", "annual": "year", "annually": "year"}
#: `transactions.status` values (trimmed, lower-cased) that make a row a charge; every other status (refunded,
#: pending, failed, reversed, disputed, ...) is never a charge.
CHARGE_STATUSES: tuple[str, ...] = ("completed",)
#: `transactions.transaction_type` values (trimmed, lower-cased; the contract's optional column) that are never a
#: charge, whatever their status (rule-choices.md, "Refund-type transactions").
NOT_CHARGE_TYPES: tuple[str, ...] = ("refund",)


def fold_billing_cycle(text: str | None) -> str | None:
    if text is None:
        return None
    cycle = text.strip(BLANKS).lower()
    return BILLING_CYCLE_FOLDS.get(cycle, cycle)


def is_charge(status: str | None, transaction_type: str | None = None) -> bool:
    if transaction_type is not None and transaction_type.strip(BLANKS).lower() in NOT_CHARGE_TYPES:
        return False
    return status is not None and status.strip(BLANKS).lower() in CHARGE_STATUSES


def is_paypal_id(text: str | None) -> bool:
    return text is not None and PAYPAL_ID.match(text.strip(BLANKS)) is not None


def is_ended_status(status: str | None) -> bool:
    return status is not None and status.strip(BLANKS).lower() in ENDED_STATUSES


# ---------------------------------------------------------------- severities, worst first

CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITIES: tuple[str, ...] = (CRITICAL, WARNING, INFO)
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def at_least(severity: str) -> tuple[str, ...]:
    """The severities as bad as `severity` or worse: at_least('warning') == ('critical', 'warning')."""
    return SEVERITIES[: SEVERITY_RANK[severity] + 1]


# ---------------------------------------------------------------- actions

CANCEL_PAYPAL_SUBSCRIPTION = "cancel_paypal_subscription"
REFUND_PAYPAL_CHARGES = "refund_paypal_charges"      # a finding's `refund` block (paypal-reconciliation.md)

# ---------------------------------------------------------------- the checks

SUBSCRIPTION_PASS = "subscription_findings"      # rules/sql/subscription_findings.sql
TRANSACTION_PASS = "transaction_findings"        # rules/sql/transaction_findings.sql
PAYPAL_PASS = "paypal_reconciliation"            # reconcile.py: PayPal's API, read-only, after the database passes
ROW_COUNT_PASS = "row_counts"                    # rules/sql/row_counts.sql, against the previous saved scan's counts


@dataclass(frozen=True)
class Check:
    name: str
    severity: str                  # the severity of every finding of this check ...
    severity_if_charged: str | None  # ... unless it lists a charge after cancellation: then this one
    key: str                       # what a finding is about (its finding_id derives from it)
    action: str | None             # the action it may suggest (whether it does can depend on the row)
    found_by: str                  # the query (pass) whose rows make its findings
    about: str                     # one line for a person
    at_risk: bool = False          # names a customer who is, or is about to be, charged after canceling
                                   # (alerts.md: every such customer is named in every monthly message)
    named_as_owed: bool = False    # names a customer still owed money: in every monthly message, under "owed"
    about_the_data: bool = False   # says every other finding may be wrong (the imports, the rows read): shown
                                   # first in every message, and no all-clear while it stands

    def severity_for(self, *, charged: bool) -> str:
        return self.severity_if_charged if charged and self.severity_if_charged else self.severity


BILLING_DISCONNECT = "billing_disconnect"
DUPLICATE_SUBSCRIPTION = "duplicate_subscription"
PAYPAL_ONLY = "paypal_only"
POST_CANCELLATION_CHARGE = "post_cancellation_charge"
ORPHANED_SUBSCRIPTION = "orphaned_subscription"
ORPHANED_TRANSACTION = "orphaned_transaction"
MISFILED_PAYPAL_ID = "misfiled_paypal_id"
STALE_IMPORT = "stale_import"
SOURCE_SHRANK = "source_shrank"
PAYPAL_STILL_ACTIVE = "paypal_still_active"
REFUND_OWED = "refund_owed"
PAYPAL_SUBSCRIPTION_NOT_IMPORTED = "paypal_subscription_not_imported"

_REGISTRY: tuple[Check, ...] = (
    Check(BILLING_DISCONNECT, WARNING, CRITICAL, "the PayPal subscription row", CANCEL_PAYPAL_SUBSCRIPTION,
          SUBSCRIPTION_PASS, "canceled in Kajabi, still live in PayPal", at_risk=True),
    Check(DUPLICATE_SUBSCRIPTION, WARNING, None, "the PayPal subscription row", None,
          SUBSCRIPTION_PASS, "a live PayPal row duplicating a live Kajabi row"),
    Check(PAYPAL_ONLY, INFO, None, "the PayPal subscription row", None,
          SUBSCRIPTION_PASS, "a legitimate member billed by PayPal alone"),
    Check(POST_CANCELLATION_CHARGE, CRITICAL, None, "contact and latest-ended subscription",
          CANCEL_PAYPAL_SUBSCRIPTION, TRANSACTION_PASS, "a charge that nothing live explains", at_risk=True),
    Check(ORPHANED_SUBSCRIPTION, WARNING, None, "the subscription row", None,
          SUBSCRIPTION_PASS, "a subscription whose contact is missing"),
    Check(ORPHANED_TRANSACTION, WARNING, None, "the transaction row", None,
          TRANSACTION_PASS, "a transaction whose contact is missing"),
    Check(MISFILED_PAYPAL_ID, INFO, None, "the subscription row", None,
          SUBSCRIPTION_PASS, "a PayPal id in kajabi_subscription_id"),
    Check(STALE_IMPORT, WARNING, None, "the transactions table", None,
          TRANSACTION_PASS, "the imports have stopped: every other finding may be out of date", about_the_data=True),
    Check(SOURCE_SHRANK, CRITICAL, None, "the table", None,
          ROW_COUNT_PASS, "a table holds less than half the rows the previous saved scan read: every other finding"
          " may be wrong", about_the_data=True),
    Check(PAYPAL_STILL_ACTIVE, CRITICAL, None, "the PayPal id (about its latest-ended row)", CANCEL_PAYPAL_SUBSCRIPTION,
          PAYPAL_PASS, "ended in the database, still active in PayPal", at_risk=True),
    Check(REFUND_OWED, WARNING, None, "the PayPal id (about its latest-ended row)", None,
          PAYPAL_PASS, "canceled in PayPal, charges after cancellation never refunded", named_as_owed=True),
    Check(PAYPAL_SUBSCRIPTION_NOT_IMPORTED, WARNING, None, "the PayPal id", None,
          PAYPAL_PASS, "a PayPal subscription charging the account that no subscriptions row names"),
)

#: name -> Check, in the report's order
CHECKS: dict[str, Check] = {c.name: c for c in _REGISTRY}
CHECK_NAMES: tuple[str, ...] = tuple(CHECKS)
CHECK_RANK = {name: i for i, name in enumerate(CHECK_NAMES)}
AT_RISK_CHECKS: tuple[str, ...] = tuple(c.name for c in _REGISTRY if c.at_risk)
OWED_CHECKS: tuple[str, ...] = tuple(c.name for c in _REGISTRY if c.named_as_owed)
#: Findings about the data itself (stale_import, source_shrank): shown first, and they forbid the all-clear.
DATA_WARNING_CHECKS: tuple[str, ...] = tuple(c.name for c in _REGISTRY if c.about_the_data)
#: Findings that are counted per check in one line, never listed one by one (alerts.md).
COUNTED_ONLY_CHECKS: tuple[str, ...] = tuple(c.name for c in _REGISTRY
                                             if not c.at_risk and not c.named_as_owed and not c.about_the_data)
#: ... of which these need no action (the rest, a PayPal subscription the imports never brought in, needs a look).
NO_ACTION_CHECKS: tuple[str, ...] = tuple(c for c in COUNTED_ONLY_CHECKS if c != PAYPAL_SUBSCRIPTION_NOT_IMPORTED)
#: The checks of the PayPal side: found only when the scan reconciles with PayPal.
PAYPAL_CHECKS: tuple[str, ...] = tuple(c.name for c in _REGISTRY if c.found_by == PAYPAL_PASS)
#: stale_import: a finding is made when the newest transactions.created_at is older than this at scan time.
DEFAULT_STALE_AFTER_DAYS = 14
#: source_shrank: a table holding less than this share of the rows the previous saved scan read, when that scan
#: read at least SHRANK_MIN_ROWS of it (alerts.md).
SHRANK_BELOW_SHARE, SHRANK_MIN_ROWS = Fraction(1, 2), 20

# ---------------------------------------------------------------- PayPal's vocabulary (paypal-reconciliation.md)

#: A subscription's statuses: still billing, and final (such a subscription never charges again).
PAYPAL_ACTIVE_STATUSES: tuple[str, ...] = ("ACTIVE", "SUSPENDED")
PAYPAL_FINAL_STATUSES: tuple[str, ...] = ("CANCELLED", "EXPIRED")
PAYPAL_NOT_FOUND = "NOT_FOUND"          # our word for a 404 on a watched id
#: A payment's statuses on which money was taken, and which of them decide `refunded` and `owed`.
PAYPAL_CHARGED_STATUSES: tuple[str, ...] = ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED")
PAYPAL_OWED_STATUS, PAYPAL_REFUNDED_STATUS, PAYPAL_PARTIALLY_REFUNDED_STATUS = "COMPLETED", "REFUNDED", "PARTIALLY_REFUNDED"
#: Transaction Search: subscription payments, completed, referring to a subscription.
SEARCH_EVENT_CODE, SEARCH_COMPLETED, SEARCH_REFERENCE_TYPE = "T0002", "S", "SUB"
DEFAULT_PAYPAL_SEARCH_DAYS = 400
#: A scan's PayPal budget: after this many calls or seconds, the rest is reported as not checked.
DEFAULT_PAYPAL_MAX_CALLS, DEFAULT_PAYPAL_MAX_SECONDS = 50_000, 600.0
DEFAULT_PAYPAL_WORKERS = 8              # concurrent requests to PayPal (one session)
SEARCH_WINDOW_DAYS = 31                 # Transaction Search's longest window
SEARCH_PAGE_SIZE = 500                  # ... and its largest page


def check(name: str) -> Check:
    try:
        return CHECKS[name]
    except KeyError:
        raise ValueError(f"unknown check {name!r}") from None
