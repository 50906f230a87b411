"""The monitoring run the scheduled function performs: scan, save, publish to SNS, post to Slack.

It knows which schedule started it (the monthly message always posts; a daily one only news), keeps track
of the steps it has done, and when one fails it says so truthfully ("scan saved, not published to SNS,
not posted to Slack"), in one line to Slack when Slack is reachable, and raises MonitoringFailed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit

from billing_monitor.actions.auto_cancel import auto_cancel
from billing_monitor.actions.policy import UNAMBIGUOUS
from billing_monitor.db import redact
from billing_monitor.errors import MonitorError
from billing_monitor.http import retrying_session
from billing_monitor.notify import DAILY, MANUAL, MONTHLY, SnsMessage, sns_message
from billing_monitor.report import build_report
from billing_monitor.scan import run_scan
from billing_monitor.settings import ScanSettings, resolve
from billing_monitor.slack.message import failure_message, slack_message
from billing_monitor.slack.post import SlackError, post_to_slack
from billing_monitor.store import ScanDiff, mark_reported, open_store, save_scan
from billing_monitor.store.acks import attach_acknowledgements
from billing_monitor.store.actions import prevented_between
from billing_monitor.store.scans import mark_schedule, previous_monthly_at

log = logging.getLogger(__name__)

RecordMetric = Callable[[str, MetricUnit, float], None]


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
class Steps:
    """What the run has done so far, for a failure to say truthfully."""

    saved: bool = False
    published: bool = False
    posted: bool = False

    def describe(self) -> str:
        if not self.saved:
            return "nothing was saved, published or posted"
        return ", ".join(("scan saved",
                          "published to SNS" if self.published else "not published to SNS",
                          "posted to Slack" if self.posted else "not posted to Slack"))


class MonitoringFailed(MonitorError):
    """A step of the run failed; str() is the one line the owner reads, with what had been done before."""

    def __init__(self, scan_date: str, reason: str, steps: Steps):
        self.scan_date, self.reason, self.steps = scan_date, reason, steps
        super().__init__(f"the scan of {scan_date} failed: {reason} ({steps.describe()})")


def _reason(exc: BaseException, stage: str, dsns: tuple[str | None, ...] = ()) -> str:
    """A MonitorError's own line; any other error's type, the stage and its first line; no password ever."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    for dsn in (*dsns, None):
        text = redact(text, dsn)
    if isinstance(exc, MonitorError):
        return text or type(exc).__name__
    return f"{type(exc).__name__} while {stage}" + (f": {text}" if text else "")


@dataclass
class MonitoringOutcome:
    report: dict
    diff: ScanDiff
    schedule: str
    steps: Steps = field(default_factory=Steps)
    slack: str = "not configured"     # "posted", "nothing new", "not configured", "failed: ..."

    @property
    def published(self) -> bool:
        return self.steps.published

    def summary(self) -> dict:
        return {
            "scan_id": self.report["scan_id"], "schedule": self.schedule,
            "summary": self.report["summary"], "data_current_to": self.report.get("data_current_to"),
            "new": len(self.diff.new), "still_open": len(self.diff.still_open), "resolved": len(self.diff.resolved),
            "published_to_sns": self.published, "slack": self.slack,
        }


def _announce_failure(webhook: str | None, failure: MonitoringFailed, session, record_metric: RecordMetric) -> None:
    """One line to Slack, if there is a Slack to tell; a Slack that fails too is counted, never raised."""
    if not webhook:
        return
    try:
        post_to_slack(webhook, failure_message(failure.scan_date, failure.reason, failure.steps.describe()), session)
    except SlackError as exc:
        log.error("could not tell Slack that the scan failed", extra={"error": str(exc)})
        record_metric("SlackFailures", MetricUnit.Count, 1)


def attach_refunds(conn, report: dict) -> None:
    """Each finding's recorded refunds (`refunds`: transaction id, state, amount, currency, PayPal's refund id), a
    key added for the refund state Slack and SNS show (issue 14). Read after the scan is saved; not stored with it."""
    from billing_monitor.store.refunds import refunds_by_finding

    recorded = refunds_by_finding(conn)
    for f in report["findings"]:
        if f["finding_id"] in recorded:
            f["refunds"] = recorded[f["finding_id"]]


