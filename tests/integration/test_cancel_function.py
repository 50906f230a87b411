"""The approvals function, fed the events/ files: real Postgres, moto SQS + DynamoDB, fake PayPal and Slack."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime

import boto3
import psycopg
import pytest
from moto import mock_aws

from billing_monitor.actions import cancel as cancellation
from billing_monitor.report import build_report
from billing_monitor.scan import run_scan
from tests.support.aws import LambdaContext, load_event, load_handler_module
from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal
from tests.support.production import ProductionDB

pytestmark = pytest.mark.integration

OSKAR_FINDING, OSKAR_PAYPAL = "6c3f746973e9a73c", "I-LKL1NVUCV89B"   # the 21-month disconnect of the demo
OWNER_ARN, OWNER_SENDER_ID = "arn:aws:iam::123456789012:user/owner", "AIDAIENQZJOLO23YVJ4VO"  # as in events/
APPROVER_ROLE_ARN = "arn:aws:iam::123456789012:role/billing-approver"


def create_approvers() -> dict[str, str]:
    """The owner (an IAM user whose unique id is the events/ files' SenderId) and an approver role in moto's
    IAM; returns ARN -> unique id."""
    from moto.iam.models import iam_backends

    iam = boto3.client("iam")
    iam.create_user(UserName="owner")
    iam_backends["123456789012"]["global"].users["owner"].id = OWNER_SENDER_ID
    role = iam.create_role(RoleName="billing-approver", AssumeRolePolicyDocument="{}")["Role"]
    return {OWNER_ARN: OWNER_SENDER_ID, APPROVER_ROLE_ARN: role["RoleId"]}


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
        self.approver_ids = create_approvers()
        for key, value in {"IDEMPOTENCY_TABLE": "idempotency", "BILLING_MONITOR_DSN": dsn,
                           "PAYPAL_BASE_URL": paypal.url, "PAYPAL_CLIENT_ID": CLIENT_ID,
                           "PAYPAL_CLIENT_SECRET": CLIENT_SECRET,
                           "BILLING_MONITOR_APPROVER_ARNS": f"{OWNER_ARN}, {APPROVER_ROLE_ARN}"}.items():
            monkeypatch.setenv(key, value)
        self.handler = load_handler_module("cancel")

    def invoke(self, event: dict) -> dict:
        return self.handler.lambda_handler(event, LambdaContext())

    def actions(self) -> list[dict]:
        with psycopg.connect(self.dsn) as conn:
            if conn.execute("select to_regclass('billing_monitor.actions')").fetchone()[0] is None:
                return []
            cur = conn.execute("select outcome, finding_id, paypal_subscription_id, approved_by, detail,"
                               " paypal_status_before, paypal_status_after, row_status_before, row_status_after,"
                               " sender_id, sender_arn, paypal_canceled_at, handled_at, message, message_length,"
                               " reason, forced from billing_monitor.actions order by action_id")
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
    assert told.startswith(":white_check_mark: Canceled: Oskar Dunmore <oskar.dunmore92@example.com>,"
                           " PayPal I-LKL1NVUCV89B,")                  # not "Already canceled"
    assert "Approved by owner@example.com (sent by arn:aws:iam::123456789012:user/owner)." in told


def test_duplicate_in_one_batch_and_redelivered_cancels_once(approvals, paypal):
    assert approvals.invoke(load_event("sqs_approval_duplicate.json")) == {"batchItemFailures": []}
    assert approvals.invoke(load_event("sqs_approval_valid.json")) == {"batchItemFailures": []}
    assert len(paypal.cancel_calls()) == 1
    assert [a["outcome"] for a in approvals.actions()] == ["canceled"]


def test_store_failure_after_paypal_canceled_is_logged_each_time_then_audited_as_canceled(
        approvals, paypal, monkeypatch, caplog):
    real_record = cancellation.record_action
    crashes = []

    def crash_twice(conn, record, **kw):
        if record.outcome != "refused" and len(crashes) < 2:
            crashes.append(1)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real_record(conn, record, **kw)

    monkeypatch.setattr(cancellation, "record_action", crash_twice)
    event = load_event("sqs_approval_valid.json")
    message_id = event["Records"][0]["messageId"]
    for _ in range(2):                                      # two deliveries fail while the store is down
        caplog.clear()
        assert approvals.invoke(event) == {"batchItemFailures": [{"itemIdentifier": message_id}]}
        failures = [r.__dict__ for r in caplog.records if r.getMessage().startswith("approval failed")]
        assert len(failures) == 1                           # one line per failed delivery
        assert failures[0]["message_id"] == message_id
        assert failures[0]["finding_id"] == OSKAR_FINDING
        assert failures[0]["paypal_changed"].startswith("yes")
        assert "server closed the connection" in failures[0]["error"]
    assert paypal.subscriptions[OSKAR_PAYPAL] == "CANCELLED"
    assert approvals.row_status(OSKAR_PAYPAL) == "ACTIVE"
    assert approvals.actions() == []
    canceled_at = paypal.status_changes[OSKAR_PAYPAL][1]
    assert approvals.invoke(event) == {"batchItemFailures": []}   # the store is back
    assert len(paypal.cancel_calls()) == 1                  # never canceled twice
    assert approvals.row_status(OSKAR_PAYPAL) == "canceled (canceled_at set)"
    [action] = approvals.actions()
    assert action["outcome"] == "canceled"                  # the function did it, not someone else
    assert action["paypal_canceled_at"] == datetime.fromisoformat(canceled_at)   # its original time
    assert "recorded on a later delivery" in action["detail"]


def test_already_canceled_in_paypal_is_recorded_as_such(approvals, paypal):
    paypal.subscriptions[OSKAR_PAYPAL] = "CANCELLED"
    assert approvals.invoke(load_event("sqs_approval_valid.json")) == {"batchItemFailures": []}
    assert paypal.cancel_calls() == []
    assert approvals.actions()[0]["outcome"] == "already_canceled"
    assert approvals.row_status(OSKAR_PAYPAL) == "canceled (canceled_at set)"


def save_a_scan(dsn: str) -> dict:
    """`billing-monitor scan --save`: what a later `force` may rely on."""
    from billing_monitor.store import open_store, save_scan

    report = build_report(run_scan(dsn))
    with open_store(dsn) as conn:
        save_scan(conn, report)
    return {f["finding_id"]: f for f in report["findings"]}


def set_kajabi_status(dsn: str, kajabi_id: str, status: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("update public.subscriptions set status = %s where kajabi_subscription_id = %s", (status, kajabi_id))


def test_no_longer_a_disconnect_is_refused(approvals, paypal, demo_db, slack):
    set_kajabi_status(demo_db, "644797565", "active")      # the member came back in Kajabi: a live match again
    assert approvals.invoke(sqs_event(approval())) == {"batchItemFailures": []}
    assert paypal.cancel_calls() == []
    refused = approvals.actions()[0]
    assert refused["outcome"] == "refused"
    assert "is unknown" in refused["detail"]
    assert "Refused" in slack.messages[-1]["text"]


def test_a_sender_who_is_not_an_approver_is_refused_and_recorded(approvals, paypal):
    event = load_event("sqs_approval_valid.json")
    event["Records"][0]["attributes"]["SenderId"] = "AIDAOTHERPERSON000001"
    assert approvals.invoke(event) == {"batchItemFailures": []}
    [action] = approvals.actions()
    assert action["outcome"] == "refused"
    assert "sender AIDAOTHERPERSON000001 is not one of the approvers" in action["detail"]
    assert (action["sender_id"], action["sender_arn"]) == ("AIDAOTHERPERSON000001", None)
    assert action["approved_by"] is None                    # the body's claim is not taken for the approver
    assert paypal.calls == []


def test_a_session_of_an_approver_role_is_verified_and_recorded(approvals, paypal):
    event = load_event("sqs_approval_valid.json")
    role_id = approvals.approver_ids[APPROVER_ROLE_ARN]
    event["Records"][0]["attributes"]["SenderId"] = f"{role_id}:owner-laptop"
    assert approvals.invoke(event) == {"batchItemFailures": []}
    [action] = approvals.actions()
    assert action["outcome"] == "canceled"
    assert action["sender_arn"] == APPROVER_ROLE_ARN


def test_the_owner_is_recorded_as_the_verified_sender(approvals):
    approvals.invoke(load_event("sqs_approval_valid.json"))
    [action] = approvals.actions()
    assert (action["sender_id"], action["sender_arn"]) == (OWNER_SENDER_ID, OWNER_ARN)


def first_of(findings: dict, check: str) -> dict:
    return next(f for f in findings.values() if f["check"] == check)


@pytest.mark.parametrize(("target", "needle"), [
    ("paypal_only", "(paypal_only) never suggested a cancellation"),
    ("duplicate_subscription", "(duplicate_subscription) never suggested a cancellation"),
    ("made-up", "force refused: finding 0000000000000000 is unknown"),
    ("another finding's PayPal id", "finding 6c3f746973e9a73c is about PayPal I-LKL1NVUCV89B, not I-"),
])
def test_force_is_refused_where_it_is_not_safe(approvals, paypal, demo_db, target, needle):
    saved = save_a_scan(demo_db)
    if target in ("paypal_only", "duplicate_subscription"):
        f = first_of(saved, target)
        paypal.add(f["paypal_subscription_id"])
        body = approval(f["finding_id"], f["paypal_subscription_id"], force=True)
    elif target == "made-up":
        body = approval("0000000000000000", OSKAR_PAYPAL, force=True)
    else:
        other = next(f for f in saved.values() if f["check"] == "billing_disconnect" and f["finding_id"] != OSKAR_FINDING)
        body = approval(OSKAR_FINDING, other["paypal_subscription_id"], force=True)
    assert approvals.invoke(sqs_event(body)) == {"batchItemFailures": []}
    [action] = approvals.actions()
    assert action["outcome"] == "refused"
    assert needle in action["detail"]
    assert paypal.cancel_calls() == []


def test_force_is_refused_when_another_finding_is_now_about_the_paypal_id(approvals, paypal, demo_db):
    save_a_scan(demo_db)
    set_kajabi_status(demo_db, "644797565", "active")      # now a duplicate_subscription of a paying member
    assert approvals.invoke(sqs_event(approval(force=True))) == {"batchItemFailures": []}
    [action] = approvals.actions()
    assert "force refused: PayPal I-LKL1NVUCV89B is now reported as duplicate_subscription" in action["detail"]
    assert paypal.cancel_calls() == []


def test_force_cancels_a_saved_disconnect_that_the_database_hides_and_says_so(approvals, paypal, demo_db, slack):
    """The first clean-up's trap: the row was marked canceled by hand, PayPal kept charging."""
    save_a_scan(demo_db)
    with psycopg.connect(demo_db) as conn:
        conn.execute("update public.subscriptions set status = 'canceled' where paypal_subscription_id = %s",
                     (OSKAR_PAYPAL,))
    refused = approvals.invoke(sqs_event(approval()))        # without force: the re-check says no
    assert refused == {"batchItemFailures": []}
    assert "is not a problem any more (a fresh scan does not report it)" in approvals.actions()[0]["detail"]
    assert approvals.invoke(sqs_event(approval(force=True))) == {"batchItemFailures": []}
    reason = "Forced by owner@example.com: a fresh scan does not report it"
    assert paypal.cancel_calls() == [("cancel", OSKAR_PAYPAL, {"reason": reason})]
    forced = approvals.actions()[-1]
    assert (forced["outcome"], forced["forced"], forced["reason"]) == ("canceled", True, reason)
    assert "Oskar Dunmore" in slack.messages[-1]["text"]     # named from the saved finding


def test_a_refusal_is_not_remembered_a_later_approval_is_judged_again(approvals, paypal, demo_db):
    set_kajabi_status(demo_db, "644797565", "active")      # stale approval: the member is back
    assert approvals.invoke(sqs_event(approval())) == {"batchItemFailures": []}
    assert [a["outcome"] for a in approvals.actions()] == ["refused"]
    set_kajabi_status(demo_db, "644797565", "canceled")    # and leaves again: the same finding is real again
    assert approvals.invoke(sqs_event(approval())) == {"batchItemFailures": []}
    assert [a["outcome"] for a in approvals.actions()] == ["refused", "canceled"]
    assert len(paypal.cancel_calls()) == 1


def test_rejected_paypal_credentials_are_retried_never_a_refusal(approvals, paypal, caplog):
    event = load_event("sqs_approval_valid.json")
    message_id = event["Records"][0]["messageId"]
    paypal.faults["token"] = [401, 401]                     # a rotated secret, twice
    for _ in range(2):
        assert approvals.invoke(event) == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert approvals.actions() == []                        # nothing refused, nothing remembered
    failure = next(r for r in caplog.records if r.getMessage().startswith("approval failed"))
    assert "PayPalCredentialsRejected" in failure.__dict__["error"]
    assert approvals.invoke(event) == {"batchItemFailures": []}     # the secret is fixed: it goes through
    assert [a["outcome"] for a in approvals.actions()] == ["canceled"]


def test_a_cancel_that_reads_back_active_is_a_failure_not_a_success(approvals, paypal, caplog):
    paypal.faults["cancel"] = ["204-but-still-active"]
    event = load_event("sqs_approval_valid.json")
    result = approvals.invoke(event)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert approvals.actions() == []
    assert approvals.row_status(OSKAR_PAYPAL) == "ACTIVE"
    failure = next(r for r in caplog.records if r.getMessage().startswith("approval failed"))
    assert "reads back ACTIVE" in failure.__dict__["error"]
    assert approvals.invoke(event) == {"batchItemFailures": []}     # next delivery: canceled and verified
    [action] = approvals.actions()
    assert (action["outcome"], action["paypal_status_after"]) == ("canceled", "CANCELLED")
    assert action["paypal_canceled_at"] is not None


def test_a_huge_body_is_stored_cut_with_its_length(approvals, paypal):
    body = approval(note="x" * 1_000_000)
    assert approvals.invoke(sqs_event(body)) == {"batchItemFailures": []}
    [action] = approvals.actions()
    assert action["message"]["cut"] is True
    assert len(action["message"]["raw"]) == 4096
    assert action["message_length"] == len(body)


def test_the_slack_line_names_the_customer_the_paypal_id_and_the_money(approvals, slack):
    approvals.invoke(load_event("sqs_approval_valid.json"))
    text = slack.messages[-1]["text"]
    assert "Oskar Dunmore <oskar.dunmore92@example.com>" in text
    assert OSKAR_PAYPAL in text
    assert "22.00 USD/month; charged 21x after canceling, 462.00 USD" in text


def test_malformed_message_is_refused_recorded_and_not_retried(approvals, paypal, slack):
    assert approvals.invoke(load_event("sqs_approval_malformed.json")) == {"batchItemFailures": []}
    [action] = approvals.actions()
    assert action["outcome"] == "refused"
    assert action["detail"].startswith("malformed approval")
    assert paypal.calls == []
    assert "malformed approval" in slack.messages[-1]["text"]


@pytest.mark.parametrize(("body", "needle"), [
    (approval(finding_id="0123456789abcdef"), "is unknown"),
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


@pytest.mark.parametrize(("operation", "fault"), [("cancel", 500), ("token", 401)])
def test_paypal_down_or_refusing_the_credentials_is_retried_by_sqs_and_lands_in_the_dlq(approvals, paypal,
                                                                                       operation, fault):
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="approvals-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="approvals", Attributes={
        "VisibilityTimeout": "0",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})})["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=approval())
    paypal.faults[operation] = [fault] * 100
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


def test_a_saved_paypal_still_active_is_canceled_without_force_then_becomes_refund_owed(approvals, paypal, demo_db):
    """The worked example's next step: the owner approves the cancellation of a row marked canceled by hand."""
    from billing_monitor.reconcile import PayPalOptions
    from billing_monitor.store import open_store, save_scan

    with psycopg.connect(demo_db) as conn:
        conn.execute("update public.subscriptions set status = 'canceled', updated_at = '2025-06-01'"
                     " where paypal_subscription_id = %s", (OSKAR_PAYPAL,))
    owed = paypal.charge(OSKAR_PAYPAL, "2025-06-16", "22.00")
    options = PayPalOptions(paypal.url, CLIENT_ID, CLIENT_SECRET, backoff_s=0.01, search_days=31)

    def reconciled(save: bool) -> dict:
        result = run_scan(demo_db, paypal=options)
        report = build_report(result)
        if save:
            with open_store(demo_db) as conn:
                save_scan(conn, report, result.settled)
        return {f["paypal_subscription_id"]: f for f in report["findings"] if f["paypal"] is not None}

    still = reconciled(save=True)[OSKAR_PAYPAL]
    assert still["check"] == "paypal_still_active"
    assert approvals.invoke(sqs_event(approval(still["finding_id"]))) == {"batchItemFailures": []}
    assert [a["outcome"] for a in approvals.actions()] == ["canceled"]
    assert paypal.subscriptions[OSKAR_PAYPAL] == "CANCELLED"
    after = reconciled(save=False)[OSKAR_PAYPAL]
    assert after["check"] == "refund_owed"
    assert after["refund"]["transactions"] == [owed]


def test_a_paypal_still_active_whose_row_is_live_again_is_refused(approvals, paypal, demo_db):
    from billing_monitor.reconcile import PayPalOptions
    from billing_monitor.store import open_store, save_scan

    with psycopg.connect(demo_db) as conn:
        conn.execute("update public.subscriptions set status = 'canceled' where paypal_subscription_id = %s",
                     (OSKAR_PAYPAL,))
    result = run_scan(demo_db, paypal=PayPalOptions(paypal.url, CLIENT_ID, CLIENT_SECRET, backoff_s=0.01, search_days=31))
    report = build_report(result)
    with open_store(demo_db) as conn:
        save_scan(conn, report)
    [still] = [f for f in report["findings"] if f["paypal_subscription_id"] == OSKAR_PAYPAL]
    with psycopg.connect(demo_db) as conn:
        conn.execute("update public.subscriptions set status = 'active' where paypal_subscription_id = %s",
                     (OSKAR_PAYPAL,))
    assert approvals.invoke(sqs_event(approval(still["finding_id"]))) == {"batchItemFailures": []}
    [action] = approvals.actions()
    assert action["outcome"] == "refused"
    assert "is live in the database again: billing_disconnect" in action["detail"]
    assert paypal.cancel_calls() == []
