"""docs/deploy.md's roles, created by its SQL as written: the reader reads and can write nothing, the writer
keeps the monitor's schema and marks subscriptions and writes nothing else, and the reader alone serves
history, actions and approve --dry-run."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import errors as pgerrors

from billing_monitor.cli import main
from billing_monitor.store import mark_subscription_canceled

pytestmark = pytest.mark.integration
OSKAR_FINDING, OSKAR_PAYPAL = "6c3f746973e9a73c", "I-LKL1NVUCV89B"


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(dsn: str, statement: str, *, read_write: bool = True) -> type[Exception] | None:
    """The error class a statement gets as the role of `dsn` (None: it went through, rolled back)."""
    with psycopg.connect(dsn) as conn:
        try:
            if read_write:
                conn.execute("set transaction read write")
            conn.execute(statement)
        except psycopg.Error as exc:
            return type(exc)
        finally:
            conn.rollback()
    return None


WRITES = ["insert into public.contacts (email) values ('x@example.com')", "update public.transactions set amount = 0",
          "delete from public.subscriptions", "truncate public.products", "create table public.t (i int)",
          "create schema elsewhere"]


def test_the_reader_scans_and_can_write_nothing(runbook_roles, capsys, monkeypatch):
    monkeypatch.delenv("BILLING_MONITOR_STORE_DSN", raising=False)
    code, out, err = run_cli(capsys, "scan", "--dsn", runbook_roles["reader"], "--format", "json")
    assert code == 0, err
    assert json.loads(out)["summary"]["charged_after_cancellation"]["USD"]["total"] == "990.00"
    for statement in WRITES:
        assert refused(runbook_roles["reader"], statement) is pgerrors.InsufficientPrivilege, statement
    # and read-only by default: a session that does not ask is refused before privileges are even looked at
    assert refused(runbook_roles["reader"], WRITES[0], read_write=False) is pgerrors.ReadOnlySqlTransaction


def test_the_writer_keeps_the_monitors_schema_marks_subscriptions_and_writes_nothing_else(runbook_roles, capsys):
    reader, writer = runbook_roles["reader"], runbook_roles["writer"]
    code, _, err = run_cli(capsys, "scan", "--dsn", reader, "--store-dsn", writer, "--save", "--format", "json")
    assert code == 0, err
    assert "181 new" in err                          # migrated its schema (created by the runbook) and saved
    with psycopg.connect(writer) as conn:
        marked = mark_subscription_canceled(conn, OSKAR_PAYPAL).rows   # the cancel function's one production write
        assert [(before, after) for _, before, after in marked] == [("ACTIVE", "canceled")]
        conn.rollback()
    for statement in [*WRITES, "insert into public.subscriptions (status, amount, billing_cycle) values ('a', 1, 'month')",
                      "update public.contacts set email = email"]:
        assert refused(writer, statement) is pgerrors.InsufficientPrivilege, statement


def test_the_reader_alone_serves_history_actions_and_a_dry_run(runbook_roles, capsys, monkeypatch):
    monkeypatch.delenv("BILLING_MONITOR_STORE_DSN", raising=False)
    reader, writer = runbook_roles["reader"], runbook_roles["writer"]
    assert run_cli(capsys, "scan", "--dsn", reader, "--store-dsn", writer, "--save")[0] == 0
    code, out, err = run_cli(capsys, "history", "--dsn", reader)
    assert code == 0, err
    assert "4 critical" in out
    assert "990.00 USD" in out
    code, out, err = run_cli(capsys, "actions", "--dsn", reader)
    assert (code, out) == (0, "No approval handled yet.\n"), err
    code, out, err = run_cli(capsys, "approve", OSKAR_FINDING, "--by", "owner@example.com", "--dry-run", "--dsn", reader)
    assert code == 0, err
    assert json.loads(out)["paypal_subscription_id"] == OSKAR_PAYPAL


def test_a_reader_not_granted_the_monitors_schema_is_told_which_role_to_use(runbook_roles, capsys, monkeypatch):
    monkeypatch.delenv("BILLING_MONITOR_STORE_DSN", raising=False)
    reader, writer = runbook_roles["reader"], runbook_roles["writer"]
    assert run_cli(capsys, "scan", "--dsn", reader, "--store-dsn", writer, "--save")[0] == 0
    with psycopg.connect(runbook_roles["admin"], autocommit=True) as conn:
        conn.execute("revoke usage on schema billing_monitor from monitor_reader")
    for argv in (["history"], ["actions"], ["approve", OSKAR_FINDING, "--by", "owner@example.com", "--dry-run"]):
        code, out, err = run_cli(capsys, *argv, "--dsn", reader)
        assert code == 1, argv
        assert "role monitor_reader may not read the monitor's schema billing_monitor: use the writer's DSN" in err
        assert "monitor_writer" in err
        assert "reader-pw" not in err
    code, out, err = run_cli(capsys, "history", "--dsn", reader, "--store-dsn", writer)
    assert code == 0, err
    assert "990.00 USD" in out


def test_before_any_save_history_is_empty_for_the_reader(runbook_roles, capsys, monkeypatch):
    monkeypatch.delenv("BILLING_MONITOR_STORE_DSN", raising=False)
    code, out, err = run_cli(capsys, "history", "--dsn", runbook_roles["reader"])
    assert (code, out) == (0, "No saved scan yet (billing-monitor scan --save records one).\n"), err
