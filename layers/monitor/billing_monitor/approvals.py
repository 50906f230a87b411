"""The approval message of report-format.md: its model, and why one is refused."""

from __future__ import annotations

import json
from typing import Literal

from aws_lambda_powertools.utilities.parser import BaseModel, Field, ValidationError, parse
from pydantic import ConfigDict

from billing_monitor.rules.registry import CANCEL_PAYPAL_SUBSCRIPTION, PAYPAL_ID_PATTERN

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class ApprovalMessage(BaseModel):
    """An owner's go-ahead to cancel one PayPal subscription. Keys may be added; these keep their meaning."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    action: Literal["cancel_paypal_subscription"]
    finding_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    paypal_subscription_id: str = Field(pattern=PAYPAL_ID_PATTERN, max_length=50)
    approved_by: str = Field(pattern=EMAIL_PATTERN, max_length=254)
    reason: str = Field(default="", max_length=128)
    force: bool = False

    @property
    def idempotency_key(self) -> str:
        return f"{self.finding_id}:{self.paypal_subscription_id}"

    @property
    def paypal_reason(self) -> str:
        """What PayPal records (1-128 characters)."""
        return (self.reason or f"Canceled by billing-monitor, approved by {self.approved_by}")[:128]


class ApprovalRefused(Exception):
    """An approval that can never succeed; str() says why."""


def build_approval(finding: dict, approved_by: str, reason: str | None = None, force: bool = False) -> dict:
    """The message `billing-monitor approve` sends for a finding."""
    action = finding.get("action") or {}
    if action.get("type") != CANCEL_PAYPAL_SUBSCRIPTION and not force:
        raise ApprovalRefused(f"finding {finding['finding_id']} ({finding['check']}) suggests no PayPal cancellation")
    paypal_id = action.get("paypal_subscription_id") or finding.get("paypal_subscription_id")
    if not paypal_id:
        raise ApprovalRefused(f"finding {finding['finding_id']} names no PayPal subscription")
    if not reason and finding.get("kajabi_canceled_at"):
        reason = f"Canceled in Kajabi on {finding['kajabi_canceled_at'][:10]}; still charged by PayPal"
    message = {"action": CANCEL_PAYPAL_SUBSCRIPTION, "finding_id": finding["finding_id"],
               "paypal_subscription_id": paypal_id, "approved_by": approved_by,
               "reason": reason or "Charged after canceling; approved in billing-monitor"}
    if force:
        message["force"] = True
    try:
        ApprovalMessage.model_validate(message)   # what we send, we would accept
    except ValidationError as exc:
        raise ApprovalRefused(f"invalid approval: {describe(exc)}") from None
    return message


def describe(exc: ValidationError) -> str:
    """'approved_by: String should match pattern ...; reason: ...' (the first five problems)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])


def parse_approval(body: str, approvers: frozenset[str]) -> ApprovalMessage:
    """Validate an SQS message body. Raises ApprovalRefused naming every problem."""
    try:
        approval = parse(event=body, model=ApprovalMessage)  # Powertools Parser
    except ValidationError as exc:
        raise ApprovalRefused(f"malformed approval: {describe(exc)}") from None
    if approval.approved_by.lower() not in approvers:
        raise ApprovalRefused(f"approver {approval.approved_by} is not on the allow-list")
    return approval


def raw_body(body: str):
    """The body as it arrived, for the audit row: parsed JSON when it is JSON, else the text."""
    try:
        return json.loads(body)
    except ValueError:
        return {"raw": body[:4000]}
