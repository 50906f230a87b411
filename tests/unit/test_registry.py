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
    BLANKS,
    CHECK_NAMES,
    CHECKS,
    ENDED_STATUSES,
    PAYPAL_CHECKS,
    PAYPAL_ID_PATTERN,
    PAYPAL_PASS,
    SEVERITIES,
    at_least,
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
