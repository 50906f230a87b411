"""A test per deciding sentence of docs/spec/paypal-reconciliation.md, against a real PostgreSQL and the fake PayPal
(every request and response checked against PayPal's OpenAPI files; no write call ever made)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from billing_monitor.reconcile import PayPalOptions
from billing_monitor.report import build_report
from billing_monitor.rules.finding import finding_id_for
from billing_monitor.scan import run_scan
from billing_monitor.store import open_store, save_scan
from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal, Payer
from tests.support.production import findings_of, only

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


@pytest.fixture
def paypal():
    with FakePayPal() as fake:
        yield fake
    assert fake.violations == []
    assert fake.writes() == [], "a scan made a write call to PayPal"


def options(fake, **kw) -> PayPalOptions:
    return PayPalOptions(fake.url, CLIENT_ID, CLIENT_SECRET, backoff_s=0.01, timeout=(1, 5), **kw)


def scan(prod, fake, *, save=False, **kw) -> dict:
    result = run_scan(prod.dsn, paypal=options(fake, **kw))
    report = build_report(result)
    if save:
        with open_store(prod.dsn) as conn:
            save_scan(conn, report, result.settled)
    return report


def hand_marked(prod, paypal_id="I-HANDMARKED1", *, kajabi_canceled="2025-01-16", marked="2025-06-01", amount="22.00"):
    """The first clean-up's trap: canceled in Kajabi, the PayPal row marked canceled by hand later."""
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at=kajabi_canceled, amount=amount)
    prod.paypal(c, paypal=paypal_id, status="canceled", updated_at=marked, amount=amount)
    return c


def database_part(report) -> dict:
    return {k: v for k, v in report["summary"]["by_check"].items()
            if k not in ("paypal_still_active", "refund_owed", "paypal_subscription_not_imported")}


# ---------------------------------------------------------------- what is watched


def test_without_credentials_the_report_has_paypal_null_and_no_paypal_checks(prod):
    hand_marked(prod)
    report = prod.scan()
    assert report["paypal"] is None
    assert "paypal_still_active" not in report["summary"]["by_check"]
    assert report["summary"]["owed"] == {}


def test_each_kind_of_watched_id(prod, paypal):
    a = prod.contact()                                   # kind 1: a billing_disconnect
    prod.kajabi(a, status="canceled", canceled_at="2025-03-16")
    prod.paypal(a, paypal="I-DISCONNECT1")
    b = prod.contact()                                   # kind 1: a post_cancellation_charge cancelling a PayPal id
    prod.paypal(b, paypal="I-POSTCANCEL1", status="canceled", canceled_at="2025-02-01")
    prod.charge(b, date="2025-03-01")
    hand_marked(prod, "I-ENDEDONLY01")                   # kind 2: ended rows only
    c = prod.contact()                                   # a live row holds it too: not watched
    prod.paypal(c, paypal="I-LIVEANDEND1", status="canceled")
    prod.paypal(c, paypal="I-LIVEANDEND1", amount="50.00")
    d = prod.contact()                                   # paypal_only: not watched
    prod.paypal(d, paypal="I-PAYPALONLY1")
    for pid in ("I-DISCONNECT1", "I-POSTCANCEL1", "I-ENDEDONLY01", "I-LIVEANDEND1", "I-PAYPALONLY1"):
        paypal.add(pid)
    report = scan(prod, paypal)
    asked = {c[1] for c in paypal.calls if c[0] == "get"}
    assert asked == {"I-DISCONNECT1", "I-POSTCANCEL1", "I-ENDEDONLY01"}
    assert report["paypal"]["watched"] == 3
    assert only(report, "billing_disconnect")["paypal"]["status"] == "ACTIVE"
    assert only(report, "post_cancellation_charge")["paypal"]["status"] == "ACTIVE"
    still = only(report, "paypal_still_active")
    assert still["paypal_subscription_id"] == "I-ENDEDONLY01"
    assert still["finding_id"] == finding_id_for("paypal_still_active", "I-ENDEDONLY01")
    assert still["severity"] == "critical"
    assert still["action"] == {"type": "cancel_paypal_subscription", "paypal_subscription_id": "I-ENDEDONLY01"}
    # other findings about the same rows carry no paypal block
    assert all(f["paypal"] is None for f in report["findings"]
               if f["check"] not in ("billing_disconnect", "post_cancellation_charge", "paypal_still_active"))


