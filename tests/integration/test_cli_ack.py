"""`billing-monitor ack` / `unack` (issue 20): acknowledging a finding that needs no action, as the owner does it
from a terminal, against the demo database and its saved scans."""

from __future__ import annotations

import json

import psycopg
import pytest

from billing_monitor.cli import main

pytestmark = pytest.mark.integration

OSKAR_FINDING = "6c3f746973e9a73c"


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def scan(capsys, dsn: str, *extra) -> dict:
    code, out, _ = run_cli(capsys, "scan", "--dsn", dsn, "--format", "json", *extra)
    assert code == 0
    return json.loads(out)


def a_duplicate(report: dict) -> dict:
    return next(f for f in report["findings"] if f["check"] == "duplicate_subscription")


def test_ack_shows_in_the_report_until_unack(demo_db, capsys):
    report = scan(capsys, demo_db, "--save")
    assert all(f["acknowledged"] is None for f in report["findings"])       # the key is always there
    dup = a_duplicate(report)
    code, out, err = run_cli(capsys, "ack", dup["finding_id"], "--dsn", demo_db, "--note", "the Kajabi row is live",
                             "--until", "2099-01-01", "--by", "owner@example.com")
    assert (code, err) == (0, "")
    assert f"Acknowledged duplicate_subscription {dup['finding_id']}" in out
    assert "until 2099-01-01" in out
    again = next(f for f in scan(capsys, demo_db)["findings"] if f["finding_id"] == dup["finding_id"])
    assert again["acknowledged"]["by"] == "owner@example.com"
    assert again["acknowledged"]["note"] == "the Kajabi row is live"
    assert again["acknowledged"]["until"] == "2099-01-01T00:00:00+00:00"
    assert again["acknowledged"]["at"]
    code, out, _ = run_cli(capsys, "unack", dup["finding_id"], "--dsn", demo_db)
    assert code == 0
    assert "forgotten" in out
    assert next(f for f in scan(capsys, demo_db)["findings"] if f["finding_id"] == dup["finding_id"])["acknowledged"] is None
    code, out, _ = run_cli(capsys, "unack", dup["finding_id"], "--dsn", demo_db)
    assert "was not acknowledged" in out


def test_ack_is_refused_for_a_customer_at_risk_an_unknown_finding_and_a_past_date(demo_db, capsys):
    report = scan(capsys, demo_db, "--save")
    code, out, err = run_cli(capsys, "ack", OSKAR_FINDING, "--dsn", demo_db)
    assert code == 1
    assert out == ""
    assert "cannot acknowledge: finding 6c3f746973e9a73c (billing_disconnect) names a customer at risk" in err
    code, _, err = run_cli(capsys, "ack", "0123456789abcdef", "--dsn", demo_db)
    assert code == 1
    assert "is in no saved scan" in err
    code, _, err = run_cli(capsys, "ack", a_duplicate(report)["finding_id"], "--dsn", demo_db, "--until", "2001-01-01")
    assert code == 1
    assert "not in the future" in err
    with pytest.raises(SystemExit):
        main(["ack", a_duplicate(report)["finding_id"], "--until", "next week"])
    assert "must be a date, YYYY-MM-DD" in capsys.readouterr().err
    with psycopg.connect(demo_db) as conn:
        assert conn.execute("select count(*) from billing_monitor.acknowledgements").fetchone()[0] == 0


def test_an_ack_ends_for_good_when_the_finding_changes(demo_db, capsys):
    dup = a_duplicate(scan(capsys, demo_db, "--save"))
    assert run_cli(capsys, "ack", dup["finding_id"], "--dsn", demo_db)[0] == 0
    with psycopg.connect(demo_db) as conn:
        conn.execute("update public.subscriptions set amount = amount + 1 where id = %s", (dup["subscription_id"],))
    changed = next(f for f in scan(capsys, demo_db, "--save")["findings"] if f["finding_id"] == dup["finding_id"])
    assert changed["acknowledged"] is None
    with psycopg.connect(demo_db) as conn:                  # back to the old amount: the acknowledgement stays ended
        conn.execute("update public.subscriptions set amount = amount - 1 where id = %s", (dup["subscription_id"],))
    back = next(f for f in scan(capsys, demo_db, "--save")["findings"] if f["finding_id"] == dup["finding_id"])
    assert back["acknowledged"] is None
