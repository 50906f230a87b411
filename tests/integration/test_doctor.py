"""`billing-monitor doctor` against a real PostgreSQL with the runbook's roles and wrongly granted ones, the fake
PayPal and Slack, and moto's SQS: one line per check, ✓ or the fix, exit 1 when one fails, nothing written."""

from __future__ import annotations

import json

import boto3
import psycopg
import pytest
from moto import mock_aws

from billing_monitor.actions.approvers import caller_as_principal_arn
from billing_monitor.cli import main
from billing_monitor.doctor import TEST_MESSAGE
from billing_monitor.store.migrations import _migrations
from tests.integration.conftest import as_role, drop_roles
from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal

pytestmark = pytest.mark.integration
OSKAR_PAYPAL = "I-LKL1NVUCV89B"


@pytest.fixture
def paypal():
    with FakePayPal() as fake:
        fake.add(OSKAR_PAYPAL)
        yield fake
    assert fake.violations == []
    assert fake.cancel_calls() == []                   # the doctor never cancels


@pytest.fixture
def configured(runbook_roles, paypal, slack, aws_env, monkeypatch):
    """The whole configuration, right: the runbook's roles, PayPal's credentials, Slack, an approvals queue whose
    policy lets the caller (moto's identity) send."""
    for key in ("BILLING_MONITOR_STORE_DSN", "PAYPAL_ENVIRONMENT"):
        monkeypatch.delenv(key, raising=False)
    env = {"BILLING_MONITOR_DSN": runbook_roles["reader"], "BILLING_MONITOR_STORE_DSN": runbook_roles["writer"],
           "PAYPAL_CLIENT_ID": CLIENT_ID, "PAYPAL_CLIENT_SECRET": CLIENT_SECRET, "PAYPAL_BASE_URL": paypal.url,
           "SLACK_WEBHOOK_URL": slack.url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for pid in live_paypal_ids(runbook_roles["admin"]):     # this REST app sees every member's subscription
        paypal.add(pid)
    with mock_aws():
        caller = caller_as_principal_arn(boto3.client("sts").get_caller_identity()["Arn"])
        policy = {"Version": "2012-10-17", "Statement": [      # as template.yaml's ApprovalsQueuePolicy has it
            {"Sid": "OnlyTheApproversSend", "Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage",
             "Resource": "*", "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [caller]}}},
            {"Effect": "Allow", "Principal": {"AWS": [caller]}, "Action": "sqs:SendMessage", "Resource": "*"}]}
        queue = boto3.client("sqs").create_queue(QueueName="approvals", Attributes={"Policy": json.dumps(policy)})
        monkeypatch.setenv("BILLING_MONITOR_APPROVALS_QUEUE_URL", queue["QueueUrl"])
        yield runbook_roles


def live_paypal_ids(dsn: str) -> list[str]:
    """Every live PayPal id of the database, with the scan's terms (the doctor's sample query, unbounded)."""
    from billing_monitor.rules.checks import load_query

    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(load_query("paypal_live_sample"), {"n": 100_000})]


def doctor(capsys, *argv) -> tuple[int, list[str]]:
    code = main(["doctor", *argv])
    out, err = capsys.readouterr()
    assert err == ""
    return code, [line for line in out.splitlines() if "not checked (--skip/--only)" not in line]


def snapshot(admin_dsn: str) -> dict:
    with psycopg.connect(admin_dsn) as conn:
        tables = {t: conn.execute(f"select md5(string_agg(x::text, ',' order by x::text)) from public.{t} x").fetchone()[0]
                  for t in ("contacts", "products", "subscriptions", "transactions")}
        tables["billing_monitor"] = conn.execute(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'billing_monitor'").fetchone()[0]
    return tables


def test_a_right_configuration_passes_every_check_and_changes_nothing(configured, paypal, slack, capsys):
    before = snapshot(configured["admin"])
    code, lines = doctor(capsys, "--paypal-id", OSKAR_PAYPAL, "--post")
    assert code == 0, "\n".join(lines)
    assert lines[-1] == "Every check passed."
    marks = [line.split(" ", 1)[0] for line in lines[:-1]]
    assert set(marks) == {"✓"}, "\n".join(lines)
    text = "\n".join(lines)
    assert "✓ reader: monitor_reader reads public.contacts, public.products, public.subscriptions, public.transactions" in text
    assert "✓ reader: monitor_reader can write nothing" in text
    pending = len(_migrations())
    assert (f"✓ store: monitor_writer may create and migrate billing_monitor ({pending} migration(s) to apply on"
            " the first save)") in text
    assert "✓ store: monitor_writer may mark a canceled subscription (UPDATE on public.subscriptions)" in text
    assert f"✓ paypal: PayPal at {paypal.url} reads {OSKAR_PAYPAL}: ACTIVE" in text
    assert "✓ slack: posted a test message: check the channel" in text
    assert "✓ queue: you (arn:aws:iam::123456789012:user/moto) may send approvals" in text
    assert slack.messages == [{"text": TEST_MESSAGE}]
    assert snapshot(configured["admin"]) == before
    assert "reader-pw" not in text
    assert "writer-pw" not in text


def test_without_post_or_paypal_id_nothing_is_sent_and_it_says_how(configured, slack, capsys):
    code, lines = doctor(capsys)
    assert code == 0
    assert "– paypal: no subscription read: pass --paypal-id I-… (a current member's) to check the app may read" \
           " subscriptions" in lines
    assert "– slack: nothing posted: --post sends one test message" in lines
    assert slack.messages == []


@pytest.fixture
def wrong_reader(configured):
    """A reader granted too much: INSERT on contacts, CREATE in public, not read-only by default."""
    admin = configured["admin"]
    drop_roles(admin, "bm_wrong")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("create role bm_wrong login password 'wrong-pw'")
        conn.execute("grant usage, create on schema public to bm_wrong")
        conn.execute("grant select on all tables in schema public to bm_wrong")
        conn.execute("grant insert on public.contacts to bm_wrong")
    yield as_role(admin, "bm_wrong", "wrong-pw")
    drop_roles(admin, "bm_wrong")


def test_a_wrongly_granted_reader_fails_with_the_fix(configured, wrong_reader, capsys):
    code, lines = doctor(capsys, "--only", "database", "--dsn", wrong_reader)
    assert "– store: not checked (--skip/--only)" not in lines          # left out of `lines` by doctor()
    assert code == 1
    assert lines[-1] == "3 check(s) failed."
    assert "✓ reader: bm_wrong reads public.contacts, public.products, public.subscriptions, public.transactions" \
           " (every column the checks use)" in lines
    assert "✗ reader: bm_wrong may INSERT public.contacts: revoke insert on public.contacts from bm_wrong" in lines
    assert "✗ reader: bm_wrong may create tables in schema public: revoke create on schema public from bm_wrong" \
           " (and from public)" in lines
    assert "✗ reader: bm_wrong is not read-only by default: alter role bm_wrong set default_transaction_read_only = on" in lines


def test_a_reader_that_cannot_read_a_table_fails(configured, capsys):
    with psycopg.connect(configured["admin"], autocommit=True) as conn:
        conn.execute("revoke select on public.transactions from monitor_reader")
    code, lines = doctor(capsys, "--only", "database")
    assert code == 1
    assert "✗ reader: monitor_reader may not read public.transactions: grant select on public.transactions to" \
           " monitor_reader" in lines


def test_the_superuser_as_reader_fails(configured, capsys):
    code, lines = doctor(capsys, "--only", "database", "--dsn", configured["admin"])
    assert code == 1
    assert any(line.startswith("✗ reader: ") and "is a superuser" in line for line in lines)


def test_a_writer_without_update_or_schema_fails_with_the_fix(configured, capsys):
    with psycopg.connect(configured["admin"], autocommit=True) as conn:
        conn.execute("revoke update on public.subscriptions from monitor_writer")
        conn.execute("drop schema billing_monitor")
    code, lines = doctor(capsys, "--only", "store")
    assert code == 1
    assert "✗ store: monitor_writer may not mark a canceled subscription: grant select, update on" \
           " public.subscriptions to monitor_writer" in lines
    assert "✗ store: schema billing_monitor missing and monitor_writer may not create it: create schema billing_monitor" \
           " authorization monitor_writer (docs/deploy.md, step 1)" in lines


def test_a_writer_with_more_than_it_needs_is_warned(configured, capsys):
    with psycopg.connect(configured["admin"], autocommit=True) as conn:
        conn.execute("grant delete on public.transactions to monitor_writer")
    code, lines = doctor(capsys, "--only", "store")
    assert code == 0
    assert "! store: monitor_writer may also DELETE public.transactions: it needs only UPDATE on public.subscriptions" \
           " (a role of its own: docs/deploy.md, step 1)" in lines


def test_no_writer_configured_fails(configured, capsys, monkeypatch):
    monkeypatch.delenv("BILLING_MONITOR_STORE_DSN")
    code, lines = doctor(capsys, "--only", "store")
    assert code == 1
    assert lines[0].startswith("✗ store: no writer configured")


def test_paypal_refusing_the_credentials_or_not_knowing_the_id_fails(configured, capsys, monkeypatch):
    code, lines = doctor(capsys, "--only", "paypal", "--paypal-id", "I-NOSUCHSUBSCR")
    assert code == 1
    assert any(line.startswith("✗ paypal: PayPal has no subscription I-NOSUCHSUBSCR") for line in lines), lines
    monkeypatch.setenv("PAYPAL_CLIENT_SECRET", "rotated")
    code, lines = doctor(capsys, "--only", "paypal")
    assert code == 1
    assert any(line.startswith("✗ paypal: PayPal at http") and "refused the credentials" in line for line in lines), lines
    assert "rotated" not in "\n".join(lines)


def test_paypal_without_an_environment_fails(configured, capsys, monkeypatch):
    monkeypatch.delenv("PAYPAL_BASE_URL")
    code, lines = doctor(capsys, "--only", "paypal")
    assert code == 1
    assert "✗ paypal: PAYPAL_ENVIRONMENT is not configured (set it to live, or to sandbox for PayPal's test environment)" \
        in lines


def test_a_malformed_slack_url_fails_and_nothing_is_posted(configured, slack, capsys, monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/workspace/oops")
    code, lines = doctor(capsys, "--only", "slack", "--post")
    assert code == 1
    assert lines[0] == ("✗ slack: the webhook URL is not an incoming-webhook path (/services/T…/B…/…): copy it from the"
                        " Slack app's Incoming Webhooks page (https://hooks.slack.com/services/T…/B…/…)")
    assert slack.messages == []


def test_an_unreachable_queue_fails(configured, capsys):
    code, lines = doctor(capsys, "--only", "queue", "--queue-url",
                         "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue")
    assert code == 1
    assert lines[0].startswith("✗ queue: https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue does not answer")


def test_an_unreachable_database_fails_without_the_password(capsys):
    code, lines = doctor(capsys, "--only", "database", "--dsn", "postgresql://monitor_reader:S3cretPw@127.0.0.1:1/prod")
    assert code == 1
    assert lines[0].startswith("✗ database: cannot connect to host 127.0.0.1:1")
    assert "S3cretPw" not in "\n".join(lines)


def test_doctor_says_how_many_of_the_members_paypal_subscriptions_this_app_sees(configured, paypal, capsys):
    """paypal-webhooks.md: a 404 for a live id the database holds: created through another app (issue 21)."""
    _, lines = doctor(capsys, "--only", "paypal")
    sampled = min(20, len(live_paypal_ids(configured["admin"])))
    assert f"✓ paypal: PayPal at {paypal.url} sees all {sampled} live PayPal subscriptions sampled from the database" \
        in lines
    hidden = live_paypal_ids(configured["admin"])[:2]            # the first two of the sample's order
    for pid in hidden:
        del paypal.subscriptions[pid]
    code, lines = doctor(capsys, "--only", "paypal")
    assert code == 0                                           # a warning: the hourly net still sees their charges
    [line] = [line for line in lines if "sampled from the database" in line]
    assert line.startswith(f"! paypal: PayPal at {paypal.url} sees {sampled - 2} of {sampled} live PayPal subscriptions")
    assert "2 answer 404" in line
    assert "created through another PayPal app" in line
    assert all(pid in line for pid in hidden)
