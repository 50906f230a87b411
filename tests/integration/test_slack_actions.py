"""Slack's clicks (issue 20, slack-actions.md) through functions/slack_actions: real HTTP API payload 2.0 events
signed as Slack signs them, the demo database with a saved scan, moto SQS + DynamoDB, a loopback HTTP server
as the click's response_url (and the scan's webhook)."""

from __future__ import annotations

import json
import logging
import time

import boto3
import psycopg
import pytest
from moto import mock_aws

from billing_monitor.actions.approval import build_approval, build_refund_approval
from billing_monitor.monitor import run_monitoring
from billing_monitor.notify import MONTHLY
from billing_monitor.reconcile import PayPalOptions
from billing_monitor.report import build_report
from billing_monitor.scan import run_scan
from billing_monitor.settings import ScanSettings
from billing_monitor.slack import simulate
from billing_monitor.slack.buttons import ACKNOWLEDGE, APPROVE_CANCEL, APPROVE_REFUND, ButtonMac
from billing_monitor.store import load_finding, open_store, save_scan
from billing_monitor.store.acks import acks_of
from tests.support.aws import LambdaContext, load_event, load_handler_module
from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.integration

SECRET = "test-signing-secret-2f9c1a"
OWNER, STRANGER = "U012AB3CDE", "U0STRANGER1"
OSKAR_FINDING, OSKAR_PAYPAL = "6c3f746973e9a73c", "I-LKL1NVUCV89B"
QUENTIN_FINDING = "db1e44dd8f571f84"
DEAD_STORE = "host=/nonexistent-socket-dir dbname=nothing user=nobody connect_timeout=1"


def save_a_scan(dsn: str, paypal: PayPalOptions | None = None) -> dict:
    """`billing-monitor scan --save` (with --paypal when given): the saved findings, by id."""
    report = build_report(run_scan(dsn, paypal=paypal))
    with open_store(dsn) as conn:
        save_scan(conn, report)
    return {f["finding_id"]: f for f in report["findings"]}


class SlackActions:
    """The deployed Slack side: the approvals queue, the idempotency table, the function; what it did."""

    def __init__(self, dsn: str, response: FakeSlack, monkeypatch):
        self.dsn, self.response, self.monkeypatch = dsn, response, monkeypatch
        self.sqs = boto3.client("sqs")
        self.queue_url = self.sqs.create_queue(QueueName="billing-monitor-approvals")["QueueUrl"]
        boto3.client("dynamodb").create_table(
            TableName="idempotency", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        for key, value in {"BILLING_MONITOR_DSN": dsn, "SLACK_SIGNING_SECRET": SECRET,
                           "SLACK_APPROVER_IDS": f"{OWNER}, W0SECOND1", "IDEMPOTENCY_TABLE": "idempotency",
                           "BILLING_MONITOR_APPROVALS_QUEUE_URL": self.queue_url}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
        self.handler = load_handler_module("slack_actions")

    def invoke(self, event: dict) -> dict:
        return self.handler.lambda_handler(event, LambdaContext())

    def click(self, action_id=APPROVE_CANCEL, finding_id=OSKAR_FINDING, user=OWNER, **extra) -> dict:
        return simulate.click(SECRET, user_id=user, action_id=action_id, finding_id=finding_id,
                              response_url=self.response.url, **extra)

    def queued(self) -> list[dict]:
        """Every message on the approvals queue (left there: visibility 0)."""
        got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]

    def without_database(self) -> None:
        """Any read of the monitor's schema from here on fails loudly."""
        self.monkeypatch.setenv("BILLING_MONITOR_DSN", DEAD_STORE)


@pytest.fixture
def response_url():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def slack_actions(aws_env, demo_db, response_url, monkeypatch):
    with mock_aws():
        yield SlackActions(demo_db, response_url, monkeypatch)


@pytest.fixture
def saved(demo_db) -> dict:
    return save_a_scan(demo_db)


