"""The Slack and SNS messages of docs/spec/alerts.md, from report dicts built by hand (no I/O)."""

from __future__ import annotations

import json
import re

import pytest

from billing_monitor.monitor import MonitoringFailed, Steps, schedule_of
from billing_monitor.notify import DAILY, MANUAL, MONTHLY, email_text, headline, sns_message, sns_subject
from billing_monitor.rules.registry import (
    BILLING_DISCONNECT,
    CHECK_NAMES,
    CHECKS,
    DUPLICATE_SUBSCRIPTION,
    MISFILED_PAYPAL_ID,
    PAYPAL_ONLY,
    POST_CANCELLATION_CHARGE,
    SEVERITIES,
    SOURCE_SHRANK,
    STALE_IMPORT,
)
from billing_monitor.slack.message import (
    SLACK_HEADER_MAX,
    SLACK_MAX_BLOCKS,
    SLACK_SECTION_MAX,
    SLACK_TEXT_BUDGET,
    failure_message,
    slack_message,
)
from billing_monitor.store.scans import OpenFinding, ScanDiff
from tests.support.aws import load_event

SNS_LIMIT = 256 * 1024


def finding(i: int, check: str = PAYPAL_ONLY, charges: int = 0, *, name: str | None = None) -> dict:
    """A finding as the report has it; its severity is the registry's (critical when charged)."""
    charge_check = check in (BILLING_DISCONNECT, POST_CANCELLATION_CHARGE)
    return {
        "finding_id": f"{i:016x}", "check": check,
        "severity": CHECKS[check].severity_for(charged=charges > 0),
        "subscription_id": f"sub-{i}", "paypal_subscription_id": f"I-{i:012d}", "kajabi_subscription_id": None,
        "transaction_id": None,
        "contact": {"id": f"c-{i}", "email": f"member{i}@example.com", "name": name or f"Member {i}"},
        "amount": "22.00", "currency": "USD", "billing_cycle": "month",
        "kajabi_canceled_at": "2024-01-16T00:00:00+00:00" if check == BILLING_DISCONNECT else None,
        "charges": {"count": charges, "total": f"{22 * charges}.00",
                    "first": "2023-09-16T00:00:00+00:00" if charges else None,
                    "last": f"{2023 + (8 + charges - 1) // 12}-{(8 + charges - 1) % 12 + 1:02d}-16T00:00:00+00:00"
                    if charges else None,
                    "transactions": [f"t-{i}-{n}" for n in range(charges)]} if charge_check else None,
        "action": {"type": "cancel_paypal_subscription", "paypal_subscription_id": f"I-{i:012d}"}
        if charge_check else None,
        "detail": None,
    }


def stale(detail: str = "newest transaction imported 2026-11-01, 30 days before the scan (stale after 14 days)"):
    return {"finding_id": "5ta1e", "check": STALE_IMPORT, "severity": CHECKS[STALE_IMPORT].severity,
            "subscription_id": None, "paypal_subscription_id": None, "kajabi_subscription_id": None,
            "transaction_id": None, "contact": None, "amount": None, "currency": None, "billing_cycle": None,
            "kajabi_canceled_at": None, "charges": None, "action": None, "detail": detail}


def report(findings: list[dict], data_current_to: str | None = "2026-11-30T18:02:11+00:00") -> dict:
    charged = [f for f in findings if f["charges"] and f["charges"]["count"]]
    count = sum(f["charges"]["count"] for f in charged)
    return {"scan_id": "scan-1", "started_at": "2026-12-01T09:00:00+00:00",
            "finished_at": "2026-12-01T09:00:01+00:00", "tolerance": "1.00",
            "data_current_to": data_current_to,
            "summary": {"by_check": {c: sum(f["check"] == c for f in findings) for c in CHECK_NAMES},
                        "by_severity": {s: sum(f["severity"] == s for f in findings) for s in SEVERITIES},
                        "charged_after_cancellation": {"USD": {"count": count, "total": f"{22 * count}.00"}}
                        if count else {}},
            "findings": findings}


def diff(**kw) -> ScanDiff:
    return ScanDiff(scan_id="scan-1", previous_scan_id="scan-0", **kw)


