"""The scan's Slack message with the buttons of slack-actions.md (no I/O): Slack's limits whatever the number of
findings, values only the secret's holder can make, dialogs naming the customer, the PayPal id and the money."""

from __future__ import annotations

import json
import re

import pytest

from billing_monitor.notify import DAILY, MONTHLY
from billing_monitor.rules.registry import (
    BILLING_DISCONNECT,
    DUPLICATE_SUBSCRIPTION,
    MISFILED_PAYPAL_ID,
    PAYPAL_ONLY,
    POST_CANCELLATION_CHARGE,
    REFUND_OWED,
)
from billing_monitor.slack.buttons import ACKNOWLEDGE, ACKNOWLEDGE_FOR, APPROVE_CANCEL, APPROVE_REFUND, ButtonMac
from billing_monitor.slack.message import (
    SLACK_ACTIONS_MAX,
    SLACK_BUTTON_TEXT_MAX,
    SLACK_CONFIRM_TEXT_MAX,
    SLACK_HEADER_MAX,
    SLACK_MAX_BLOCKS,
    SLACK_OPTION_TEXT_MAX,
    SLACK_OPTIONS_MAX,
    SLACK_SECTION_MAX,
    SLACK_TEXT_BUDGET,
    _text_of,
    slack_message,
)
from tests.unit.test_notify import diff, finding, report, still

SECRET = "unit-signing-secret"
MACS = ButtonMac(SECRET)


def elements(message: dict, action_id: str | None = None) -> list[dict]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
            if action_id is None or e["action_id"] == action_id]


def assert_within_slack_limits(message: dict) -> None:
    blocks = message["blocks"]
    assert len(blocks) <= SLACK_MAX_BLOCKS
    assert sum(b["type"] == "header" for b in blocks) == 1
    assert len(blocks[0]["text"]["text"]) <= SLACK_HEADER_MAX
    block_ids = [b["block_id"] for b in blocks if "block_id" in b]
    assert len(block_ids) == len(set(block_ids))                 # Slack refuses a repeated block_id
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SLACK_SECTION_MAX
        if block["type"] == "actions":
            assert 1 <= len(block["elements"]) <= SLACK_ACTIONS_MAX
            ids = [e["action_id"] for e in block["elements"]]
            assert len(ids) == len(set(ids))                     # unique within the block
    for e in elements(message):
        if e["type"] == "button":
            assert len(e["text"]["text"]) <= SLACK_BUTTON_TEXT_MAX
            assert len(e["value"]) <= 2000
            assert len(e["confirm"]["text"]["text"]) <= SLACK_CONFIRM_TEXT_MAX
            assert len(e["confirm"]["title"]["text"]) <= 100
        else:
            assert len(e["options"]) <= SLACK_OPTIONS_MAX
            assert all(len(o["text"]["text"]) <= SLACK_OPTION_TEXT_MAX for o in e["options"])
            assert all(len(o["value"]) <= 150 for o in e["options"])
    assert sum(len(_text_of(b)) for b in blocks) <= SLACK_TEXT_BUDGET
    assert len(json.dumps(message)) < 40_000


def owed(f: dict, total: str = "44.00") -> dict:
    return dict(f, refund={"transactions": [f"CAPTURE{f['finding_id']}A", f"CAPTURE{f['finding_id']}B"],
                           "total": total, "paypal_subscription_id": f["paypal_subscription_id"]})


def test_200_findings_with_buttons_stay_within_slack_limits_and_the_rest_is_counted():
    new = [finding(i, BILLING_DISCONNECT, 1 + i % 20) for i in range(60)]
    changed = [owed(finding(1000 + i, POST_CANCELLATION_CHARGE, 2)) for i in range(60)]
    reminded = [finding(2000 + i, BILLING_DISCONNECT, 0) for i in range(40)]
    quiet = [finding(3000 + i, check) for i, check in enumerate([DUPLICATE_SUBSCRIPTION] * 20 + [PAYPAL_ONLY] * 10
                                                                 + [MISFILED_PAYPAL_ID] * 10)]
    r = report(new + changed + reminded + quiet)
    message = slack_message(r, diff(new=new, still_open=[still(f, changed=True) for f in changed]
                                    + [still(f) for f in reminded + quiet]), schedule=MONTHLY, buttons=MACS)
    assert_within_slack_limits(message)
    text = "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")
    named = text.count("billing-monitor approve ") - text.count("--refund")
    more = [int(n) for n in re.findall(r"…and (\d+) more: `billing-monitor scan`", text)]
    assert named + sum(more) == 160                             # every customer at risk named or counted
    cancels = elements(message, APPROVE_CANCEL)
    assert named >= 15
    assert 8 <= len(cancels) <= named                           # the first ones with their buttons
    assert elements(message, APPROVE_REFUND)
    # one Acknowledge menu per counted check, each beside its duration
    menus = [b for b in message["blocks"] if b["type"] == "actions" and b["block_id"].startswith("ack:")]
    assert {b["block_id"] for b in menus} == {"ack:duplicate_subscription", "ack:paypal_only", "ack:misfiled_paypal_id"}
    for b in menus:
        assert [e["action_id"] for e in b["elements"]] == [ACKNOWLEDGE, ACKNOWLEDGE_FOR]
        assert [o["value"] for o in b["elements"][1]["options"]] == ["changes", "30d", "90d"]


