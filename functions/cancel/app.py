"""Approvals queue -> PayPal cancellation: thin. Powertools BatchProcessor, Parser and Idempotency.

Idempotency is keyed on the approval's business key (finding_id, paypal_subscription_id, force), not
the SQS message id, so the same approval sent twice, or redelivered, cancels once.
"""

import os

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_monitor.approvals import ApprovalMessage, ApprovalRefused, parse_approval
from billing_monitor.cancellation import CancellationService, CancelSettings
from billing_monitor.http import retrying_session
from billing_monitor.logmask import powertools_logger
from billing_monitor.notify import post_to_slack

logger = powertools_logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
# The business key; `force` is part of it so that an owner can override a refusal with "force": true.
idempotency = IdempotencyConfig(event_key_jmespath="[finding_id, paypal_subscription_id, force]",
                                expires_after_seconds=30 * 24 * 3600, raise_on_no_idempotency_key=True)
service: CancellationService | None = None
settings: CancelSettings | None = None


@idempotent_function(data_keyword_argument="approval", config=idempotency, persistence_store=persistence)
def cancel_once(approval: dict) -> dict:
    result = service.handle(ApprovalMessage.model_validate(approval))
    metrics.add_metric(name=f"Approvals_{result['outcome']}", unit=MetricUnit.Count, value=1)
    return result


def record_handler(record: SQSRecord) -> dict:
    metrics.add_metric(name="ApprovalsReceived", unit=MetricUnit.Count, value=1)
    try:
        approval = parse_approval(record.body, settings.approvers)
    except ApprovalRefused as refused:              # never succeeds: recorded, reported, not retried
        metrics.add_metric(name="Approvals_refused", unit=MetricUnit.Count, value=1)
        return service.refuse_malformed(record.body, record.message_id, str(refused))
    return cancel_once(approval=approval.model_dump())


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    global service, settings
    idempotency.register_lambda_context(context)
    settings = CancelSettings.from_env()
    webhook, slack = settings.slack_webhook_url, retrying_session(methods=("POST",), backoff_factor=settings.http_backoff_s)
    service = CancellationService(
        settings, settings.paypal_client(),
        notify=(lambda text: post_to_slack(webhook, {"text": text}, slack)) if webhook else None)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
