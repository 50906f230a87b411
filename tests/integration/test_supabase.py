"""Supabase as it really is (issue 17): the four tables owned by a role that is no superuser, row level security on
with policies for Supabase's roles only. The runbook's SQL, run as that owner, lets the monitor see every row; a
policy missing, narrowing or restrictive stops the scan (exit 1, no report), fails doctor with the SQL that fixes
it, and fails the scheduled function loudly; the cancel function's mark touches the row, or says it could not."""

from __future__ import annotations

import json

import psycopg
import pytest
from moto import mock_aws

from billing_monitor.cli import main
from billing_monitor.errors import MonitorError
from billing_monitor.store import mark_subscription_canceled
from tests.integration.conftest import RUNBOOK_PASSWORDS, as_role, drop_roles
from tests.integration.test_cancel_function import OSKAR_PAYPAL, Approvals, sqs_event
from tests.integration.test_cancel_function import approval as approval_body
from tests.integration.test_scan_function import deploy, scans_saved, today
from tests.support.fake_paypal import FakePayPal
from tests.support.runbook import role_sql
from tests.support.supabase import drop_supabase_db, make_supabase_db

pytestmark = pytest.mark.integration

# random-looking, as real ones are: a message never shows 3 characters of a password in a row, so a password
# like "reader-pw" would hide the word "reader" itself
PASSWORDS = {"monitor_reader": "Zq8vKx2Wj7", "monitor_writer": "Yp3nHt6Lm4"}


@pytest.fixture
def supabase(pg_server):
    db = make_supabase_db(pg_server)
    yield db
    drop_roles(db.admin, *RUNBOOK_PASSWORDS)
    drop_supabase_db(pg_server, db)