def answer_text(answer: dict) -> str:
    body = answer["body"]
    return json.loads(body)["text"] if answer["headers"]["Content-Type"] == "application/json" else body


# ---------------------------------------------------------------- a click that queues


def test_a_signed_click_queues_exactly_the_saved_findings_approval_once(slack_actions, saved, response_url):
    answer = slack_actions.invoke(slack_actions.click())
    assert answer["statusCode"] == 200
    assert "Cancellation queued by <@U012AB3CDE>" in answer_text(answer)
    assert slack_actions.queued() == [build_approval(saved[OSKAR_FINDING], "slack:U012AB3CDE")]   # the CLI's message
    # the clicked buttons replaced through response_url, the rest of the message kept
    [update] = response_url.messages
    assert update["replace_original"] is True
    assert "Cancellation queued by <@U012AB3CDE> at" in json.dumps(update["blocks"])


def test_the_same_click_again_queues_nothing_more(slack_actions, saved, response_url):
    event = slack_actions.click()
    assert slack_actions.invoke(event)["statusCode"] == 200
    again = slack_actions.invoke(event)                        # Slack's retry, or a replay within 5 minutes
    assert again["statusCode"] == 200
    assert answer_text(again) == "already handled"
    double = slack_actions.invoke(slack_actions.click())      # a double click: another request, same button
    assert answer_text(double) == "already handled"
    assert len(slack_actions.queued()) == 1
    assert len(response_url.messages) == 1


def test_a_base64_encoded_body_is_verified_on_its_decoded_bytes(slack_actions, saved):
    event = slack_actions.click()
    body = event["body"].encode()
    encoded = simulate.http_event(body, {"X-Slack-Request-Timestamp": event["headers"]["x-slack-request-timestamp"],
                                         "X-Slack-Signature": event["headers"]["x-slack-signature"]},
                                  base64_encoded=True)
    assert slack_actions.invoke(encoded)["statusCode"] == 200
    assert slack_actions.queued() == [build_approval(saved[OSKAR_FINDING], "slack:U012AB3CDE")]


def test_the_events_file_is_a_click_the_function_takes_once_signed_now(slack_actions, saved, monkeypatch):
    """events/slack_click.json (sam local invoke): a click by U012AB3CDE on Oskar's Cancel button, signed with the
    local secret of events/env.json; as stored it is older than 5 minutes (refused), signed again it is taken."""
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "local-signing-secret")
    event = load_event("slack_click.json")
    assert slack_actions.invoke(event)["statusCode"] == 401
    assert slack_actions.queued() == []
    assert slack_actions.invoke(simulate.resign(event, "local-signing-secret"))["statusCode"] == 200
    assert slack_actions.queued() == [build_approval(saved[OSKAR_FINDING], "slack:U012AB3CDE")]


# ---------------------------------------------------------------- 401: nothing else happens


@pytest.mark.parametrize("tamper", ["wrong signature", "missing signature", "missing timestamp", "six minutes old",
                                    "body changed"])
def test_a_request_not_signed_by_slack_gets_401_and_nothing_else(slack_actions, saved, response_url, tamper):
    if tamper == "six minutes old":
        value = ButtonMac(SECRET).value(APPROVE_CANCEL, OSKAR_FINDING)
        event = simulate.signed_event(SECRET, simulate.block_actions(
            user_id=OWNER, action_id=APPROVE_CANCEL, value=value, response_url=response_url.url),
            timestamp=int(time.time()) - 6 * 60)
    else:
        event = slack_actions.click()
        if tamper == "wrong signature":
            event["headers"]["x-slack-signature"] = simulate.signature("another-secret", event["headers"][
                "x-slack-request-timestamp"], event["body"].encode())
        elif tamper == "missing signature":
            del event["headers"]["x-slack-signature"]
        elif tamper == "missing timestamp":
            del event["headers"]["x-slack-request-timestamp"]
        else:
            event["body"] = event["body"].replace("U012AB3CDE", "U0STRANGER1")
    slack_actions.without_database()                 # a database read would fail this test
    answer = slack_actions.invoke(event)
    assert answer["statusCode"] == 401
    assert slack_actions.queued() == []
    assert response_url.requests == []               # no Slack post either