def still(f: dict, months: int = 2, *, changed: bool = False) -> OpenFinding:
    return OpenFinding(f, first_seen_at=None, months_open=months, changed=changed)


def text_of(message: dict) -> str:
    """Everything the owner reads in a Block Kit message."""
    parts = []
    for block in message["blocks"]:
        if block["type"] == "context":
            parts.extend(e["text"] for e in block["elements"])
        else:
            parts.append(block["text"]["text"])
    return "\n".join(parts)


def sections(message: dict) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]


ALL_CLEAR = re.compile(r"all clear|white_check_mark|nothing wrong|no problems", re.IGNORECASE)


# ---------------------------------------------------------------- who is at risk, and what to do


def test_slack_names_a_new_charged_customer_with_the_money_and_the_approve_command():
    new = finding(7, BILLING_DISCONNECT, 21)
    message = slack_message(report([new]), diff(new=[new]), schedule=DAILY)
    text = text_of(message)
    assert message["text"] == "1 customer charged after canceling: 21 charges, 462.00 USD"
    assert message["blocks"][0]["text"]["text"] == message["text"]
    assert "*Member 7 &lt;member7@example.com&gt;*" in text     # escaped: Slack reads <...> as markup
    assert "I-000000000007" in text
    assert "charged 21x over 21 months after canceling, *462.00 USD* (canceled in Kajabi 2024-01-16)" in text
    assert f"billing-monitor approve {new['finding_id']} --by YOU@EXAMPLE.COM" in text
    assert not ALL_CLEAR.search(text)


def test_warning_only_database_names_the_customer_as_about_to_be_charged_and_is_never_all_clear():
    # a billing_disconnect with no charge yet: canceled in Kajabi, PayPal still live (severity warning)
    leaving = finding(3, BILLING_DISCONNECT, 0)
    assert leaving["severity"] == "warning"
    r = report([leaving])
    for schedule, d in ((MONTHLY, diff(still_open=[still(leaving)])), (DAILY, diff(new=[leaving]))):
        message = slack_message(r, d, schedule=schedule)
        text = text_of(message)
        assert "*Member 3 &lt;member3@example.com&gt;*" in text
        assert "*about to be charged*: canceled in Kajabi on 2024-01-16 (22.00 USD/month)" in text
        assert "\nPayPal's next charge: unknown (not checked with PayPal)" in text
        assert f"billing-monitor approve {leaving['finding_id']} --by YOU@EXAMPLE.COM" in text
        assert message["text"] == "1 customer about to be charged after canceling (none charged yet)"
        assert not ALL_CLEAR.search(text)
    assert headline(r) == "1 customer about to be charged after canceling (none charged yet)"


def test_about_to_be_charged_uses_paypals_next_billing_time_when_the_scan_has_it():
    leaving = dict(finding(3, BILLING_DISCONNECT, 0), paypal={
        "status": "ACTIVE", "canceled_at": "2024-01-16T00:00:00+00:00", "next_billing_time": "2026-12-16T10:00:00+00:00",
        "charges_after_cancellation": {"count": 0, "total": "0.00", "refunded": "0.00", "owed": "0.00",
                                       "partially_refunded": [], "not_imported": [], "transactions": []}})
    text = text_of(slack_message(report([leaving]), diff(new=[leaving]), schedule=DAILY))
    assert "canceled in Kajabi on 2024-01-16 (22.00 USD/month)" in text
    assert "\nPayPal charges 22.00 USD on 2026-12-16 (in 15 days)" in text      # the scan ran on 2026-12-01
    assert "PayPal: ACTIVE (bills next 2026-12-16); 0 charges after canceling 0.00, refunded 0.00, owed 0.00 USD" in text


def test_the_headline_adds_who_is_about_to_be_charged_to_the_money_line():
    r = report([finding(1, BILLING_DISCONNECT, 2), finding(2, BILLING_DISCONNECT, 0)])
    assert headline(r) == "1 customer charged after canceling: 2 charges, 44.00 USD; 1 more about to be charged"