def test_a_kind_1_id_is_never_a_paypal_still_active_finding(prod, paypal):
    a = prod.contact()
    prod.kajabi(a, status="canceled", canceled_at="2025-03-16")
    prod.paypal(a, paypal="I-DISCONNECT2")
    paypal.add("I-DISCONNECT2", "CANCELLED")
    paypal.charge("I-DISCONNECT2", "2025-04-16")
    report = scan(prod, paypal)
    assert report["summary"]["by_check"]["paypal_still_active"] == 0
    assert report["summary"]["by_check"]["refund_owed"] == 0
    disconnect = only(report, "billing_disconnect")
    assert disconnect["paypal"]["charges_after_cancellation"]["owed"] == "22.00"   # a CANCELLED disconnect's charges are owed
    assert disconnect["refund"]["total"] == "22.00"


# ---------------------------------------------------------------- the cancellation time


def test_k_earlier_than_p_counts_from_the_kajabi_cancellation(prod, paypal):
    hand_marked(prod, kajabi_canceled="2025-01-16", marked="2025-06-01")
    paypal.add("I-HANDMARKED1")
    paypal.monthly("I-HANDMARKED1", "2024-12-16", 8)                  # 2024-12-16 .. 2025-07-16
    f = only(scan(prod, paypal), "paypal_still_active")
    assert f["paypal"]["canceled_at"] == "2025-01-16T00:00:00+00:00"
    assert f["charges"]["count"] == 6                                  # strictly after 2025-01-16: Feb .. Jul
    assert f["charges"]["first"] == "2025-02-16T00:00:00+00:00"


def test_p_alone_counts_from_the_rows_own_end(prod, paypal):
    c = prod.contact()
    prod.paypal(c, paypal="I-PAYPALONLY2", status="expired", ended_at="2025-05-01", updated_at="2025-09-01")
    paypal.add("I-PAYPALONLY2", "SUSPENDED")
    paypal.monthly("I-PAYPALONLY2", "2025-03-01", 4)                  # Mar .. Jun
    f = only(scan(prod, paypal), "paypal_still_active")
    assert f["paypal"]["canceled_at"] == "2025-05-01T00:00:00+00:00"
    assert f["charges"]["count"] == 1                                  # 2025-06-01 only: 05-01 is not after
    assert f["kajabi_subscription_id"] is None


def test_after_is_strict(prod, paypal):
    hand_marked(prod, kajabi_canceled="2025-01-16T10:00:00")
    paypal.add("I-HANDMARKED1")
    paypal.charge("I-HANDMARKED1", "2025-01-16T10:00:00Z")
    late = paypal.charge("I-HANDMARKED1", "2025-01-16T10:00:01Z")
    f = only(scan(prod, paypal), "paypal_still_active")
    assert f["charges"]["transactions"] == [late]


# ---------------------------------------------------------------- each transaction status


def test_each_transaction_status(prod, paypal):
    hand_marked(prod)
    paypal.add("I-HANDMARKED1", "CANCELLED")
    completed = paypal.charge("I-HANDMARKED1", "2025-02-16", "22.00", status="COMPLETED")
    refunded = paypal.charge("I-HANDMARKED1", "2025-03-16", "22.00", status="REFUNDED")
    partial = paypal.charge("I-HANDMARKED1", "2025-04-16", "22.00", status="PARTIALLY_REFUNDED")
    paypal.charge("I-HANDMARKED1", "2025-05-16", status="PENDING")
    paypal.charge("I-HANDMARKED1", "2025-06-16", status="DECLINED")
    report = scan(prod, paypal)
    f = only(report, "refund_owed")
    block = f["paypal"]["charges_after_cancellation"]
    assert block["transactions"] == [completed, refunded, partial]
    assert (block["count"], block["total"], block["refunded"], block["owed"]) == (3, "66.00", "22.00", "22.00")
    assert block["partially_refunded"] == [partial]
    assert f["refund"] == {"type": "refund_paypal_charges", "paypal_subscription_id": "I-HANDMARKED1",
                           "total": "22.00", "transactions": [completed],
                           "charges": [{"transaction_id": completed, "time": "2025-02-16T00:00:00+00:00",
                                        "amount": "22.00", "currency": "USD"}]}
    assert f["action"] is None
    assert f["severity"] == "warning"
    assert report["summary"]["owed"] == {"USD": {"customers": 1, "total": "22.00"}}


def test_a_final_id_with_nothing_owed_makes_no_finding_and_is_settled(prod, paypal):
    hand_marked(prod)
    paypal.add("I-HANDMARKED1", "EXPIRED")
    paypal.charge("I-HANDMARKED1", "2025-02-16", status="REFUNDED")
    paypal.charge("I-HANDMARKED1", "2025-03-16", status="PARTIALLY_REFUNDED")
    result = run_scan(prod.dsn, paypal=options(paypal))
    assert [f for f in result.findings if f.paypal_subscription_id == "I-HANDMARKED1"] == []
    assert result.settled == [("I-HANDMARKED1", "EXPIRED")]