# ---------------------------------------------------------------- refused: nothing queued


def test_a_user_not_on_the_list_is_told_not_allowed_and_logged(slack_actions, saved, response_url, caplog):
    caplog.set_level(logging.INFO)
    slack_actions.without_database()
    answer = slack_actions.invoke(slack_actions.click(user=STRANGER))
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert body["response_type"] == "ephemeral"
    assert "not allowed" in body["text"]
    assert slack_actions.queued() == []
    assert response_url.messages[-1]["response_type"] == "ephemeral"
    assert any(getattr(r, "slack_user_id", None) == STRANGER for r in caplog.records)


def forged(action_id: str, value: str, response_url: str) -> dict:
    return simulate.signed_event(SECRET, simulate.block_actions(user_id=OWNER, action_id=action_id, value=value,
                                                                response_url=response_url))


@pytest.mark.parametrize("value", [
    f"{OSKAR_FINDING}.{'0' * 32}",                                                          # a made-up mac
    ButtonMac("the-webhook-holders-guess").value(APPROVE_CANCEL, OSKAR_FINDING),            # another key
    f"{OSKAR_FINDING}.{ButtonMac(SECRET).mac(APPROVE_CANCEL, QUENTIN_FINDING)}",            # another finding's mac
    f"{OSKAR_FINDING}.{ButtonMac(SECRET).mac(APPROVE_REFUND, OSKAR_FINDING)}",             # another action's mac
    OSKAR_FINDING, f"{OSKAR_FINDING}.{ButtonMac(SECRET).mac(APPROVE_CANCEL, OSKAR_FINDING)}.x", "",
])
def test_a_forged_button_is_refused_before_the_database_is_read(slack_actions, saved, response_url, value):
    slack_actions.without_database()
    answer = slack_actions.invoke(forged(APPROVE_CANCEL, value, response_url.url))
    assert answer["statusCode"] == 200
    assert "not made by billing-monitor" in answer_text(answer)
    assert slack_actions.queued() == []


def test_an_unknown_finding_is_refused(slack_actions, saved, response_url):
    answer = slack_actions.invoke(slack_actions.click(finding_id="0123456789abcdef"))
    assert "is in no saved scan" in answer_text(answer)
    assert slack_actions.queued() == []
    assert "Refused" in response_url.messages[-1]["text"]


def test_paypal_id_and_money_edited_in_the_payload_are_ignored(slack_actions, saved, response_url):
    """Everything but the finding id (proved by the mac) comes from the saved scan."""
    payload = simulate.block_actions(user_id=OWNER, action_id=APPROVE_CANCEL,
                                     value=ButtonMac(SECRET).value(APPROVE_CANCEL, OSKAR_FINDING),
                                     response_url=response_url.url)
    payload["actions"][0].update(paypal_subscription_id="I-ATTACKER0001", amount="9999.00",
                                 text={"type": "plain_text", "text": "Cancel I-ATTACKER0001"})
    payload["message"]["blocks"] = [{"type": "section", "block_id": "x", "text": {
        "type": "mrkdwn", "text": "*Someone* · PayPal `I-ATTACKER0001` · charged 9,999.00 USD"}}]
    payload["finding_id"] = QUENTIN_FINDING
    assert slack_actions.invoke(simulate.signed_event(SECRET, payload))["statusCode"] == 200
    [queued] = slack_actions.queued()
    assert queued == build_approval(saved[OSKAR_FINDING], "slack:U012AB3CDE")
    assert queued["paypal_subscription_id"] == OSKAR_PAYPAL