def test_a_charge_with_nothing_to_cancel_says_what_to_do_instead():
    orphan_charge = dict(finding(4, POST_CANCELLATION_CHARGE, 2), action=None)
    text = text_of(slack_message(report([orphan_charge]), diff(new=[orphan_charge]), schedule=DAILY))
    assert "charged 2x over 2 months after canceling, *44.00 USD*" in text
    assert "nothing to cancel from here" in text
    assert "billing-monitor approve" not in text


def test_the_monthly_message_names_every_customer_at_risk_new_or_not():
    new, changed, unchanged = (finding(1, BILLING_DISCONNECT, 2), finding(2, POST_CANCELLATION_CHARGE, 5),
                               finding(3, BILLING_DISCONNECT, 0))
    r = report([new, changed, unchanged])
    d = diff(new=[new], still_open=[still(changed, changed=True), still(unchanged, 7)])
    monthly = text_of(slack_message(r, d, schedule=MONTHLY))
    for f in (new, changed, unchanged):
        assert f"billing-monitor approve {f['finding_id']} --by YOU@EXAMPLE.COM" in monthly
    assert "*New: 1 at risk*" in monthly
    assert "*Changed since the last scan: 1*" in monthly
    assert "*Still at risk: 1 (monthly reminder)*" in monthly
    assert "Still open: 2 at risk (oldest 7 month(s))" in monthly
    daily = text_of(slack_message(r, d, schedule=DAILY))        # the daily one: only the news
    assert f"billing-monitor approve {new['finding_id']}" in daily
    assert f"billing-monitor approve {changed['finding_id']}" in daily
    assert f"billing-monitor approve {unchanged['finding_id']}" not in daily


def test_a_scan_started_by_hand_posts_like_the_monthly_one():
    unchanged = finding(3, BILLING_DISCONNECT, 4)
    message = slack_message(report([unchanged]), diff(still_open=[still(unchanged)]), schedule=MANUAL)
    assert f"billing-monitor approve {unchanged['finding_id']}" in text_of(message)
    assert "Scan of 2026-12-01: data current to 2026-11-30." in text_of(message)


# ---------------------------------------------------------------- every scan is heard from


def test_an_unchanged_daily_scan_posts_nothing_and_an_unchanged_monthly_one_posts_a_heartbeat():
    old = finding(7, BILLING_DISCONNECT, 21)
    r, d = report([old]), diff(still_open=[still(old)])
    assert slack_message(r, d, schedule=DAILY) is None
    monthly = slack_message(r, d, schedule=MONTHLY)
    text = text_of(monthly)
    assert "Monthly scan of 2026-12-01: data current to 2026-11-30." in text
    assert f"billing-monitor approve {old['finding_id']}" in text


def test_the_heartbeat_of_an_empty_database_says_no_transactions_were_imported():
    quiet = slack_message(report([], data_current_to=None), diff(), schedule=MONTHLY)
    text = text_of(quiet)
    assert "Monthly scan of 2026-12-01: no transactions imported yet." in text
    assert "All clear: nobody is charged, or about to be charged, after canceling." in text


def test_a_daily_scan_posts_when_something_was_resolved_or_never_carried():
    gone = finding(9, BILLING_DISCONNECT, 2)
    resolved = slack_message(report([]), diff(resolved=[gone]), schedule=DAILY)
    assert "Resolved since the last scan: 1 (1 of them at risk)" in text_of(resolved)
    assert gone["paypal_subscription_id"] not in text_of(resolved)
    # the post that announced it failed: the next daily scan still says it
    missed = finding(8, BILLING_DISCONNECT, 3)
    unreported = OpenFinding(missed, first_seen_at=None, months_open=0, changed=False, unreported=True)
    again = slack_message(report([missed]), diff(still_open=[unreported]), schedule=DAILY)
    assert f"billing-monitor approve {missed['finding_id']}" in text_of(again)


def test_a_stale_import_is_shown_first_and_forbids_the_all_clear():
    r = report([stale()])
    message = slack_message(r, diff(new=r["findings"]), schedule=MONTHLY)
    first = message["blocks"][1]["text"]["text"]      # right under the header
    assert first == (":warning: *The imports have stopped: newest transaction imported 2026-11-01, 30 days before"
                     " the scan (stale after 14 days). Every other finding may be out of date.*")
    assert not ALL_CLEAR.search(text_of(message))
    assert "no action needed" not in text_of(message)    # stale_import is not a counted-only check


