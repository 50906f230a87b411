"""The approval message of report-format.md: its model, and why one is refused."""

from __future__ import annotations

import json
import re
from typing import Literal

from aws_lambda_powertools.utilities.parser import BaseModel, Field, ValidationError, parse
from pydantic import AliasChoices, ConfigDict, field_validator, model_validator

from billing_monitor.actions.policy import AUTO_APPROVER, UNAMBIGUOUS
from billing_monitor.rules.registry import CANCEL_PAYPAL_SUBSCRIPTION, PAYPAL_ID_PATTERN, REFUND_PAYPAL_CHARGES

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
#: Who approved: an e-mail (the CLI's --by), or "slack:<user id>" (a click; slack-actions.md).
APPROVED_BY_PATTERN = r"^(?:[^@\s]+@[^@\s]+\.[^@\s]+|slack:[UW][A-Z0-9]{2,20})$"
#: ... and, for a cancellation, auto-cancel's label (prevention.md); who sent the message is proven by its SenderId
APPROVER_PATTERN = APPROVED_BY_PATTERN[:-2] + f"|{re.escape(AUTO_APPROVER)})$"
TRANSACTION_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")   # safe in a URL path; PayPal's are 17 upper-case alphanumerics
STORED_BODY_LIMIT = 4096     # characters of a message body kept in the audit table


