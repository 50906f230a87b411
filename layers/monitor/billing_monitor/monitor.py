"""The monitoring run the scheduled function (and `scan --save`) performs: scan, save, tell."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit

from billing_monitor.http import retrying_session
from billing_monitor.notify import SlackError, post_to_slack, slack_message, sns_message
from billing_monitor.report import build_report
from billing_monitor.scan import run_scan
from billing_monitor.settings import ScanSettings
from billing_monitor.store import ScanDiff, mark_reported, open_store, save_scan

log = logging.getLogger(__name__)


@dataclass
class MonitoringOutcome:
    report: dict
    diff: ScanDiff
    published: bool
    slack: str          # "posted", "nothing new", "not configured", "failed: ..."

    def summary(self) -> dict:
        return {
            "scan_id": self.report["scan_id"],
            "summary": self.report["summary"],
            "new": len(self.diff.new), "still_open": len(self.diff.still_open), "resolved": len(self.diff.resolved),
            "published_to_sns": self.published, "slack": self.slack,
        }


def scan_and_save(settings: ScanSettings) -> tuple[dict, ScanDiff]:
    """Scan read-only, then record it in one transaction of the store (all or nothing)."""
    report = build_report(run_scan(settings.dsn_value, settings.tolerance,
                                   statement_timeout_s=settings.statement_timeout_s,
                                   stale_after_days=settings.stale_after_days))
    with open_store(settings.store_dsn_value) as conn:
        diff = save_scan(conn, report)
    return report, diff


def run_monitoring(settings: ScanSettings, *, publish: Callable[[str, dict], None] | None,
                   record_metric: Callable[[str, MetricUnit, float], None] = lambda *a: None,
                   slack_session=None) -> MonitoringOutcome:
    """Scan, save, publish to SNS, post to Slack. A Slack failure is logged and counted, never fatal."""
    started = datetime.now(UTC)
    report, diff = scan_and_save(settings)
    published = False
    if publish is not None:
        body, attributes = sns_message(report, diff)
        publish(body, attributes)
        published = True
    slack = "not configured"
    payload = slack_message(report, diff)
    if settings.slack_webhook and payload is None:
        slack = "nothing new"
    elif settings.slack_webhook:
        try:
            session = slack_session or retrying_session(methods=("POST",), backoff_factor=settings.http_backoff_s)
            post_to_slack(settings.slack_webhook, payload, session)
            slack = "posted"
            with open_store(settings.store_dsn_value) as conn:
                mark_reported(conn, diff, started)
        except SlackError as exc:
            slack = f"failed: {exc}"
            log.error("Slack notification failed; the scan is saved and on SNS", extra={"error": str(exc)})
            record_metric("SlackFailures", MetricUnit.Count, 1)
    for severity, count in report["summary"]["by_severity"].items():
        record_metric(f"Findings_{severity}", MetricUnit.Count, count)
    for currency, money in report["summary"]["charged_after_cancellation"].items():
        # a metric is a number for CloudWatch: the money leaves Decimal only here
        record_metric(f"ChargedAfterCancellation_{currency}", MetricUnit.NoUnit, float(money["total"]))
    record_metric("ScanDuration", MetricUnit.Seconds, (datetime.now(UTC) - started).total_seconds())
    return MonitoringOutcome(report, diff, published, slack)