def test_a_table_that_shrank_is_shown_first_in_slack_and_the_email_and_forbids_the_all_clear():
    shrank = {**stale("public.transactions holds 0 rows; the previous saved scan (2026-11-01) read 41,203: an import"
                      " that emptied it, a changed policy or grant, or the wrong database"),
              "finding_id": "5hrunk", "check": SOURCE_SHRANK, "severity": CHECKS[SOURCE_SHRANK].severity}
    assert shrank["severity"] == "critical"
    r = report([shrank])
    message = slack_message(r, diff(new=r["findings"]), schedule=MONTHLY)
    assert message["blocks"][1]["text"]["text"] == (
        ":warning: *A table shrank: public.transactions holds 0 rows; the previous saved scan (2026-11-01) read 41,203:"
        " an import that emptied it, a changed policy or grant, or the wrong database. Every other finding may be"
        " wrong.*")
    assert not ALL_CLEAR.search(text_of(message))
    assert "no action needed" not in text_of(message)
    email = email_text(r, diff(new=r["findings"]), schedule=MONTHLY)
    assert "WARNING: A table shrank: public.transactions holds 0 rows" in email
    assert not ALL_CLEAR.search(email)


# ---------------------------------------------------------------- what needs no action: one counted line


def test_findings_that_need_no_action_are_one_counted_line_never_listed():
    quiet = ([finding(100 + i, DUPLICATE_SUBSCRIPTION) for i in range(85)]
             + [finding(300 + i, MISFILED_PAYPAL_ID) for i in range(85)]
             + [finding(500 + i, PAYPAL_ONLY) for i in range(7)])
    charged = finding(1, BILLING_DISCONNECT, 3)
    r = report([charged, *quiet])
    message = slack_message(r, diff(new=r["findings"]), schedule=MONTHLY)
    text = text_of(message)
    assert text.count("85 duplicate_subscription, 85 misfiled_paypal_id, 7 paypal_only: no action needed") == 1
    assert "(177 of them new)" in text
    assert not any(f["contact"]["email"] in text for f in quiet)
    assert not any(f["paypal_subscription_id"] in text for f in quiet)
    # "still open" counts only the customers at risk, not the 177
    again = slack_message(r, diff(still_open=[still(f) for f in r["findings"]]), schedule=MONTHLY)
    assert "Still open: 1 at risk (oldest 2 month(s))" in text_of(again)
    assert "All clear" in text_of(slack_message(report(quiet), diff(), schedule=MONTHLY))


# ---------------------------------------------------------------- Slack's limits


def assert_within_slack_limits(message: dict) -> None:
    blocks = message["blocks"]
    assert len(blocks) <= SLACK_MAX_BLOCKS
    headers = [b for b in blocks if b["type"] == "header"]
    assert len(headers) == 1
    assert len(headers[0]["text"]["text"]) <= SLACK_HEADER_MAX
    for text in sections(message):
        assert len(text) <= SLACK_SECTION_MAX
    assert len(text_of(message)) <= SLACK_TEXT_BUDGET          # Slack refuses ~13,000 characters of blocks
    assert len(json.dumps(message)) < 20_000


def test_160_customers_at_risk_keep_every_slack_limit_and_the_rest_is_counted():
    new = [finding(i, BILLING_DISCONNECT, 1 + i % 20) for i in range(60)]
    changed = [finding(1000 + i, POST_CANCELLATION_CHARGE, 2) for i in range(60)]
    reminded = [finding(2000 + i, BILLING_DISCONNECT, 0) for i in range(40)]
    r = report(new + changed + reminded)
    message = slack_message(r, diff(new=new, still_open=[still(f, changed=True) for f in changed]
                                    + [still(f) for f in reminded]), schedule=MONTHLY)
    assert_within_slack_limits(message)
    text = text_of(message)
    named = text.count("billing-monitor approve ")
    more = [int(n) for n in re.findall(r"…and (\d+) more: `billing-monitor scan`", text)]
    assert len(more) == 3                                       # each group says how many it left out
    assert named + sum(more) == 160
    assert named >= 20
    for title in ("*New: 60 at risk*", "*Changed since the last scan: 60*", "*Still at risk: 40 (monthly reminder)*"):
        assert title in text
    assert message["blocks"][0]["text"]["text"] == headline(r)   # the count and money of every critical customer
    assert headline(r).startswith("120 customers charged after canceling: ")


