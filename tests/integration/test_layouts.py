"""The owner's tables, not ours (issue 18): the scan, the cancel's mark and doctor through a source schema.

The whole acceptance runs a second time through the kajabi-paypal-v2 layout: the same rows written the way that
layout writes them (enums, renamed columns, monthly/annual, no ended_at, refund-type and disputed rows besides),
owned by a non-superuser with row level security on, mapped by docs/owner-tables.md's SQL block run as written;
the findings, ids and money are those of the contract layout.
"""

from __future__ import annotations

import re
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from moto import mock_aws

from billing_monitor.cli import main
from billing_monitor.demo import build_worked_example
from billing_monitor.doctor import SQL_BEGIN, SQL_END
from billing_monitor.report import build_report
from billing_monitor.rules.finding import finding_id_for
from billing_monitor.scan import run_scan
from tests.integration import test_differential as differential
from tests.support.aws import load_event
from tests.support.fake_paypal import FakePayPal
from tests.support.layouts import (
    VIEWS_SCHEMA,
    copy_v2,
    create_layout_db,
    disputed_rows,
    drop_layout_db,
    refund_rows,
)
from tests.support.production import findings_of, only
from tests.support.reference_rules import (
    reference_findings,
    reference_money,
    reference_stale_import,
    report_as_reference,
    report_money,
)

pytestmark = pytest.mark.integration


def comparable(report: dict) -> dict:
    """What a person compares between two scans of the same rows: every finding, its id and money, the summary."""
    return {"findings": report["findings"], "summary": report["summary"]}


def scan(dsn: str, schema: str = "public", tolerance: str = "1.00", **kw) -> dict:
    return build_report(run_scan(dsn, Decimal(tolerance), source_schema=schema, **kw))


def statuses(rows, index: int) -> list[str]:
    return sorted({r[index] for r in rows})


# ---------------------------------------------------------------- the worked example, both layouts


@pytest.fixture
def v2_worked_example(pg_server):
    """The worked example written in the kajabi-paypal-v2 layout, mapped by the page's block."""
    data = build_worked_example()
    db = create_layout_db(pg_server, statuses(data.subscriptions, 5), statuses(data.transactions, 7))
    contacts = {c[0] for c in data.contacts}
    with psycopg.connect(db.admin) as conn:
        copy_v2(conn, data.contacts, data.products, data.subscriptions, data.transactions,
                extra_transactions=refund_rows(data.transactions, contacts) + disputed_rows(data.transactions, contacts))
        conn.execute("analyze")
    yield db
    drop_layout_db(db)


def test_the_worked_example_through_the_v2_views_is_the_contract_layouts_scan(demo_db, v2_worked_example):
    db = v2_worked_example
    with psycopg.connect(db.admin) as conn:      # the layout as the owner has it: enums, citext, refund rows
        types = dict(conn.execute(
            "select table_name || '.' || column_name, udt_name from information_schema.columns"
            " where table_schema = 'public' and column_name in ('status', 'email', 'transaction_type')").fetchall())
        assert types == {"subscriptions.status": "subscription_status", "transactions.status": "transaction_status",
                         "transactions.transaction_type": "transaction_type", "contacts.email": "citext"}
        assert conn.execute("select count(*) from public.transactions where transaction_type = 'refund'"
                            " and status = 'completed'").fetchone()[0] > 100
        assert {c for (c,) in conn.execute("select distinct billing_cycle from public.subscriptions")} == {"monthly"}
        assert conn.execute("select bool_and(relrowsecurity) from pg_class where relname in"
                            " ('contacts', 'subscriptions', 'transactions') and relnamespace = 'public'::regnamespace"
                            ).fetchone()[0]
    # the views read the tables as their owner: the reader needs no policy of its own on them (the runbook's is
    # dropped here, and row level security then shows the reader no row of the table itself)
    with psycopg.connect(db.owner, autocommit=True) as conn:
        conn.execute("drop policy billing_monitor_reader_select on public.subscriptions")
    with psycopg.connect(db.reader) as conn:
        assert conn.execute("select count(*) from public.subscriptions").fetchone()[0] == 0
    contract = scan(demo_db)
    through_views = scan(db.reader, VIEWS_SCHEMA)
    assert comparable(through_views) == comparable(contract)
    assert through_views["summary"]["by_severity"]["critical"] == 4
    assert through_views["summary"]["charged_after_cancellation"] == {"USD": {"count": 41, "total": "990.00"}}