@pytest.fixture
def roles(supabase):
    """docs/deploy.md step 1 as written, run as Supabase's postgres (the tables' owner, no superuser)."""
    drop_roles(supabase.admin, *RUNBOOK_PASSWORDS)
    supabase.run(role_sql(PASSWORDS["monitor_reader"], PASSWORDS["monitor_writer"]))
    return {role.removeprefix("monitor_"): as_role(supabase.admin, role, password) for role, password in PASSWORDS.items()}


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def scan_json(capsys, dsn: str) -> dict:
    code, out, err = run_cli(capsys, "scan", "--dsn", dsn, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def comparable(report: dict) -> dict:
    return {f["finding_id"]: (f["check"], f["severity"], f["charges"], f["action"]) for f in report["findings"]}


def doctor(capsys, roles, *sections) -> tuple[int, str]:
    argv = ["doctor", "--dsn", roles["reader"], "--store-dsn", roles["writer"]]
    for section in ("paypal", "slack", "queue", *(s for s in ("database", "store") if s not in sections)):
        argv += ["--skip", section]
    code, out, _ = run_cli(capsys, *argv)
    return code, out


def test_the_runbook_as_supabases_owner_lets_the_reader_see_what_a_database_without_rls_shows(
        supabase, roles, demo_db, capsys, monkeypatch):
    monkeypatch.delenv("BILLING_MONITOR_STORE_DSN", raising=False)
    with psycopg.connect(roles["reader"]) as conn:       # row level security is on, and the reader is no owner
        assert conn.execute("select bool_and(relrowsecurity) from pg_class where relname = any(%s)"
                            " and relnamespace = 'public'::regnamespace",
                            (["contacts", "products", "subscriptions", "transactions"],)).fetchone()[0]
    report = scan_json(capsys, roles["reader"])
    assert report["summary"]["charged_after_cancellation"] == {"USD": {"count": 41, "total": "990.00"}}
    assert report["summary"]["by_check"]["billing_disconnect"] == 4
    assert comparable(report) == comparable(scan_json(capsys, demo_db))     # the same demo data, no RLS, superuser
    assert report["row_counts"] == scan_json(capsys, demo_db)["row_counts"]
    code, out = doctor(capsys, roles, "database", "store")
    assert code == 0, out
    assert "✓ reader: row level security lets monitor_reader read every row of the four relations" in out
    assert "✓ store: row level security lets monitor_writer read and mark every row of public.subscriptions" in out
    # and the writer saves the reader's scan in the monitor's schema, as the scheduled function does
    code, _, err = run_cli(capsys, "scan", "--dsn", roles["reader"], "--store-dsn", roles["writer"], "--save")
    assert code == 0, err


def assert_blind_scan_stops(capsys, roles, table: str) -> str:
    code, out, err = run_cli(capsys, "scan", "--dsn", roles["reader"])
    assert code == 1
    assert out == ""                                    # nothing that looks like a report, no all-clear
    [line] = err.strip().splitlines()
    assert line.startswith(f"billing-monitor: error: row level security on public.{table} ")
    assert "docs/deploy.md step 1" in line
    assert PASSWORDS["monitor_reader"][:3] not in err
    code, out, err = run_cli(capsys, "scan", "--dsn", roles["reader"], "--format", "json")
    assert (code, out) == (1, "")
    return line


def doctor_fails_and_its_sql_fixes_it(capsys, supabase, roles, table: str, expected_fix: str | None = None) -> None:
    code, out = doctor(capsys, roles, "database")
    assert code == 1
    [failed] = [line for line in out.splitlines() if line.startswith("✗ reader: row level security")]
    assert f"public.{table}" in failed
    fix = failed.split(" run: ", 1)[1]
    if expected_fix is not None:
        assert fix == expected_fix
    supabase.run(fix)                                   # as printed, as the tables' owner
    code, out = doctor(capsys, roles, "database")
    assert code == 0, out


def test_no_policy_for_the_reader_stops_the_scan_and_fails_doctor(supabase, roles, capsys):
    supabase.run("drop policy billing_monitor_reader_select on public.transactions")
    with psycopg.connect(roles["reader"]) as conn:     # what the monitor would have believed: no charge at all
        assert conn.execute("select count(*) from public.transactions").fetchone()[0] == 0
    line = assert_blind_scan_stops(capsys, roles, "transactions")
    assert "lets monitor_reader read no row" in line
    doctor_fails_and_its_sql_fixes_it(capsys, supabase, roles, "transactions")
    assert scan_json(capsys, roles["reader"])["summary"]["charged_after_cancellation"]["USD"]["total"] == "990.00"


def test_a_policy_that_hides_the_canceled_subscriptions_stops_the_scan(supabase, roles, capsys):
    supabase.run("drop policy billing_monitor_reader_select on public.subscriptions")
    supabase.run("create policy live_only on public.subscriptions for select to monitor_reader"
                 " using (lower(status) not in ('canceled', 'cancelled', 'expired'))")
    line = assert_blind_scan_stops(capsys, roles, "subscriptions")
    assert "only the rows policy live_only allow" in line
    doctor_fails_and_its_sql_fixes_it(capsys, supabase, roles, "subscriptions",
                                      "create policy billing_monitor_reader_select on public.subscriptions"
                                      " for select to monitor_reader using (true);")


def test_the_runbooks_own_policy_narrowed_is_put_back(supabase, roles, capsys):
    supabase.run("alter policy billing_monitor_reader_select on public.subscriptions using (status <> 'canceled')")
    assert "only the rows policy billing_monitor_reader_select allow" in assert_blind_scan_stops(
        capsys, roles, "subscriptions")
    doctor_fails_and_its_sql_fixes_it(capsys, supabase, roles, "subscriptions",
                                      "alter policy billing_monitor_reader_select on public.subscriptions"
                                      " to monitor_reader using (true);")


def test_a_restrictive_policy_stops_the_scan_even_beside_the_runbooks(supabase, roles, capsys):
    supabase.run("create policy not_refunds on public.transactions as restrictive for select to public"
                 " using (lower(status) <> 'refunded')")
    line = assert_blind_scan_stops(capsys, roles, "transactions")
    assert "restrictive policy not_refunds" in line
    doctor_fails_and_its_sql_fixes_it(capsys, supabase, roles, "transactions",
                                      "drop policy not_refunds on public.transactions;")


def test_two_restrictive_policies_and_no_permissive_one_are_fixed_in_one_go(supabase, roles, capsys):
    supabase.run("drop policy billing_monitor_reader_select on public.transactions")
    supabase.run("create policy not_refunds on public.transactions as restrictive for select to public"
                 " using (lower(status) <> 'refunded')")
    supabase.run('create policy "Recent only" on public.transactions as restrictive for select to monitor_reader'
                 " using (transaction_date > now() - interval '1 year')")
    assert 'restrictive policies "Recent only", not_refunds' in assert_blind_scan_stops(capsys, roles, "transactions")
    doctor_fails_and_its_sql_fixes_it(capsys, supabase, roles, "transactions",
                                      'drop policy "Recent only" on public.transactions;'
                                      " drop policy not_refunds on public.transactions;"
                                      " create policy billing_monitor_reader_select on public.transactions"
                                      " for select to monitor_reader using (true);")


def test_a_policy_through_a_role_the_reader_belongs_to_is_enough(supabase, roles, capsys):
    """The reader may be given Supabase's `authenticated` instead: its policies read `true`, so it sees every row."""
    for table in ("contacts", "products", "subscriptions", "transactions"):
        supabase.run(f"drop policy billing_monitor_reader_select on public.{table}")
    supabase.run("grant authenticated to monitor_reader", as_owner=False)
    assert scan_json(capsys, roles["reader"])["summary"]["charged_after_cancellation"]["USD"]["total"] == "990.00"


def test_the_scheduled_function_fails_loudly_when_it_cannot_see_every_row(supabase, roles, aws_env, slack, monkeypatch,
                                                                          capsys):
    supabase.run("drop policy billing_monitor_reader_select on public.subscriptions")
    monkeypatch.setenv("BILLING_MONITOR_STORE_DSN", roles["writer"])
    with mock_aws():
        deployment = deploy(roles["reader"], slack, monkeypatch)
        with pytest.raises(MonitorError, match=r"row level security on public\.subscriptions"):
            deployment.invoke()
        assert deployment.published() == []             # no SNS message from a partial view
    [posted] = slack.messages                            # one line, no all-clear
    assert posted["text"].startswith(f":x: The scan of {today()} failed: row level security on public.subscriptions")
    assert "All clear" not in json.dumps(posted)
    assert scans_saved(supabase.admin) == 0


@pytest.fixture
def paypal():
    with FakePayPal() as fake:
        yield fake
    assert fake.violations == []


@pytest.fixture
def approvals_on_supabase(supabase, roles, aws_env, paypal, slack, monkeypatch):
    """The approvals function as deployed on Supabase: the reader's DSN for its fresh scan, the writer's for the
    audit and the mark (the monitor's schema made by the runbook)."""
    paypal.add(OSKAR_PAYPAL)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url)
    monkeypatch.setenv("BILLING_MONITOR_STORE_DSN", roles["writer"])
    with mock_aws():
        yield Approvals(roles["reader"], paypal, monkeypatch)


