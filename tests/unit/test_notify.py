"""SNS size limit and the Slack message, from report dicts (no I/O)."""

from __future__ import annotations

import json

from billing_monitor.notify import slack_message, sns_message
from billing_monitor.store.scans import OpenFinding, ScanDiff


def finding(i: int, severity: str, check: str = "paypal_only", charges: int = 0) -> dict:
    return {
        "finding_id": f"{i:016x}", "check": check, "severity": severity, "subscription_id": f"sub-{i}",
        "paypal_subscription_id": f"I-{i:012d}", "kajabi_subscription_id": None, "transaction_id": None,
        "contact": {"id": f"c-{i}", "email": f"member{i}@example.com", "name": f"Member {i}"},
        "amount": "22.00", "currency": "USD", "billing_cycle": "month",
        "kajabi_canceled_at": "2024-01-16T00:00:00+00:00" if check == "billing_disconnect" else None,
        "charges": {"count": charges, "total": f"{22 * charges}.00",
                    "first": "2023-09-16T00:00:00+00:00" if charges else None,
                    "last": f"{2023 + (8 + charges - 1) // 12}-{(8 + charges - 1) % 12 + 1:02d}-16T00:00:00+00:00"
                    if charges else None,
                    "transactions": ["t"] * charges} if check == "billing_disconnect" else None,
        "action": {"type": "cancel_paypal_subscription", "paypal_subscription_id": f"I-{i:012d}"}
        if check == "billing_disconnect" else None,
    }


def report(findings: list[dict]) -> dict:
    by_severity = {s: sum(f["severity"] == s for f in findings) for s in ("critical", "warning", "info")}
    charged = sum(f["charges"]["count"] for f in findings if f["charges"])
    return {"scan_id": "scan-1", "started_at": "2026-12-01T09:00:00+00:00",
            "finished_at": "2026-12-01T09:00:01+00:00", "tolerance": "1.00",
            "summary": {"by_check": {}, "by_severity": by_severity,
                        "charged_after_cancellation": {"USD": {"count": charged, "total": f"{22 * charged}.00"}}
                        if charged else {}},
            "findings": findings}


def test_small_report_goes_whole_with_filter_attributes():
    r = report([finding(1, "critical", "billing_disconnect", 3), finding(2, "info")])
    body, attributes = sns_message(r, None)
    assert json.loads(body) == r
    assert attributes["highest_severity"] == {"DataType": "String", "StringValue": "critical"}
    assert attributes["critical_count"] == {"DataType": "Number", "StringValue": "1"}


def test_oversized_report_keeps_critical_and_warning_and_says_what_was_left_out():
    findings = ([finding(i, "critical", "billing_disconnect", 2) for i in range(3)]
                + [finding(100 + i, "warning", "duplicate_subscription") for i in range(50)]
                + [finding(1000 + i, "info") for i in range(3000)])
    r = report(findings)
    assert len(json.dumps(r)) > 256 * 1024
    body, _ = sns_message(r, None)
    assert len(body.encode()) < 256 * 1024
    sent = json.loads(body)                       # whole JSON, not split
    assert {f["severity"] for f in sent["findings"]} == {"critical", "warning"}
    assert len(sent["findings"]) == 53
    assert sent["findings_omitted"] == 3000
    assert "256 KB" in sent["note"]
    assert sent["summary"] == r["summary"]


def test_report_too_large_even_for_warnings_keeps_the_critical_ones():
    findings = ([finding(i, "critical", "billing_disconnect", 1) for i in range(2)]
                + [finding(100 + i, "warning", "duplicate_subscription") for i in range(3000)])
    sent = json.loads(sns_message(report(findings), None)[0])
    assert [f["severity"] for f in sent["findings"]] == ["critical", "critical"]
    assert sent["findings_omitted"] == 3000


def diff(**kw) -> ScanDiff:
    return ScanDiff(scan_id="scan-1", previous_scan_id="scan-0", **kw)


def test_slack_shows_new_critical_findings_with_the_approve_command():
    new = finding(7, "critical", "billing_disconnect", 21)
    message = slack_message(report([new]), diff(new=[new]))
    text = json.dumps(message)
    assert message["text"] == "1 customer charged after canceling: 21 charges, 462.00 USD"
    assert "Member 7 &lt;member7@example.com&gt;" in text  # escaped: Slack reads <...> as markup
    assert "I-000000000007" in text
    assert "charged 21x over 21 months after canceling, *462.00 USD*" in text
    assert f"billing-monitor approve {new['finding_id']} --by YOU@EXAMPLE.COM" in text
    assert "All clear" not in text


def test_slack_says_nothing_when_nothing_changed_and_no_reminder_is_due():
    old = finding(7, "critical", "billing_disconnect", 21)
    unchanged = OpenFinding(old, first_seen_at=None, months_open=1, changed=False)
    assert slack_message(report([old]), diff(still_open=[unchanged], reminder_due=False)) is None


def test_slack_monthly_reminder_and_all_clear():
    info = finding(3, "info")
    reminder = slack_message(report([info]), diff(still_open=[OpenFinding(info, None, 4, False)],
                                                  reminder_due=True))
    text = json.dumps(reminder)
    assert "Still open: 1 (oldest 4 month(s))" in text
    assert "All clear" in text
    resolved = slack_message(report([]), diff(resolved=[finding(9, "critical", "billing_disconnect", 2)]))
    assert "Resolved since the last scan: 1" in json.dumps(resolved)


def test_monthly_reminder_lists_the_critical_findings_still_open():
    open_critical = finding(5, "critical", "billing_disconnect", 3)
    quiet = slack_message(report([open_critical]), diff(still_open=[OpenFinding(open_critical, None, 2, False)],
                                                       reminder_due=False))
    assert quiet is None
    reminder = json.dumps(slack_message(report([open_critical]),
                                        diff(still_open=[OpenFinding(open_critical, None, 2, False)],
                                             reminder_due=True)))
    assert "Still open (monthly reminder)" in reminder
    assert f"billing-monitor approve {open_critical['finding_id']}" in reminder
    assert "Still open: 1 (oldest 2 month(s))" in reminder