class ApprovalMessage(BaseModel):
    """An owner's go-ahead to cancel one PayPal subscription. Keys may be added; these keep their meaning."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    action: Literal["cancel_paypal_subscription"]
    finding_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    paypal_subscription_id: str = Field(pattern=PAYPAL_ID_PATTERN, max_length=50)
    approved_by: str = Field(pattern=APPROVER_PATTERN, max_length=254)
    reason: str = Field(default="", max_length=128)
    force: bool = False
    # auto-cancel's messages add "policy": "unambiguous" (prevention.md), a key kept as an extra so that a person's
    # approval dumps exactly as before

    @model_validator(mode="after")
    def _auto_cancel_says_its_policy(self):
        if (self.approved_by == AUTO_APPROVER) != (self.policy == UNAMBIGUOUS):
            raise ValueError(f'approved_by "{AUTO_APPROVER}" goes with "policy": "{UNAMBIGUOUS}", and only with it')
        if self.policy and self.force:
            raise ValueError("auto-cancel never forces")
        return self

    @property
    def policy(self) -> str | None:
        return (self.model_extra or {}).get("policy")

    @property
    def automatic(self) -> bool:
        return self.policy is not None

    @property
    def idempotency_key(self) -> str:
        return f"{self.finding_id}:{self.paypal_subscription_id}"

    @property
    def paypal_reason(self) -> str:
        """What PayPal records (1-128 characters)."""
        return (self.reason or f"Canceled by billing-monitor, approved by {self.approved_by}")[:128]


class RefundApprovalMessage(BaseModel):
    """An owner's go-ahead to refund PayPal charges of one finding in full (paypal-reconciliation.md, "Refunds").

    The spec names the list `transactions`; `paypal_transaction_ids` is accepted too. `force` is accepted and
    ignored: the fresh re-check always applies to refunds.
    """

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    action: Literal["refund_paypal_charges"]
    finding_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    transactions: list[str] = Field(validation_alias=AliasChoices("transactions", "paypal_transaction_ids"),
                                    min_length=1, max_length=100)
    paypal_subscription_id: str | None = Field(default=None, pattern=PAYPAL_ID_PATTERN, max_length=50)
    approved_by: str = Field(pattern=APPROVED_BY_PATTERN, max_length=254)
    reason: str = Field(default="", max_length=128)
    force: bool = False

    @field_validator("transactions")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        ids = [v.strip() for v in value]
        bad = [v for v in ids if not TRANSACTION_ID.match(v)]
        if bad:
            raise ValueError(f"not PayPal transaction ids: {', '.join(map(repr, bad[:5]))}")
        return list(dict.fromkeys(ids))          # a repeated id is one charge

    @property
    def idempotency_key(self) -> str:
        return f"{self.finding_id}:refund"


def approver_label(approved_by: str) -> str:
    """How Slack shows who approved: "slack:U012AB3CDE" as a mention (<@U012AB3CDE> in Slack), an e-mail as it is."""
    if approved_by.startswith("slack:"):
        return f"<@{approved_by.removeprefix('slack:')}> in Slack"
    return approved_by


class ApprovalRefused(Exception):
    """An approval that can never succeed; str() says why."""


def build_approval(finding: dict, approved_by: str, reason: str | None = None, force: bool = False) -> dict:
    """The message `billing-monitor approve` sends for a finding."""
    action = finding.get("action") or {}
    if action.get("type") != CANCEL_PAYPAL_SUBSCRIPTION:     # --force never makes a finding ask to cancel
        raise ApprovalRefused(f"finding {finding['finding_id']} ({finding['check']}) suggests no PayPal cancellation"
                              + ("; --force only skips the re-check of a finding that does" if force else ""))
    paypal_id = action["paypal_subscription_id"]
    message = {"action": CANCEL_PAYPAL_SUBSCRIPTION, "finding_id": finding["finding_id"],
               "paypal_subscription_id": paypal_id, "approved_by": approved_by,
               "reason": reason or default_reason(finding)}
    if force:
        message["force"] = True
    try:
        ApprovalMessage.model_validate(message)   # what we send, we would accept
    except ValidationError as exc:
        raise ApprovalRefused(f"invalid approval: {describe(exc)}") from None
    return message


def build_refund_approval(finding: dict, approved_by: str, transactions: list[str] | None = None,
                          reason: str | None = None) -> dict:
    """The message `billing-monitor approve --refund` sends: the finding's owed PayPal charges (all of them by
    default), as its `refund` block lists them."""
    refund = finding.get("refund") or {}
    owed = list(refund.get("transactions") or ())
    if not owed:
        raise ApprovalRefused(f"finding {finding['finding_id']} ({finding['check']}) owes no PayPal charge"
                              " (no refund block: scan with --paypal)")
    chosen = list(dict.fromkeys(transactions)) if transactions else owed
    strangers = [t for t in chosen if t not in owed]
    if strangers:
        raise ApprovalRefused(f"transaction {strangers[0]} is not owed by finding {finding['finding_id']}"
                              f" (owed: {', '.join(owed)})")
    message = {"action": REFUND_PAYPAL_CHARGES, "finding_id": finding["finding_id"],
               "paypal_subscription_id": refund.get("paypal_subscription_id"), "transactions": chosen,
               "approved_by": approved_by, "reason": (reason or "Charged after canceling; refunded in full")[:128]}
    try:
        RefundApprovalMessage.model_validate(message)
    except ValidationError as exc:
        raise ApprovalRefused(f"invalid approval: {describe(exc)}") from None
    return message


def default_reason(finding: dict) -> str:
    """What the report says about the finding, in PayPal's 128 characters: nothing it does not say."""
    charges = finding.get("charges") or {}
    charged = bool(charges.get("count"))
    if finding.get("kajabi_canceled_at"):
        canceled = f"Canceled in Kajabi on {finding['kajabi_canceled_at'][:10]}"
        return f"{canceled}; still charged by PayPal" if charged else f"{canceled}; PayPal would bill at the next cycle"
    if charged:
        return f"Charged {charges['count']}x after the subscription ended; approved in billing-monitor"
    return f"Approved in billing-monitor ({finding['check']})"


def stored_body(body: str, limit: int = STORED_BODY_LIMIT):
    """A message body for the audit table: its JSON when it is small JSON, else its first `limit`
    characters, with its length noted when it was cut."""
    if len(body) > limit:
        return {"raw": body[:limit], "length": len(body), "cut": True}
    try:
        return json.loads(body)
    except ValueError:
        return {"raw": body}


def describe(exc: ValidationError) -> str:
    """'approved_by: String should match pattern ...; reason: ...' (the first five problems)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])


def parse_approval(body: str) -> ApprovalMessage | RefundApprovalMessage:
    """Validate an SQS message body. Raises ApprovalRefused naming every problem.

    `approved_by` is a label; who sent the message is checked on its SenderId (approvers.py).
    """
    model = RefundApprovalMessage if _action_of(body) == REFUND_PAYPAL_CHARGES else ApprovalMessage
    try:
        return parse(event=body, model=model)  # type: ignore[call-overload]  # Powertools Parser: str too
    except ValidationError as exc:
        raise ApprovalRefused(f"malformed approval: {describe(exc)}") from None


def _action_of(body: str):
    try:
        parsed = json.loads(body)
    except (ValueError, TypeError):
        return None
    return parsed.get("action") if isinstance(parsed, dict) else None
