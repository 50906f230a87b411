"""PayPal's webhooks (HTTP API, POST /paypal/webhook, payload 2.0) and the hourly net (EventBridge schedule,
input {"schedule": "hourly"}): thin. billing_monitor.webhooks and billing_monitor.paypal_net do the work.

A delivery: PayPal's verify-webhook-signature first (400 and nothing else when it fails or the PAYPAL-* headers
are missing; 503 when PayPal cannot be asked, so that it delivers again), then the event once by its id and a
charge once by its sale id (tables of the monitor's schema), posted to Slack when the customer is at risk.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_monitor.logmask import powertools_logger
from billing_monitor.paypal_net import run_hourly
from billing_monitor.settings import PayPalWebhookSettings
from billing_monitor.webhooks import WebhookService, is_hourly, service_for

logger = powertools_logger()
metrics = Metrics()
tracer = Tracer()
_service: WebhookService | None = None


def approvals_sender(queue_url: str | None):
    """Auto-cancel's approvals go on the same queue as a person's; this function's role is then their sender."""
    if not queue_url:
        return None
    sqs = boto3.client("sqs")

    def send(approval: dict) -> None:
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(approval))
    return send


def service() -> WebhookService:
    global _service
    if _service is None:
        settings = PayPalWebhookSettings.from_env()
        _service = service_for(settings, approvals_sender(settings.approvals_queue_url))
    return _service


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    now = datetime.now(UTC)
    if is_hourly(event):
        outcome = run_hourly(service(), now).summary()
        logger.info("hourly net done", extra=outcome)
        metrics.add_metric(name="PayPalNetErrors", unit=MetricUnit.Count, value=len(outcome["errors"]))
        return outcome
    answer = service().handle_delivery(event, now)
    metrics.add_metric(name=f"PayPalWebhookAnswers_{answer['statusCode']}", unit=MetricUnit.Count, value=1)
    return answer
