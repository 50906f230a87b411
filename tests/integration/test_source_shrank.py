"""source_shrank (alerts.md): a saved scan keeps the rows it read per table; a table now holding less than half of
what the previous saved scan read (when it read at least 20) is a critical finding, in the report, Slack and SNS."""

from __future__ import annotations

import json

import psycopg
import pytest
from moto import mock_aws

from billing_monitor.cli import main
from tests.integration.test_scan_function import deploy
from tests.support.production import findings_of

pytestmark = pytest.mark.integration


def scan(capsys, dsn: str, *extra: str) -> dict:
    code = main(["scan", "--dsn", dsn, "--format", "json", *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def execute(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


def test_a_table_emptied_between_two_saved_scans_is_critical(demo_db, capsys, monkeypatch):
    monkeypatch.delenv("BILLING_MONITOR_STORE_DSN", raising=False)
    first = scan(capsys, demo_db, "--save")
    assert findings_of(first, "source_shrank") == []
    read = first["row_counts"]
    assert read["subscriptions"] == 410
    assert read["transactions"] > 20
    assert read["contacts"] > 20
    execute(demo_db, "truncate public.transactions")
    report = scan(capsys, demo_db)
    [shrank] = findings_of(report, "source_shrank")
    assert (shrank["severity"], shrank["action"]) == ("critical", None)
    assert shrank["detail"].startswith(f"public.transactions holds 0 rows; the previous saved scan ({first['started_at'][:10]})"
                                       f" read {read['transactions']:,}")
    assert report["summary"]["by_check"]["source_shrank"] == 1
    code = main(["scan", "--dsn", demo_db, "--fail-on", "critical"])      # a monitor that can fail CI or cron
    assert code == 3
    assert "public.transactions holds 0 rows" in capsys.readouterr().out


def test_an_unsaved_scan_is_not_the_baseline_and_a_table_that_grew_is_nothing(demo_db, capsys, monkeypatch):
    monkeypatch.delenv("BILLING_MONITOR_STORE_DSN", raising=False)
    scan(capsys, demo_db, "--save")
    execute(demo_db, "delete from public.subscriptions where ctid in (select ctid from public.subscriptions limit 205)")
    assert findings_of(scan(capsys, demo_db), "source_shrank") == []            # 205 of 410: not less than half
    execute(demo_db, "delete from public.subscriptions where ctid in (select ctid from public.subscriptions limit 5)")
    assert len(findings_of(scan(capsys, demo_db), "source_shrank")) == 1        # 200 of 410
    execute(demo_db, "insert into public.contacts (email) select 'new' || g || '@example.com'"
                     " from generate_series(1, 50) g")
    report = scan(capsys, demo_db, "--save")
    assert [f["detail"][:40] for f in findings_of(report, "source_shrank")] == [
        "public.subscriptions holds 200 rows; the"]
    # compared with the newest saved scan: the shrunken table is the baseline now, and contacts grew
    assert findings_of(scan(capsys, demo_db), "source_shrank") == []


@pytest.mark.parametrize(("baseline", "found"), [(19, 0), (20, 1)])
def test_a_previous_scan_must_have_read_at_least_20_rows(prod, capsys, monkeypatch, baseline, found):
    monkeypatch.delenv("BILLING_MONITOR_STORE_DSN", raising=False)
    for _ in range(baseline):
        prod.kajabi(prod.contact())
    scan(capsys, prod.dsn, "--save")
    prod.execute("delete from public.subscriptions")
    assert len(findings_of(scan(capsys, prod.dsn), "source_shrank")) == found


def test_the_scheduled_scan_tells_slack_and_sns_first_and_says_no_all_clear(aws_env, demo_db, slack, monkeypatch):
    with mock_aws():
        deployment = deploy(demo_db, slack, monkeypatch)
        deployment.invoke()
        deployment.published()
        execute(demo_db, "delete from public.subscriptions where paypal_subscription_id is null"
                         " and kajabi_subscription_id !~ '^I-'")     # an import that lost the Kajabi rows
        deployment.invoke("scheduled_daily.json")           # a daily scan: posted, as it is news
        [(report, attributes)] = deployment.published()
    shrank = findings_of(report, "source_shrank")
    assert [f["detail"].split(" holds ")[0] for f in shrank] == ["public.subscriptions"]
    assert all(f["severity"] == "critical" for f in shrank)
    assert attributes["highest_severity"]["StringValue"] == "critical"
    message = slack.messages[-1]
    assert message["blocks"][1]["text"]["text"].startswith(":warning: *A table shrank: public.subscriptions holds")
    assert "All clear" not in json.dumps(message)