def test_a_finding_a_later_scan_resolved_is_refused(slack_actions, saved, demo_db):
    with psycopg.connect(demo_db) as conn:          # Oskar came back in Kajabi: no longer a disconnect
        conn.execute("update public.subscriptions set status = 'active' where kajabi_subscription_id = '644797565'")
    save_a_scan(demo_db)
    answer = slack_actions.invoke(slack_actions.click())
    assert "is resolved" in answer_text(answer)
    assert slack_actions.queued() == []


# ---------------------------------------------------------------- refund


def test_refund_queues_the_owed_transactions_of_the_saved_finding(slack_actions, demo_db, response_url):
    with FakePayPal() as paypal:
        for pid in (OSKAR_PAYPAL, "I-7JJKPZMDVUM4", "I-KKKE9UTBKXX6", "I-4KUTC9FEM025"):
            paypal.add(pid)
        owed = paypal.monthly(OSKAR_PAYPAL, "2026-09-16T10:00:00Z", 2, "22.00")
        saved = save_a_scan(demo_db, PayPalOptions(paypal.url, CLIENT_ID, CLIENT_SECRET, backoff_s=0.01))
    oskar = saved[OSKAR_FINDING]
    assert sorted(oskar["refund"]["transactions"]) == sorted(owed)
    answer = slack_actions.invoke(slack_actions.click(APPROVE_REFUND))
    assert "Refund of 2 charge(s) queued by <@U012AB3CDE>" in answer_text(answer)
    [queued] = slack_actions.queued()
    assert queued == build_refund_approval(oskar, "slack:U012AB3CDE")
    assert sorted(queued["transactions"]) == sorted(owed)


def test_refund_of_a_finding_that_owes_nothing_is_refused(slack_actions, saved):
    answer = slack_actions.invoke(slack_actions.click(APPROVE_REFUND))
    assert "owes no PayPal charge" in answer_text(answer)
    assert slack_actions.queued() == []


# ---------------------------------------------------------------- acknowledge


def monthly_message(dsn: str, webhook: FakeSlack) -> dict:
    """The scheduled monthly run (scan, save, Slack) as the scan function does it; the message Slack got."""
    settings = ScanSettings.from_env(env={"BILLING_MONITOR_DSN": dsn, "SLACK_WEBHOOK_URL": webhook.url,
                                          "SLACK_SIGNING_SECRET": SECRET, "BILLING_MONITOR_HTTP_BACKOFF": "0.01"})
    run_monitoring(settings, schedule=MONTHLY, publish=None)
    return webhook.messages[-1]


def counted(message: dict) -> str:
    return next(b["text"]["text"] for b in message["blocks"] if b["type"] == "section"
                and "no action needed" in b["text"]["text"])


def acknowledge_options(message: dict) -> set[str]:
    return {o["value"].split(".")[0] for b in message["blocks"] if b["type"] == "actions"
            for e in b["elements"] if e["action_id"] == ACKNOWLEDGE for o in e["options"]}