def test_huge_names_and_many_currencies_still_fit():
    weird = [finding(i, BILLING_DISCONNECT, 2, name="<b>&" * 3000) for i in range(30)]
    r = report(weird)
    r["summary"]["charged_after_cancellation"] = {f"C{i:02d}": {"count": 2, "total": "44.00"} for i in range(40)}
    message = slack_message(r, diff(new=weird), schedule=DAILY)
    assert_within_slack_limits(message)
    text = text_of(message)
    assert "<b>" not in text                                    # escaped, and never cut inside an escape
    assert not re.search(r"&(?!amp;|lt;|gt;)", text)
    assert headline(r) in sections(message)[0]                  # the money line in full, under a cut header


def test_failure_message_is_one_escaped_line():
    message = failure_message("2026-12-01", "cannot connect to <host>\nsecond line", "nothing was saved, published or posted")
    assert message == {"text": ":x: The scan of 2026-12-01 failed: cannot connect to &lt;host&gt; second line"
                               " (nothing was saved, published or posted)."}


def test_steps_say_truthfully_what_was_done():
    assert Steps().describe() == "nothing was saved, published or posted"
    assert Steps(saved=True).describe() == "scan saved, not published to SNS, not posted to Slack"
    assert Steps(saved=True, published=True).describe() == "scan saved, published to SNS, not posted to Slack"
    failed = MonitoringFailed("2026-12-01", "NotFoundException while publishing to SNS: no topic", Steps(saved=True))
    assert str(failed) == ("the scan of 2026-12-01 failed: NotFoundException while publishing to SNS: no topic"
                           " (scan saved, not published to SNS, not posted to Slack)")


# ---------------------------------------------------------------- which schedule ran the scan


@pytest.mark.parametrize(("event", "schedule"), [
    (load_event("scheduled_monthly.json"), MONTHLY),
    (load_event("scheduled_daily.json"), DAILY),
    # a rule without the template's input: EventBridge's Scheduled Event, the rule named by SAM
    ({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {},
      "resources": ["arn:aws:events:us-east-1:123456789012:rule/billing-monitor-ScanFunctionDailyScan-1X2Y3Z"]}, DAILY),
    ({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {},
      "resources": ["arn:aws:events:us-east-1:123456789012:rule/billing-monitor-ScanFunctionMonthlyScan-9Q8R"]},
     MONTHLY),
    ({}, MANUAL), ({"schedule": "hourly"}, MANUAL), (None, MANUAL),
])
def test_the_schedule_comes_from_the_input_else_the_rule_name(event, schedule):
    assert schedule_of(event) == schedule


# ---------------------------------------------------------------- SNS: the report for machines, a text for people


def envelope(message) -> tuple[dict, str]:
    outer = json.loads(message.body)
    assert set(outer) == {"default", "email"}
    return json.loads(outer["default"]), outer["email"]


def test_small_report_goes_whole_with_filter_attributes():
    r = report([finding(1, BILLING_DISCONNECT, 3), finding(2)])
    message = sns_message(r, None)
    default, _ = envelope(message)
    assert default == r
    assert message.attributes["highest_severity"] == {"DataType": "String", "StringValue": "critical"}
    assert message.attributes["critical_count"] == {"DataType": "Number", "StringValue": "1"}


