"""The approvals function, fed the events/ files: real Postgres, moto SQS + DynamoDB, fake PayPal and Slack."""

from __future__ import annotations

import copy
import json
import uuid

import boto3
import psycopg
import pytest
from moto import mock_aws

from billing_monitor import cancellation
from billing_monitor.report import build_report
from billing_monitor.scan import run_scan
from tests.support.aws import LambdaContext, load_event, load_handler_module
from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal
from tests.support.production import ProductionDB

pytestmark = pytest.mark.integration

OSKAR_FINDING, OSKAR_PAYPAL = "6c3f746973e9a73c", "I-LKL1NVUCV89B"   # the 21-month disconnect of the demo


@pytest.fixture
def paypal():
    with FakePayPal() as fake:
        yield fake
    assert fake.violations == []


class Approvals:
    """The deployed approvals side: idempotency table, queue + DLQ, the function; and what it changed."""

    def __init__(self, dsn: str, paypal: FakePayPal, monkeypatch):
        self.dsn, self.paypal = dsn, paypal
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(TableName="idempotency", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
        for key, value in {"IDEMPOTENCY_TABLE": "idempotency", "BILLING_MONITOR_DSN": dsn,
                           "PAYPAL_BASE_URL": paypal.url, "PAYPAL_CLIENT_ID": CLIENT_ID,
                           "PAYPAL_CLIENT_SECRET": CLIENT_SECRET,
                           "BILLING_MONITOR_APPROVERS": "owner@example.com, partner@example.com"}.items():
            monkeypatch.setenv(key, value)
        self.handler = load_handler_module("cancel")

    def invoke(self, event: dict) -> dict:
        return self.handler.lambda_handler(event, LambdaContext())

    def actions(self) -> list[dict]:
        with psycopg.connect(self.dsn) as conn:
            if conn.execute("select to_regclass('billing_monitor.actions')").fetchone()[0] is None:
                return []
            cur = conn.execute("select outcome, finding_id, paypal_subscription_id, approved_by, detail,"
                               " paypal_status_before, paypal_status_after, row_status_before, row_status_after"
                               " from billing_monitor.actions order by action_id")
            return [dict(zip([d.name for d in cur.description], r, strict=False)) for r in cur.fetchall()]

    def row_status(self, paypal_id: str) -> str:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute("select status || case when canceled_at is null then '' else ' (canceled_at set)' end"
                                " from public.subscriptions where paypal_subscription_id = %s", (paypal_id,)
                                ).fetchone()[0]


@pytest.fixture
def approvals(aws_env, demo_db, paypal, slack, monkeypatch):
    for pid in (OSKAR_PAYPAL, "I-7JJKPZMDVUM4", "I-KKKE9UTBKXX6", "I-4KUTC9FEM025"):
        paypal.add(pid)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url)
    with mock_aws():
        yield Approvals(demo_db, paypal, monkeypatch)


def sqs_event(*bodies: str) -> dict:
    template = load_event("sqs_approval_valid.json")["Records"][0]
    return {"Records": [dict(copy.deepcopy(template), messageId=str(uuid.uuid4()), body=b) for b in bodies]}


def approval(finding_id=OSKAR_FINDING, paypal_id=OSKAR_PAYPAL, **extra) -> str:
    return json.dumps({"action": "cancel_paypal_subscription", "finding_id": finding_id,
                       "paypal_subscription_id": paypal_id, "approved_by": "owner@example.com",
                       "reason": "Canceled in Kajabi; still charged by PayPal", **extra})


