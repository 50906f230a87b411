"""The registry is the one home of the checks and the rules' terms; the SQL's own copies agree with it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources

import pytest

from billing_monitor.rules import checks as checks_module
from billing_monitor.rules.finding import Charge, Finding
from billing_monitor.rules.registry import (
    BILLING_CYCLE_FOLDS,
    BLANKS,
    CHARGE_STATUSES,
    CHECK_NAMES,
    CHECKS,
    ENDED_STATUSES,
    NOT_CHARGE_TYPES,
    PAYPAL_CHECKS,
    PAYPAL_ID_PATTERN,
    PAYPAL_PASS,
    SEVERITIES,
    at_least,
    fold_billing_cycle,
    is_charge,
    is_ended_status,
    is_paypal_id,
)

SQL = {p.name: p.read_text() for p in (resources.files("billing_monitor.rules") / "sql").iterdir()
       if p.name.endswith(".sql")}
ALL_SQL = "\n".join(SQL.values())


def test_the_sql_spells_the_ended_statuses_as_the_registry_does():
    lists = re.findall(r"\) in \(([^)]*)\) as ended", SQL["subs.sql"])
    assert len(lists) == 1
    assert tuple(re.findall(r"'([^']*)'", lists[0])) == ENDED_STATUSES


def test_the_sql_folds_the_billing_cycles_as_the_registry_does():
    folds = re.findall(r"when '([^']*)' then '([^']*)'", SQL["subs.sql"])
    assert dict(folds) == BILLING_CYCLE_FOLDS
    assert len(folds) == len(BILLING_CYCLE_FOLDS)


def test_the_sql_spells_the_charge_statuses_and_the_refund_types_as_the_registry_does():
    charges = re.search(r"charges as \((.*?)\n\),", SQL["transaction_findings.sql"], re.DOTALL).group(1)
    [statuses] = re.findall(r"collate \"C\"\) in \(([^)]*)\)", charges)
    assert tuple(re.findall(r"'([^']*)'", statuses)) == CHARGE_STATUSES
    [types] = re.findall(r"collate \"C\"\) not in \(([^)]*)\)", charges)
    assert tuple(re.findall(r"'([^']*)'", types)) == NOT_CHARGE_TYPES
    assert "= 'completed'" not in ALL_SQL          # no second copy of the charge status


def test_every_source_relation_is_read_from_the_source_schema():
    assert "public." not in ALL_SQL
    assert re.findall(r"from \{source\}\.(\w+)", ALL_SQL)


@pytest.mark.parametrize(("schema", "quoted"), [
    ("public", '"public"'), ("billing_source", '"billing_source"'), ('My "Views"', '"My ""Views"""'),
])
def test_load_query_quotes_the_source_schema_once_per_schema(schema, quoted):
    query = checks_module.load_query("subscription_findings", schema)
    assert f"from {quoted}.subscriptions s" in query
    assert "{source" not in query
    assert checks_module.load_query("subscription_findings", schema) is query        # cached


def test_the_transaction_type_is_read_only_where_the_relation_has_it():
    assert "t.transaction_type::text as transaction_type" in checks_module.load_query(
        "transaction_findings", "public", True)
    assert "null::text as transaction_type" in checks_module.load_query("transaction_findings", "public", False)


def test_a_schema_name_the_queries_cannot_carry_is_refused():
    from billing_monitor.errors import MonitorError

    for bad in ("", "a%b", "a\x00b"):
        with pytest.raises(MonitorError, match="source schema"):
            checks_module.load_query("contacts", bad)


@pytest.mark.parametrize(("cycle", "folded"), [
    ("month", "month"), (" Monthly\n", "month"), ("year", "year"), ("YEARLY", "year"), ("annual", "year"),
    ("Annually", "year"), ("weekly", "weekly"), ("week", "week"), (None, None),
])
def test_fold_billing_cycle(cycle, folded):
    assert fold_billing_cycle(cycle) == folded


@pytest.mark.parametrize(("status", "kind", "expected"), [
    ("completed", None, True), (" Completed ", "subscription", True), ("disputed", None, False),
    ("refunded", None, False), ("completed", "refund", False), ("completed", " REFUND ", False),
    ("pending", "purchase", False), (None, None, False),
])
def test_is_charge(status, kind, expected):
    assert is_charge(status, kind) is expected