def test_active_with_no_charge_since_is_still_a_finding(prod, paypal):
    hand_marked(prod)
    paypal.add("I-HANDMARKED1", next_billing_time=datetime(2026, 12, 16, tzinfo=UTC))
    f = only(scan(prod, paypal), "paypal_still_active")
    assert (f["charges"]["count"], f["charges"]["total"], f["charges"]["first"], f["charges"]["last"]) == (
        0, "0.00", None, None)
    assert f["paypal"]["next_billing_time"] == "2026-12-16T00:00:00+00:00"
    assert f["refund"] is None


@pytest.mark.parametrize("status", ["APPROVAL_PENDING", "APPROVED"])
def test_pending_statuses_make_no_finding_and_are_asked_again(prod, paypal, status):
    hand_marked(prod)
    paypal.add("I-HANDMARKED1", status)
    first = scan(prod, paypal, save=True)
    assert [f for f in first["findings"] if f["paypal_subscription_id"] == "I-HANDMARKED1"] == []
    assert not any(c[0] == "transactions" for c in paypal.calls)
    scan(prod, paypal)
    assert [c[1] for c in paypal.calls if c[0] == "get"] == ["I-HANDMARKED1", "I-HANDMARKED1"]


# ---------------------------------------------------------------- imported or not


def test_not_imported_by_trimmed_external_id_and_external_ids_in_every_charges(prod, paypal):
    c = hand_marked(prod)
    paypal.add("I-HANDMARKED1")
    imported = paypal.charge("I-HANDMARKED1", "2025-02-16")
    missing = paypal.charge("I-HANDMARKED1", "2025-03-16")
    prod.execute("insert into public.transactions (id, contact_id, source, external_id, amount, currency, status,"
                 " transaction_date) values (gen_random_uuid(), %s, 'kajabi', %s, 1, 'EUR', 'failed', '2025-02-16')",
                 (c, f"  {imported}\t"))       # any row, whatever its source, status or contact
    f = only(scan(prod, paypal), "paypal_still_active")
    assert f["paypal"]["charges_after_cancellation"]["not_imported"] == [missing]
    assert f["charges"]["external_ids"] == [imported, None]


def test_database_charges_carry_their_external_ids(prod, paypal):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2025-01-16")
    prod.paypal(c, paypal="I-DISCONNECT3")
    prod.execute("insert into public.transactions (id, contact_id, source, external_id, amount, currency, status,"
                 " transaction_date) values (gen_random_uuid(), %s, 'paypal', ' 9AB12345CD6789012 ', 22, 'USD',"
                 " 'completed', '2025-02-16'), (gen_random_uuid(), %s, 'paypal', null, 22, 'USD', 'completed',"
                 " '2025-03-16')", (c, c))
    assert only(prod.scan(), "billing_disconnect")["charges"]["external_ids"] == ["9AB12345CD6789012", None]


# ---------------------------------------------------------------- Transaction Search


def test_a_yearly_payment_300_days_ago_is_found_and_410_days_ago_is_not(prod, paypal):
    paypal.add("I-YEARLYNEW01", payer=Payer("yearly@example.com", "Yara", "Early"))
    found = paypal.charge("I-YEARLYNEW01", NOW - timedelta(days=300), "240.00")
    paypal.add("I-YEARLYOLD01", payer=Payer("old@example.com", alternate_full_name="Old Co"))
    paypal.charge("I-YEARLYOLD01", NOW - timedelta(days=410), "240.00")
    report = scan(prod, paypal)
    f = only(report, "paypal_subscription_not_imported")
    assert f["paypal_subscription_id"] == "I-YEARLYNEW01"
    assert f["charges"]["transactions"] == [found]
    assert f["contact"] == {"id": None, "email": "yearly@example.com", "name": "Yara Early"}
    assert f["action"] is None
    windows = [p for m, p in paypal.log if p.startswith("/v1/reporting/")]
    assert len(windows) == 13                                 # 400 days in windows of at most 31