def test_the_email_is_plain_text_a_person_reads_and_the_subject_is_the_money_line():
    charged, leaving = finding(7, BILLING_DISCONNECT, 21), finding(8, BILLING_DISCONNECT, 0)
    quiet = [finding(100 + i, DUPLICATE_SUBSCRIPTION) for i in range(3)]
    r = report([charged, leaving, stale(), *quiet])
    message = sns_message(r, diff(new=r["findings"]), schedule=MONTHLY)
    default, email = envelope(message)
    assert default["findings"] == r["findings"]
    assert default["changes"]["new"] == [f["finding_id"] for f in r["findings"]]
    assert message.subject == "1 customer charged after canceling: 21 charges, 462.00 USD; 1 more about to be charged"
    assert email.splitlines()[0] == message.subject
    assert "Monthly scan of 2026-12-01: data current to 2026-11-30." in email
    assert "WARNING: The imports have stopped: newest transaction imported 2026-11-01" in email
    assert "- Member 7 <member7@example.com>, PayPal I-000000000007: charged 21x over 21 months after canceling," \
           " 462.00 USD (canceled in Kajabi 2024-01-16)" in email
    assert f"  To stop it, approve the cancellation: billing-monitor approve {charged['finding_id']}" in email
    assert "- Member 8 <member8@example.com>, PayPal I-000000000008: about to be charged: canceled in Kajabi" \
           " on 2024-01-16 (22.00 USD/month)\n  PayPal's next charge: unknown (not checked with PayPal)" in email
    assert "3 duplicate_subscription: no action needed." in email
    assert "member100@example.com" not in email
    assert "&lt;" not in email
    assert "*" not in email                                     # no Slack markup
    assert "All clear" not in email


def test_the_subject_is_always_safe_for_sns():
    r = report([finding(i, BILLING_DISCONNECT, 2) for i in range(3)])
    r["summary"]["charged_after_cancellation"] = {f"É{i:02d}\n": {"count": 2, "total": "44.00"} for i in range(20)}
    subject = sns_message(r, None).subject
    assert len(subject) <= 100
    assert re.fullmatch(r"[ -~]+", subject)                    # printable ASCII, one line
    assert subject[0].isalnum()
    assert sns_subject("\n\t") == "billing-monitor scan"


def test_oversized_report_keeps_critical_and_warning_and_says_what_was_left_out():
    findings = ([finding(i, BILLING_DISCONNECT, 2) for i in range(3)]
                + [finding(100 + i, DUPLICATE_SUBSCRIPTION) for i in range(50)]
                + [finding(1000 + i) for i in range(3000)])
    r = report(findings)
    assert len(json.dumps(r)) > SNS_LIMIT
    message = sns_message(r, None)
    assert message.size < SNS_LIMIT
    sent, email = envelope(message)                            # whole JSON, not split
    assert {f["severity"] for f in sent["findings"]} == {"critical", "warning"}
    assert len(sent["findings"]) == 53
    assert sent["findings_omitted"] == 3000
    assert "256 KB" in sent["note"]
    assert sent["summary"] == r["summary"]
    assert email.count("billing-monitor approve") == 3


def test_report_too_large_even_for_warnings_keeps_the_critical_ones():
    findings = ([finding(i, BILLING_DISCONNECT, 1) for i in range(2)]
                + [finding(100 + i, DUPLICATE_SUBSCRIPTION) for i in range(3000)])
    sent, _ = envelope(sns_message(report(findings), None))
    assert [f["severity"] for f in sent["findings"]] == ["critical", "critical"]
    assert sent["findings_omitted"] == 3000


def test_a_huge_report_with_thousands_at_risk_stays_under_256_kb_with_both_parts():
    at_risk = [finding(i, BILLING_DISCONNECT, 30) for i in range(3000)]
    r = report(at_risk + [finding(10_000 + i) for i in range(3000)])
    message = sns_message(r, diff(new=r["findings"]))
    assert message.size < SNS_LIMIT
    assert len(message.body.encode()) < SNS_LIMIT
    sent, email = envelope(message)
    assert sent["summary"] == r["summary"]                     # at worst the summary alone
    assert email.startswith("3000 customers charged after canceling: 90000 charges, 1,980,000.00 USD")
    assert re.search(r"\.\.\.and \d+ more: billing-monitor scan", email)
    assert len(message.subject) <= 100


# ---------------------------------------------------------------- PayPal's view (paypal-reconciliation.md)


