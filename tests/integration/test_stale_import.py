"""stale_import (alerts.md): the imports stopped, found from the pass the scan makes anyway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing_monitor.report import build_report
from billing_monitor.scan import run_scan
from tests.support.production import findings_of

pytestmark = pytest.mark.integration


def imported(prod, contact, *, days_ago: float, count: int = 1) -> datetime:
    """`count` charges whose row was imported `days_ago` days before now; returns that time."""
    at = datetime.now(UTC) - timedelta(days=days_ago)
    for _ in range(count):
        tid = prod.charge(contact, source="kajabi")
        prod.execute("update public.transactions set created_at = %s where id = %s", (at, tid))
    return at


def scan(prod, **kw) -> dict:
    return build_report(run_scan(prod.dsn, **kw))


def test_recent_import_is_not_stale_and_the_report_says_how_current_the_data_is(prod):
    c = prod.contact()
    prod.kajabi(c)
    imported(prod, c, days_ago=30)
    newest = imported(prod, c, days_ago=13.9)
    report = scan(prod)
    assert findings_of(report, "stale_import") == []
    assert report["data_current_to"] == newest.isoformat()


def test_an_import_older_than_stale_after_days_is_one_warning(prod):
    c = prod.contact()
    prod.kajabi(c)
    newest = imported(prod, c, days_ago=20)
    report = scan(prod)
    [stale] = findings_of(report, "stale_import")
    assert stale["severity"] == "warning"
    assert f"newest transaction imported {newest:%Y-%m-%d}, 20 days before the scan" in stale["detail"]
    assert "stale after 14 days" in stale["detail"]
    assert stale["action"] is None
    assert report["summary"]["by_check"]["stale_import"] == 1
    assert findings_of(scan(prod, stale_after_days=21), "stale_import") == []


def test_the_finding_id_is_the_same_in_every_scan(prod):
    c = prod.contact()
    prod.kajabi(c)
    imported(prod, c, days_ago=40)
    first, second = scan(prod), scan(prod)
    assert findings_of(first, "stale_import")[0]["finding_id"] == findings_of(second, "stale_import")[0]["finding_id"]


def test_no_transaction_while_subscriptions_exist_is_stale(prod):
    c = prod.contact()
    prod.kajabi(c)
    report = scan(prod)
    [stale] = findings_of(report, "stale_import")
    assert "no transaction imported" in stale["detail"]
    assert report["data_current_to"] is None


def test_an_empty_database_is_not_stale(prod):
    report = scan(prod)
    assert report["findings"] == []
    assert report["data_current_to"] is None


def test_the_newest_import_is_exact_when_it_is_not_at_the_end_of_the_table(prod):
    """The last pages give a bound; the newest row sitting early in the heap is still found."""
    c = prod.contact()
    prod.kajabi(c)
    newest = imported(prod, c, days_ago=1)
    prod.execute(
        "insert into public.transactions (contact_id, source, amount, status, transaction_date, created_at)"
        " select %s, 'kajabi', 22.00, 'completed', now() - interval '30 days', now() - interval '20 days'"
        " from generate_series(1, 3000)", (c,))
    report = scan(prod)
    assert report["data_current_to"] == newest.isoformat()
    assert findings_of(report, "stale_import") == []


def test_rows_deleted_at_the_end_of_the_table_do_not_hide_the_newest(prod):
    """The last pages hold only deleted rows: the scan asks for the exact newest instead."""
    c = prod.contact()
    prod.kajabi(c)
    newest = imported(prod, c, days_ago=2)
    prod.execute(
        "insert into public.transactions (contact_id, source, amount, status, transaction_date, created_at)"
        " select %s, 'kajabi', 22.00, 'completed', now(), now() from generate_series(1, 3000)", (c,))
    prod.execute("delete from public.transactions where created_at > %s", (newest + timedelta(hours=1),))
    report = scan(prod)
    assert report["data_current_to"] == newest.isoformat()


def test_the_cli_takes_stale_after_days(prod, capsys):
    from billing_monitor.cli import main

    c = prod.contact()
    prod.kajabi(c)
    imported(prod, c, days_ago=20)
    assert main(["scan", "--dsn", prod.dsn, "--fail-on", "warning"]) == 3
    assert "stale_import" in capsys.readouterr().out
    assert main(["scan", "--dsn", prod.dsn, "--fail-on", "warning", "--stale-after-days", "30"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["scan", "--dsn", prod.dsn, "--stale-after-days", "0"])
    assert "must be a whole number of days, 1 or more, got '0'" in capsys.readouterr().err
