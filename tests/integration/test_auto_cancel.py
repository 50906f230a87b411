"""Auto-cancel end to end (prevention.md): the scheduled scan function queues approvals on a moto SQS queue, the cancel
function carries them out against the PayPal stand-in; real PostgreSQL, the fake Slack; nothing patched."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import psycopg
import pytest
from moto import mock_aws

from billing_monitor.cli import main as cli_main
from billing_monitor.store import open_store
from tests.support.aws import LambdaContext, load_event, load_handler_module
from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
SCAN_ROLE = "billing-monitor-ScanFunctionRole-ABC"
SCAN_ROLE_ARN = f"arn:aws:iam::123456789012:role/{SCAN_ROLE}"
OWNER_ARN = "arn:aws:iam::123456789012:user/owner"


class World:
    """The production tables, PayPal, the approvals queue and both functions, deployed with AutoCancel as given."""

    def __init__(self, prod, paypal, slack, monkeypatch, auto_cancel: str = "unambiguous", max_per_run: int = 5):
        self.prod, self.paypal, self.slack = prod, paypal, slack
        self.sqs = boto3.client("sqs")
        self.queue_url = self.sqs.create_queue(QueueName="approvals")["QueueUrl"]
        iam = boto3.client("iam")
        iam.create_user(UserName="owner")
        self.role_id = iam.create_role(RoleName=SCAN_ROLE, AssumeRolePolicyDocument="{}")["Role"]["RoleId"]
        boto3.client("dynamodb").create_table(
            TableName="idempotency", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        env = {"BILLING_MONITOR_DSN": prod.dsn, "SLACK_WEBHOOK_URL": slack.url, "PAYPAL_BASE_URL": paypal.url,
               "PAYPAL_CLIENT_ID": CLIENT_ID, "PAYPAL_CLIENT_SECRET": CLIENT_SECRET,
               "BILLING_MONITOR_AUTO_CANCEL": auto_cancel, "BILLING_MONITOR_AUTO_CANCEL_MAX_PER_RUN": str(max_per_run),
               "BILLING_MONITOR_APPROVALS_QUEUE_URL": self.queue_url, "PAYPAL_SEARCH_DAYS": "31",
               # the cancel function's: with AutoCancel on, the template adds the scan function's role
               "IDEMPOTENCY_TABLE": "idempotency",
               "BILLING_MONITOR_APPROVER_ARNS": f"{OWNER_ARN},{SCAN_ROLE_ARN}" if auto_cancel != "off" else OWNER_ARN}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        self.scan_handler = load_handler_module("scan")
        self.cancel_handler = load_handler_module("cancel")

    def disconnect(self, paypal_id: str, *, canceled: timedelta = timedelta(days=3), status: str = "ACTIVE",
                   due: timedelta = timedelta(days=5), name: str = "Member") -> uuid.UUID:
        """Canceled in Kajabi `canceled` ago; the PayPal row still live; PayPal bills 22.00 `due` from now."""
        c = self.prod.contact(email=f"{paypal_id.lower()}@example.com", first=name, last=paypal_id)
        self.prod.kajabi(c, status="canceled", canceled_at=(NOW - canceled).isoformat())
        row = self.prod.paypal(c, paypal=paypal_id)
        self.paypal.add(paypal_id, status, next_billing_time=NOW + due if status == "ACTIVE" else None)
        self.paypal.charge(paypal_id, NOW - canceled - timedelta(days=10))       # its last payment, before canceling
        return row

    def scan(self, schedule: str = "daily") -> dict:
        return self.scan_handler.lambda_handler(load_event(f"scheduled_{schedule}.json"), LambdaContext())

    def queued(self) -> list[dict]:
        got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])
        return got.get("Messages", [])

    def deliver(self, messages: list[dict]) -> dict:
        """Hand the queued approvals to the cancel function as SQS would: SenderId is the scan function's role session
        (moto records its own caller; Lambda's role session is what SQS records in AWS)."""
        template = load_event("sqs_approval_valid.json")["Records"][0]
        records = []
        for m in messages:
            record = json.loads(json.dumps(template))
            record.update(messageId=str(uuid.uuid4()), body=m["Body"])
            record["attributes"]["SenderId"] = f"{self.role_id}:billing-monitor-ScanFunction-XYZ"
            records.append(record)
        return self.cancel_handler.lambda_handler({"Records": records}, LambdaContext())

    def slack_text(self) -> str:
        return json.dumps(self.slack.messages[-1])


@pytest.fixture
def world(aws_env, prod, slack, monkeypatch):
    def make(**kw) -> World:
        return World(prod, paypal, slack, monkeypatch, **kw)

    with mock_aws(), FakePayPal() as paypal:
        yield make
    assert paypal.violations == []


def test_a_qualifying_disconnect_is_queued_once_across_two_runs(world):
    w = world()
    w.disconnect("I-LEAVING0001", name="Ada")
    w.scan()
    w.scan()
    messages = w.queued()
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert body["approved_by"] == "auto-cancel"
    assert body["policy"] == "unambiguous"
    assert body["paypal_subscription_id"] == "I-LEAVING0001"
    assert body["reason"] == (f"Canceled in Kajabi on {(NOW - timedelta(days=3)).date()}; auto-canceled before"
                              f" PayPal's charge of {(NOW + timedelta(days=5)).date()}")
    assert w.paypal.writes() == []                      # the scan function never cancels itself
    first = json.dumps(w.slack.messages[0])
    assert f"PayPal charges 22.00 USD on {(NOW + timedelta(days=5)).date()} (in 5 days)" in first
    assert "auto-cancel: approval queued (policy unambiguous)" in first


def test_candidates_that_fail_a_criterion_are_named_with_the_reason_and_not_queued(world):
    w = world()
    ambiguous = w.disconnect("I-AMBIGUOUS01", name="Bea")
    other = w.prod.contact()                           # another live row naming the same PayPal id
    w.prod.subscription(other, kajabi="I-AMBIGUOUS01", amount="99.00")
    w.disconnect("I-TOOSOON0001", canceled=timedelta(hours=3), name="Cy")
    w.disconnect("I-CANCELLED01", status="CANCELLED", name="Di")
    w.disconnect("I-APPROVED001", status="APPROVED", name="Ed")
    w.disconnect("I-NOTCHECKED1", name="Flo")
    w.paypal.id_faults["I-NOTCHECKED1"] = [500] * 20
    w.disconnect("I-DONEBEFORE1", name="Gus")
    with open_store(w.prod.dsn) as conn:
        conn.execute("insert into billing_monitor.actions (idempotency_key, action, finding_id, paypal_subscription_id,"
                     " approved_by, outcome, detail) values ('k', 'cancel_paypal_subscription', '0000000000000000',"
                     " 'I-DONEBEFORE1', 'owner@example.com', 'canceled', 'canceled by the owner')")
    assert ambiguous
    w.scan()
    assert w.queued() == []
    text = w.slack_text()
    assert "not auto-canceled: another live subscriptions row holds I-AMBIGUOUS01" in text
    assert "not auto-canceled: canceled in Kajabi 3 hours ago (grace 24 h)" in text
    assert "not auto-canceled: PayPal shows CANCELLED" in text
    assert "not auto-canceled: PayPal shows APPROVED" in text
    assert "not auto-canceled: PayPal could not be checked" in text
    assert "not auto-canceled: I-DONEBEFORE1 was canceled or auto-canceled before: never auto-canceled again" in text


def test_more_candidates_than_the_cap_queues_none_with_one_line(world):
    w = world()
    for i in range(6):
        w.disconnect(f"I-MANY{i:07d}")
    w.scan()
    assert w.queued() == []
    assert ("6 subscriptions would be auto-canceled, more than AutoCancelMaxPerRun (5): nothing was canceled; approve"
            " them one by one, or raise the limit") in w.slack_text()


def test_with_auto_cancel_off_nothing_is_queued_and_nothing_said(world):
    w = world(auto_cancel="off")
    w.disconnect("I-LEAVING0002")
    w.scan()
    assert w.queued() == []
    assert "auto-cancel" not in w.slack_text()
    assert "PayPal charges 22.00 USD" in w.slack_text()        # the due is there all the same


def test_the_auto_approval_goes_through_the_cancel_function_once_and_shows_as_prevented(world, capsys):
    w = world()
    w.disconnect("I-LEAVING0003", name="Hal")
    w.scan()
    messages = w.queued()
    assert w.deliver(messages) == {"batchItemFailures": []}
    assert w.deliver(messages) == {"batchItemFailures": []}         # redelivered: nothing canceled twice
    assert len(w.paypal.cancel_calls("I-LEAVING0003")) == 1
    assert w.paypal.subscriptions["I-LEAVING0003"] == "CANCELLED"
    with psycopg.connect(w.prod.dsn) as conn:
        rows = conn.execute("select outcome, approved_by, message->>'policy', sender_arn, prevented_due, prevented_amount,"
                            " prevented_currency from billing_monitor.actions where paypal_subscription_id = %s",
                            ("I-LEAVING0003",)).fetchall()
    assert len(rows) == 1
    outcome, approved_by, policy, sender, due, amount, currency = rows[0]
    assert (outcome, approved_by, policy, sender) == ("canceled", "auto-cancel", "unambiguous", SCAN_ROLE_ARN)
    assert (due, str(amount), currency) == (NOW + timedelta(days=5), "22.00", "USD")
    told = w.slack.messages[-1]["text"]
    assert told.startswith(":white_check_mark: Canceled: Hal I-LEAVING0003")
    assert "Approved by auto-cancel (policy unambiguous)" in told
    assert f"Prevented PayPal's charge of 22.00 USD on {(NOW + timedelta(days=5)).date()}." in told

    w.scan("monthly")
    assert "1 subscription canceled before PayPal charged again: 22.00 USD not charged" in w.slack_text()
    assert cli_main(["history", "--dsn", w.prod.dsn]) == 0
    assert (f"{NOW:%Y-%m}  1 subscription canceled before PayPal charged again: 22.00 USD not charged"
            in capsys.readouterr().out)


def test_the_cli_previews_what_auto_cancel_would_queue_and_sends_nothing(prod, monkeypatch, capsys):
    from tests.support.fake_paypal import FakePayPal as Fake

    with Fake() as paypal:
        c = prod.contact(email="ivy@example.com", first="Ivy", last="Leaving")
        prod.kajabi(c, status="canceled", canceled_at=(NOW - timedelta(days=2)).isoformat())
        prod.paypal(c, paypal="I-PREVIEW0001")
        paypal.add("I-PREVIEW0001", next_billing_time=NOW + timedelta(days=1))
        for key, value in {"PAYPAL_BASE_URL": paypal.url, "PAYPAL_CLIENT_ID": CLIENT_ID,
                           "PAYPAL_CLIENT_SECRET": CLIENT_SECRET}.items():
            monkeypatch.setenv(key, value)
        assert cli_main(["scan", "--dsn", prod.dsn, "--paypal", "--auto-cancel-preview"]) == 0
        out = capsys.readouterr().out
        assert f"PayPal charges 22.00 USD on {(NOW + timedelta(days=1)).date()} (due tomorrow)" in out
        assert "auto-cancel would queue an approval (policy unambiguous; a preview: nothing sent)" in out
        monkeypatch.setenv("BILLING_MONITOR_AUTO_CANCEL_GRACE_HOURS", "72")
        assert cli_main(["scan", "--dsn", prod.dsn, "--paypal", "--auto-cancel-preview"]) == 0
        assert "not auto-canceled: canceled in Kajabi 2 days ago (grace 72 h)" in capsys.readouterr().out
        assert paypal.writes() == []