def test_acknowledge_a_paypal_only_silences_it_until_its_amount_changes(slack_actions, demo_db, response_url):
    with FakeSlack() as webhook:
        first = monthly_message(demo_db, webhook)
        assert "7 paypal_only" in counted(first)
        with psycopg.connect(demo_db) as conn:
            finding_id, sub_id = conn.execute(
                "select finding_id, finding->>'subscription_id' from billing_monitor.findings"
                " where check_name = 'paypal_only' order by finding_id limit 1").fetchone()
        assert finding_id in acknowledge_options(first)       # the menu carries it, with a mac of ours
        answer = slack_actions.invoke(slack_actions.click(ACKNOWLEDGE, finding_id, block_id="ack:paypal_only",
                                                          acknowledge_for="30d"))
        assert answer["statusCode"] == 200
        assert "Acknowledged" in answer_text(answer)
        assert "for 30 days" in answer_text(answer)
        with psycopg.connect(demo_db) as conn:
            ack = acks_of(conn)[finding_id]
        assert ack.by == "slack:U012AB3CDE"
        assert 29 <= (ack.until - ack.at).days <= 30
        assert slack_actions.queued() == []                   # acknowledging queues nothing

        second = monthly_message(demo_db, webhook)            # silent: out of the counts and of the menu
        assert "6 paypal_only" in counted(second)
        assert "1 acknowledged" in counted(second)
        assert finding_id not in acknowledge_options(second)

        with psycopg.connect(demo_db) as conn:               # its amount changes: back by itself
            conn.execute("update public.subscriptions set amount = amount + 5 where id = %s", (sub_id,))
        third = monthly_message(demo_db, webhook)
        assert "7 paypal_only" in counted(third)
        assert "acknowledged" not in counted(third)
        assert finding_id in acknowledge_options(third)
        with psycopg.connect(demo_db) as conn:
            assert acks_of(conn)[finding_id].lapsed_at is not None
            [report_ack] = conn.execute("select finding->'acknowledged' from billing_monitor.findings"
                                        " where finding_id = %s", (finding_id,)).fetchone()
        assert report_ack is None


def test_acknowledge_a_disconnect_is_refused(slack_actions, saved, response_url):
    answer = slack_actions.invoke(slack_actions.click(ACKNOWLEDGE, OSKAR_FINDING, block_id="ack:billing_disconnect"))
    assert "customer at risk" in answer_text(answer)
    assert "canceling in PayPal" in answer_text(answer)
    with psycopg.connect(slack_actions.dsn) as conn:
        assert OSKAR_FINDING not in acks_of(conn)
    assert slack_actions.queued() == []


def test_the_scans_message_buttons_are_taken_by_the_function(slack_actions, demo_db):
    """The buttons the scan function posts carry values the Slack function accepts (the same secret)."""
    with FakeSlack() as webhook:
        message = monthly_message(demo_db, webhook)
    buttons = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
               if e["action_id"] == APPROVE_CANCEL]
    assert len(buttons) == 4                                   # the four disconnects of the demo
    oskar = next(b for b in buttons if b["value"].startswith(OSKAR_FINDING))
    assert "Oskar Dunmore" in oskar["confirm"]["text"]["text"]
    assert OSKAR_PAYPAL in oskar["confirm"]["text"]["text"]
    assert "USD" in oskar["confirm"]["text"]["text"]
    event = simulate.signed_event(SECRET, simulate.block_actions(
        user_id=OWNER, action_id=APPROVE_CANCEL, value=oskar["value"], response_url=slack_actions.response.url,
        message={"type": "message", "ts": simulate.MESSAGE_TS, "text": message["text"], "blocks": message["blocks"]},
        block_id=f"finding:{OSKAR_FINDING}"))
    assert slack_actions.invoke(event)["statusCode"] == 200
    with psycopg.connect(demo_db) as conn:
        saved = load_finding(conn, OSKAR_FINDING)[0]
    assert slack_actions.queued() == [build_approval(saved, "slack:U012AB3CDE")]
    [update] = slack_actions.response.messages
    blocks = update["blocks"]
    assert not any(b.get("block_id") == f"finding:{OSKAR_FINDING}" for b in blocks)   # its buttons replaced
    assert sum(b.get("block_id", "").startswith("finding:") for b in blocks) == 3      # the others kept


# ---------------------------------------------------------------- the cancel function takes a click's approval