@pytest.mark.parametrize("status", ["trial", "trialing", "active", "paused", "past_due", "anything"])
def test_trial_and_every_other_status_is_live(status):
    assert not is_ended_status(status)


def test_the_sql_uses_the_registrys_paypal_id_pattern_and_nothing_else():
    patterns = set(re.findall(r"~ '([^']*)'", ALL_SQL))
    assert patterns == {PAYPAL_ID_PATTERN}


def test_the_sql_trims_the_registrys_blanks():
    trimmed = set(re.findall(r"btrim\([^,]+, E'([^']*)'\)", ALL_SQL))
    assert trimmed == {BLANKS.replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")}


def test_every_check_label_in_the_sql_is_a_registered_check():
    labels = set(re.findall(r"(?:then|select) '([a-z]+(?:_[a-z]+)+)'", ALL_SQL))     # check_name and kind values
    row_kinds = {"disconnect_charge", "unexplained_charge", checks_module.NEWEST_IMPORT}  # rows, not checks
    assert labels - row_kinds <= set(CHECK_NAMES)
    assert labels & set(CHECK_NAMES), "no check label found: the pattern above is wrong"


def test_each_check_is_found_by_an_existing_pass():
    from billing_monitor import reconcile

    for entry in CHECKS.values():
        if entry.found_by == PAYPAL_PASS:         # PayPal's API, after the database passes (reconcile.py)
            assert hasattr(reconcile, "reconcile")
            assert "paypal_watched.sql" in SQL
            continue
        assert f"{entry.found_by}.sql" in SQL
        assert hasattr(checks_module, f"find_{entry.found_by}")


def test_the_paypal_checks_are_the_spec_s_three_with_their_severity_and_action():
    assert PAYPAL_CHECKS == ("paypal_still_active", "refund_owed", "paypal_subscription_not_imported")
    assert (CHECKS["paypal_still_active"].severity, CHECKS["paypal_still_active"].action) == (
        "critical", "cancel_paypal_subscription")
    assert CHECKS["paypal_still_active"].at_risk                       # alerts.md: named in every monthly message
    assert (CHECKS["refund_owed"].severity, CHECKS["refund_owed"].action) == ("warning", None)
    assert CHECKS["refund_owed"].named_as_owed
    assert not CHECKS["refund_owed"].at_risk
    assert (CHECKS["paypal_subscription_not_imported"].severity, CHECKS["paypal_subscription_not_imported"].action) == (
        "warning", None)


CHARGE = Charge("t1", datetime(2024, 1, 1, tzinfo=UTC), Decimal("22.00"), "USD")


@pytest.mark.parametrize(("check", "charges", "severity"), [
    ("billing_disconnect", [CHARGE], "critical"),
    ("billing_disconnect", [], "warning"),
    ("duplicate_subscription", None, "warning"),
    ("paypal_only", None, "info"),
    ("post_cancellation_charge", [CHARGE], "critical"),
    ("orphaned_subscription", None, "warning"),
    ("orphaned_transaction", None, "warning"),
    ("misfiled_paypal_id", None, "info"),
])
def test_severity_is_the_one_detection_rules_md_gives(check, charges, severity):
    assert Finding(check=check, key="k", charges=charges).severity == severity


def test_an_unknown_check_has_no_severity():
    with pytest.raises(KeyError):
        _ = Finding(check="made_up", key="k").severity


def test_severity_order_and_at_least():
    assert SEVERITIES == ("critical", "warning", "info")
    assert at_least("critical") == ("critical",)
    assert at_least("warning") == ("critical", "warning")
    assert at_least("info") == SEVERITIES


@pytest.mark.parametrize(("text", "expected"), [
    ("I-BW452GLLEP1G", True), (" I-BW452GLLEP1G\t", True), ("i-bw452gllep1g", False), ("I-", False),
    ("I-AB_1", False), ("644797565", False), (None, False), ("", False),
])
def test_paypal_id(text, expected):
    assert is_paypal_id(text) is expected


@pytest.mark.parametrize(("status", "expected"), [
    ("canceled", True), (" Cancelled\n", True), ("EXPIRED", True), ("active", False), ("past_due", False),
    ("cancel", False), (None, False),
])
def test_ended_status(status, expected):
    assert is_ended_status(status) is expected
