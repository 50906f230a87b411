"""The CLI as a person uses it: exit codes, the JSON on stdout, one-line errors, the worked example."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from billing_monitor.cli import main
from billing_monitor.demo import build_worked_example

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_worked_example_numbers(demo_db, capsys):
    code, out, err = run_cli(capsys, "scan", "--dsn", demo_db, "--format", "json")
    assert code == 0
    assert err == ""
    report = json.loads(out)  # stdout is the report and nothing else
    summary = report["summary"]
    assert summary["by_check"]["billing_disconnect"] == 4
    assert summary["by_check"]["duplicate_subscription"] == 85
    assert summary["by_check"]["paypal_only"] == 7
    assert summary["by_check"]["post_cancellation_charge"] == 0
    assert summary["by_severity"]["critical"] == 4
    assert summary["charged_after_cancellation"] == {"USD": {"count": 41, "total": "990.00"}}
    disconnects = [f for f in report["findings"] if f["check"] == "billing_disconnect"]
    assert sorted((f["charges"]["count"], f["charges"]["total"]) for f in disconnects) == [
        (2, "44.00"), (8, "264.00"), (10, "220.00"), (21, "462.00")]
    longest = next(f for f in disconnects if f["charges"]["count"] == 21)
    assert longest["kajabi_canceled_at"] == "2023-08-16T00:00:00+00:00"
    assert (longest["charges"]["first"], longest["charges"]["last"]) == (
        "2023-09-16T00:00:00+00:00", "2025-05-16T00:00:00+00:00")
    assert all(f["action"]["type"] == "cancel_paypal_subscription" for f in disconnects)


def test_worked_example_data_has_the_clean_ups_shape():
    data = build_worked_example()
    live = [s for s in data.subscriptions if s[5].strip().lower() not in ("canceled", "cancelled", "expired")]
    assert (len(data.subscriptions), len(live)) == (410, 225)
    assert len(data.contacts) > 1000
    assert 3000 < len(data.transactions) < 20000
    assert all(isinstance(t[5], Decimal) for t in data.transactions)


def test_table_opens_with_the_money_line(demo_db, capsys):
    code, out, _ = run_cli(capsys, "scan", "--dsn", demo_db)
    assert code == 0
    assert out.splitlines()[0] == "4 customers charged after canceling: 41 charges, 990.00 USD"
    assert "CRITICAL (4)" in out
    assert "billing-monitor approve" in out
    assert "462.00 USD (2023-09-16 to 2025-05-16)" in out
    assert out.rstrip().splitlines()[-2].startswith("Findings: 4 billing_disconnect, 85 duplicate_subscription")


def test_dsn_from_environment(demo_db, capsys, monkeypatch):
    monkeypatch.setenv("BILLING_MONITOR_DSN", demo_db)
    code, out, _ = run_cli(capsys, "scan", "--format", "json")
    assert code == 0
    assert json.loads(out)["summary"]["by_severity"]["critical"] == 4


@pytest.mark.parametrize(("fail_on", "expected"), [("critical", 3), ("warning", 3), ("info", 3)])
def test_fail_on_met_exits_3(demo_db, capsys, fail_on, expected):
    assert run_cli(capsys, "scan", "--dsn", demo_db, "--fail-on", fail_on)[0] == expected


def test_fail_on_not_met_exits_0(prod, capsys):
    c = prod.contact()
    prod.paypal(c)  # one info finding
    prod.charge(c)  # imported just now: no stale_import warning
    assert run_cli(capsys, "scan", "--dsn", prod.dsn, "--fail-on", "warning")[0] == 0
    assert run_cli(capsys, "scan", "--dsn", prod.dsn, "--fail-on", "info")[0] == 3


def test_empty_database_is_a_clean_report(prod, capsys):
    code, out, _ = run_cli(capsys, "scan", "--dsn", prod.dsn, "--fail-on", "info")
    assert code == 0
    assert out.splitlines()[0] == "No customer charged after canceling."


# ---------------------------------------------------------------- bad input


def assert_one_line_error(code, out, err, *needles):
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("tolerance", ["-1", "abc", "nan", "inf", ""])
def test_bad_tolerance(prod, capsys, tolerance):
    code, out, err = run_cli(capsys, "scan", "--dsn", prod.dsn, "--tolerance", tolerance)
    assert_one_line_error(code, out, err, "tolerance must be a non-negative number")


def test_unreachable_host_names_it_and_hides_the_password(capsys):
    code, out, err = run_cli(capsys, "scan", "--dsn", "postgresql://monitor:S3cretPw@127.0.0.1:1/prod")
    assert_one_line_error(code, out, err, "cannot connect to host 127.0.0.1:1")
    assert "S3cretPw" not in err


def test_missing_dsn(capsys, monkeypatch):
    monkeypatch.delenv("BILLING_MONITOR_DSN", raising=False)
    assert_one_line_error(*run_cli(capsys, "scan"), "BILLING_MONITOR_DSN")


def test_missing_table(prod, capsys):
    prod.execute("drop table public.transactions")
    assert_one_line_error(*run_cli(capsys, "scan", "--dsn", prod.dsn), "table public.transactions missing")


def test_missing_column(prod, capsys):
    prod.execute("alter table public.subscriptions drop column canceled_at")
    assert_one_line_error(*run_cli(capsys, "scan", "--dsn", prod.dsn),
                          "column public.subscriptions.canceled_at missing")


def test_statement_timeout_stops_a_slow_scan(demo_db, capsys):
    code, out, err = run_cli(capsys, "scan", "--dsn", demo_db, "--statement-timeout", "0.001")
    assert_one_line_error(code, out, err, "statement timeout")


def _with_user(dsn: str, user: str, password: str) -> str:
    return conninfo.make_conninfo(dsn, user=user, password=password)


@pytest.fixture
def reader_dsn(demo_db):
    """A role that may only SELECT the production tables, in read-only transactions."""
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("drop role if exists bm_reader")
        conn.execute("create role bm_reader login password 'reader-pw'")
        conn.execute("grant usage on schema public to bm_reader")
        conn.execute("grant select on all tables in schema public to bm_reader")
        conn.execute("alter role bm_reader set default_transaction_read_only = on")
    yield _with_user(demo_db, "bm_reader", "reader-pw")
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("drop owned by bm_reader")
        conn.execute("drop role bm_reader")


def test_read_only_select_only_role_scans_and_changes_nothing(demo_db, reader_dsn, capsys):
    def fingerprints():
        with psycopg.connect(demo_db, autocommit=True) as conn:
            return {t: conn.execute(f"select md5(string_agg(x::text, ',' order by x::text)) from public.{t} x")
                    .fetchone()[0] for t in ("contacts", "subscriptions", "transactions")}

    before = fingerprints()
    code, out, err = run_cli(capsys, "scan", "--dsn", reader_dsn, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["summary"]["charged_after_cancellation"]["USD"]["total"] == "990.00"
    assert fingerprints() == before
    with psycopg.connect(demo_db) as conn:
        schemas = {r[0] for r in conn.execute("select nspname from pg_namespace").fetchall()}
    assert "billing_monitor" not in schemas  # the scan alone creates nothing


def test_wrong_password_is_named_and_not_echoed(pg_server, demo_db, capsys):
    if os.environ.get("BILLING_MONITOR_TEST_DSN"):
        pytest.skip("needs the embedded server's pg_hba.conf")
    socket_dir = conninfo.conninfo_to_dict(pg_server)["host"]
    hba = Path(socket_dir) / "pg_hba.conf"
    original = hba.read_text()
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("drop role if exists bm_pw")
        conn.execute("create role bm_pw login password 'right-pw'")
        hba.write_text("local all bm_pw scram-sha-256\n" + original)
        conn.execute("select pg_reload_conf()")
    try:
        code, out, err = run_cli(capsys, "scan", "--dsn", _with_user(demo_db, "bm_pw", "Wr0ngPassw0rd"))
        assert_one_line_error(code, out, err, "cannot connect to", "password authentication failed")
        assert "Wr0ngPassw0rd" not in err
    finally:
        hba.write_text(original)
        with psycopg.connect(demo_db, autocommit=True) as conn:
            conn.execute("select pg_reload_conf()")
            conn.execute("drop role bm_pw")


# ---------------------------------------------------------------- the installed command


def test_demo_command_prints_the_worked_example_and_leaves_no_server():
    exe = Path(sys.executable).with_name("billing-monitor")
    # The demo's server lives in a temporary directory of its own (short: its socket is in there), so
    # what it leaves behind is told apart from the servers other test sessions on the machine run.
    private_tmp = Path(tempfile.mkdtemp(prefix="bm-demo-"))
    try:
        done = subprocess.run([str(exe), "demo", "--format", "json"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TMPDIR": str(private_tmp)})
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["summary"]["charged_after_cancellation"] == {"USD": {"count": 41, "total": "990.00"}}
        assert report["summary"]["by_severity"]["critical"] == 4
        assert _processes_mentioning(private_tmp) == set()      # no server left running
        assert list(private_tmp.glob("billing-monitor-pg-*")) == []   # nor its data directory
    finally:
        shutil.rmtree(private_tmp, ignore_errors=True)


def _processes_mentioning(path: Path) -> set[str]:
    found = subprocess.run(["pgrep", "-f", str(path)], capture_output=True, text=True)
    return set(found.stdout.split())


def test_scan_save_then_history(demo_db, capsys):
    code, out, err = run_cli(capsys, "history", "--dsn", demo_db)
    assert code == 0
    assert "No saved scan yet" in out
    code, out, err = run_cli(capsys, "scan", "--dsn", demo_db, "--save", "--format", "json")
    assert code == 0
    assert "181 new, 0 still open, 0 resolved" in err
    first = json.loads(out)["scan_id"]
    code, out, err = run_cli(capsys, "scan", "--dsn", demo_db, "--save", "--format", "json")
    assert code == 0, err
    assert "0 new, 181 still open, 0 resolved" in err
    code, out, _ = run_cli(capsys, "history", "--dsn", demo_db)
    lines = out.splitlines()
    assert len(lines) == 2
    assert first in lines[1]
    assert "4 critical, 85 warning, 92 info  4 customers charged after canceling: 41 charges, 990.00 USD" in lines[0]


def test_approve_dry_run_prints_the_message_a_cancel_function_accepts(demo_db, capsys):
    from billing_monitor.actions.approval import parse_approval

    code, out, err = run_cli(capsys, "approve", "6c3f746973e9a73c", "--by", "owner@example.com",
                             "--dsn", demo_db, "--dry-run")
    assert code == 0, err
    message = json.loads(out)
    assert message == {"action": "cancel_paypal_subscription", "finding_id": "6c3f746973e9a73c",
                       "paypal_subscription_id": "I-LKL1NVUCV89B", "approved_by": "owner@example.com",
                       "reason": "Canceled in Kajabi on 2023-08-16; still charged by PayPal"}
    # the printed text itself, parsed as the cancel function parses an SQS body
    assert parse_approval(out).idempotency_key == "6c3f746973e9a73c:I-LKL1NVUCV89B"
    assert "I-LKL1NVUCV89B" in err
    assert "charged 21x after canceling, 462.00 USD" in err


def test_approve_sends_to_the_queue(demo_db, capsys, monkeypatch):
    import boto3
    from moto import mock_aws

    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="approvals")["QueueUrl"]
        code, _, err = run_cli(capsys, "scan", "--dsn", demo_db, "--save", "--format", "json")  # found in the saved scan
        assert code == 0, err
        code, out, err = run_cli(capsys, "approve", "9caf898b303ad6c9", "--by", "owner@example.com",
                                 "--reason", "Left in July", "--dsn", demo_db, "--queue-url", url)
        assert code == 0, err
        [sent] = sqs.receive_message(QueueUrl=url)["Messages"]
        assert out == (f"Approval sent (message {sent['MessageId']}); `billing-monitor actions` shows the outcome.\n")
        assert json.loads(sent["Body"]) == {
            "action": "cancel_paypal_subscription", "finding_id": "9caf898b303ad6c9",
            "paypal_subscription_id": "I-KKKE9UTBKXX6", "approved_by": "owner@example.com", "reason": "Left in July"}


@pytest.mark.parametrize(("argv", "needle"), [
    (["approve", "0123456789abcdef", "--by", "owner@example.com"], "not in the saved scans nor in a fresh scan"),
    (["approve", "6c3f746973e9a73c", "--by", "not-an-email"], "approved_by"),
    (["approve", "6c3f746973e9a73c", "--by", "owner@example.com"], "no approvals queue"),
])
def test_approve_errors(demo_db, capsys, monkeypatch, argv, needle):
    monkeypatch.delenv("BILLING_MONITOR_APPROVALS_QUEUE_URL", raising=False)
    code, _out, err = run_cli(capsys, *argv, "--dsn", demo_db)
    assert code == 1
    assert needle in err
    assert "Traceback" not in err


def test_approve_a_finding_without_a_cancel_action_is_refused_even_forced(demo_db, capsys):
    report = json.loads(run_cli(capsys, "scan", "--dsn", demo_db, "--format", "json")[1])
    duplicate = next(f for f in report["findings"] if f["check"] == "duplicate_subscription")
    code, _, err = run_cli(capsys, "approve", duplicate["finding_id"], "--by", "o@example.com", "--dsn", demo_db,
                           "--dry-run")
    assert code == 1
    assert "suggests no PayPal cancellation" in err
    code, out, err = run_cli(capsys, "approve", duplicate["finding_id"], "--by", "o@example.com", "--dsn", demo_db,
                             "--dry-run", "--force")
    assert code == 1                                        # force never makes a finding ask to cancel
    assert out == ""
    assert "--force only skips the re-check of a finding that does" in err


def test_saving_uses_its_own_role_while_the_scan_stays_read_only(demo_db, reader_dsn, capsys):
    code, _, err = run_cli(capsys, "scan", "--dsn", reader_dsn, "--save", "--format", "json")
    assert code == 1
    assert "reader-pw" not in err
    # the store is opened read-write: it is the role's missing CREATE that stops it, not a read-only transaction
    assert "permission denied for database" in err, err
    code, _, err = run_cli(capsys, "scan", "--dsn", reader_dsn, "--store-dsn", demo_db, "--save", "--format", "json")
    assert code == 0, err
    assert "181 new" in err