def oskar_row(supabase) -> tuple[str, bool]:
    [(status, canceled)] = supabase.run("select status, canceled_at is not null from public.subscriptions"
                                        " where paypal_subscription_id = %s", (OSKAR_PAYPAL,), as_owner=False)
    return status, canceled


def test_the_writers_mark_under_row_level_security_touches_the_row(supabase, approvals_on_supabase, paypal, slack):
    approvals = approvals_on_supabase
    assert approvals.invoke(sqs_event(approval_body())) == {"batchItemFailures": []}
    assert paypal.cancel_calls()[0][1] == OSKAR_PAYPAL
    assert oskar_row(supabase) == ("canceled", True)
    [action] = approvals.actions()
    assert (action["outcome"], action["row_status_before"], action["row_status_after"]) == ("canceled", "ACTIVE",
                                                                                            "canceled")
    assert "could not be marked" not in action["detail"]
    assert "could not be marked" not in slack.messages[-1]["text"]


def test_a_mark_that_touches_no_row_is_said_in_the_audit_and_in_slack(supabase, approvals_on_supabase, paypal, slack):
    supabase.run("drop policy billing_monitor_writer_update on public.subscriptions")
    approvals = approvals_on_supabase
    assert approvals.invoke(sqs_event(approval_body())) == {"batchItemFailures": []}
    assert paypal.cancel_calls()[0][1] == OSKAR_PAYPAL        # PayPal did cancel: that is not taken back
    assert oskar_row(supabase) == ("ACTIVE", False)           # row level security let the UPDATE touch nothing
    [action] = approvals.actions()
    assert action["outcome"] == "canceled"
    assert action["row_status_after"] is None
    assert "PayPal canceled; the database row could not be marked: 1 live row(s) holding I-LKL1NVUCV89B were not" \
           " updated: row level security lets monitor_writer read them but not update them" in action["detail"]
    with psycopg.connect(supabase.admin) as conn:
        assert "row level security" in conn.execute("select mark_problem from billing_monitor.actions").fetchone()[0]
    told = slack.messages[-1]["text"]
    assert "PayPal canceled; the database row could not be marked" in told
    assert "Oskar Dunmore" in told