def paypal_finding(i: int, check: str, *, status: str, count: int, owed: int) -> dict:
    f = finding(i, PAYPAL_ONLY)
    block = {"count": count, "total": f"{22 * count}.00", "refunded": f"{22 * (count - owed)}.00",
             "owed": f"{22 * owed}.00", "partially_refunded": [], "not_imported": [f"T{i}X{n}" for n in range(owed)],
             "transactions": [f"T{i}X{n}" for n in range(count)]}
    f.update(check=check, severity=CHECKS[check].severity,
             charges={"count": count, "total": block["total"], "first": "2025-02-16T00:00:00+00:00",
                      "last": "2025-06-16T00:00:00+00:00", "transactions": block["transactions"],
                      "external_ids": [None] * count},
             action={"type": "cancel_paypal_subscription", "paypal_subscription_id": f"I-{i:012d}"}
             if check == "paypal_still_active" else None,
             paypal={"status": status, "canceled_at": "2025-01-16T00:00:00+00:00", "next_billing_time": None,
                     "charges_after_cancellation": block},
             refund={"type": "refund_paypal_charges", "paypal_subscription_id": f"I-{i:012d}",
                     "total": block["owed"], "transactions": block["transactions"][:owed]} if owed else None)
    return f


def with_owed(r: dict, customers: int, total: str) -> dict:
    r["summary"]["owed"] = {"USD": {"customers": customers, "total": total}}
    r["summary"]["charged_after_cancellation"] = {}         # the database meaning: none of these are its findings
    r["paypal"] = {"environment": "live", "checked_at": r["started_at"], "watched": 2, "asked": 17,
                   "remembered_settled": 0, "searched_from": "2025-10-27T09:00:00+00:00",
                   "searched_to": r["started_at"], "not_found": [], "errors": [], "not_checked": 0}
    return r


def test_paypal_still_active_is_named_with_paypals_view_and_the_money_line_gains_what_is_owed():
    active = paypal_finding(1, "paypal_still_active", status="ACTIVE", count=22, owed=22)
    r = with_owed(report([active]), 1, "484.00")
    message = slack_message(r, diff(new=[active]), schedule=MONTHLY)
    text = text_of(message)
    assert message["text"] == "1 customer charged after canceling: 22 charges, 484.00 USD; 1 customer owed 484.00 USD"
    assert "PayPal: ACTIVE; 22 charges after canceling 484.00, refunded 0.00, owed 484.00 USD, 22 not imported" in text
    assert "billing-monitor approve 0000000000000001" in text
    assert "All clear" not in text


def test_refund_owed_stays_in_the_monthly_message_under_owed_and_is_never_all_clear():
    owed = paypal_finding(2, "refund_owed", status="CANCELLED", count=3, owed=2)
    r = with_owed(report([owed]), 1, "44.00")
    still = OpenFinding(owed, first_seen_at=None, months_open=2, changed=False)
    text = text_of(slack_message(r, diff(still_open=[still]), schedule=MONTHLY))
    assert "Owed: 1 (charging stopped, not refunded yet)" in text
    assert "owed 44.00 USD" in text
    assert "All clear" not in text
    assert "Owed, charging stopped (1):" in sns_email(r)


def test_slack_says_how_many_subscriptions_could_not_be_checked():
    r = with_owed(report([]), 0, "0.00")
    r["summary"]["owed"] = {}
    r["paypal"].update(not_checked=3, errors=["I-1: PayPal answered 500 reading I-1"])
    text = text_of(slack_message(r, diff(), schedule=MONTHLY))
    assert "PayPal: 3 subscriptions could not be checked (I-1: PayPal answered 500 reading I-1)" in text
    assert "All clear" not in text


def sns_email(r: dict) -> str:
    return json.loads(sns_message(r, None).body)["email"]


def test_paypal_down_for_every_id_still_fits_sns_with_the_errors_counted():
    r = with_owed(report([]), 0, "0.00")
    r["summary"]["owed"] = {}
    r["paypal"].update(not_checked=20_000, errors=[f"I-{i:012d}: PayPal answered 503 reading it" for i in range(20_000)])
    message = sns_message(r, None)
    assert message.size < SNS_LIMIT
    sent = json.loads(json.loads(message.body)["default"])["paypal"]
    assert (len(sent["errors"]), sent["errors_omitted"]) == (50, 19_950)
    assert "PayPal: 20000 subscriptions could not be checked" in json.loads(message.body)["email"]