def run_monitoring(settings: ScanSettings, *, schedule: str = MANUAL, publish: Callable[[SnsMessage], None] | None,
                   record_metric: RecordMetric = lambda *a: None, slack_session=None,
                   remaining_s: Callable[[], float] | None = None, now: datetime | None = None,
                   queue_approval: Callable[[dict], None] | None = None) -> MonitoringOutcome:
    """Scan, save, auto-cancel (when on), publish to SNS, post to Slack, in that order.

    A Slack post that fails is logged and counted (SlackFailures), never fatal: the scan is saved and on SNS.
    Any other failure stops the run, posts one line to Slack (when configured) and raises MonitoringFailed,
    which says which steps were done. `now` is the time the run happens at (the handler passes none: the real
    time); `queue_approval` sends an approval to the approvals queue (auto-cancel, prevention.md).
    """
    started = (now or datetime.now(UTC)).astimezone(UTC)
    timer = time.monotonic()
    steps = Steps()
    session = slack_session or retrying_session(methods=("POST",), backoff_factor=settings.http_backoff_s)
    stage = "scanning"
    try:
        result = run_scan(settings.dsn_value, settings.tolerance, statement_timeout_s=settings.statement_timeout_s,
                          stale_after_days=settings.stale_after_days, paypal=settings.paypal_options(remaining_s),
                          store_dsn=settings.store_dsn_value, source_schema=settings.source_schema, now=started)
        report = build_report(result)
        stage = "saving the scan"
        with open_store(settings.store_dsn_value) as conn:      # one transaction: all or nothing
            diff = save_scan(conn, report, result.settled)
            mark_schedule(conn, report["scan_id"], schedule)
            attach_refunds(conn, report)
            attach_acknowledgements(conn, report, started, record_lapsed=True)
            if schedule != DAILY:       # the monthly message: what was prevented since the previous monthly one
                since = previous_monthly_at(conn, started)
                report["prevented"] = {"since": since and since.isoformat(), "until": report["started_at"],
                                       "by_currency": prevented_between(conn, since, started)}
        steps.saved = True
        if settings.auto_cancel == UNAMBIGUOUS and schedule in (MONTHLY, DAILY):
            try:
                decision = auto_cancel(report, dsn=settings.dsn_value, store_dsn=settings.store_dsn_value, now=started,
                                       grace_hours=settings.auto_cancel_grace_hours,
                                       max_per_run=settings.auto_cancel_max_per_run, send=queue_approval or _no_queue,
                                       source_schema=settings.source_schema)
            except Exception as exc:  # noqa: BLE001 - the scan is saved; its message still names everyone at risk
                reason = _reason(exc, "auto-canceling", (settings.dsn_value, settings.store_dsn_value))
                log.error("auto-cancel failed; nothing queued", extra={"error": reason})
                record_metric("AutoCancelFailures", MetricUnit.Count, 1)
                report["auto_cancel"] = {"policy": UNAMBIGUOUS, "queued": [], "not_queued": {},
                                         "line": f"Auto-cancel failed, nothing queued: {reason}"}
            else:
                report["auto_cancel"] = decision.as_report()
                record_metric("AutoCancelQueued", MetricUnit.Count, len(decision.queued))
        outcome = MonitoringOutcome(report, diff, schedule, steps)
        if publish is not None:
            stage = "publishing to SNS"
            publish(sns_message(report, diff, schedule=schedule))
            steps.published = True
        stage = "posting to Slack"
        payload = slack_message(report, diff, schedule=schedule, buttons=settings.button_mac) \
            if settings.slack_webhook else None
        if settings.slack_webhook and payload is None:
            outcome.slack = "nothing new"
        elif settings.slack_webhook:
            try:
                post_to_slack(settings.slack_webhook, payload, session)
            except SlackError as exc:
                outcome.slack = f"failed: {exc}"
                log.error(f"Slack notification failed; {steps.describe()}", extra={"error": str(exc)})
                record_metric("SlackFailures", MetricUnit.Count, 1)
            else:
                outcome.slack = "posted"
                steps.posted = True
                stage = "recording what Slack carried"
                with open_store(settings.store_dsn_value) as conn:
                    mark_reported(conn, diff, started, everything=schedule != DAILY)
    except Exception as exc:
        failure = MonitoringFailed(started.date().isoformat(), _reason(exc, stage, (settings.dsn_value,
                                                                                    settings.store_dsn_value)), steps)
        record_metric("ScanFailures", MetricUnit.Count, 1)
        _announce_failure(settings.slack_webhook, failure, session, record_metric)
        raise failure from exc
    for severity, count in report["summary"]["by_severity"].items():
        record_metric(f"Findings_{severity}", MetricUnit.Count, count)
    for currency, money in report["summary"]["charged_after_cancellation"].items():
        # a metric is a number for CloudWatch: the money leaves Decimal only here
        record_metric(f"ChargedAfterCancellation_{currency}", MetricUnit.NoUnit, float(money["total"]))
    for currency, money in report["summary"].get("owed", {}).items():
        record_metric(f"Owed_{currency}", MetricUnit.NoUnit, float(money["total"]))
    if report.get("paypal") is not None:
        record_metric("PayPalNotChecked", MetricUnit.Count, report["paypal"].get("not_checked", 0))
        record_metric("PayPalCalls", MetricUnit.Count, report["paypal"]["asked"])
    record_metric("ScanDuration", MetricUnit.Seconds, time.monotonic() - timer)
    return outcome


def _no_queue(message: dict) -> None:
    raise MonitorError("no approvals queue to send to")


def run_scheduled(event: object, *, load_settings: Callable[[], ScanSettings],
                  publisher: Callable[[str], Callable[[SnsMessage], None]],
                  record_metric: RecordMetric = lambda *a: None, slack_session=None,
                  remaining_s: Callable[[], float] | None = None,
                  approvals_sender: Callable[[str], Callable[[dict], None]] | None = None) -> MonitoringOutcome:
    """What the scan function does with an event: read the settings, then run_monitoring for its schedule.

    Settings that cannot be read fail the run too, told to Slack when the webhook alone can still be read.
    """
    schedule = schedule_of(event)
    log.info(f"{schedule} scan started")
    try:
        settings = load_settings()
    except Exception as exc:
        failure = MonitoringFailed(datetime.now(UTC).date().isoformat(), _reason(exc, "reading the settings"), Steps())
        record_metric("ScanFailures", MetricUnit.Count, 1)
        _announce_failure(_slack_webhook_if_readable(), failure,
                          slack_session or retrying_session(methods=("POST",)), record_metric)
        raise failure from exc
    queue = approvals_sender(settings.approvals_queue_url) if approvals_sender and settings.approvals_queue_url else None
    return run_monitoring(settings, schedule=schedule,
                          publish=publisher(settings.topic_arn) if settings.topic_arn else None,
                          record_metric=record_metric, slack_session=slack_session, remaining_s=remaining_s,
                          queue_approval=queue)


def _slack_webhook_if_readable() -> str | None:
    try:
        return resolve("SLACK_WEBHOOK_URL")
    except Exception:  # noqa: BLE001 - the run has already failed; this only decides whether Slack hears of it
        return None
