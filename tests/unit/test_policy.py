"""Auto-cancel's policy (prevention.md): each of the six criteria decides on its own, the cap, the message."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from billing_monitor.actions.approval import ApprovalMessage, ApprovalRefused, parse_approval
from billing_monitor.actions.policy import Facts, approval_message, decide, refusal
from billing_monitor.rules.registry import BILLING_DISCONNECT, DUPLICATE_SUBSCRIPTION, PAYPAL_STILL_ACTIVE, POST_CANCELLATION_CHARGE

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
PID = "I-LEAVING000001"
ROW = "0b7d4c2a-0000-4000-8000-000000000001"


def disconnect(i: int = 1, **changes) -> dict:
    """A billing_disconnect that qualifies: canceled in Kajabi two days ago, PayPal ACTIVE and billing on the 16th."""
    pid = f"I-LEAVING{i:06d}"
    f = {"finding_id": f"{i:016x}", "check": BILLING_DISCONNECT, "severity": "warning", "subscription_id": f"row-{i}",
         "paypal_subscription_id": pid, "kajabi_subscription_id": "644797565",
         "contact": {"id": f"c{i}", "email": f"m{i}@example.com", "name": f"Member {i}"},
         "amount": "22.00", "currency": "USD", "billing_cycle": "month",
         "kajabi_canceled_at": (NOW - timedelta(days=2)).isoformat(), "charges": None,
         "action": {"type": "cancel_paypal_subscription", "paypal_subscription_id": pid},
         "paypal": {"status": "ACTIVE", "canceled_at": (NOW - timedelta(days=2)).isoformat(),
                    "next_billing_time": "2026-12-16T10:00:00+00:00", "charges_after_cancellation": None},
         "refund": None}
    f.update(changes)
    return f


def why(f: dict, facts: Facts | None = None, grace: float = 24) -> str | None:
    return refusal(f, now=NOW, grace_hours=grace, facts=facts or Facts())


def test_a_disconnect_that_qualifies_is_queued_with_the_specs_message():
    f = disconnect()
    decision = decide([f], now=NOW, reconciled=True, facts=Facts())
    assert [q["finding_id"] for q in decision.queued] == [f["finding_id"]]
    assert decision.line is None
    message = approval_message(f)
    assert message == {"action": "cancel_paypal_subscription", "finding_id": f["finding_id"],
                       "paypal_subscription_id": "I-LEAVING000001", "approved_by": "auto-cancel", "policy": "unambiguous",
                       "reason": "Canceled in Kajabi on 2026-12-02; auto-canceled before PayPal's charge of 2026-12-16"}
    parsed = ApprovalMessage.model_validate(message)          # the cancel function accepts it
    assert parsed.automatic
    assert parsed.policy == "unambiguous"


def test_a_paypal_still_active_finding_qualifies_too():
    f = disconnect(check=PAYPAL_STILL_ACTIVE, severity="critical")
    assert why(f) is None


# each criterion flips alone: the same qualifying finding, one thing changed


def test_criterion_1_only_disconnects_and_still_active():
    assert why(disconnect(check=POST_CANCELLATION_CHARGE)) == ("post_cancellation_charge needs a person's approval"
                                                               " (auto-cancel takes billing_disconnect and paypal_still_active)")
    assert why(disconnect(action=None)) == "nothing to cancel in PayPal"


@pytest.mark.parametrize(("paypal", "reason"), [
    ({"status": "CANCELLED", "canceled_at": "2026-12-02T09:00:00+00:00", "next_billing_time": None}, "PayPal shows CANCELLED"),
    ({"status": "APPROVED", "canceled_at": "2026-12-02T09:00:00+00:00", "next_billing_time": None}, "PayPal shows APPROVED"),
    ({"status": None, "error": "PayPal answered 503"}, "PayPal could not be checked"),
    (None, "PayPal could not be checked"),
])
def test_criterion_2_paypal_must_say_active_or_suspended_in_this_scan(paypal, reason):
    assert why(disconnect(paypal=paypal)) == reason
    assert why(disconnect(paypal=dict(disconnect()["paypal"], status="SUSPENDED"))) is None


def test_criterion_3_another_live_row_naming_the_paypal_id_makes_it_ambiguous():
    f = disconnect()
    assert why(f, Facts(live_rows={f["paypal_subscription_id"]: ["row-1"]})) is None       # its own row
    assert why(f, Facts(live_rows={f["paypal_subscription_id"]: ["row-1", "row-9"]})) == \
        "another live subscriptions row holds I-LEAVING000001 (row-9): ambiguous"


def test_criterion_4_a_cancellation_inside_the_grace_waits():
    three_hours = (NOW - timedelta(hours=3)).isoformat()
    f = disconnect(kajabi_canceled_at=three_hours, paypal=dict(disconnect()["paypal"], canceled_at=three_hours))
    assert why(f) == "canceled in Kajabi 3 hours ago (grace 24 h)"
    assert why(f, grace=2) is None
    at_the_edge = (NOW - timedelta(hours=24)).isoformat()
    assert why(disconnect(paypal=dict(disconnect()["paypal"], canceled_at=at_the_edge))) is None


def test_criterion_5_an_acknowledged_finding_is_left_to_the_owner():
    assert why(disconnect(acknowledged=None)) is None
    assert why(disconnect(acknowledged={"by": "owner@example.com", "at": "2026-12-03T10:00:00+00:00"})) == "acknowledged"


def test_criterion_6_an_id_canceled_before_is_never_auto_canceled_again():
    f = disconnect()
    assert why(f, Facts(done_before={"I-OTHER"})) is None
    assert why(f, Facts(done_before={f["paypal_subscription_id"]})) == \
        "I-LEAVING000001 was canceled or auto-canceled before: never auto-canceled again"


def test_more_candidates_than_the_cap_queues_none_and_says_so_in_one_line():
    six = [disconnect(i) for i in range(1, 7)]
    decision = decide(six, now=NOW, max_per_run=5, reconciled=True, facts=Facts())
    assert decision.queued == []
    assert decision.line == ("6 subscriptions would be auto-canceled, more than AutoCancelMaxPerRun (5): nothing was"
                             " canceled; approve them one by one, or raise the limit")
    assert len(decide(six[:5], now=NOW, max_per_run=5, reconciled=True, facts=Facts()).queued) == 5


def test_a_scan_without_paypal_queues_nothing_and_each_customer_says_why():
    decision = decide([disconnect()], now=NOW, reconciled=False, facts=Facts())
    assert decision.queued == []
    assert decision.not_queued == {disconnect()["finding_id"]: "PayPal was not checked by this scan"}
    assert decision.line == "Auto-cancel: nothing queued, this scan did not reconcile with PayPal"


def test_findings_that_are_not_at_risk_are_not_mentioned():
    quiet = disconnect(check=DUPLICATE_SUBSCRIPTION, action=None)
    decision = decide([quiet], now=NOW, reconciled=True, facts=Facts())
    assert decision.queued == []
    assert decision.not_queued == {}


def test_a_person_may_not_pose_as_auto_cancel_without_the_policy_nor_force_it():
    message = approval_message(disconnect())
    for bad in ({k: v for k, v in message.items() if k != "policy"}, dict(message, force=True),
                dict(message, approved_by="owner@example.com")):
        with pytest.raises(ApprovalRefused, match="malformed approval"):
            parse_approval(json.dumps(bad))


def test_the_policy_is_plain_python():
    """No AWS, no database, no clock of its own: the scan function, the CLI, the tests and the simulated year share it."""
    import ast
    from pathlib import Path

    import billing_monitor.actions.policy as policy

    tree = ast.parse(Path(policy.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "collections.abc", "dataclasses", "datetime", "billing_monitor.rules.registry"}
    assert "now(" not in Path(policy.__file__).read_text()