def test_valid_approval_cancels_once_marks_the_row_and_audits(approvals, paypal, slack):
    result = approvals.invoke(load_event("sqs_approval_valid.json"))
    assert result == {"batchItemFailures": []}
    assert paypal.cancel_calls() == [("cancel", OSKAR_PAYPAL,
                                      {"reason": "Canceled in Kajabi on 2023-08-16; still charged by PayPal"})]
    assert approvals.row_status(OSKAR_PAYPAL) == "canceled (canceled_at set)"
    [action] = approvals.actions()
    assert action["outcome"] == "canceled"
    assert action["approved_by"] == "owner@example.com"
    assert (action["paypal_status_before"], action["paypal_status_after"]) == ("ACTIVE", "CANCELLED")
    assert (action["row_status_before"], action["row_status_after"]) == ("ACTIVE", "canceled")
    told = slack.messages[-1]["text"]
    assert told.startswith(":white_check_mark: PayPal I-LKL1NVUCV89B (")
    assert ": canceled, approved by owner@example.com." in told      # not "already canceled"


def test_duplicate_in_one_batch_and_redelivered_cancels_once(approvals, paypal):
    assert approvals.invoke(load_event("sqs_approval_duplicate.json")) == {"batchItemFailures": []}
    assert approvals.invoke(load_event("sqs_approval_valid.json")) == {"batchItemFailures": []}
    assert len(paypal.cancel_calls()) == 1
    assert [a["outcome"] for a in approvals.actions()] == ["canceled"]


def test_crash_after_paypal_cancel_then_redelivery(approvals, paypal, monkeypatch):
    real_record = cancellation.record_action
    crashes = []

    def crash_once(conn, **kw):
        if kw["outcome"] != "refused" and not crashes:
            crashes.append(1)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real_record(conn, **kw)

    monkeypatch.setattr(cancellation, "record_action", crash_once)
    event = load_event("sqs_approval_valid.json")
    first = approvals.invoke(event)
    assert first == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert paypal.subscriptions[OSKAR_PAYPAL] == "CANCELLED"
    assert approvals.row_status(OSKAR_PAYPAL) == "ACTIVE"
    assert approvals.actions() == []
    second = approvals.invoke(event)                        # SQS redelivers
    assert second == {"batchItemFailures": []}
    assert len(paypal.cancel_calls()) == 1                  # never canceled twice
    assert approvals.row_status(OSKAR_PAYPAL) == "canceled (canceled_at set)"
    assert [a["outcome"] for a in approvals.actions()] == ["already_canceled"]


def test_already_canceled_in_paypal_is_recorded_as_such(approvals, paypal):
    paypal.subscriptions[OSKAR_PAYPAL] = "CANCELLED"
    assert approvals.invoke(load_event("sqs_approval_valid.json")) == {"batchItemFailures": []}
    assert paypal.cancel_calls() == []
    assert approvals.actions()[0]["outcome"] == "already_canceled"
    assert approvals.row_status(OSKAR_PAYPAL) == "canceled (canceled_at set)"


def test_no_longer_a_disconnect_is_refused_unless_forced(approvals, paypal, demo_db, slack):
    with psycopg.connect(demo_db) as conn:   # the member came back in Kajabi: a live match again
        conn.execute("update public.subscriptions set status = 'active' where kajabi_subscription_id = '644797565'")
    assert approvals.invoke(sqs_event(approval())) == {"batchItemFailures": []}
    assert paypal.cancel_calls() == []
    refused = approvals.actions()[0]
    assert refused["outcome"] == "refused"
    assert "is unknown" in refused["detail"]
    assert "Refused" in slack.messages[-1]["text"]
    forced = approvals.invoke(sqs_event(approval(force=True, reason="Owner: cancel anyway")))
    assert forced == {"batchItemFailures": []}
    assert len(paypal.cancel_calls()) == 1
    assert approvals.actions()[-1]["outcome"] == "canceled"


def test_malformed_message_is_refused_recorded_and_not_retried(approvals, paypal, slack):
    assert approvals.invoke(load_event("sqs_approval_malformed.json")) == {"batchItemFailures": []}
    [action] = approvals.actions()
    assert action["outcome"] == "refused"
    assert action["detail"].startswith("malformed approval")
    assert paypal.calls == []
    assert "malformed approval" in slack.messages[-1]["text"]


