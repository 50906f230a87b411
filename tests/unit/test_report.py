"""The report of docs/spec/report-format.md and its table, from hand-built findings (no database)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from billing_monitor.report import build_report, money_line, render_table
from billing_monitor.rules.finding import Charge, Contact, Finding
from billing_monitor.scan import ScanResult

PARIS_SUMMER = timezone(timedelta(hours=2))
ADA = Contact("c-ada", "ada@example.com", "Ada Lovelace")
BOB = Contact("c-bob", "bob@example.com", None)
CAROL = Contact("c-carol", "carol@example.com", "Carol Ng")


def charge(tid: str, date: str, amount: str = "22.00", currency: str = "USD") -> Charge:
    return Charge(tid, datetime.fromisoformat(date).replace(tzinfo=UTC), Decimal(amount), currency)


SHARED = charge("t2", "2023-10-16")       # listed by a disconnect and a post_cancellation_charge


def findings() -> dict[str, Finding]:
    """One of each kind a user meets, keyed by a name for the tests (given in no particular order)."""
    return {
        "info_paypal_only": Finding("paypal_only", "p-only", subscription_id="p-only",
                                    paypal_subscription_id="I-ONLY1", contact=CAROL, amount=Decimal("9.5"),
                                    currency="USD", billing_cycle="month"),
        "orphan_tx": Finding("orphaned_transaction", "t-orphan", transaction_id="t-orphan",
                             amount=Decimal("5"), currency="USD"),
        "small_disconnect": Finding(
            "billing_disconnect", "p-small", subscription_id="p-small",
            paypal_subscription_id="I-SMALL1", kajabi_subscription_id="7001", contact=ADA, amount=Decimal("22"),
            currency="USD", billing_cycle="month",
            kajabi_canceled_at=datetime(2023, 8, 16, 2, 0, tzinfo=PARIS_SUMMER),   # 00:00 UTC
            charges=[charge("t1", "2023-09-16"), SHARED], action_paypal_id="I-SMALL1"),
        "duplicate": Finding("duplicate_subscription", "p-dup", subscription_id="p-dup",
                             paypal_subscription_id="I-DUP1", kajabi_subscription_id="8001", contact=ADA,
                             amount=Decimal("22.00"), currency="USD", billing_cycle="month"),
        "pcc_usd": Finding("post_cancellation_charge", "c-ada:k-1", subscription_id="k-1",
                           kajabi_subscription_id="7002", contact=ADA, amount=Decimal("22"), currency="USD",
                           billing_cycle="month", charges=[SHARED]),
        "big_disconnect": Finding(
            "billing_disconnect", "p-big", subscription_id="p-big", paypal_subscription_id="I-BIG1",
            kajabi_subscription_id="7003", contact=BOB, amount=Decimal("33"), currency="USD", billing_cycle="month",
            kajabi_canceled_at=datetime(2024, 1, 16, tzinfo=UTC),
            charges=[charge(f"t{i}", f"2024-0{i - 1}-16", "33.00") for i in (3, 4, 5)], action_paypal_id="I-BIG1"),
        "not_charged_yet": Finding(
            "billing_disconnect", "p-new", subscription_id="p-new", paypal_subscription_id="I-NEW1",
            kajabi_subscription_id="7004", contact=CAROL, amount=Decimal("22"), currency="USD",
            billing_cycle="month", kajabi_canceled_at=datetime(2025, 5, 20, tzinfo=UTC), charges=[],
            action_paypal_id="I-NEW1"),
        "pcc_eur": Finding("post_cancellation_charge", "c-carol:k-2", subscription_id="k-2",
                           kajabi_subscription_id="7005", contact=CAROL, amount=Decimal("30"), currency="EUR",
                           billing_cycle="month", charges=[charge("t6", "2024-03-01", "30.00", "eur")]),
        "misfiled": Finding("misfiled_paypal_id", "k-misfiled", subscription_id="k-misfiled",
                            paypal_subscription_id="I-MISFILED1", contact=CAROL, amount=Decimal("22"),
                            currency="USD", billing_cycle="year"),
    }


def scan_of(items, tolerance=Decimal("1.00"), started=datetime(2026, 12, 1, 9, 0, tzinfo=UTC)) -> ScanResult:
    return ScanResult(scan_id="scan-1", started_at=started, finished_at=started + timedelta(seconds=1),
                      tolerance=tolerance, findings=list(items))


@pytest.fixture
def named():
    return findings()


@pytest.fixture
def report(named):
    return build_report(scan_of(named.values()))


def by_id(report: dict, finding: Finding) -> dict:
    [found] = [f for f in report["findings"] if f["finding_id"] == finding.finding_id]
    return found


# ---------------------------------------------------------------- the JSON contract


def test_top_level_and_summary_keys_are_the_specs(report):
    assert set(report) >= {"scan_id", "started_at", "finished_at", "tolerance", "summary", "findings"}
    assert set(report["summary"]) >= {"by_check", "by_severity", "charged_after_cancellation"}
    spec_keys = {"finding_id", "check", "severity", "subscription_id", "paypal_subscription_id",
                 "kajabi_subscription_id", "transaction_id", "contact", "amount", "currency", "billing_cycle",
                 "kajabi_canceled_at", "charges", "action"}
    assert all(set(f) >= spec_keys for f in report["findings"])
    assert len(report["findings"]) == 9


def test_report_is_plain_json_with_money_as_strings_never_floats(report):
    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from walk(v)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v)
        else:
            yield value

    assert json.loads(json.dumps(report)) == report                 # nothing but JSON types
    assert not [v for v in walk(report) if isinstance(v, float)]


def test_money_is_two_place_strings(report, named):
    small = by_id(report, named["small_disconnect"])
    assert small["amount"] == "22.00"
    assert small["charges"]["total"] == "44.00"
    assert by_id(report, named["info_paypal_only"])["amount"] == "9.50"
    assert by_id(report, named["orphan_tx"])["amount"] == "5.00"
    assert by_id(report, named["big_disconnect"])["charges"]["total"] == "99.00"


def test_times_are_iso_8601_utc_with_offset(named):
    # a naive start time is UTC; an aware one in another zone is converted
    report = build_report(scan_of(named.values(), started=datetime(2026, 12, 1, 9, 0)))
    assert report["started_at"] == "2026-12-01T09:00:00+00:00"
    assert report["finished_at"] == "2026-12-01T09:00:01+00:00"
    small = by_id(report, named["small_disconnect"])
    assert small["kajabi_canceled_at"] == "2023-08-16T00:00:00+00:00"
    assert (small["charges"]["first"], small["charges"]["last"]) == (
        "2023-09-16T00:00:00+00:00", "2023-10-16T00:00:00+00:00")
    stamps = [report["started_at"], report["finished_at"]] + [
        t for f in report["findings"] for t in (f["kajabi_canceled_at"],
                                                *((f["charges"] or {}).get(k) for k in ("first", "last"))) if t]
    assert len(stamps) == 13
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", t) for t in stamps), stamps


def test_a_disconnect_with_charges_lists_them(report, named):
    small = by_id(report, named["small_disconnect"])
    assert small == {
        "finding_id": named["small_disconnect"].finding_id, "check": "billing_disconnect", "severity": "critical",
        "subscription_id": "p-small", "paypal_subscription_id": "I-SMALL1", "kajabi_subscription_id": "7001",
        "transaction_id": None, "contact": {"id": "c-ada", "email": "ada@example.com", "name": "Ada Lovelace"},
        "amount": "22.00", "currency": "USD", "billing_cycle": "month",
        "kajabi_canceled_at": "2023-08-16T00:00:00+00:00",
        "charges": {"count": 2, "total": "44.00", "totals": {"USD": "44.00"}, "first": "2023-09-16T00:00:00+00:00",
                    "last": "2023-10-16T00:00:00+00:00", "transactions": ["t1", "t2"], "external_ids": [None, None]},
        "action": {"type": "cancel_paypal_subscription", "paypal_subscription_id": "I-SMALL1"},
        "detail": None, "paypal": None, "refund": None, "acknowledged": None,
    }


def test_a_disconnect_not_charged_yet_has_zero_charges_and_null_dates(report, named):
    f = by_id(report, named["not_charged_yet"])
    assert f["charges"] == {"count": 0, "total": "0.00", "totals": {}, "first": None, "last": None, "transactions": [],
                            "external_ids": []}
    assert f["action"] == {"type": "cancel_paypal_subscription", "paypal_subscription_id": "I-NEW1"}


def test_findings_without_charges_or_action_or_contact_say_null(report, named):
    duplicate = by_id(report, named["duplicate"])
    assert (duplicate["charges"], duplicate["action"], duplicate["kajabi_canceled_at"]) == (None, None, None)
    orphan = by_id(report, named["orphan_tx"])
    assert (orphan["contact"], orphan["transaction_id"], orphan["subscription_id"]) == (None, "t-orphan", None)
    pcc = by_id(report, named["pcc_usd"])
    assert pcc["action"] is None                       # its latest-ended subscription is a Kajabi one
    assert pcc["paypal_subscription_id"] is None
    assert by_id(report, named["big_disconnect"])["contact"] == {"id": "c-bob", "email": "bob@example.com",
                                                                 "name": None}


def test_tolerance_keeps_its_digits(named):
    assert build_report(scan_of([], Decimal("1")))["tolerance"] == "1.00"
    assert build_report(scan_of([], Decimal("0.5")))["tolerance"] == "0.50"
    assert build_report(scan_of([], Decimal("0.005")))["tolerance"] == "0.005"


# ---------------------------------------------------------------- order and summary


def test_findings_come_by_severity_then_check_then_largest_charged_total(report, named):
    order = {f.finding_id: name for name, f in named.items()}
    names = [order[f["finding_id"]] for f in report["findings"]]
    assert names == ["big_disconnect", "small_disconnect", "pcc_eur", "pcc_usd",      # 99 > 44; 30 > 22
                     "not_charged_yet", "duplicate", "orphan_tx",
                     "info_paypal_only", "misfiled"]
    assert [f["severity"] for f in report["findings"]] == ["critical"] * 4 + ["warning"] * 3 + ["info"] * 2


def test_equal_findings_are_ordered_by_finding_id_whatever_order_they_came_in():
    infos = [Finding("paypal_only", f"p-{i}", subscription_id=f"p-{i}") for i in range(6)]
    forward = [f["finding_id"] for f in build_report(scan_of(infos))["findings"]]
    backward = [f["finding_id"] for f in build_report(scan_of(reversed(infos)))["findings"]]
    assert forward == backward == sorted(forward)


def test_equal_charged_totals_in_one_check_are_ordered_by_finding_id():
    disconnects = [Finding("billing_disconnect", f"p-{i}", subscription_id=f"p-{i}",
                           charges=[charge(f"t-{i}", "2024-02-16")]) for i in range(6)]
    forward = [f["finding_id"] for f in build_report(scan_of(disconnects))["findings"]]
    backward = [f["finding_id"] for f in build_report(scan_of(reversed(disconnects)))["findings"]]
    assert forward == backward == sorted(forward)


def test_summary_counts_every_check_and_severity(report):
    assert report["summary"]["by_check"] == {
        "billing_disconnect": 3, "duplicate_subscription": 1, "paypal_only": 1, "post_cancellation_charge": 2,
        "orphaned_subscription": 0, "orphaned_transaction": 1, "misfiled_paypal_id": 1, "stale_import": 0,
        "source_shrank": 0}
    assert report["summary"]["by_severity"] == {"critical": 4, "warning": 3, "info": 2}


def test_charged_after_cancellation_counts_a_shared_charge_once_per_currency_upper_cased(report):
    # t2 is listed by small_disconnect and pcc_usd; t6 is in "eur"
    assert report["summary"]["charged_after_cancellation"] == {
        "EUR": {"count": 1, "total": "30.00"},
        "USD": {"count": 5, "total": "143.00"},             # t1 t2 22.00 each, t3 t4 t5 33.00 each
    }
    assert list(report["summary"]["charged_after_cancellation"]) == ["EUR", "USD"]


def test_empty_scan_is_an_empty_report():
    report = build_report(scan_of([]))
    assert report["findings"] == []
    assert report["summary"]["by_check"] == {
        "billing_disconnect": 0, "duplicate_subscription": 0, "paypal_only": 0, "post_cancellation_charge": 0,
        "orphaned_subscription": 0, "orphaned_transaction": 0, "misfiled_paypal_id": 0, "stale_import": 0,
        "source_shrank": 0}
    assert report["summary"]["by_severity"] == {"critical": 0, "warning": 0, "info": 0}
    assert report["summary"]["charged_after_cancellation"] == {}


# ---------------------------------------------------------------- the table a person reads


def test_money_line_counts_customers_charges_and_totals_per_currency(report):
    # Ada (two findings), Bob and Carol were charged; t2 is counted once
    assert money_line(report) == "3 customers charged after canceling: 6 charges, 30.00 EUR + 143.00 USD"


def test_money_line_singular_and_nobody(named):
    assert money_line(build_report(scan_of([named["small_disconnect"]]))) == (
        "1 customer charged after canceling: 2 charges, 44.00 USD")
    assert money_line(build_report(scan_of([named["not_charged_yet"], named["duplicate"]]))) == (
        "No customer charged after canceling.")


def test_table_lists_every_critical_finding_first_with_its_approve_command(report, named):
    lines = render_table(report, max_listed=1).splitlines()
    assert lines[0] == money_line(report)
    assert lines.pop(1) == "No transaction imported yet."     # the scan had no data_current_to
    assert lines[1] == ""
    assert lines[2] == "CRITICAL (4)"
    small, big = named["small_disconnect"].finding_id, named["big_disconnect"].finding_id
    assert lines[3] == f"  {big}  billing_disconnect       bob@example.com  PayPal I-BIG1 Kajabi 7003  33.00 USD/month"
    assert lines[4:7] == ["      canceled in Kajabi 2024-01-16",
                          "      charged 3x since, 99.00 USD (2024-02-16 to 2024-04-16)",
                          f"      approve: billing-monitor approve {big} --by YOU@EXAMPLE.COM"]
    assert lines[7] == (f"  {small}  billing_disconnect       Ada Lovelace <ada@example.com>  PayPal I-SMALL1"
                        " Kajabi 7001  22.00 USD/month")
    assert lines[8:11] == ["      canceled in Kajabi 2023-08-16",
                           "      charged 2x since, 44.00 USD (2023-09-16 to 2023-10-16)",
                           f"      approve: billing-monitor approve {small} --by YOU@EXAMPLE.COM"]
    text = "\n".join(lines)
    for name in ("pcc_usd", "pcc_eur"):          # every critical one, whatever max_listed says
        assert named[name].finding_id in text
    assert text.count("billing-monitor approve ") == 3   # the two critical disconnects and the warning one


def test_table_shows_the_first_of_the_rest_and_says_how_many_more(report, named):
    text = render_table(report, max_listed=1)
    assert "WARNING (3)" in text
    assert "INFO (2)" in text
    assert "  ... and 2 more (--format json lists all)" in text
    assert "  ... and 1 more (--format json lists all)" in text
    assert named["not_charged_yet"].finding_id in text
    assert "      not charged yet; PayPal bills at the next cycle" in text
    assert named["orphan_tx"].finding_id not in text            # third warning: left out
    assert named["misfiled"].finding_id not in text             # second info: left out
    everything = render_table(report)
    assert "(contact missing)  transaction t-orphan  5.00 USD" in everything
    assert "more (--format json lists all)" not in everything


def test_table_ends_with_counts_tolerance_and_scan_id(report):
    lines = render_table(report).splitlines()
    assert lines[-2] == ("Findings: 3 billing_disconnect, 1 duplicate_subscription, 1 paypal_only,"
                         " 2 post_cancellation_charge, 1 orphaned_transaction, 1 misfiled_paypal_id.")
    assert lines[-1] == "By severity: 4 critical, 3 warning, 2 info. Tolerance 1.00. Scan scan-1."


def test_table_of_an_empty_scan():
    assert render_table(build_report(scan_of([]))).splitlines() == [
        "No customer charged after canceling.", "No transaction imported yet.", "",
        "Findings: no findings.",
        "By severity: 0 critical, 0 warning, 0 info. Tolerance 1.00. Scan scan-1."]


def test_a_findings_money_is_never_two_currencies_added_into_one_figure():
    """A charge *for* P counts whatever its currency: the finding's total is in its own currency, and every
    currency has its own total (22.00 USD and 20.00 EUR are not 42.00 of anything)."""
    mixed = Finding("billing_disconnect", "p-mixed", subscription_id="p-mixed", paypal_subscription_id="I-MIX1",
                    contact=ADA, amount=Decimal("22"), currency="USD", billing_cycle="month",
                    kajabi_canceled_at=datetime(2024, 1, 1, tzinfo=UTC), action_paypal_id="I-MIX1",
                    charges=[charge("m1", "2024-02-01"), charge("m2", "2024-03-01", "20.00", " eur ")])
    report = build_report(scan_of([mixed]))
    [f] = report["findings"]
    assert (f["charges"]["count"], f["charges"]["total"]) == (2, "22.00")
    assert f["charges"]["totals"] == {"EUR": "20.00", "USD": "22.00"}
    assert report["summary"]["charged_after_cancellation"] == {"EUR": {"count": 1, "total": "20.00"},
                                                               "USD": {"count": 1, "total": "22.00"}}
    assert "charged 2x since, 20.00 EUR + 22.00 USD" in render_table(report)
