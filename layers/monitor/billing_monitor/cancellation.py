"""Approved cancellations: re-check, cancel in PayPal once, record and mark the row, tell Slack.

This is the only code that writes to a production table: it marks the canceled subscription row
(status, canceled_at, updated_at), in the same transaction as the audit row of what was done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from billing_monitor.approvals import ApprovalMessage, raw_body
from billing_monitor.paypal import PayPalClient, PayPalError, PayPalTransient
from billing_monitor.report import build_report, customer_label
from billing_monitor.scan import run_scan
from billing_monitor.settings import CancelSettings
from billing_monitor.store import load_finding, open_store, record_action
from billing_monitor.store.actions import REFUSED

log = logging.getLogger(__name__)


def paypal_client_for(settings: CancelSettings) -> PayPalClient:
    return PayPalClient(settings.paypal_base_url, settings.paypal_client_id.get_secret_value(),
                        settings.paypal_client_secret.get_secret_value(), backoff_s=settings.http_backoff_s)


class CancellationService:
    """Handles approvals for one batch (the fresh scan used for re-checks is made once per batch)."""

    def __init__(self, settings: CancelSettings, paypal: PayPalClient, notify: Callable[[str], None] | None = None):
        self.settings, self.paypal, self.notify = settings, paypal, notify
        self._targets: dict[str, dict] | None = None

    def current_findings(self) -> dict[str, dict]:
        """finding_id -> finding, from a fresh read-only scan, for the findings that suggest a cancel."""
        if self._targets is None:
            report = build_report(run_scan(self.settings.dsn_value, self.settings.tolerance))
            self._targets = {f["finding_id"]: f for f in report["findings"] if f["action"]}
        return self._targets

    def _store(self):
        return open_store(self.settings.store_dsn_value, application_name="billing-monitor-cancel")

    def refuse(self, key: str, approval: ApprovalMessage | None, reason: str, message) -> dict:
        with self._store() as conn:
            result = record_action(conn, key=key, approval=approval, outcome=REFUSED, detail=reason, message=message)
        self._tell(f":no_entry: Refused: {reason}"
                   + (f" (finding {approval.finding_id}, approved by {approval.approved_by})" if approval else ""))
        log.warning("approval refused", extra={"reason": reason, "key": key})
        return {**result, "key": key}

    def refuse_malformed(self, body: str, message_id: str, reason: str) -> dict:
        return self.refuse(f"message:{message_id}", None, reason, raw_body(body))

    def handle(self, approval: ApprovalMessage) -> dict:
        key, message = approval.idempotency_key, approval.model_dump()
        finding = self.current_findings().get(approval.finding_id)
        if not approval.force:
            if finding is None:
                with self._store() as conn:
                    known = load_finding(conn, approval.finding_id)
                why = ("is not a problem any more (a fresh scan does not report it)" if known
                       else "is unknown (no saved or fresh scan reports it)")
                return self.refuse(key, approval, f"finding {approval.finding_id} {why}", message)
            if finding["action"]["paypal_subscription_id"] != approval.paypal_subscription_id:
                return self.refuse(key, approval, f"finding {approval.finding_id} is about PayPal"
                                   f" {finding['action']['paypal_subscription_id']}, not {approval.paypal_subscription_id}",
                                   message)
        try:
            result = self.paypal.cancel_subscription(approval.paypal_subscription_id, approval.paypal_reason)
        except PayPalTransient:
            raise                                   # SQS tries again, then the DLQ
        except PayPalError as exc:                  # no such subscription, not active, refused: permanent
            return self.refuse(key, approval, str(exc), message)
        with self._store() as conn:
            recorded = record_action(conn, key=key, approval=approval, outcome=result.outcome, detail=result.detail,
                                   message=message, paypal_before=result.status_before,
                                   paypal_after=result.status_after)
        who = customer_label(finding.get("contact")) if finding else None
        self._tell(f":white_check_mark: PayPal {approval.paypal_subscription_id}"
                   f"{f' ({who})' if who else ''}: {result.outcome.replace('_', ' ')}, approved by"
                   f" {approval.approved_by}. {result.detail}")
        return {**recorded, "key": key, "paypal_status_before": result.status_before}

    def _tell(self, text: str) -> None:
        if self.notify is None:
            return
        try:
            self.notify(text)
        except Exception as exc:  # noqa: BLE001 - Slack never decides the outcome of a cancellation
            log.error("Slack notification failed", extra={"error": str(exc)})
