"""Approved cancellations: re-check, cancel in PayPal once, record and mark the row, tell Slack.

This is the only code that writes to a production table: it marks the canceled subscription row
(status, canceled_at, updated_at), in the same transaction as the audit row of what was done.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from billing_monitor.approvals import ApprovalMessage, raw_body
from billing_monitor.config import env_number, resolve
from billing_monitor.errors import MonitorError
from billing_monitor.money import parse_tolerance
from billing_monitor.paypal import LIVE_URL, SANDBOX_URL, PayPalClient, PayPalError, PayPalTransient
from billing_monitor.report import build_report
from billing_monitor.scan import run_scan
from billing_monitor.store.history import SCHEMA, load_finding, open_store

log = logging.getLogger(__name__)

CANCELED, ALREADY_CANCELED, REFUSED = "canceled", "already_canceled", "refused"
TERMINAL_DB_STATUSES = ("canceled", "cancelled", "expired")


@dataclass
class CancelSettings:
    SECRETS = ("BILLING_MONITOR_DSN", "BILLING_MONITOR_STORE_DSN", "PAYPAL_CLIENT_ID", "PAYPAL_CLIENT_SECRET",
               "SLACK_WEBHOOK_URL")
    PLAIN = ("BILLING_MONITOR_APPROVERS", "PAYPAL_ENVIRONMENT", "BILLING_MONITOR_TOLERANCE", "IDEMPOTENCY_TABLE")

    dsn: str = field(repr=False)
    store_dsn: str = field(repr=False)
    tolerance: Decimal
    approvers: frozenset[str]
    paypal_base_url: str
    paypal_client_id: str = field(repr=False)
    paypal_client_secret: str = field(repr=False)
    slack_webhook_url: str | None = field(repr=False)
    http_backoff_s: float = 0.5

    @classmethod
    def from_env(cls, env=os.environ) -> CancelSettings:
        dsn = resolve("BILLING_MONITOR_DSN", env=env)
        environment = env.get("PAYPAL_ENVIRONMENT", "sandbox")
        base_url = env.get("PAYPAL_BASE_URL") or {"live": LIVE_URL, "sandbox": SANDBOX_URL}.get(environment)
        if not base_url:
            raise MonitorError(f"PAYPAL_ENVIRONMENT must be live or sandbox, got {environment!r}")
        approvers = frozenset(a.strip().lower() for a in env.get("BILLING_MONITOR_APPROVERS", "").split(",")
                              if a.strip())
        if not approvers:
            raise MonitorError("BILLING_MONITOR_APPROVERS is empty: nobody could approve a cancellation")
        return cls(
            dsn=dsn, store_dsn=resolve("BILLING_MONITOR_STORE_DSN", required=False, env=env) or dsn,
            tolerance=parse_tolerance(env.get("BILLING_MONITOR_TOLERANCE", "1.00")), approvers=approvers,
            paypal_base_url=base_url, paypal_client_id=resolve("PAYPAL_CLIENT_ID", env=env),
            paypal_client_secret=resolve("PAYPAL_CLIENT_SECRET", env=env),
            slack_webhook_url=resolve("SLACK_WEBHOOK_URL", required=False, env=env),
            http_backoff_s=env_number(env, "BILLING_MONITOR_HTTP_BACKOFF", "0.5"),
        )

    def paypal_client(self) -> PayPalClient:
        return PayPalClient(self.paypal_base_url, self.paypal_client_id, self.paypal_client_secret,
                            backoff_s=self.http_backoff_s)


def record_action(conn: psycopg.Connection, *, key: str, approval: ApprovalMessage | None, outcome: str,
                  detail: str, message, paypal_before=None, paypal_after=None) -> dict:
    """The audit row and, for a cancellation, the subscriptions row marked canceled: one transaction."""
    rows = []
    if outcome in (CANCELED, ALREADY_CANCELED):
        rows = conn.execute(
            "with target as ("
            "  select id, status from public.subscriptions"
            "  where (btrim(paypal_subscription_id, E' \\t\\r\\n') = %(pid)s"
            "         or btrim(kajabi_subscription_id, E' \\t\\r\\n') = %(pid)s)"
            "    and lower(btrim(status, E' \\t\\r\\n')) <> all(%(ended)s)"
            "  for update)"
            " update public.subscriptions s set status = 'canceled',"
            "   canceled_at = coalesce(s.canceled_at, now()), updated_at = now()"
            " from target where s.id = target.id"
            " returning s.id, target.status, s.status",
            {"pid": approval.paypal_subscription_id, "ended": list(TERMINAL_DB_STATUSES)}).fetchall()
    conn.execute(
        f"insert into {SCHEMA}.actions (idempotency_key, action, finding_id, paypal_subscription_id, subscription_id,"
        " approved_by, reason, forced, outcome, detail, paypal_status_before, paypal_status_after,"
        " row_status_before, row_status_after, message)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (key, approval and approval.action, approval and approval.finding_id,
         approval and approval.paypal_subscription_id, rows[0][0] if rows else None,
         approval and approval.approved_by, approval and approval.reason, bool(approval and approval.force),
         outcome, detail, paypal_before, paypal_after,
         ", ".join(r[1] for r in rows) or None, ", ".join(r[2] for r in rows) or None, Jsonb(message)))
    return {"outcome": outcome, "detail": detail, "rows_marked": [str(r[0]) for r in rows]}


class CancellationService:
    """Handles approvals for one batch (the fresh scan used for re-checks is made once per batch)."""

    def __init__(self, settings: CancelSettings, paypal: PayPalClient, notify: Callable[[str], None] | None = None):
        self.settings, self.paypal, self.notify = settings, paypal, notify
        self._targets: dict[str, dict] | None = None

    def current_findings(self) -> dict[str, dict]:
        """finding_id -> finding, from a fresh read-only scan, for the findings that suggest a cancel."""
        if self._targets is None:
            report = build_report(run_scan(self.settings.dsn, self.settings.tolerance))
            self._targets = {f["finding_id"]: f for f in report["findings"] if f["action"]}
        return self._targets

    def _store(self):
        return open_store(self.settings.store_dsn, application_name="billing-monitor-cancel")

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
        who = finding and finding.get("contact") and finding["contact"].get("email")
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