def test_only_completed_subscription_payments_of_unnamed_subscriptions_count(prod, paypal):
    c = prod.contact()
    prod.subscription(c, kajabi=" I-MISFILED001 ", status="canceled")     # named, in the other column, trimmed
    paypal.add("I-MISFILED001")
    paypal.charge("I-MISFILED001", NOW - timedelta(days=5))
    paypal.add("I-UNNAMED0001", payer=Payer("x@example.com", "X", "Y"))
    paid = paypal.charge("I-UNNAMED0001", NOW - timedelta(days=5))
    paypal.charge("I-UNNAMED0001", NOW - timedelta(days=6), status="PENDING")
    paypal.charge("I-UNNAMED0001", NOW - timedelta(days=7), status="DECLINED")
    paypal.add("I-UNNAMED0002")
    paypal.charge("I-UNNAMED0002", NOW - timedelta(days=5), status="PENDING")
    report = scan(prod, paypal)
    f = only(report, "paypal_subscription_not_imported")
    assert (f["paypal_subscription_id"], f["charges"]["transactions"]) == ("I-UNNAMED0001", [paid])


def test_three_pages_in_one_window(prod, paypal):
    paypal.add("I-MANYPAYMENT")
    base = NOW - timedelta(days=3)
    for i in range(1001):
        paypal.charge("I-MANYPAYMENT", base + timedelta(seconds=i), "1.00")
    report = scan(prod, paypal, search_days=31)                   # one window
    assert only(report, "paypal_subscription_not_imported")["charges"]["count"] == 1001
    searches = [p for _, p in paypal.log if p.startswith("/v1/reporting/")]
    assert sorted(p.rsplit("&page=", 1)[1] for p in searches) == ["1", "2", "3"]
    assert all("page_size=500" in p for p in searches)


def test_the_31_day_rule_answers_400_like_paypal(paypal):
    from billing_monitor.paypal import PayPalError

    client = options(paypal).client()
    with pytest.raises(PayPalError, match="Date range is greater than 31 days"):
        client.search_transactions(NOW - timedelta(days=32), NOW)
    client.search_transactions(NOW - timedelta(days=31), NOW)


def test_an_edge_instant_shared_by_two_windows_counts_once(prod, paypal):
    now = NOW.replace(microsecond=0)
    paypal.add("I-EDGEPAYMENT")
    on_edge = paypal.charge("I-EDGEPAYMENT", now - timedelta(days=31))
    from billing_monitor import reconcile

    watch = reconcile.WatchList([], 0)
    side = reconcile.reconcile(options(paypal, search_days=62), watch, reconcile.lookup_in(prod.dsn), now=now)
    assert [f.charges[0].transaction_id for f in side.findings] == [on_edge]
    assert len(side.findings[0].charges) == 1


# ---------------------------------------------------------------- memory


def test_settled_ids_are_remembered_by_saved_scans_only(prod, paypal):
    hand_marked(prod)
    paypal.add("I-HANDMARKED1", "CANCELLED")
    first = scan(prod, paypal)                                   # unsaved: reads the memory, writes nothing
    assert first["paypal"]["remembered_settled"] == 0
    second = scan(prod, paypal, save=True)                       # saved: remembers
    assert second["paypal"]["watched"] == 1
    third = scan(prod, paypal)
    assert (third["paypal"]["watched"], third["paypal"]["remembered_settled"]) == (0, 1)
    assert [c[1] for c in paypal.calls if c[0] == "get"] == ["I-HANDMARKED1", "I-HANDMARKED1"]   # never asked again


def test_an_unsaved_scan_writes_nothing_to_the_memory(prod, paypal):
    hand_marked(prod)
    paypal.add("I-HANDMARKED1", "CANCELLED")
    with open_store(prod.dsn):
        pass                                                        # the schema exists
    scan(prod, paypal)
    assert prod.execute("select count(*) from billing_monitor.paypal_settled") == [(0,)]


def test_an_owed_id_is_not_settled_and_stays_until_refunded(prod, paypal):
    hand_marked(prod)
    paypal.add("I-HANDMARKED1", "CANCELLED")
    txn = paypal.charge("I-HANDMARKED1", "2025-02-16")
    assert only(scan(prod, paypal, save=True), "refund_owed")
    assert only(scan(prod, paypal, save=True), "refund_owed")
    paypal.transactions["I-HANDMARKED1"][0].status = "REFUNDED"
    assert txn
    assert findings_of(scan(prod, paypal, save=True), "refund_owed") == []
    assert scan(prod, paypal)["paypal"]["remembered_settled"] == 1


# ---------------------------------------------------------------- failures


