"""The due (prevention.md): PayPal's next charge, worded against the scan's time, customers ordered by it."""

from __future__ import annotations

from datetime import UTC, datetime

from billing_monitor.notify import DAILY, customer_line_text, slack_message
from billing_monitor.report import by_due, due_text
from billing_monitor.store.scans import ScanDiff

SCAN = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def at_risk(i: int, due: str | None, status: str | None = "ACTIVE") -> dict:
    paypal = None if status == "not reconciled" else {"status": status, "next_billing_time": due,
                                                      "canceled_at": "2026-12-01T00:00:00+00:00"}
    if status is None:
        paypal = {"status": None, "error": "PayPal answered 503"}
    return {"finding_id": f"{i:016x}", "check": "billing_disconnect", "severity": "warning", "subscription_id": f"r{i}",
            "paypal_subscription_id": f"I-DUE{i:04d}", "kajabi_subscription_id": "1", "transaction_id": None,
            "contact": {"id": f"c{i}", "email": f"m{i}@example.com", "name": f"Member {i}"}, "amount": "22.00",
            "currency": "USD", "billing_cycle": "month", "kajabi_canceled_at": "2026-12-01T00:00:00+00:00",
            "charges": None, "action": {"type": "cancel_paypal_subscription", "paypal_subscription_id": f"I-DUE{i:04d}"},
            "detail": None, "paypal": paypal, "refund": None}


def test_the_due_is_worded_against_the_scans_time():
    assert due_text(at_risk(1, "2026-12-16T10:00:00+00:00"), SCAN) == "PayPal charges 22.00 USD on 2026-12-16 (in 12 days)"
    assert due_text(at_risk(1, "2026-12-04T10:00:00+00:00"), SCAN) == "PayPal charges 22.00 USD on 2026-12-04 (due today)"
    assert due_text(at_risk(1, "2026-12-05T10:00:00+00:00"), SCAN) == "PayPal charges 22.00 USD on 2026-12-05 (due tomorrow)"
    late_evening = datetime(2026, 12, 4, 23, 59, tzinfo=UTC)         # calendar days, not 24-hour periods
    assert due_text(at_risk(1, "2026-12-05T00:30:00+00:00"), late_evening).endswith("(due tomorrow)")
    assert due_text(at_risk(1, "2026-12-03T10:00:00+00:00"), SCAN).endswith("(1 day ago)")


def test_an_unknown_due_says_why():
    assert due_text(at_risk(1, None, "not reconciled"), SCAN) == "PayPal's next charge: unknown (not checked with PayPal)"
    assert due_text(at_risk(1, None, None), SCAN) == "PayPal's next charge: unknown (PayPal could not be checked)"
    assert due_text(at_risk(1, None, "SUSPENDED"), SCAN) == "PayPal's next charge: none scheduled (PayPal shows SUSPENDED)"


def test_customers_are_ordered_soonest_due_first_unknown_last():
    later, unknown, sooner = at_risk(1, "2026-12-20T10:00:00+00:00"), at_risk(2, None, None), at_risk(3, "2026-12-05T10:00:00+00:00")
    assert [f["finding_id"] for f in by_due([later, unknown, sooner])] == [f["finding_id"] for f in (sooner, later, unknown)]


def report_of(findings) -> dict:
    return {"scan_id": "s", "started_at": SCAN.isoformat(), "finished_at": SCAN.isoformat(), "tolerance": "1.00",
            "data_current_to": SCAN.isoformat(), "paypal": {"environment": "live", "watched": 3, "asked": 6, "errors": [],
                                                             "not_found": [], "remembered_settled": 0, "not_checked": 1},
            "summary": {"by_check": {"billing_disconnect": len(findings)}, "by_severity": {"warning": len(findings)},
                        "charged_after_cancellation": {}, "owed": {}}, "findings": findings}


def test_slack_names_each_customer_with_the_due_soonest_first():
    later, unknown, sooner = at_risk(1, "2026-12-20T10:00:00+00:00"), at_risk(2, None, None), at_risk(3, "2026-12-05T10:00:00+00:00")
    report = report_of([later, unknown, sooner])
    message = slack_message(report, ScanDiff("s", None, new=[later, unknown, sooner]), schedule=DAILY)
    text = "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")
    assert text.index("Member 3") < text.index("Member 1") < text.index("Member 2")
    assert "PayPal charges 22.00 USD on 2026-12-05 (due tomorrow)" in text
    assert "PayPal charges 22.00 USD on 2026-12-20 (in 16 days)" in text
    assert "PayPal's next charge: unknown (PayPal could not be checked)" in text


def test_auto_cancel_says_what_it_did_about_each_customer():
    f = at_risk(1, "2026-12-05T10:00:00+00:00")
    report = dict(report_of([f]), auto_cancel={"policy": "unambiguous", "queued": [], "line": None,
                                               "not_queued": {f["finding_id"]: "canceled in Kajabi 3 hours ago (grace 24 h)"}})
    assert customer_line_text(f, report).splitlines()[1:3] == [
        "  PayPal charges 22.00 USD on 2026-12-05 (due tomorrow)",
        "  not auto-canceled: canceled in Kajabi 3 hours ago (grace 24 h)"]
    report["auto_cancel"] = {"policy": "unambiguous", "queued": [f["finding_id"]], "not_queued": {}, "line": None}
    assert "  auto-cancel: approval queued (policy unambiguous)" in customer_line_text(f, report).splitlines()
