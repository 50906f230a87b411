"""Scheduled scan: thin. The event names the schedule; run_scheduled (settings, scan, save, SNS, Slack) does
the rest and, when a step fails, says which were done (and tells Slack) before this re-raises it."""

from __future__ import annotations

import json

import boto3
from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_monitor.logmask import powertools_logger
from billing_monitor.monitor import run_scheduled
from billing_monitor.notify import SnsMessage
from billing_monitor.settings import ScanSettings

logger = powertools_logger()
metrics = Metrics()
tracer = Tracer()
sns = boto3.client("sns")
sqs = boto3.client("sqs")


def sns_publisher(topic_arn: str):
    def publish(message: SnsMessage) -> None:
        sns.publish(TopicArn=topic_arn, Message=message.body, MessageStructure="json", Subject=message.subject,
                    MessageAttributes=message.attributes)
    return publish


def approvals_sender(queue_url: str):
    """Auto-cancel's approvals go on the same queue as a person's; the scan function's role is then their sender."""
    def send(approval: dict) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(approval))
    return send


def record_metric(name: str, unit: MetricUnit, value: float) -> None:
    metrics.add_metric(name=name, unit=unit, value=value)


@logger.inject_lambda_context(log_event=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    try:
        outcome = run_scheduled(event, load_settings=ScanSettings.from_env, publisher=sns_publisher,
                                record_metric=record_metric, approvals_sender=approvals_sender,
                                remaining_s=lambda: context.get_remaining_time_in_millis() / 1000)
    except Exception as exc:
        logger.exception(str(exc))      # MonitoringFailed: "the scan of … failed: … (scan saved, not published …)"
        raise
    logger.info("scan done", extra=outcome.summary())
    return outcome.summary()