@pytest.mark.parametrize("schedule", [MONTHLY, DAILY])
def test_every_value_is_a_mac_of_the_secret_for_its_action_and_finding(schedule):
    fs = [finding(1, BILLING_DISCONNECT, 3), owed(finding(2, POST_CANCELLATION_CHARGE, 2)), finding(3, PAYPAL_ONLY)]
    message = slack_message(report(fs), diff(new=fs), schedule=schedule, buttons=MACS)
    values = [(e["action_id"], e["value"]) for e in elements(message) if e["type"] == "button"]
    values += [(ACKNOWLEDGE, o["value"]) for e in elements(message, ACKNOWLEDGE) for o in e["options"]]
    assert {(a, v.split(".")[0]) for a, v in values} == {
        (APPROVE_CANCEL, f"{1:016x}"), (APPROVE_CANCEL, f"{2:016x}"), (APPROVE_REFUND, f"{2:016x}"),
        (ACKNOWLEDGE, f"{3:016x}")}
    for action_id, value in values:
        assert MACS.finding_of(action_id, value) == value.split(".")[0]
        assert ButtonMac("the-webhook-holders-guess").finding_of(action_id, value) is None
        other = APPROVE_REFUND if action_id == APPROVE_CANCEL else APPROVE_CANCEL
        assert MACS.finding_of(other, value) is None            # a Cancel value never passes as a Refund one
    assert SECRET not in json.dumps(message)


def test_the_dialogs_name_the_customer_the_paypal_id_and_the_money():
    f = owed(finding(7, BILLING_DISCONNECT, 21, name="Oskar Dunmore"), total="462.00")
    message = slack_message(report([f]), diff(new=[f]), schedule=MONTHLY, buttons=MACS)
    [cancel] = elements(message, APPROVE_CANCEL)
    [refund] = elements(message, APPROVE_REFUND)
    for button in (cancel, refund):
        dialog = button["confirm"]["text"]["text"]
        assert "Oskar Dunmore" in dialog
        assert "member7@example.com" in dialog
        assert f["paypal_subscription_id"] in dialog
    assert "462.00 USD" in cancel["confirm"]["text"]["text"]
    assert refund["text"]["text"].startswith("Refund 462.00 USD")
    assert "462.00 USD" in refund["confirm"]["text"]["text"]


def test_without_a_signing_secret_the_message_is_as_before():
    fs = [finding(1, BILLING_DISCONNECT, 3), finding(3, PAYPAL_ONLY)]
    plain = slack_message(report(fs), diff(new=fs), schedule=MONTHLY)
    assert elements(plain) == []
    assert "billing-monitor approve 0000000000000001" in json.dumps(plain)


def test_acknowledged_findings_are_out_of_the_counts_and_the_menus():
    quiet = [finding(i, PAYPAL_ONLY) for i in range(5)]
    quiet[0]["acknowledged"] = {"by": "slack:U012AB3CDE", "at": "2026-12-01T09:00:00+00:00", "note": None, "until": None}
    message = slack_message(report(quiet), diff(still_open=[still(f) for f in quiet]), schedule=MONTHLY, buttons=MACS)
    text = json.dumps(message)
    assert "4 paypal_only: no action needed" in text
    assert "1 acknowledged, not counted" in text
    [menu] = elements(message, ACKNOWLEDGE)
    assert f"{0:016x}" not in {o["value"].split(".")[0] for o in menu["options"]}
    assert len(menu["options"]) == 4


def test_an_owed_customer_gets_a_refund_button_and_no_cancel():
    f = owed(finding(9, BILLING_DISCONNECT, 2))
    f.update(check=REFUND_OWED, action=None)
    message = slack_message(report([f]), diff(still_open=[still(f)]), schedule=MONTHLY, buttons=MACS)
    assert elements(message, APPROVE_CANCEL) == []
    assert len(elements(message, APPROVE_REFUND)) == 1


def test_when_the_blocks_run_out_customers_are_still_named_with_the_command():
    fs = [finding(i, BILLING_DISCONNECT, 0, name=f"M{i}") for i in range(45)]
    message = slack_message(report(fs), diff(new=fs), schedule=DAILY, buttons=MACS)
    assert_within_slack_limits(message)
    text = "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")
    named = text.count("billing-monitor approve ")
    more = [int(n) for n in re.findall(r"…and (\d+) more", text)]
    assert named + sum(more) == 45
    assert len(elements(message, APPROVE_CANCEL)) < named       # past the blocks, named without buttons