def test_the_cancel_function_marks_the_row_through_the_view(v2_worked_example, aws_env, slack, monkeypatch):
    from tests.integration.test_cancel_function import OSKAR_PAYPAL, Approvals

    db = v2_worked_example
    with psycopg.connect(db.admin) as conn:
        before = conn.execute("select status::text, cancellation_date, updated_at from public.subscriptions"
                              " where paypal_subscription_reference = %s", (OSKAR_PAYPAL,)).fetchone()
    assert before[:2] == ("ACTIVE", None)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url)
    monkeypatch.setenv("BILLING_MONITOR_STORE_DSN", db.writer)
    monkeypatch.setenv("BILLING_MONITOR_SOURCE_SCHEMA", VIEWS_SCHEMA)
    with FakePayPal() as paypal, mock_aws():
        paypal.add(OSKAR_PAYPAL)
        approvals = Approvals(db.reader, paypal, monkeypatch)
        assert approvals.invoke(load_event("sqs_approval_valid.json")) == {"batchItemFailures": []}
        assert len(paypal.cancel_calls()) == 1
        [action] = approvals.actions()
    assert action["outcome"] == "canceled"
    assert (action["row_status_before"], action["row_status_after"]) == ("ACTIVE", "canceled")
    with psycopg.connect(db.admin) as conn:
        after = conn.execute("select status::text, cancellation_date, updated_at from public.subscriptions"
                             " where paypal_subscription_reference = %s", (OSKAR_PAYPAL,)).fetchone()
    assert after[0] == "canceled"
    assert after[1] is not None
    assert after[2] > before[2]


# ---------------------------------------------------------------- the differential generator, through the views


def _labels(strategy) -> list[str]:
    return list(strategy.elements)


@pytest.fixture
def v2_scratch(pg_server):
    """One database for every example of the test (hypothesis runs them in one call), truncated between them;
    function-scoped: the runbook's roles are the server's, and the other tests make and drop them too."""
    sub_statuses = _labels(differential.STATUSES) + _labels(differential.LIVE) + _labels(differential.ENDED)
    db = create_layout_db(pg_server, sub_statuses, _labels(differential.TX_STATUSES))
    yield db
    drop_layout_db(db)


def load_v2(db, contacts, subs, txs):
    base = differential.BASE
    contact_rows = [(c, f"c{c.int}@example.com", "C", str(c.int), None, base, base) for c in contacts]
    sub_rows = [(s.id, s.contact_id, None, s.kajabi_subscription_id, s.paypal_subscription_id, s.status, s.amount,
                 s.currency, s.billing_cycle, None, s.canceled_at, s.ended_at, base, s.updated_at) for s in subs]
    tx_rows = [(t.id, t.contact_id, t.subscription_id, t.source, None, t.amount, t.currency, t.status,
                t.transaction_date, base) for t in txs]
    known = set(contacts)
    with psycopg.connect(db.admin) as conn:
        conn.execute("truncate public.contacts, public.products, public.subscriptions, public.transactions")
        copy_v2(conn, contact_rows, [], sub_rows, tx_rows,
                extra_transactions=refund_rows(tx_rows, known, every=1) + disputed_rows(tx_rows, known, every=2))