def test_429_then_200_honouring_retry_after(prod, paypal):
    hand_marked(prod)
    paypal.add("I-HANDMARKED1")
    paypal.retry_after = "1"
    paypal.id_faults["I-HANDMARKED1"] = [429]
    started = time.monotonic()
    report = scan(prod, paypal)
    assert time.monotonic() - started >= 1
    assert only(report, "paypal_still_active")["paypal"]["status"] == "ACTIVE"
    assert report["paypal"]["errors"] == []


def test_500_for_one_id_is_that_ids_error_and_the_rest_is_checked(prod, paypal):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2025-03-16")
    prod.paypal(c, paypal="I-DISCONNECT4")
    hand_marked(prod)
    paypal.add("I-DISCONNECT4")
    paypal.add("I-HANDMARKED1")
    paypal.id_faults["I-DISCONNECT4"] = [500] * 10
    report = scan(prod, paypal)
    disconnect = only(report, "billing_disconnect")                     # the database part is intact
    assert disconnect["paypal"]["status"] is None
    assert "500" in disconnect["paypal"]["error"]
    assert only(report, "paypal_still_active")["paypal"]["status"] == "ACTIVE"
    assert len(report["paypal"]["errors"]) == 1
    assert report["paypal"]["not_checked"] == 1


def test_bad_credentials_are_one_clear_error_and_never_the_secret(prod, paypal):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2025-03-16")
    prod.paypal(c, paypal="I-DISCONNECT5")
    report = build_report(run_scan(prod.dsn, paypal=PayPalOptions(paypal.url, CLIENT_ID, "s3cret-wrong", backoff_s=0.01)))
    assert len(report["paypal"]["errors"]) == 1
    assert "refused the client credentials" in report["paypal"]["errors"][0]
    assert "s3cret-wrong" not in str(report)
    assert only(report, "billing_disconnect")["severity"] == "warning"        # the database part is intact
    assert [p for _, p in paypal.log if not p.startswith("/v1/oauth2/token")] == []


def test_404_is_not_found_reported_and_never_an_error(prod, paypal):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2025-03-16")
    prod.paypal(c, paypal="I-SANDBOXONLY1")
    hand_marked(prod, "I-SANDBOXONLY2")
    report = scan(prod, paypal)
    assert only(report, "billing_disconnect")["paypal"] == {"status": "NOT_FOUND", "charges_after_cancellation": None}
    assert report["paypal"]["not_found"] == ["I-SANDBOXONLY1", "I-SANDBOXONLY2"] or sorted(
        report["paypal"]["not_found"]) == ["I-SANDBOXONLY1", "I-SANDBOXONLY2"]
    assert report["paypal"]["errors"] == []
    assert findings_of(report, "paypal_still_active") == []
    assert not any(c[0] == "transactions" for c in paypal.calls)


def test_a_spent_budget_reports_the_rest_as_not_checked(prod, paypal):
    for i in range(3):
        hand_marked(prod, f"I-BUDGET0000{i}")
        paypal.add(f"I-BUDGET0000{i}")
    report = scan(prod, paypal, max_calls=13 + 2, workers=1)     # the 13 search windows, then one id's two calls
    assert report["paypal"]["not_checked"] == 2
    assert any("budget" in e for e in report["paypal"]["errors"])
    assert len(findings_of(report, "paypal_still_active")) == 1
    assert database_part(report) == database_part(prod.scan())


# ---------------------------------------------------------------- the report


def test_the_top_level_block(prod, paypal):
    hand_marked(prod)
    paypal.add("I-HANDMARKED1")
    block = scan(prod, paypal)["paypal"]
    assert block["environment"] == "custom"
    assert (block["watched"], block["remembered_settled"], block["not_found"], block["errors"]) == (1, 0, [], [])
    assert block["asked"] == 13 + 2
    assert datetime.fromisoformat(block["searched_to"]) - datetime.fromisoformat(block["searched_from"]) == timedelta(days=400)


def test_summary_owed_counts_customers_once_and_keeps_charged_after_cancellation(prod, paypal):
    c = hand_marked(prod, "I-OWEDTWICE01")
    prod.kajabi(c, status="canceled", canceled_at="2025-01-16", amount="33.00")
    prod.paypal(c, paypal="I-OWEDTWICE02", status="canceled", updated_at="2025-06-01", amount="33.00")
    for pid, amount in (("I-OWEDTWICE01", "22.00"), ("I-OWEDTWICE02", "33.00")):
        paypal.add(pid)
        paypal.charge(pid, "2025-02-16", amount)
    report = scan(prod, paypal)
    assert report["summary"]["owed"] == {"USD": {"customers": 1, "total": "55.00"}}
    assert report["summary"]["charged_after_cancellation"] == {}        # the database meaning, unchanged