def test_a_writer_that_sees_no_row_says_so(supabase, approvals_on_supabase, paypal, slack):
    supabase.run("drop policy billing_monitor_writer_select on public.subscriptions")
    approvals = approvals_on_supabase
    assert approvals.invoke(sqs_event(approval_body())) == {"batchItemFailures": []}
    assert oskar_row(supabase) == ("ACTIVE", False)
    [action] = approvals.actions()
    assert "the database row could not be marked: no subscriptions row holding I-LKL1NVUCV89B is visible to" \
           " monitor_writer" in action["detail"]
    assert slack.messages[-1]["text"].startswith(":warning: Canceled: Oskar Dunmore")
    assert "could not be marked" in slack.messages[-1]["text"]


def test_a_mark_that_touches_one_of_two_live_rows_says_so(supabase, roles):
    """The import bug: the same PayPal id in a second live row's kajabi_subscription_id, which the writer's
    policy does not let it update: one row marked is not enough."""
    supabase.run("insert into public.subscriptions (contact_id, kajabi_subscription_id, status, amount, currency,"
                 " billing_cycle) select contact_id, paypal_subscription_id, 'active', amount, currency, billing_cycle"
                 " from public.subscriptions where paypal_subscription_id = %s", (OSKAR_PAYPAL,))
    supabase.run("alter policy billing_monitor_writer_update on public.subscriptions"
                 " using (paypal_subscription_id is not null)")
    with psycopg.connect(roles["writer"]) as conn:
        marked = mark_subscription_canceled(conn, OSKAR_PAYPAL)
        conn.rollback()
    assert [(before, after) for _, before, after in marked.rows] == [("ACTIVE", "canceled")]
    assert marked.problem.startswith("1 live row(s) holding I-LKL1NVUCV89B were not updated: row level security lets"
                                     " monitor_writer read them but not update them")


def test_source_shrank_on_supabase_a_table_the_import_emptied(supabase, roles, capsys, monkeypatch):
    monkeypatch.delenv("BILLING_MONITOR_STORE_DSN", raising=False)
    save = ["scan", "--dsn", roles["reader"], "--store-dsn", roles["writer"], "--save", "--format", "json"]
    code, out, err = run_cli(capsys, *save)
    assert code == 0, err
    assert [f for f in json.loads(out)["findings"] if f["check"] == "source_shrank"] == []
    supabase.run("truncate public.transactions")          # as the owner, as a broken import would
    code, out, err = run_cli(capsys, *save)
    assert code == 0, err
    [shrank] = [f for f in json.loads(out)["findings"] if f["check"] == "source_shrank"]
    assert shrank["severity"] == "critical"
    assert shrank["detail"].startswith("public.transactions holds 0 rows; the previous saved scan")


def test_doctor_fails_the_writer_without_its_update_policy_and_prints_the_sql(supabase, roles, capsys):
    supabase.run("drop policy billing_monitor_writer_update on public.subscriptions")
    code, out = doctor(capsys, roles, "store")
    assert code == 1
    [failed] = [line for line in out.splitlines() if line.startswith("✗ store: row level security")]
    assert "lets monitor_writer update no row" in failed
    supabase.run(failed.split(" run: ", 1)[1])
    code, out = doctor(capsys, roles, "store")
    assert code == 0, out


def test_through_views_the_tables_are_read_as_the_views_owner_or_with_security_invoker_as_the_reader(supabase, roles):
    """Views of a source schema (import-layouts.md): a view reads its tables with its owner's rights (here the tables'
    owner, whom row level security lets through), unless security_invoker is on (however it is spelled)."""
    from billing_monitor.row_security import blind_spots

    supabase.run("drop policy billing_monitor_reader_select on public.subscriptions")
    supabase.run("create schema source")
    supabase.run("create view source.subscriptions as select * from public.subscriptions")
    supabase.run("create view source.invoker_subscriptions with (security_invoker = t) as"
                 " select * from public.subscriptions")
    supabase.run("create view source.invoker_over_owner with (security_invoker = t) as"    # the inner view: its owner
                 " select * from source.subscriptions")
    supabase.run("grant usage on schema source to monitor_reader")
    supabase.run("grant select on all tables in schema source to monitor_reader")
    with psycopg.connect(roles["reader"]) as conn:
        assert conn.execute("select count(*) from source.subscriptions").fetchone()[0] == 410
        assert blind_spots(conn, "source", ("subscriptions", "invoker_over_owner")) == []
        assert conn.execute("select count(*) from source.invoker_over_owner").fetchone()[0] == 410
        [spot] = blind_spots(conn, "source", ("invoker_subscriptions",))
        assert conn.execute("select count(*) from source.invoker_subscriptions").fetchone()[0] == 0
    assert spot.problem() == ("row level security on public.subscriptions (read through source.invoker_subscriptions)"
                              " lets monitor_reader read no row (no policy for select applies to it)")
