"""The monitoring run the scheduled function performs: scan, save, publish to SNS, post to Slack.

It knows which schedule started it: the monthly message always posts; a daily one only news.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit

from billing_monitor.http import retrying_session
from billing_monitor.notify import (
    DAILY,
    MANUAL,
    MONTHLY,
    SlackError,
    SnsMessage,
    post_to_slack,
    slack_message,
    sns_message,
)
from billing_monitor.report import build_report
from billing_monitor.scan import run_scan
from billing_monitor.settings import ScanSettings
from billing_monitor.store import ScanDiff, mark_reported, open_store, save_scan

log = logging.getLogger(__name__)


def schedule_of(event: object) -> str:
    """Which schedule invoked the function: 'monthly', 'daily', or 'manual' (anything else).

    The template's schedules send a constant input, {"schedule": "monthly"} or {"schedule": "daily"}. A rule
    without that input sends EventBridge's Scheduled Event, whose `resources` holds the rule's ARN; SAM names
    the rule after the event (…:rule/<stack>-ScanFunctionMonthlyScan-<suffix>), so the name tells.
    A manual invocation is treated as the monthly one: it always posts and names everyone at risk.
    """
    if not isinstance(event, dict):
        return MANUAL
    if event.get("schedule") in (MONTHLY, DAILY):
        return event["schedule"]
    for arn in event.get("resources") or ():
        rule = str(arn).rsplit("/", 1)[-1]
        if "DailyScan" in rule:
            return DAILY
        if "MonthlyScan" in rule:
            return MONTHLY
    return MANUAL


@dataclass
class MonitoringOutcome:
    report: dict
    diff: ScanDiff
    schedule: str
    published: bool
    slack: str          # "posted", "nothing new", "not configured", "failed: ..."

    def summary(self) -> dict:
        return {
            "scan_id": self.report["scan_id"], "schedule": self.schedule,
            "summary": self.report["summary"], "data_current_to": self.report.get("data_current_to"),
            "new": len(self.diff.new), "still_open": len(self.diff.still_open), "resolved": len(self.diff.resolved),
            "published_to_sns": self.published, "slack": self.slack,
        }


def scan_and_save(settings: ScanSettings) -> tuple[dict, ScanDiff]:
    """Scan read-only, then record it in one transaction of the store (all or nothing)."""
    report = build_report(run_scan(settings.dsn_value, settings.tolerance,
                                   statement_timeout_s=settings.statement_timeout_s))
    with open_store(settings.store_dsn_value) as conn:
        diff = save_scan(conn, report)
    return report, diff


def run_monitoring(settings: ScanSettings, *, schedule: str = MANUAL, publish: Callable[[SnsMessage], None] | None,
                   record_metric: Callable[[str, MetricUnit, float], None] = lambda *a: None,
                   slack_session=None) -> MonitoringOutcome:
    """Scan, save, publish to SNS, post to Slack. A Slack failure is logged and counted, never fatal."""
    started = datetime.now(UTC)
    report, diff = scan_and_save(settings)
    published = False
    if publish is not None:
        publish(sns_message(report, diff, schedule=schedule))
        published = True
    slack = "not configured"
    payload = slack_message(report, diff, schedule=schedule) if settings.slack_webhook else None
    if settings.slack_webhook and payload is None:
        slack = "nothing new"
    elif settings.slack_webhook:
        try:
            session = slack_session or retrying_session(methods=("POST",), backoff_factor=settings.http_backoff_s)
            post_to_slack(settings.slack_webhook, payload, session)
            slack = "posted"
            with open_store(settings.store_dsn_value) as conn:
                mark_reported(conn, diff, started, everything=schedule != DAILY)
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
    return MonitoringOutcome(report, diff, schedule, published, slack)
