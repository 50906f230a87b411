"""The scheduled scan function, fed the events/ files: real Postgres, moto SNS/SQS/Secrets, loopback Slack."""

from __future__ import annotations

import json
import re
import sys
import threading
from datetime import UTC, datetime

import boto3
import psycopg
import pytest
from moto import mock_aws

from billing_monitor import db
from billing_monitor.errors import MonitorError
from billing_monitor.store import apply_migrations
from billing_monitor.store.migrations import _migrations
from tests.support.aws import LambdaContext, load_event, load_handler_module

pytestmark = pytest.mark.integration


class Deployment:
    """What the template would create, in moto: the topic, a queue subscribed to it, the secrets."""

    def __init__(self, dsn: str, slack_url: str | None):
        self.sns = boto3.client("sns")
        self.sqs = boto3.client("sqs")
        secrets = boto3.client("secretsmanager")
        self.topic_arn = self.sns.create_topic(Name="billing-monitor-findings")["TopicArn"]
        self.queue_url = self.sqs.create_queue(QueueName="findings-inbox")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn,
                           Attributes={"RawMessageDelivery": "true"})
        # the same messages in SNS's envelope (Subject, Message), as an e-mail-like subscriber sees the headers
        self.envelope_queue_url = self.sqs.create_queue(QueueName="findings-envelopes")["QueueUrl"]
        envelope_arn = self.sqs.get_queue_attributes(QueueUrl=self.envelope_queue_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=envelope_arn)
        self.dsn_secret = secrets.create_secret(Name="billing-monitor/dsn", SecretString=dsn)["ARN"]
        self.env = {"BILLING_MONITOR_DSN_SECRET": self.dsn_secret, "FINDINGS_TOPIC_ARN": self.topic_arn}
        if slack_url:
            self.env["SLACK_WEBHOOK_URL_SECRET"] = secrets.create_secret(
                Name="billing-monitor/slack", SecretString=json.dumps({"value": slack_url}))["ARN"]

    def published(self) -> list[tuple[dict, dict]]:
        """What a machine subscriber (raw delivery) got: the report JSON and the filter attributes."""
        got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                       MessageAttributeNames=["All"])
        return [(json.loads(m["Body"]), m.get("MessageAttributes", {})) for m in got.get("Messages", [])]

    def envelopes(self) -> list[dict]:
        got = self.sqs.receive_message(QueueUrl=self.envelope_queue_url, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def newest_import(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select max(created_at) from public.transactions").fetchone()[0].astimezone(UTC).isoformat()


def deploy(dsn: str, slack, monkeypatch) -> Deployment:
    """Inside mock_aws: the resources, the function's environment, and invoke(event file)."""
    deployment = Deployment(dsn, slack.url)
    for key, value in deployment.env.items():
        monkeypatch.setenv(key, value)
    deployment.handler = handler = load_handler_module("scan")
    deployment.invoke = lambda name="scheduled_monthly.json": handler.lambda_handler(load_event(name), LambdaContext())
    return deployment


@pytest.fixture
def deployed(aws_env, demo_db, slack, monkeypatch):
    with mock_aws():
        yield deploy(demo_db, slack, monkeypatch)


def scans_saved(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        exists = conn.execute("select to_regclass('billing_monitor.scan_runs')").fetchone()[0]
        return conn.execute("select count(*) from billing_monitor.scan_runs").fetchone()[0] if exists else 0


def emitted_metrics(out: str, *, units: bool = False) -> dict:
    """The CloudWatch EMF metrics the handler printed: name -> value (or name -> unit)."""
    metrics = {}
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            doc = json.loads(line)
            for definition in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = doc[definition["Name"]]
                metrics[definition["Name"]] = definition["Unit"] if units else (
                    value[0] if isinstance(value, list) else value)
    return metrics


def test_first_scan_reports_everything_as_new(deployed, slack, demo_db, capsys):
    result = deployed.invoke()
    out = capsys.readouterr().out
    metrics = emitted_metrics(out)
    # money has no CloudWatch unit ("None"); it was once recorded as a Count
    units = emitted_metrics(out, units=True)
    assert (units["ChargedAfterCancellation_USD"], units["ScanDuration"], units["Findings_critical"]) == (
        "None", "Seconds", "Count")
    assert metrics["Findings_critical"] == 4
    assert metrics["Findings_warning"] == 85
    assert metrics["ChargedAfterCancellation_USD"] == 990.0
    assert metrics["ScanDuration"] > 0
    assert result["new"] == 181
    assert result["still_open"] == 0
    assert result["slack"] == "posted"
    [(message, attributes)] = deployed.published()
    assert message["summary"]["charged_after_cancellation"] == {"USD": {"count": 41, "total": "990.00"}}
    assert len(message["changes"]["new"]) == 181
    assert attributes["highest_severity"]["StringValue"] == "critical"
    assert attributes["critical_count"]["StringValue"] == "4"
    [envelope] = deployed.envelopes()             # SNS's own view: the subject is the money line
    assert envelope["Subject"] == "4 customers charged after canceling: 41 charges, 990.00 USD"
    assert json.loads(envelope["Message"])["scan_id"] == message["scan_id"]
    [posted] = slack.messages
    assert posted["text"] == "4 customers charged after canceling: 41 charges, 990.00 USD"
    text = json.dumps(posted["blocks"])
    assert text.count("billing-monitor approve ") == 4
    assert "462.00 USD" in text
    assert "85 duplicate_subscription, 85 misfiled_paypal_id, 7 paypal_only: no action needed" in text
    assert f"Monthly scan of {today()}: data current to {newest_import(demo_db)[:10]}." in text
    assert "All clear" not in text
    assert scans_saved(demo_db) == 1


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_an_unchanged_daily_scan_posts_nothing(deployed, slack):
    deployed.invoke()
    deployed.published()
    result = deployed.invoke("scheduled_daily.json")
    assert (result["new"], result["still_open"], result["resolved"]) == (0, 181, 0)
    assert result["slack"] == "nothing new"
    assert len(slack.messages) == 1               # only the first scan's
    [(message, _)] = deployed.published()         # SNS still gets every scan
    assert message["changes"]["new"] == []
    assert len(message["changes"]["still_open"]) == 181


def test_fixed_disconnect_is_resolved_and_a_new_one_is_new(deployed, slack, demo_db):
    first = deployed.invoke()
    report_findings = deployed.published()[0][0]["findings"]
    fixed = next(f for f in report_findings if f["check"] == "billing_disconnect")
    with psycopg.connect(demo_db) as conn:
        conn.execute("update public.subscriptions set status = 'canceled', canceled_at = now() where id = %s",
                     (fixed["subscription_id"],))
    add_leaver(demo_db)
    second = deployed.invoke()
    assert first["new"] == 181
    assert second["resolved"] == 1
    assert second["new"] == 1
    [(message, _)] = deployed.published()
    assert fixed["finding_id"] in message["changes"]["resolved"]
    latest = json.dumps(slack.messages[-1]["blocks"])
    assert "Resolved since the last scan: 1" in latest
    assert "I-NEWLEAVER001" in latest
    assert fixed["paypal_subscription_id"] not in latest


def test_an_unchanged_monthly_scan_still_posts_a_heartbeat_naming_everyone_at_risk(deployed, slack, demo_db):
    deployed.invoke()
    result = deployed.invoke()                      # the next month: nothing changed
    assert (result["new"], result["resolved"], result["slack"]) == (0, 0, "posted")
    assert len(slack.messages) == 2
    text = json.dumps(slack.messages[-1]["blocks"])
    assert f"Monthly scan of {today()}: data current to {newest_import(demo_db)[:10]}." in text
    assert text.count("billing-monitor approve ") == 4
    assert "Still at risk: 4 (monthly reminder)" in text
    assert "Still open: 4 at risk" in text          # not 181: the counted-only findings are not "open" news
    assert "85 duplicate_subscription, 85 misfiled_paypal_id, 7 paypal_only: no action needed" in text


def add_leaver(dsn: str) -> None:
    """A member who canceled in Kajabi and whom PayPal charged since: one new billing_disconnect."""
    with psycopg.connect(dsn) as conn:
        contact = conn.execute("insert into public.contacts (email, first_name, last_name) values"
                               " ('new.leaver@example.com', 'New', 'Leaver') returning id").fetchone()[0]
        conn.execute("insert into public.subscriptions (contact_id, kajabi_subscription_id, status, amount,"
                     " billing_cycle, canceled_at) values (%s, '99887766', 'canceled', 22.00, 'month', '2025-04-01')",
                     (contact,))
        conn.execute("insert into public.subscriptions (contact_id, paypal_subscription_id, status, amount,"
                     " billing_cycle) values (%s, 'I-NEWLEAVER001', 'active', 22.00, 'month')", (contact,))
        conn.execute("insert into public.transactions (contact_id, source, amount, status, transaction_date)"
                     " values (%s, 'paypal', 22.00, 'completed', '2025-05-01')", (contact,))


def test_a_daily_scan_with_news_does_not_postpone_the_monthly_reminder(deployed, slack, demo_db):
    deployed.invoke("scheduled_monthly.json")
    add_leaver(demo_db)
    daily = deployed.invoke("scheduled_daily.json")
    assert (daily["new"], daily["slack"]) == (1, "posted")
    news = json.dumps(slack.messages[-1]["blocks"])
    assert news.count("billing-monitor approve ") == 1          # the daily post: only the news
    assert "I-NEWLEAVER001" in news
    assert deployed.invoke("scheduled_daily.json")["slack"] == "nothing new"
    monthly = deployed.invoke("scheduled_monthly.json")        # the next monthly, a day later
    assert monthly["slack"] == "posted"
    reminder = json.dumps(slack.messages[-1]["blocks"])
    assert reminder.count("billing-monitor approve ") == 5      # every customer at risk, the new one too
    assert len(slack.messages) == 3


def test_a_warning_only_database_names_the_customer_about_to_be_charged(aws_env, prod, slack, monkeypatch):
    ada = prod.contact("ada@example.com", "Ada", "Lovelace")
    prod.kajabi(ada, status="canceled", canceled_at="2026-11-20")
    prod.paypal(ada, paypal="I-ABOUTTOBILL1")
    prod.charge(ada, date="2026-10-20")                         # before canceling: explained, not a finding
    with mock_aws():
        deployment = deploy(prod.dsn, slack, monkeypatch)
        result = deployment.invoke()
        [(message, _)] = deployment.published()
    assert result["summary"]["by_severity"]["critical"] == 0
    assert result["summary"]["by_check"]["billing_disconnect"] == 1
    [posted] = slack.messages
    assert posted["text"] == "1 customer about to be charged after canceling (none charged yet)"
    text = json.dumps(posted["blocks"])
    assert "*Ada Lovelace &lt;ada@example.com&gt;*" in text
    assert "*about to be charged*: canceled in Kajabi on 2026-11-20 (22.00 USD/month)" in text
    assert "PayPal's next charge: unknown (not checked with PayPal)" in text
    [finding] = message["findings"]
    assert f"billing-monitor approve {finding['finding_id']} --by YOU@EXAMPLE.COM" in text
    assert "All clear" not in text
    assert "white_check_mark" not in text


def test_an_sns_failure_after_saving_says_saved_not_published(deployed, slack, demo_db, caplog, capsys):
    deployed.sns.delete_topic(TopicArn=deployed.topic_arn)
    with pytest.raises(MonitorError) as raised:
        deployed.invoke()
    done = "scan saved, not published to SNS, not posted to Slack"
    assert str(raised.value).endswith(f"({done})")
    assert "while publishing to SNS" in str(raised.value)
    assert done in caplog.text
    assert "nothing was saved" not in caplog.text
    assert scans_saved(demo_db) == 1
    [posted] = slack.messages                                   # not the report: one line saying what happened
    assert posted["text"].startswith(f":x: The scan of {today()} failed: ")
    assert posted["text"].endswith(f"({done}).")
    assert emitted_metrics(capsys.readouterr().out)["ScanFailures"] == 1


def test_sns_message_has_the_report_for_machines_and_a_text_for_people(deployed, monkeypatch):
    sent = []
    publish = deployed.handler.sns.publish
    monkeypatch.setattr(deployed.handler.sns, "publish", lambda **kw: sent.append(kw) or publish(**kw))
    deployed.invoke()
    [call] = sent
    assert call["MessageStructure"] == "json"
    assert call["Subject"] == "4 customers charged after canceling: 41 charges, 990.00 USD"
    structure = json.loads(call["Message"])
    assert set(structure) == {"default", "email"}
    [(received, _)] = deployed.published()
    assert json.loads(structure["default"]) == received         # what the queue subscriber got
    email = structure["email"]
    assert email.splitlines()[0] == call["Subject"]
    assert email.count("To stop it, approve the cancellation: billing-monitor approve ") == 4
    assert "85 duplicate_subscription, 85 misfiled_paypal_id, 7 paypal_only: no action needed." in email
    assert f"Monthly scan of {today()}: data current to " in email
    assert len(call["Message"].encode()) < 256 * 1024


def test_slack_rate_limit_is_retried(deployed, slack):
    slack.script = [(429, {"Retry-After": "0"}), (200, {})]
    assert deployed.invoke()["slack"] == "posted"
    assert len(slack.requests) == 2
    assert slack.requests[0]["json"] == slack.requests[1]["json"]


def test_slack_outage_never_loses_the_scan(deployed, slack, demo_db, capsys, caplog):
    slack.always = (503, {})
    result = deployed.invoke("scheduled_daily.json")
    assert emitted_metrics(capsys.readouterr().out)["SlackFailures"] == 1
    assert "Slack notification failed; scan saved, published to SNS, not posted to Slack" in caplog.text
    assert result["slack"].startswith("failed: Slack answered 503")
    assert len(slack.requests) == 5                    # first try and four retries
    assert len(deployed.published()) == 1
    assert scans_saved(demo_db) == 1
    # the next daily scan still has it to say: no message carried it
    slack.always = None
    slack.requests.clear()
    assert deployed.invoke("scheduled_daily.json")["slack"] == "posted"
    assert json.dumps(slack.messages[-1]["blocks"]).count("billing-monitor approve ") == 4
    assert deployed.invoke("scheduled_daily.json")["slack"] == "nothing new"    # and once is enough


def test_database_unreachable_posts_one_line_to_slack_and_raises(aws_env, slack, monkeypatch, demo_db, capsys):
    with mock_aws():
        deployment = Deployment("postgresql://monitor:Sup3r%40Secret@127.0.0.1:1/prod", slack.url)
        for key, value in deployment.env.items():
            monkeypatch.setenv(key, value)
        handler = load_handler_module("scan")
        with pytest.raises(MonitorError, match=r"cannot connect to host 127\.0\.0\.1:1") as raised:
            handler.lambda_handler(load_event("scheduled_monthly.json"), LambdaContext())
        assert deployment.published() == []
    [posted] = slack.messages
    assert set(posted) == {"text"}
    assert "\n" not in posted["text"]
    assert posted["text"].startswith(f":x: The scan of {today()} failed: cannot connect to host 127.0.0.1:1")
    assert posted["text"].endswith("(nothing was saved, published or posted).")
    out = capsys.readouterr().out
    assert emitted_metrics(out)["ScanFailures"] == 1
    for secret in ("Sup3r", "Secret"):
        assert secret not in str(raised.value)
        assert secret not in posted["text"]
        assert secret not in out
    assert scans_saved(demo_db) == 0


def test_a_failed_scan_with_slack_down_too_raises_and_counts_the_slack_failure(aws_env, slack, monkeypatch, capsys):
    slack.always = (503, {})
    with mock_aws():
        deployment = Deployment("postgresql://monitor:x@127.0.0.1:1/prod", slack.url)
        for key, value in deployment.env.items():
            monkeypatch.setenv(key, value)
        handler = load_handler_module("scan")
        with pytest.raises(MonitorError, match="cannot connect"):
            handler.lambda_handler(load_event("scheduled_daily.json"), LambdaContext())
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["ScanFailures"] == 1
    assert metrics["SlackFailures"] == 1


def test_settings_that_cannot_be_read_are_told_to_slack(aws_env, slack, monkeypatch, demo_db):
    with mock_aws():
        deployment = Deployment(demo_db, slack.url)
        for key, value in deployment.env.items():
            monkeypatch.setenv(key, value)
        boto3.client("secretsmanager").delete_secret(SecretId=deployment.dsn_secret, ForceDeleteWithoutRecovery=True)
        handler = load_handler_module("scan")
        with pytest.raises(MonitorError, match="while reading the settings"):
            handler.lambda_handler(load_event("scheduled_monthly.json"), LambdaContext())
    [posted] = slack.messages
    assert posted["text"].startswith(f":x: The scan of {today()} failed: ")
    assert "while reading the settings" in posted["text"]
    assert posted["text"].endswith("(nothing was saved, published or posted).")


def test_logs_are_json_and_never_hold_a_customer_email(deployed, slack, demo_db, capsys, monkeypatch):
    # Two emails reach the logs through the real paths: the handler logs its event (log_event=True),
    # here a manual run naming who asked for it; and the domain logger (billing_monitor.monitor) logs
    # Slack's refusal, whose text quotes a block with a customer's email.
    with psycopg.connect(demo_db) as conn:
        [(customer,)] = conn.execute("select c.email from public.contacts c join public.subscriptions s"
                                     " on s.contact_id = c.id where s.paypal_subscription_id = 'I-LKL1NVUCV89B'"
                                     ).fetchall()
    assert re.fullmatch(r"oskar\.[a-z]+\d+@example\.com", customer)
    slack.always = (400, {})
    slack.error_body = f"invalid_blocks: block 3 text '*Oskar ({customer})*' is too long"
    event = dict(load_event("scheduled_monthly.json"), detail={"requested_by": "ada.lovelace@example.com"})
    # The handler writes where sys.stdout was when the first function module of the session was loaded;
    # point it at this test's capture, or the log lines never reach `out`.
    monkeypatch.setattr(deployed.handler.logger.registered_handler, "stream", sys.stdout)
    assert deployed.handler.lambda_handler(event, LambdaContext())["slack"].startswith("failed: Slack answered 400")
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]   # every line is JSON
    assert {line["service"] for line in lines} == {"billing-monitor"}   # log lines and EMF metrics
    assert customer not in out
    assert "ada.lovelace@example.com" not in out
    assert not re.search(r"[A-Za-z0-9._%+-]{2}@example\.com", out)
    [slack_failure] = [line for line in lines if str(line.get("message")).startswith("Slack notification failed")]
    assert slack_failure["name"] == "billing_monitor.monitor"
    assert "'*Oskar (o***@example.com)*'" in slack_failure["error"]
    [logged_event] = [line for line in lines if isinstance(line.get("message"), dict)]
    assert logged_event["message"]["detail"] == {"requested_by": "a***@example.com"}


def test_the_logger_masks_emails_anywhere_in_a_line(capsys):
    from billing_monitor.logmask import powertools_logger

    logger = powertools_logger("mask-test")
    logger.info("refund for ada.lovelace@example.com", extra={"customer": "bob.stone@example.org"})
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["message"] == "refund for a***@example.com"
    assert line["customer"] == "b***@example.org"


# ---------------------------------------------------------------- the store


def test_a_migration_numbered_below_the_last_applied_is_still_applied(fresh_database, monkeypatch):
    """007 (acknowledgements) ships before 006 (another change): a database migrated with 007 gets 006 when it
    arrives; the runner applies every missing number, not only those above the last."""
    from billing_monitor.store import migrations

    dsn = fresh_database()
    shipped = migrations._migrations()
    six = next((m for m in shipped if m[0] == 6), (6, "006_arrives_later.sql", "select 1"))   # the real one once merged
    before = [m for m in shipped if m[0] != 6]
    monkeypatch.setattr(migrations, "_migrations", lambda: before)
    with db.connect(dsn, read_only=False) as conn:
        assert 7 in {m[0] for m in before}
        apply_migrations(conn)
    monkeypatch.setattr(migrations, "_migrations", lambda: sorted([*before, six]))
    with db.connect(dsn, read_only=False) as conn:
        assert apply_migrations(conn) == [six[1]]


def test_migrations_twice_and_concurrently(fresh_database):
    dsn = fresh_database()
    results, errors = [], []

    def migrate():
        try:
            with db.connect(dsn, read_only=False) as conn:
                results.append(apply_migrations(conn))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    shipped = [version for version, _, _ in _migrations()]      # numbered files
    assert sorted(len(r) for r in results) == [0, 0, 0, len(shipped)]     # one applied them all, the others nothing
    with db.connect(dsn, read_only=False) as conn:
        assert apply_migrations(conn) == []
        versions = conn.execute("select version from billing_monitor.schema_migrations order by 1").fetchall()
        assert [v for (v,) in versions] == shipped == list(range(1, len(shipped) + 1))
        assert {7, 8, 9} <= set(shipped)
        assert conn.execute("select count(*) from information_schema.tables"
                            " where table_schema = 'public'").fetchone()[0] == 4  # production untouched


def test_a_scan_that_fails_while_saving_leaves_the_previous_state(deployed, demo_db, slack, monkeypatch):
    from billing_monitor.store import scans as history

    deployed.invoke()
    deployed.published()
    with psycopg.connect(demo_db) as conn:
        before = conn.execute("select finding_id, last_seen_scan, resolved_scan from billing_monitor.findings"
                              " order by 1").fetchall()
    calls = []

    def fingerprint_then_crash(finding):
        calls.append(1)
        if len(calls) == 100:
            raise RuntimeError("crash in the middle of saving")
        return real(finding)

    real = history.fingerprint
    monkeypatch.setattr(history, "fingerprint", fingerprint_then_crash)
    with pytest.raises(MonitorError, match=r"RuntimeError while saving the scan: crash in the middle of saving"
                                           r" \(nothing was saved, published or posted\)") as raised:
        deployed.invoke()
    assert isinstance(raised.value.__cause__, RuntimeError)
    with psycopg.connect(demo_db) as conn:
        after = conn.execute("select finding_id, last_seen_scan, resolved_scan from billing_monitor.findings"
                             " order by 1").fetchall()
    assert scans_saved(demo_db) == 1
    assert after == before
    assert deployed.published() == []
    assert len(slack.messages) == 2                 # the first scan's, then one line: the scan failed
    assert slack.messages[1]["text"].startswith(f":x: The scan of {today()} failed: RuntimeError while saving")


def test_the_scheduled_scan_reconciles_whenever_paypal_is_configured(aws_env, demo_db, slack, monkeypatch, capsys):
    from billing_monitor.demo import build_worked_example, paypal_world
    from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal

    with mock_aws(), FakePayPal() as paypal:
        paypal_world(build_worked_example(), paypal)          # the same world as the demo data
        deployment = deploy(demo_db, slack, monkeypatch)
        secret = boto3.client("secretsmanager").create_secret(
            Name="billing-monitor/paypal", SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}))
        for key, value in {"PAYPAL_CLIENT_ID_SECRET": secret["ARN"], "PAYPAL_CLIENT_ID_SECRET_KEY": "client_id",
                           "PAYPAL_CLIENT_SECRET_SECRET": secret["ARN"], "PAYPAL_CLIENT_SECRET_SECRET_KEY": "client_secret",
                           "PAYPAL_BASE_URL": paypal.url}.items():
            monkeypatch.setenv(key, value)
        deployment.invoke()
        [(message, _)] = deployment.published()
        assert message["paypal"]["errors"] == []
        disconnects = [f for f in message["findings"] if f["check"] == "billing_disconnect"]
        assert {f["paypal"]["status"] for f in disconnects} == {"ACTIVE"}
        assert sum(f["paypal"]["charges_after_cancellation"]["count"] for f in disconnects) == 45
        assert message["summary"]["owed"] == {"USD": {"customers": 4, "total": "1089.00"}}
        [posted] = slack.messages
        assert posted["text"].endswith("; 4 customers owed 1,089.00 USD")
        assert "PayPal: ACTIVE (bills next 2025-07-16)" in json.dumps(posted["blocks"])
        assert paypal.writes() == []
        assert paypal.violations == []
        with psycopg.connect(demo_db) as conn:     # the 20 canceled in both: final at PayPal, nothing owed
            assert conn.execute("select count(*) from billing_monitor.paypal_settled").fetchone()[0] == 20
