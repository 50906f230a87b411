"""A test per clause of detection-rules.md, against a real PostgreSQL."""

from __future__ import annotations

import pytest

from billing_monitor.rules.finding import finding_id_for
from tests.support.production import findings_of, only

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- terms


@pytest.mark.parametrize("status", ["canceled", "Cancelled", " EXPIRED ", "canceled\n", "\tcancelled"])
def test_ended_statuses_are_compared_trimmed_and_case_insensitively(prod, status):
    c = prod.contact()
    prod.kajabi(c, status=status, canceled_at="2024-01-01")
    prod.paypal(c)
    assert only(prod.scan(), "billing_disconnect")["severity"] == "warning"


@pytest.mark.parametrize("status", ["active", "paused", "past_due", "trialing", "on_hold_unknown", "cancel"])
def test_every_other_status_is_live(prod, status):
    c = prod.contact()
    prod.kajabi(c, status=status)
    prod.paypal(c)
    assert only(prod.scan(), "duplicate_subscription")


def test_live_unknown_status_on_the_paypal_side_is_still_checked(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-01-01")
    prod.paypal(c, status="Suspended-ish")
    assert only(prod.scan(), "billing_disconnect")


@pytest.mark.parametrize("kajabi_id", ["I-BW452GLLEP1G", "  I-BW452GLLEP1G  ", "I-BW452GLLEP1G\t"])
def test_paypal_id_in_kajabi_column_makes_a_paypal_subscription(prod, kajabi_id):
    c = prod.contact()
    prod.subscription(c, kajabi=kajabi_id)
    report = prod.scan()
    assert only(report, "paypal_only")["paypal_subscription_id"] == "I-BW452GLLEP1G"
    assert only(report, "misfiled_paypal_id")["paypal_subscription_id"] == "I-BW452GLLEP1G"


@pytest.mark.parametrize("kajabi_id", ["i-bw452gllep1g", "I-bw452", "I-", "XI-ABC", "I-ABC-1", "123456"])
def test_paypal_ids_are_matched_case_sensitively_and_exactly(prod, kajabi_id):
    c = prod.contact()
    prod.subscription(c, kajabi=kajabi_id)
    report = prod.scan()
    assert report["summary"]["by_check"]["paypal_only"] == 0
    assert report["summary"]["by_check"]["misfiled_paypal_id"] == 0


@pytest.mark.parametrize("paypal", ["", "   ", None])
def test_blank_paypal_column_is_not_set(prod, paypal):
    c = prod.contact()
    prod.subscription(c, kajabi="555", paypal=paypal)
    prod.charge(c, source="kajabi")   # the imports are running: no stale_import
    assert prod.scan()["findings"] == []


def test_paypal_column_set_wins_over_a_kajabi_numeric_id_beside_it(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-01-01")
    both = prod.subscription(c, kajabi="987654", paypal="I-BOTH0001")
    finding = only(prod.scan(), "billing_disconnect")
    assert finding["subscription_id"] == str(both)
    assert finding["paypal_subscription_id"] == "I-BOTH0001"


def test_end_time_is_the_first_non_null_of_canceled_ended_updated(prod):
    c1, c2, c3 = prod.contact(), prod.contact(), prod.contact()
    prod.kajabi(c1, status="canceled", canceled_at="2024-01-10", ended_at="2024-02-10", updated_at="2024-03-10")
    prod.kajabi(c2, status="canceled", ended_at="2024-02-10", updated_at="2024-03-10")
    prod.kajabi(c3, status="canceled", updated_at="2024-03-10")
    for c in (c1, c2, c3):
        prod.paypal(c)
    got = {f["contact"]["id"]: f["kajabi_canceled_at"] for f in findings_of(prod.scan(), "billing_disconnect")}
    assert got == {str(c1): "2024-01-10T00:00:00+00:00", str(c2): "2024-02-10T00:00:00+00:00",
                   str(c3): "2024-03-10T00:00:00+00:00"}


@pytest.mark.parametrize(("kajabi_amount", "tolerance", "matches"), [
    ("23.00", "1.00", True),   # inclusive
    ("23.01", "1.00", False),
    ("21.00", "1.00", True),
    ("22.50", "0.50", True),
    ("22.51", "0.50", False),
    ("22.00", "0", True),
])
def test_tolerance_is_inclusive_and_configurable(prod, kajabi_amount, tolerance, matches):
    c = prod.contact()
    prod.kajabi(c, amount=kajabi_amount)
    prod.paypal(c, amount="22.00")
    by_check = prod.scan(tolerance)["summary"]["by_check"]
    assert (by_check["duplicate_subscription"], by_check["paypal_only"]) == ((1, 0) if matches else (0, 1))


@pytest.mark.parametrize(("field", "kajabi_value", "paypal_value", "matches"), [
    ("cycle", "Month", " month ", True),
    ("cycle", "year", "month", False),
    ("currency", "usd", "USD ", True),
    ("currency", "EUR", "USD", False),
])
def test_cycle_and_currency_compared_case_insensitively(prod, field, kajabi_value, paypal_value, matches):
    c = prod.contact()
    prod.kajabi(c, **{field: kajabi_value})
    prod.paypal(c, **{field: paypal_value})
    assert prod.scan()["summary"]["by_check"]["duplicate_subscription"] == (1 if matches else 0)


def test_different_contacts_or_null_contacts_never_match(prod):
    a, b = prod.contact(), prod.contact()
    prod.kajabi(a)
    prod.paypal(b)
    prod.kajabi(None)
    prod.paypal(None)
    by_check = prod.scan()["summary"]["by_check"]
    assert by_check["duplicate_subscription"] == 0
    assert by_check["paypal_only"] == 2


def test_a_dangling_contact_id_still_matches_and_is_orphaned(prod):
    ghost = prod.contact()
    prod.execute("delete from public.contacts where id = %s", (ghost,))
    prod.kajabi(ghost, status="canceled", canceled_at="2024-01-01")
    p = prod.paypal(ghost)
    prod.charge(ghost, date="2024-02-16")
    report = prod.scan()
    disconnect = only(report, "billing_disconnect")
    assert disconnect["subscription_id"] == str(p)
    assert disconnect["contact"] is None
    assert disconnect["charges"]["count"] == 1
    assert report["summary"]["by_check"]["orphaned_subscription"] == 2
    assert report["summary"]["by_check"]["orphaned_transaction"] == 1


# ---------------------------------------------------------------- check 1: billing_disconnect


def test_disconnect_counts_only_completed_paypal_charges_strictly_after_cancellation(prod):
    c = prod.contact(email="ada@example.com", first="Ada", last="Lovelace")
    k = prod.kajabi(c, kajabi="7001", status="canceled", canceled_at="2024-03-16")
    p = prod.paypal(c, paypal="I-DISC0001")
    prod.monthly_charges(c, "22.00", "2024-01-16", 2)                       # before: not counted
    prod.charge(c, date="2024-03-16")                                         # at the instant: not after
    after = prod.monthly_charges(c, "22.00", "2024-04-16", 3)                 # counted
    prod.charge(c, date="2024-07-16", status="refunded")
    prod.charge(c, date="2024-07-17", status=" PENDING")
    prod.charge(c, date="2024-07-18", status="failed")
    prod.charge(c, date="2024-07-19", status="reversed")
    prod.charge(c, date="2024-07-20", source="kajabi")                      # not a PayPal charge
    prod.charge(c, date="2024-07-21", currency="EUR")                       # another currency
    prod.charge(c, "30.00", date="2024-07-22")                               # outside tolerance
    trimmed = prod.charge(c, date="2024-07-23", status=" Completed ", source=" PayPal ")  # trimmed: counted
    report = prod.scan()
    f = only(report, "billing_disconnect")
    assert f["severity"] == "critical"
    assert f["finding_id"] == finding_id_for("billing_disconnect", str(p))
    assert f["kajabi_subscription_id"] == "7001"
    assert f["subscription_id"] == str(p)
    assert f["contact"] == {"id": str(c), "email": "ada@example.com", "name": "Ada Lovelace"}
    assert f["kajabi_canceled_at"] == "2024-03-16T00:00:00+00:00"
    assert f["charges"]["count"] == 4
    assert f["charges"]["total"] == "88.00"
    assert f["charges"]["first"] == "2024-04-16T00:00:00+00:00"
    assert f["charges"]["last"] == "2024-07-23T00:00:00+00:00"
    assert f["charges"]["transactions"] == [str(t) for t in [*after, trimmed]]
    assert f["action"] == {"type": "cancel_paypal_subscription", "paypal_subscription_id": "I-DISC0001"}
    assert report["summary"]["charged_after_cancellation"] == {"USD": {"count": 4, "total": "88.00"}}
    assert report["summary"]["by_check"]["post_cancellation_charge"] == 0  # P is live: no double count
    # the Kajabi row itself is not a finding: the disconnect is the report's only finding
    assert [(f["check"], f["subscription_id"]) for f in report["findings"]] == [("billing_disconnect", str(p))]
    assert str(k) not in {f["subscription_id"] for f in report["findings"]}


def test_disconnect_not_charged_yet_is_a_warning_with_zero_charges(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2025-05-20")
    prod.paypal(c)
    prod.charge(c, date="2025-05-16")
    f = only(prod.scan(), "billing_disconnect")
    assert f["severity"] == "warning"
    assert f["charges"] == {"count": 0, "total": "0.00", "totals": {}, "first": None, "last": None, "transactions": [],
                            "external_ids": []}
    assert f["action"]["type"] == "cancel_paypal_subscription"


def test_disconnect_uses_latest_end_time_among_ended_matches(prod):
    c = prod.contact()
    prod.kajabi(c, kajabi="1", status="canceled", canceled_at="2024-01-16")
    prod.kajabi(c, kajabi="2", status="expired", ended_at="2024-05-16")
    prod.paypal(c)
    prod.monthly_charges(c, "22.00", "2024-02-16", 6)  # Feb..Jul: only Jun and Jul are after May 16
    f = only(prod.scan(), "billing_disconnect")
    assert f["kajabi_subscription_id"] == "2"
    assert f["kajabi_canceled_at"].startswith("2024-05-16")
    assert f["charges"]["count"] == 2


def test_a_live_kajabi_match_makes_a_duplicate_not_a_disconnect(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-01-16")
    prod.kajabi(c, kajabi="live-1", status="active")
    prod.paypal(c)
    report = prod.scan()
    assert report["summary"]["by_check"]["billing_disconnect"] == 0
    assert only(report, "duplicate_subscription")["kajabi_subscription_id"] == "live-1"


def test_ended_paypal_subscription_is_never_a_disconnect(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-01-16")
    prod.paypal(c, status="cancelled", canceled_at="2024-01-20")
    assert prod.scan()["summary"]["by_check"]["billing_disconnect"] == 0


def test_linked_charge_belongs_to_its_own_subscription_only(prod):
    c = prod.contact()
    k = prod.kajabi(c, status="canceled", canceled_at="2024-01-16")
    p = prod.paypal(c)
    for_p = prod.charge(c, "99.00", date="2024-03-16", subscription=p)   # for P: counted, amount aside
    for_k = prod.charge(c, date="2024-04-16", subscription=k)             # for K: not P's
    dangling = prod.charge(c, date="2024-05-16", subscription=c)          # names no row: a candidate
    report = prod.scan()
    f = only(report, "billing_disconnect")
    assert set(f["charges"]["transactions"]) == {str(for_p), str(dangling)}
    pcc = only(report, "post_cancellation_charge")       # K ended before the charge linked to it
    assert pcc["charges"]["transactions"] == [str(for_k)]


def test_a_charge_linked_to_another_contacts_subscription_follows_the_link(prod):
    # The scan's first pass finds most candidates through the charge's own contact; these two
    # charges are recorded under a contact with no subscription at all, so only their links count.
    owner, payer = prod.contact(), prod.contact()
    k = prod.kajabi(owner, status="canceled", canceled_at="2024-01-16")
    p = prod.paypal(owner)
    after_k = prod.charge(payer, date="2024-02-16", source="kajabi", subscription=k)
    prod.charge(payer, date="2024-01-10", source="kajabi", subscription=k)   # before K ended
    for_p = prod.charge(payer, date="2024-03-16", subscription=p)
    report = prod.scan()
    assert only(report, "billing_disconnect")["charges"]["transactions"] == [str(for_p)]
    pcc = only(report, "post_cancellation_charge")
    assert pcc["charges"]["transactions"] == [str(after_k)]
    assert pcc["contact"]["id"] == str(payer)
    assert pcc["subscription_id"] == str(k)


def test_times_are_read_and_compared_alike_whatever_the_servers_date_style(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-01-02T10:00")   # 2 January, not 1 February
    prod.paypal(c)
    in_january = prod.charge(c, date="2024-01-20")
    prod.charge(c, date="2024-01-02T09:00")                               # an hour before it ended
    prod.execute(f"alter database {prod.execute('select current_database()')[0][0]} set datestyle = 'SQL, DMY'")
    f = only(prod.scan(), "billing_disconnect")
    assert f["charges"]["transactions"] == [str(in_january)]
    assert f["kajabi_canceled_at"] == "2024-01-02T10:00:00+00:00"


# ---------------------------------------------------------------- checks 2 and 3


def test_duplicate_reports_closest_live_match_then_lowest_id(prod):
    c = prod.contact()
    prod.kajabi(c, kajabi="far", amount="22.90")
    prod.kajabi(c, kajabi="near", amount="22.10")
    p = prod.paypal(c, amount="22.00")
    f = only(prod.scan(), "duplicate_subscription")
    assert (f["kajabi_subscription_id"], f["subscription_id"], f["severity"]) == ("near", str(p), "warning")
    assert f["action"] is None
    assert f["charges"] is None


def test_one_duplicate_finding_per_paypal_subscription(prod):
    c = prod.contact()
    prod.kajabi(c)
    prod.kajabi(c)
    prod.paypal(c)
    assert prod.scan()["summary"]["by_check"]["duplicate_subscription"] == 1


def test_paypal_only_when_no_kajabi_match_in_any_status(prod):
    c = prod.contact()
    prod.kajabi(c, amount="50.00", status="canceled")  # not a match (amount)
    p = prod.paypal(c)
    f = only(prod.scan(), "paypal_only")
    assert (f["severity"], f["subscription_id"], f["kajabi_subscription_id"], f["action"]) == (
        "info", str(p), None, None)


def test_paypal_rows_never_match_each_other(prod):
    c = prod.contact()
    prod.paypal(c, status="canceled", canceled_at="2024-01-01")
    live = prod.subscription(c, kajabi="I-OLDIMPORT1")
    report = prod.scan()
    # had the ended PayPal row counted as its Kajabi match, the live one would be a billing_disconnect
    f = only(report, "paypal_only")
    assert (f["subscription_id"], f["paypal_subscription_id"], f["kajabi_subscription_id"]) == (
        str(live), "I-OLDIMPORT1", None)
    assert report["summary"]["by_check"]["billing_disconnect"] == 0
    assert report["summary"]["by_check"]["duplicate_subscription"] == 0


# ---------------------------------------------------------------- check 4: post_cancellation_charge


def test_unlinked_charge_after_all_candidates_ended_is_reported_once_per_latest_subscription(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-01-16", amount="22.00")
    latest = prod.kajabi(c, kajabi="K-LATEST", status="expired", canceled_at="2024-02-16", amount="22.50")
    prod.charge(c, "22.00", date="2024-02-10", source="kajabi")              # before the latest end
    late = [prod.charge(c, "22.40", date="2024-03-16", source="kajabi"),
            prod.charge(c, "22.00", date="2024-04-16")]
    prod.charge(c, "22.00", date="2024-04-17", status="refunded")
    report = prod.scan()
    f = only(report, "post_cancellation_charge")
    assert f["severity"] == "critical"
    assert f["subscription_id"] == str(latest)
    assert f["kajabi_subscription_id"] == "K-LATEST"
    assert f["action"] is None
    assert f["finding_id"] == finding_id_for("post_cancellation_charge", f"{c}:{latest}")
    assert f["charges"]["transactions"] == [str(t) for t in late]
    assert f["charges"]["total"] == "44.40"


def test_charge_explained_by_a_live_subscription_is_not_reported(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-01-16")
    prod.kajabi(c, status="active", amount="22.80")
    prod.charge(c, "22.00", date="2024-03-16", source="kajabi")
    assert prod.scan()["summary"]["by_check"]["post_cancellation_charge"] == 0


def test_charge_with_no_candidate_is_not_reported(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-01-16", amount="22.00")
    prod.charge(c, "97.00", date="2024-03-16", source="kajabi")   # a one-off purchase
    prod.charge(prod.contact(), "22.00", date="2024-03-16")       # another contact
    assert prod.scan()["summary"]["by_check"]["post_cancellation_charge"] == 0


def test_ended_paypal_subscription_still_charging_suggests_canceling_it(prod):
    c = prod.contact()
    p = prod.paypal(c, paypal="I-ENDEDBUTBILLING", status="canceled", canceled_at="2024-01-16")
    prod.charge(c, date="2024-02-16")
    f = only(prod.scan(), "post_cancellation_charge")
    assert f["subscription_id"] == str(p)
    assert f["action"] == {"type": "cancel_paypal_subscription", "paypal_subscription_id": "I-ENDEDBUTBILLING"}


def test_charge_candidate_for_two_disconnects_is_counted_once_in_the_summary(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-01-16")
    prod.paypal(c)
    prod.paypal(c)
    t = prod.charge(c, date="2024-02-16")
    report = prod.scan()
    assert [f["charges"]["transactions"] for f in findings_of(report, "billing_disconnect")] == [[str(t)]] * 2
    assert report["summary"]["charged_after_cancellation"] == {"USD": {"count": 1, "total": "22.00"}}


def test_money_totals_are_per_currency_upper_cased(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-01-16", currency="eur")
    prod.paypal(c, currency="EUR")
    prod.charge(c, "22.00", date="2024-02-16", currency=" eur")
    d = prod.contact()
    prod.kajabi(d, status="canceled", canceled_at="2024-01-16")
    prod.paypal(d)
    prod.charge(d, "22.00", date="2024-02-16")
    prod.charge(d, "22.00", date="2024-03-16")
    assert prod.scan()["summary"]["charged_after_cancellation"] == {
        "EUR": {"count": 1, "total": "22.00"}, "USD": {"count": 2, "total": "44.00"}}


# ---------------------------------------------------------------- checks 5 and 6


def test_orphans_one_finding_per_row_in_any_status(prod):
    ghost = prod.contact()
    prod.execute("delete from public.contacts where id = %s", (ghost,))
    s1 = prod.kajabi(None, status="canceled")
    s2 = prod.kajabi(ghost)
    t1 = prod.charge(None, status="refunded")
    t2 = prod.charge(ghost, source="kajabi")
    report = prod.scan()
    subs = findings_of(report, "orphaned_subscription")
    txs = findings_of(report, "orphaned_transaction")
    assert {f["subscription_id"] for f in subs} == {str(s1), str(s2)}
    assert {f["transaction_id"] for f in txs} == {str(t1), str(t2)}
    assert all(f["severity"] == "warning" and f["contact"] is None for f in subs + txs)
    assert {f["finding_id"] for f in txs} == {finding_id_for("orphaned_transaction", str(t)) for t in (t1, t2)}


def test_misfiled_paypal_id_is_info_per_row(prod):
    c = prod.contact()
    s = prod.subscription(c, kajabi="I-MISFILED1", status="canceled")
    f = only(prod.scan(), "misfiled_paypal_id")
    assert (f["severity"], f["subscription_id"], f["paypal_subscription_id"]) == ("info", str(s), "I-MISFILED1")


# ---------------------------------------------------------------- report shape


def test_finding_ids_are_stable_and_scan_ids_are_new(prod):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-01-16")
    p = prod.paypal(c)
    prod.charge(c, source="kajabi")                     # the imports run: no stale_import
    first, second = prod.scan(), prod.scan()
    expected = [finding_id_for("billing_disconnect", str(p))]
    assert [f["finding_id"] for f in first["findings"]] == expected
    assert [f["finding_id"] for f in second["findings"]] == expected
    assert first["scan_id"] != second["scan_id"]


def test_empty_database_gives_an_empty_report(prod):
    report = prod.scan()
    assert report["findings"] == []
    assert report["summary"]["by_check"] == {
        "billing_disconnect": 0, "duplicate_subscription": 0, "paypal_only": 0, "post_cancellation_charge": 0,
        "orphaned_subscription": 0, "orphaned_transaction": 0, "misfiled_paypal_id": 0, "stale_import": 0,
        "source_shrank": 0}
    assert report["summary"]["by_severity"] == {"critical": 0, "warning": 0, "info": 0}
    assert report["summary"]["charged_after_cancellation"] == {}
    assert report["tolerance"] == "1.00"


def test_duplicate_tie_on_amount_goes_to_the_lowest_row_id(prod):
    c = prod.contact()
    a = prod.kajabi(c, kajabi="first")
    b = prod.kajabi(c, kajabi="second")
    prod.paypal(c)
    lowest = "first" if str(a) < str(b) else "second"
    assert only(prod.scan(), "duplicate_subscription")["kajabi_subscription_id"] == lowest