@settings(max_examples=differential.EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(db=differential.databases(), now=differential.SCAN_TIMES)
def test_the_differential_generator_through_the_v2_views(v2_scratch, db, now):
    contacts, subs, txs, tolerance = db
    load_v2(v2_scratch, contacts, subs, txs)
    report = build_report(run_scan(v2_scratch.reader, tolerance, now=now, source_schema=VIEWS_SCHEMA))
    expected = reference_findings(set(contacts), subs, txs, tolerance)
    expected.update(reference_stale_import(subs, [differential.BASE for _ in txs], now))    # the same id on any layout
    assert report_as_reference(report) == expected
    assert report_money(report) == reference_money(expected, txs)


# ---------------------------------------------------------------- doctor on the raw layout


def doctor(capsys, *argv) -> tuple[int, str]:
    code = main(["doctor", "--only", "database", "--only", "store", *argv])
    out, err = capsys.readouterr()
    assert err == ""
    return code, out


def test_doctor_on_the_raw_layout_names_what_is_missing_and_its_sql_makes_the_next_doctor_pass(pg_server, capsys):
    db = create_layout_db(pg_server, views=False)
    try:
        code, out = doctor(capsys, "--dsn", db.reader, "--store-dsn", db.writer)
        assert code == 1
        assert "✗ reader: public.subscriptions lacks paypal_subscription_id, canceled_at, ended_at" in out
        assert "✗ reader: public.transactions lacks source, external_id" in out
        assert "public holds the kajabi-paypal-v2 layout: docs/owner-tables.md has its ready SQL block" in out
        assert "subscriptions.canceled_at <- cancellation_date" in out
        assert "Traceback" not in out
        proposed = re.search(rf"{re.escape(SQL_BEGIN)}\n(.*?)\n{re.escape(SQL_END)}", out, re.DOTALL).group(1)
        db.run_as_owner(proposed)                    # as printed, as the tables' owner
        code, out = doctor(capsys, "--dsn", db.reader, "--store-dsn", db.writer, "--source-schema", "billing_source")
        assert code == 0, out
        assert ("✓ reader: monitor_reader reads billing_source.contacts, billing_source.products,"
                " billing_source.subscriptions, billing_source.transactions (every column the checks use)") in out
        assert "✓ store: monitor_writer may mark a canceled subscription (UPDATE on billing_source.subscriptions)" in out
        assert SQL_BEGIN not in out
    finally:
        drop_layout_db(db)


def test_a_scan_of_the_raw_layout_is_one_line_naming_the_column_and_the_page(pg_server, capsys):
    db = create_layout_db(pg_server, views=False)
    try:
        code = main(["scan", "--dsn", db.reader])
        out, err = capsys.readouterr()
        assert code == 1
        assert out == ""
        assert err == ("billing-monitor: error: column public.subscriptions.paypal_subscription_id missing: the monitor"
                       " reads the contract layout; map yours with views as docs/owner-tables.md shows\n")
    finally:
        drop_layout_db(db)


# ---------------------------------------------------------------- robust values, on the contract layout


@pytest.mark.parametrize(("kajabi_cycle", "paypal_cycle", "matches"), [
    ("monthly", "month", True), (" Monthly", "MONTH ", True), ("month", "monthly", True),
    ("annual", "year", True), ("yearly", "annually", True), ("Annually", "annual", True), ("year", "Yearly", True),
    ("weekly", "weekly", True), ("weekly", "week", False), ("weekly", "monthly", False), ("monthly", "annual", False),
])
def test_billing_cycles_are_folded(prod, kajabi_cycle, paypal_cycle, matches):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-03-16", cycle=kajabi_cycle)
    prod.paypal(c, cycle=paypal_cycle)
    report = prod.scan()
    check = "billing_disconnect" if matches else "paypal_only"
    assert only(report, check)["check"] == check


def test_the_report_names_the_folded_cycle(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-03-16", cycle="monthly")
    prod.paypal(c, cycle="Monthly")
    assert only(prod.scan(), "billing_disconnect")["billing_cycle"] == "month"


@pytest.mark.parametrize("status", ["trial", " Trial", "trialing"])
def test_trial_is_live(prod, status):
    c = prod.contact()
    prod.kajabi(c, status=status)
    prod.paypal(c)
    assert only(prod.scan(), "duplicate_subscription")


def test_disputed_and_refund_type_transactions_are_never_charges(prod):
    prod.execute("alter table public.transactions add column transaction_type text")
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-03-16")
    p = prod.paypal(c)
    counted = prod.charge(c, date="2024-04-16")
    prod.charge(c, date="2024-05-16", status="disputed")
    refund = prod.charge(c, date="2024-06-16", subscription=p)            # completed, and for P ...
    prod.execute("update public.transactions set transaction_type = ' Refund' where id = %s", (refund,))
    typed = prod.charge(c, date="2024-07-16")
    prod.execute("update public.transactions set transaction_type = 'subscription' where id = %s", (typed,))
    f = only(prod.scan(), "billing_disconnect")
    assert f["charges"]["transactions"] == [str(counted), str(typed)]          # ... but a refund
    assert f["charges"]["total"] == "44.00"


def test_a_subscription_whose_amount_is_unknown_matches_nothing(prod):
    prod.execute("alter table public.subscriptions alter column amount drop not null")
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-03-16")
    p = prod.paypal(c)
    prod.execute("update public.subscriptions set amount = null where id = %s", (p,))
    prod.charge(c, date="2024-04-16")
    report = prod.scan()
    f = only(report, "paypal_only")
    assert f["amount"] is None
    assert findings_of(report, "billing_disconnect") == []


def test_citext_emails_and_enum_statuses_in_the_contract_columns(prod):
    """The contract's own tables with an enum status and a citext e-mail."""
    if not prod.execute("select 1 from pg_available_extensions where name = 'citext'"):
        pytest.skip("this PostgreSQL has no citext extension")
    prod.execute("create extension if not exists citext")
    prod.execute("alter table public.contacts alter column email type citext")
    prod.execute("create type sub_status as enum ('active', 'canceled', 'trial')")
    prod.execute("alter table public.subscriptions alter column status type sub_status using status::sub_status")
    c = prod.contact(email="Oskar@Example.com")
    prod.kajabi(c, status="canceled", canceled_at="2024-03-16")
    prod.paypal(c)
    prod.charge(c, date="2024-04-16")
    f = only(prod.scan(), "billing_disconnect")
    assert f["contact"]["email"] == "Oskar@Example.com"
    assert f["charges"]["count"] == 1


# ---------------------------------------------------------------- the source schema itself


def test_any_schema_name_is_quoted_and_reads_the_same(demo_db):
    schema = 'Owner\'s "Views"'
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute(f'create schema "{schema.replace(chr(34), chr(34) * 2)}"')
        for table in ("contacts", "products", "subscriptions", "transactions"):
            conn.execute(f'create view "{schema.replace(chr(34), chr(34) * 2)}".{table} as select * from public.{table}')
    assert comparable(scan(demo_db, schema)) == comparable(scan(demo_db))


def test_the_stale_import_through_views_is_the_same_finding_as_on_the_contract_layout(demo_db):
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("update public.transactions set created_at = '2024-01-01'")
        conn.execute("create schema mapped")
        for table in ("contacts", "products", "subscriptions", "transactions"):
            conn.execute(f"create view mapped.{table} as select * from public.{table}")
    [stale] = findings_of(scan(demo_db, "mapped"), "stale_import")
    [on_public] = findings_of(scan(demo_db), "stale_import")
    assert stale["finding_id"] == on_public["finding_id"] == finding_id_for("stale_import", "public.transactions")
    assert stale["detail"].startswith("newest transaction imported 2024-01-01")


def test_a_missing_source_schema_is_one_line(demo_db, capsys):
    assert main(["scan", "--dsn", demo_db, "--source-schema", "nowhere"]) == 1
    _, err = capsys.readouterr()
    assert err == ("billing-monitor: error: table nowhere.contacts missing (or not readable by this role):"
                   " see docs/owner-tables.md\n")


def test_the_setting_is_read_by_both_functions(monkeypatch):
    from billing_monitor.settings import CancelSettings, ScanSettings

    env = {"BILLING_MONITOR_DSN": "postgresql://x@h/d", "BILLING_MONITOR_SOURCE_SCHEMA": VIEWS_SCHEMA,
           "BILLING_MONITOR_APPROVER_ARNS": "arn:aws:iam::123456789012:user/owner", "PAYPAL_CLIENT_ID": "i",
           "PAYPAL_CLIENT_SECRET": "s", "PAYPAL_ENVIRONMENT": "sandbox", "IDEMPOTENCY_TABLE": "t"}
    assert ScanSettings.from_env(env).source_schema == VIEWS_SCHEMA
    assert CancelSettings.from_env(env).source_schema == VIEWS_SCHEMA
    assert ScanSettings.from_env({"BILLING_MONITOR_DSN": "postgresql://x@h/d"}).source_schema == "public"



def test_doctor_names_a_column_of_a_type_the_checks_cannot_use(prod, capsys):
    prod.execute("alter table public.subscriptions alter column amount type text")
    code, out = doctor(capsys, "--dsn", prod.dsn, "--only", "database")
    assert code == 1
    assert ("✗ reader: public.subscriptions.amount is text: the monitor needs numeric or integer or bigint or"
            " smallint or double precision or real (docs/owner-tables.md)") in out
    assert SQL_BEGIN not in out                  # nothing is missing: no views proposed


# ---------------------------------------------------------------- what a mapping can get wrong, said in one line


def mapped(dsn: str, schema: str = "mapped", *, subscriptions: str = "select * from public.subscriptions",
           tables=("contacts", "products", "transactions")) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"create schema {schema}")
        conn.execute(f"create view {schema}.subscriptions as {subscriptions}")
        for table in tables:
            conn.execute(f"create view {schema}.{table} as select * from public.{table}")


def test_a_missing_products_relation_is_one_line_pointing_to_the_page(demo_db, capsys):
    mapped(demo_db, tables=("contacts", "transactions"))
    code = main(["scan", "--dsn", demo_db, "--source-schema", "mapped"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.strip() == ("billing-monitor: error: table mapped.products missing (or not readable by this role):"
                           " see docs/owner-tables.md")


@pytest.mark.parametrize("name", ["x'{source}", "x\ninjected as (select 1), --", "50%", "a{source_text}"])
def test_a_schema_name_that_could_break_the_sql_is_refused_in_one_line(demo_db, capsys, name):
    code = main(["scan", "--dsn", demo_db, "--source-schema", name])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert "is not a schema name the monitor reads" in err
    assert len(err.strip().splitlines()) == 1


def test_a_placeholder_in_the_schema_name_is_not_filled_in_again():
    from billing_monitor.rules.checks import load_query

    text = load_query("contacts", 'odd"name')
    assert 'from "odd""name".contacts' in text


def mark_through(demo_db, slack, monkeypatch, paypal) -> dict:
    """Oskar's approval handled by the cancel function reading and marking through the `mapped` views."""
    from tests.integration.test_cancel_function import OSKAR_PAYPAL, Approvals, approval, sqs_event

    paypal.add(OSKAR_PAYPAL)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url)
    monkeypatch.setenv("BILLING_MONITOR_SOURCE_SCHEMA", "mapped")
    with mock_aws():
        approvals = Approvals(demo_db, paypal, monkeypatch)
        assert approvals.invoke(sqs_event(approval())) == {"batchItemFailures": []}     # recorded, not retried
        [action] = approvals.actions()
    assert paypal.cancel_calls()[0][1] == OSKAR_PAYPAL
    return action


def test_a_view_whose_canceled_at_is_an_expression_fails_the_mark_but_not_the_audit(demo_db, aws_env, slack,
                                                                                     monkeypatch, capsys):
    mapped(demo_db, subscriptions="select id, contact_id, product_id, kajabi_subscription_id, paypal_subscription_id,"
                                  " status, amount, currency, billing_cycle, started_at,"
                                  " coalesce(canceled_at, ended_at) as canceled_at, ended_at, created_at, updated_at"
                                  " from public.subscriptions")
    with FakePayPal() as paypal:
        action = mark_through(demo_db, slack, monkeypatch, paypal)
    assert action["outcome"] == "canceled"
    assert "PayPal canceled; the database row could not be marked: cannot update column" in action["detail"]
    assert "could not be marked" in slack.messages[-1]["text"]
    code = main(["doctor", "--dsn", demo_db, "--store-dsn", demo_db + " application_name=w", "--source-schema",
                 "mapped", "--only", "store"])
    out = capsys.readouterr().out
    assert code == 1
    assert "✗ store: mapped.subscriptions.canceled_at cannot be written" in out


def test_a_status_enum_without_canceled_fails_the_mark_and_doctor_says_which_label(demo_db, aws_env, slack,
                                                                                   monkeypatch, capsys):
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute("create type sub_state as enum ('ACTIVE', 'active', 'cancelled', 'expired', 'paused', 'trialing',"
                     " 'CANCELED', ' Active ', 'past_due', 'Active', 'Cancelled')")
        labels = {s for (s,) in conn.execute("select distinct status from public.subscriptions")}
        for label in labels:
            conn.execute(f"alter type sub_state add value if not exists '{label}'") if label != "canceled" else None
        conn.execute("update public.subscriptions set status = 'cancelled' where status = 'canceled'")
        conn.execute("alter table public.subscriptions alter column status type sub_state using status::sub_state")
    mapped(demo_db)
    with FakePayPal() as paypal:
        action = mark_through(demo_db, slack, monkeypatch, paypal)
    assert "the database row could not be marked: invalid input value for enum sub_state: \"canceled\"" \
           in action["detail"]
    code = main(["doctor", "--dsn", demo_db, "--store-dsn", demo_db + " application_name=w", "--source-schema",
                 "mapped", "--only", "store"])
    out = capsys.readouterr().out
    assert code == 1
    assert ("✗ store: mapped.subscriptions.status is the enum sub_state, which has no label 'canceled':"
            " alter type sub_state add value 'canceled'") in out