def test_the_cancel_function_carries_out_a_clicks_approval_and_audits_role_and_user(aws_env, demo_db, monkeypatch):
    """What the Slack function queued, sent by its role (SenderId: the role's id and the Lambda's session), is
    accepted by the cancel function (BILLING_MONITOR_APPROVER_ARNS has the role, as the template sets it); the
    audit row and the Slack outcome show both the verified role and the Slack user."""
    from tests.integration.test_cancel_function import OWNER_ARN, Approvals

    saved = save_a_scan(demo_db)
    with FakePayPal() as paypal, FakeSlack() as webhook, mock_aws():
        paypal.add(OSKAR_PAYPAL)
        monkeypatch.setenv("SLACK_WEBHOOK_URL", webhook.url)
        role = boto3.client("iam").create_role(RoleName="billing-monitor-SlackActionsFunctionRole-1X2Y3Z",
                                               AssumeRolePolicyDocument="{}")["Role"]
        approvals = Approvals(demo_db, paypal, monkeypatch)
        monkeypatch.setenv("BILLING_MONITOR_APPROVER_ARNS", f"{OWNER_ARN},{role['Arn']}")
        approvals.handler = load_handler_module("cancel")
        event = load_event("sqs_approval_valid.json")
        record = event["Records"][0]
        record["body"] = json.dumps(build_approval(saved[OSKAR_FINDING], "slack:U012AB3CDE"))
        record["attributes"]["SenderId"] = f"{role['RoleId']}:billing-monitor-SlackActionsFunction-AbC123"
        assert approvals.invoke(event) == {"batchItemFailures": []}
        assert paypal.subscriptions[OSKAR_PAYPAL] == "CANCELLED"
        [action] = approvals.actions()
        assert action["outcome"] == "canceled"
        assert action["approved_by"] == "slack:U012AB3CDE"
        assert action["sender_arn"] == role["Arn"]
        told = webhook.messages[-1]["text"]
        assert f"Approved by <@U012AB3CDE> in Slack (sent by {role['Arn']})" in told


def test_a_database_down_tells_the_user_fails_the_function_and_remembers_nothing(slack_actions, saved, response_url):
    event = slack_actions.click()
    slack_actions.without_database()
    with pytest.raises(Exception, match=r"connect|socket|server"):      # the function fails: its alarm goes off
        slack_actions.invoke(event)
    assert slack_actions.queued() == []
    assert "nothing was queued or recorded" in response_url.messages[-1]["text"]
    assert "nobody" not in json.dumps(response_url.messages)          # nothing of the DSN reaches Slack
    slack_actions.monkeypatch.setenv("BILLING_MONITOR_DSN", slack_actions.dsn)   # back: the same click works
    assert "Cancellation queued" in answer_text(slack_actions.invoke(event))
    assert len(slack_actions.queued()) == 1


def test_a_click_while_a_scan_holds_the_schema_is_told_to_try_again_not_left_waiting(slack_actions, saved, demo_db,
                                                                                     response_url):
    """Slack wants the answer within 3 s: the monitor's schema gets 2 s. A scan saving (it holds the migration lock)
    makes an Acknowledge click fail fast, saying so, with nothing recorded; once the lock is gone it works."""
    import threading

    from billing_monitor.store.migrations import MIGRATION_LOCK

    paypal_only = next(f for f in saved.values() if f["check"] == "paypal_only")["finding_id"]
    click = slack_actions.click(ACKNOWLEDGE, paypal_only, block_id="ack:paypal_only")
    outcome = {}

    def clicked():
        try:
            outcome["answer"] = slack_actions.invoke(click)
        except Exception as exc:  # noqa: BLE001 - the function fails (its alarm); what it told the user is checked
            outcome["error"] = exc

    with psycopg.connect(demo_db, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (MIGRATION_LOCK,))      # a scan saving, for as long as it likes
        worker = threading.Thread(target=clicked)
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "the click waited for the lock instead of answering"
        holder.execute("select pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    assert "statement timeout" in str(outcome.get("error"))
    assert "Could not do it" in json.dumps(response_url.messages[-1])
    with psycopg.connect(demo_db) as conn:
        assert acks_of(conn) == {}
    again = slack_actions.invoke(slack_actions.click(ACKNOWLEDGE, paypal_only, block_id="ack:paypal_only"))
    assert "Acknowledged" in answer_text(again)