@pytest.mark.parametrize(("body", "needle"), [
    (approval(finding_id="0123456789abcdef"), "is unknown"),
    (approval(approved_by="stranger@example.com"), "not on the allow-list"),
    (approval(paypal_id="I-NOTTHEONE1"), "is about PayPal I-LKL1NVUCV89B"),
    (approval(paypal_id="i-lowercase"), "malformed approval: paypal_subscription_id"),
    (approval(action="refund"), "malformed approval: action"),
    ("[]", "malformed approval"),
])
def test_approvals_that_can_never_succeed(approvals, paypal, body, needle):
    assert approvals.invoke(sqs_event(body)) == {"batchItemFailures": []}
    [action] = approvals.actions()
    assert action["outcome"] == "refused"
    assert needle in action["detail"]
    assert paypal.cancel_calls() == []


def test_no_such_paypal_subscription_is_refused(approvals, paypal):
    del paypal.subscriptions[OSKAR_PAYPAL]
    assert approvals.invoke(load_event("sqs_approval_valid.json")) == {"batchItemFailures": []}
    assert "PayPal has no subscription" in approvals.actions()[0]["detail"]
    assert approvals.row_status(OSKAR_PAYPAL) == "ACTIVE"


def test_paypal_429_then_success(approvals, paypal):
    paypal.faults["cancel"] = [429]
    assert approvals.invoke(load_event("sqs_approval_valid.json")) == {"batchItemFailures": []}
    assert len(paypal.cancel_calls()) == 2
    assert approvals.actions()[0]["outcome"] == "canceled"


def test_paypal_down_is_retried_by_sqs_and_lands_in_the_dlq(approvals, paypal):
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="approvals-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="approvals", Attributes={
        "VisibilityTimeout": "0",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})})["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=approval())
    paypal.faults["cancel"] = [500] * 100
    for _ in range(3):
        [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1)["Messages"]
        event = sqs_event(message["Body"])
        event["Records"][0]["messageId"] = message["MessageId"]
        assert approvals.invoke(event)["batchItemFailures"] == [{"itemIdentifier": message["MessageId"]}]
    assert sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1).get("Messages") is None
    [dead] = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=1)["Messages"]
    assert json.loads(dead["Body"])["finding_id"] == OSKAR_FINDING
    assert approvals.row_status(OSKAR_PAYPAL) == "ACTIVE"
    assert approvals.actions() == []
    assert paypal.subscriptions[OSKAR_PAYPAL] == "ACTIVE"


def test_batch_of_ten_with_one_bad_record(aws_env, fresh_database, paypal, monkeypatch):
    prod = ProductionDB(fresh_database())
    for i in range(9):
        c = prod.contact()
        prod.kajabi(c, status="canceled", canceled_at="2024-01-16")
        prod.paypal(c, paypal=paypal.add(f"I-BATCH{i:04d}"))
        prod.charge(c, date="2024-02-16")
    findings = [f for f in build_report(run_scan(prod.dsn))["findings"] if f["check"] == "billing_disconnect"]
    bodies = [approval(f["finding_id"], f["paypal_subscription_id"]) for f in findings]
    bodies.insert(4, '{"action": "cancel_paypal_subscription"')
    with mock_aws():
        approvals = Approvals(prod.dsn, paypal, monkeypatch)
        assert approvals.invoke(sqs_event(*bodies)) == {"batchItemFailures": []}
        outcomes = [a["outcome"] for a in approvals.actions()]
    assert sorted(outcomes) == ["canceled"] * 9 + ["refused"]
    assert len(paypal.cancel_calls()) == 9
    assert all(status == "CANCELLED" for status in paypal.subscriptions.values())


def test_actions_command_lists_what_was_done(approvals, capsys):
    from billing_monitor.cli import main

    approvals.invoke(load_event("sqs_approval_valid.json"))
    approvals.invoke(load_event("sqs_approval_malformed.json"))
    capsys.readouterr()
    assert main(["actions", "--dsn", approvals.dsn]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "refused" in lines[0]
    assert "malformed approval" in lines[0]
    assert "canceled" in lines[1]
    assert OSKAR_PAYPAL in lines[1]
    assert "by owner@example.com" in lines[1]
