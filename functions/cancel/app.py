"""Approvals queue -> PayPal cancellation: thin. Powertools BatchProcessor, Parser and Idempotency.

Idempotency is keyed on the approval's business key (finding_id, paypal_subscription_id, force), not
the SQS message id, so the same approval sent twice, or redelivered, cancels once. Everything a record
needs is built per invocation and passed down (no module state but Powertools' own objects).
"""

from __future__ import annotations

from functools import cache, partial

import boto3
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

from billing_monitor.actions.approval import ApprovalMessage, ApprovalRefused, parse_approval
from billing_monitor.actions.approvers import Principal, resolve_principals
from billing_monitor.actions.cancel import CancellationService, Delivery, first_line, paypal_client_for
from billing_monitor.http import retrying_session
from billing_monitor.logmask import powertools_logger
from billing_monitor.rules.registry import REFUND_PAYPAL_CHARGES
from billing_monitor.settings import CancelSettings
from billing_monitor.slack.post import post_to_slack
from billing_monitor.store.actions import REFUSED

logger = powertools_logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# The business key; `force` is part of it so that an owner can override a refusal with "force": true.
# Only finished cancellations are remembered: a refusal raises RefusalNotRemembered through the idempotent
# function, so Powertools drops its record and a later approval of the same finding is judged afresh.
idempotency = IdempotencyConfig(event_key_jmespath="[finding_id, paypal_subscription_id, force]",
                                expires_after_seconds=30 * 24 * 3600, raise_on_no_idempotency_key=True)


class RefusalNotRemembered(Exception):
    def __init__(self, result: dict):
        super().__init__(result["detail"])
        self.result = result


@cache
def persistence_for(table_name: str) -> DynamoDBPersistenceLayer:
    """One DynamoDB client per table for the life of the container."""
    return DynamoDBPersistenceLayer(table_name=table_name)


@cache
def approvers_for(arns: tuple[str, ...]) -> tuple[Principal, ...]:
    """The approvers' IAM unique ids, asked of IAM once per container."""
    return resolve_principals(arns, boto3.client("iam"))


def cancel_approved(approval: dict, service: CancellationService, delivery: Delivery, sender: Principal) -> dict:
    result = service.handle(ApprovalMessage.model_validate(approval), delivery, sender)
    metrics.add_metric(name=f"Approvals_{result['outcome']}", unit=MetricUnit.Count, value=1)
    if result["outcome"] == REFUSED:
        raise RefusalNotRemembered(result)
    return result


def handle_record(record: SQSRecord, *, service: CancellationService, cancel_once) -> dict:
    metrics.add_metric(name="ApprovalsReceived", unit=MetricUnit.Count, value=1)
    delivery = Delivery(record.message_id, record.body, record.attributes.sender_id)
    approval = None
    try:
        sender = service.verified_sender(delivery)
        if sender is None:                  # never succeeds: recorded, reported, not retried
            metrics.add_metric(name="Approvals_refused", unit=MetricUnit.Count, value=1)
            return service.refuse(delivery, None, f"sender {delivery.sender_id or '(none)'} is not one of the"
                                  " approvers (ApproverPrincipals)")
        try:
            approval = parse_approval(record.body)
        except ApprovalRefused as refused:
            metrics.add_metric(name="Approvals_refused", unit=MetricUnit.Count, value=1)
            return service.refuse(delivery, None, str(refused), sender)
        if approval.action == REFUND_PAYPAL_CHARGES:
            # not through the DynamoDB record: the refunds table claims each capture before PayPal is asked and
            # the PayPal-Request-Id makes PayPal answer a repeat with its first refund (docs/rule-choices.md)
            result = service.handle_refund(approval, delivery, sender)
            metrics.add_metric(name=f"Refunds_{result['outcome']}", unit=MetricUnit.Count, value=1)
            return result
        try:
            return cancel_once(approval=approval.model_dump(), service=service, delivery=delivery, sender=sender)
        except RefusalNotRemembered as refusal:
            return refusal.result
    except Exception as exc:
        key = approval.idempotency_key if approval else None
        logger.error("approval failed; SQS will deliver it again", extra={
            "message_id": record.message_id, "finding_id": approval and approval.finding_id,
            "paypal_subscription_id": approval and approval.paypal_subscription_id,
            "receive_count": record.attributes.approximate_receive_count,
            "error": f"{type(exc).__name__}: {first_line(exc)}",
            "paypal_changed": getattr(exc, "paypal_changed", None) or service.paypal_progress.get(key, "no")})
        metrics.add_metric(name="ApprovalFailures", unit=MetricUnit.Count, value=1)
        raise


def build_service(settings: CancelSettings) -> CancellationService:
    webhook = settings.slack_webhook
    slack = retrying_session(methods=("POST",), backoff_factor=settings.http_backoff_s)
    return CancellationService(
        settings, paypal_client_for(settings), approvers_for(settings.approver_arns),
        notify=(lambda text: post_to_slack(webhook, {"text": text}, slack)) if webhook else None)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    idempotency.register_lambda_context(context)
    settings = CancelSettings.from_env()
    cancel_once = idempotent_function(data_keyword_argument="approval", config=idempotency,
                                      persistence_store=persistence_for(settings.idempotency_table))(cancel_approved)
    record_handler = partial(handle_record, service=build_service(settings), cancel_once=cancel_once)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
