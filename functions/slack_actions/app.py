"""Slack's clicks (HTTP API, POST /slack/actions, payload 2.0): thin. billing_monitor.slack.clicks does the work.

Signature first (401, nothing else), then the allow-list, the button's mac, and once per interaction
(Powertools idempotency on DynamoDB, as the cancel function): the approval on the approvals queue, or the
acknowledgement in the monitor's schema; the clicked message updated through response_url.
"""

from __future__ import annotations

import json
from functools import cache

import boto3
from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_monitor.logmask import powertools_logger
from billing_monitor.settings import SlackActionsSettings
from billing_monitor.slack.clicks import AlreadyInProgress, ClickService
from billing_monitor.slack.post import post_to_response_url
from billing_monitor.store import has_table, load_finding, open_store, read_store
from billing_monitor.store.acks import acknowledge

logger = powertools_logger()
metrics = Metrics()
tracer = Tracer()
sqs = boto3.client("sqs")
# The interaction: the button (action and value) in one message; the nonce in the data is not part of it.
idempotency = IdempotencyConfig(event_key_jmespath="[action_id, value, message_ts, channel_id]",
                                expires_after_seconds=7 * 24 * 3600, raise_on_no_idempotency_key=True)


# Slack wants the answer within 3 s: the monitor's schema gets 2 s (a scan saving holds the migration lock for
# longer: the click is then told to try again, rather than answered too late).
CLICK_DB_TIMEOUT_S = 2.0


@cache
def persistence_for(table_name: str) -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=table_name)


def build_service(settings: SlackActionsSettings) -> ClickService:
    dsn = settings.store_dsn_value

    def saved_finding(finding_id: str):
        with read_store(dsn, application_name="billing-monitor-slack", timeout_s=CLICK_DB_TIMEOUT_S) as conn:
            return load_finding(conn, finding_id) if conn is not None and has_table(conn, "findings") else None

    def record_ack(finding_id, by, now, until):
        with open_store(dsn, application_name="billing-monitor-slack", timeout_s=CLICK_DB_TIMEOUT_S) as conn:
            return acknowledge(conn, finding_id, by, now, until=until)[1]

    def send(message: dict) -> str:
        return sqs.send_message(QueueUrl=settings.approvals_queue_url, MessageBody=json.dumps(message))["MessageId"]

    return ClickService(settings.signing_secret, settings.approver_ids, saved_finding, send, record_ack,
                        post_to_response_url)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    metrics.add_metric(name="SlackRequests", unit=MetricUnit.Count, value=1)
    idempotency.register_lambda_context(context)
    settings = SlackActionsSettings.from_env()
    service = build_service(settings)
    act_once = idempotent_function(data_keyword_argument="interaction", config=idempotency,
                                   persistence_store=persistence_for(settings.idempotency_table))(service.act)

    def once(**kwargs):
        try:
            return act_once(**kwargs)
        except IdempotencyAlreadyInProgressError:
            raise AlreadyInProgress() from None

    answer = service.handle(event, once)
    metrics.add_metric(name=f"SlackAnswers_{answer['statusCode']}", unit=MetricUnit.Count, value=1)
    return answer
