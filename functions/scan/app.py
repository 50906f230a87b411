"""Scheduled scan: thin. The event names the schedule; settings in, run_monitoring (scan, save, SNS, Slack),
summary out."""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_monitor.logmask import powertools_logger
from billing_monitor.monitor import run_monitoring, schedule_of
from billing_monitor.notify import SnsMessage
from billing_monitor.settings import ScanSettings

logger = powertools_logger()
metrics = Metrics()
tracer = Tracer()
sns = boto3.client("sns")


def sns_publisher(topic_arn: str):
    def publish(message: SnsMessage) -> None:
        sns.publish(TopicArn=topic_arn, Message=message.body, MessageStructure="json", Subject=message.subject,
                    MessageAttributes=message.attributes)
    return publish


def record_metric(name: str, unit: MetricUnit, value: float) -> None:
    metrics.add_metric(name=name, unit=unit, value=value)


@logger.inject_lambda_context(log_event=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    try:
        settings = ScanSettings.from_env()
        outcome = run_monitoring(settings, schedule=schedule_of(event),
                                 publish=sns_publisher(settings.topic_arn) if settings.topic_arn else None,
                                 record_metric=record_metric)
    except Exception:
        metrics.add_metric(name="ScanFailures", unit=MetricUnit.Count, value=1)
        logger.exception("scan failed: nothing was saved, published or posted")
        raise
    logger.info("scan done", extra=outcome.summary())
    return outcome.summary()
