"""The approval message of report-format.md: what is accepted, what is refused and why (no database)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from billing_monitor.actions.approval import ApprovalMessage, ApprovalRefused, build_approval, parse_approval, stored_body

ROOT = Path(__file__).resolve().parents[2]
VALID = {"action": "cancel_paypal_subscription", "finding_id": "6c3f746973e9a73c",
         "paypal_subscription_id": "I-LKL1NVUCV89B", "approved_by": "owner@example.com",
         "reason": "Canceled in Kajabi on 2023-08-16; still charged by PayPal"}
DISCONNECT = {"finding_id": "6c3f746973e9a73c", "check": "billing_disconnect",
              "paypal_subscription_id": "I-LKL1NVUCV89B", "kajabi_canceled_at": "2023-08-16T00:00:00+00:00",
              "charges": {"count": 21, "total": "462.00"},
              "action": {"type": "cancel_paypal_subscription", "paypal_subscription_id": "I-LKL1NVUCV89B"}}
DUPLICATE = {"finding_id": "0123456789abcdef", "check": "duplicate_subscription",
             "paypal_subscription_id": "I-DUP0001", "kajabi_canceled_at": None, "action": None}


def event_bodies(name: str) -> list[str]:
    return [r["body"] for r in json.loads((ROOT / "events" / name).read_text())["Records"]]


# ---------------------------------------------------------------- the model


def test_the_specs_example_message_is_accepted_as_written():
    approval = ApprovalMessage.model_validate(VALID)
    assert approval.model_dump() == {**VALID, "force": False}


def test_optional_fields_default_and_extra_keys_are_kept():
    approval = ApprovalMessage.model_validate({**{k: v for k, v in VALID.items() if k != "reason"},
                                               "ticket": "OPS-12"})
    assert (approval.reason, approval.force) == ("", False)
    assert approval.model_dump()["ticket"] == "OPS-12"       # keys may be added (report-format.md)


def test_surrounding_whitespace_is_stripped_before_validation():
    approval = ApprovalMessage.model_validate({**VALID, "paypal_subscription_id": " I-LKL1NVUCV89B\n",
                                               "approved_by": " owner@example.com "})
    assert approval.paypal_subscription_id == "I-LKL1NVUCV89B"
    assert approval.approved_by == "owner@example.com"


@pytest.mark.parametrize(("field", "value"), [
    ("action", "refund"),
    ("action", "Cancel_PayPal_Subscription"),
    ("finding_id", "6c3f746973e9a73"),            # 15 characters
    ("finding_id", "6c3f746973e9a73c0"),          # 17
    ("finding_id", "6C3F746973E9A73C"),           # finding ids are lower-case hex
    ("finding_id", "6c3f746973e9a73g"),
    ("paypal_subscription_id", "i-lkl1nvucv89b"),
    ("paypal_subscription_id", "I-"),
    ("paypal_subscription_id", "I-ABC-1"),
    ("paypal_subscription_id", "../../v1/oauth2/token"),
    ("paypal_subscription_id", "I-" + "A" * 49),  # 51 characters: more than 50
    ("approved_by", "not-an-email"),
    ("approved_by", "owner@example"),
    ("approved_by", "two words@example.com"),
    ("approved_by", "a" * 243 + "@example.com"),  # 255 characters: more than 254
    ("reason", "x" * 129),
    ("force", "maybe"),
    ("force", [True]),
])
def test_each_field_refuses_what_it_must(field, value):
    with pytest.raises(ValidationError) as raised:
        ApprovalMessage.model_validate({**VALID, field: value})
    assert [e["loc"] for e in raised.value.errors()] == [(field,)]


@pytest.mark.parametrize("field", ["action", "finding_id", "paypal_subscription_id", "approved_by"])
def test_required_fields(field):
    with pytest.raises(ValidationError) as raised:
        ApprovalMessage.model_validate({k: v for k, v in VALID.items() if k != field})
    assert [(e["loc"], e["type"]) for e in raised.value.errors()] == [((field,), "missing")]


def test_longest_accepted_values():
    approval = ApprovalMessage.model_validate({**VALID, "paypal_subscription_id": "I-" + "A" * 48,
                                               "approved_by": "a" * 242 + "@example.com", "reason": "x" * 128})
    assert (len(approval.paypal_subscription_id), len(approval.approved_by), len(approval.reason)) == (50, 254, 128)


def test_idempotency_key_is_the_business_key_not_the_wording():
    first = ApprovalMessage.model_validate(VALID)
    again = ApprovalMessage.model_validate({**VALID, "approved_by": "partner@example.com", "reason": "same thing",
                                            "paypal_subscription_id": " I-LKL1NVUCV89B "})
    other = ApprovalMessage.model_validate({**VALID, "paypal_subscription_id": "I-OTHER0001"})
    assert first.idempotency_key == "6c3f746973e9a73c:I-LKL1NVUCV89B"
    assert again.idempotency_key == first.idempotency_key
    assert other.idempotency_key != first.idempotency_key


def test_paypal_reason_is_the_owners_reason_or_names_the_approver_within_128_characters():
    assert ApprovalMessage.model_validate(VALID).paypal_reason == VALID["reason"]
    plain = ApprovalMessage.model_validate({**VALID, "reason": ""})
    assert plain.paypal_reason == "Canceled by billing-monitor, approved by owner@example.com"
    long_approver = ApprovalMessage.model_validate({**VALID, "reason": "", "approved_by": "a" * 120 + "@example.com"})
    assert len(long_approver.paypal_reason) == 128
    assert long_approver.paypal_reason.startswith("Canceled by billing-monitor, approved by aaaa")


# ---------------------------------------------------------------- what `billing-monitor approve` sends


def test_build_approval_for_a_disconnect_explains_itself_with_the_kajabi_date():
    message = build_approval(DISCONNECT, "owner@example.com")
    assert message == VALID
    assert "force" not in message


def test_build_approval_uses_the_owners_reason_or_one_the_report_supports():
    assert build_approval(DISCONNECT, "owner@example.com", "Left in July")["reason"] == "Left in July"
    not_charged = {**DISCONNECT, "charges": {"count": 0, "total": "0.00", "first": None, "last": None,
                                             "transactions": []}}
    assert build_approval(not_charged, "owner@example.com")["reason"] == (
        "Canceled in Kajabi on 2023-08-16; PayPal would bill at the next cycle")   # not "still charged"
    undated = {**DISCONNECT, "check": "post_cancellation_charge", "kajabi_canceled_at": None,
               "charges": {"count": 3, "total": "66.00"}}
    assert build_approval(undated, "owner@example.com")["reason"] == (
        "Charged 3x after the subscription ended; approved in billing-monitor")


def test_build_approval_cancels_the_actions_paypal_id():
    finding = {**DISCONNECT, "paypal_subscription_id": "I-ROWCOLUMN1",
               "action": {"type": "cancel_paypal_subscription", "paypal_subscription_id": "I-ACTION0001"}}
    assert build_approval(finding, "owner@example.com")["paypal_subscription_id"] == "I-ACTION0001"


def test_a_finding_that_suggests_no_cancellation_is_refused_even_forced():
    with pytest.raises(ApprovalRefused) as raised:
        build_approval(DUPLICATE, "owner@example.com")
    assert str(raised.value) == "finding 0123456789abcdef (duplicate_subscription) suggests no PayPal cancellation"
    with pytest.raises(ApprovalRefused) as raised:
        build_approval(DUPLICATE, "owner@example.com", force=True)
    assert str(raised.value).endswith("; --force only skips the re-check of a finding that does")


def test_forcing_a_finding_that_suggests_a_cancellation_marks_it():
    forced = build_approval(DISCONNECT, "owner@example.com", force=True)
    assert (forced["paypal_subscription_id"], forced["force"]) == (DISCONNECT["action"]["paypal_subscription_id"], True)
    assert ApprovalMessage.model_validate(forced).force is True


def test_forcing_a_finding_with_no_paypal_subscription_is_refused():
    orphan = {"finding_id": "fedcba9876543210", "check": "orphaned_transaction", "paypal_subscription_id": None,
              "kajabi_canceled_at": None, "action": None}
    with pytest.raises(ApprovalRefused, match=r"^finding fedcba9876543210 \(orphaned_transaction\) suggests no"):
        build_approval(orphan, "owner@example.com", force=True)


@pytest.mark.parametrize(("approved_by", "reason", "needle"), [
    ("not-an-email", None, "invalid approval: approved_by: String should match pattern"),
    ("owner@example.com", "x" * 129, "invalid approval: reason: String should have at most 128 characters"),
])
def test_build_approval_refuses_what_the_cancel_function_would_refuse(approved_by, reason, needle):
    with pytest.raises(ApprovalRefused) as raised:
        build_approval(DISCONNECT, approved_by, reason)
    assert str(raised.value).startswith(needle)


# ---------------------------------------------------------------- what the cancel function accepts


def test_the_events_files_valid_and_duplicate_messages_parse():
    for body in event_bodies("sqs_approval_valid.json") + event_bodies("sqs_approval_duplicate.json"):
        approval = parse_approval(body)
        assert approval.idempotency_key == "6c3f746973e9a73c:I-LKL1NVUCV89B"
        assert approval.force is False


def test_the_events_files_malformed_message_is_refused_as_invalid_json():
    [body] = event_bodies("sqs_approval_malformed.json")
    with pytest.raises(ApprovalRefused) as raised:
        parse_approval(body)
    assert str(raised.value).startswith("malformed approval: body: Invalid JSON")


@pytest.mark.parametrize(("body", "message"), [
    ("[]", "malformed approval: body: Input should be an object"),
    ("null", "malformed approval: body: Input should be an object"),
    ("{}", "malformed approval: action: Field required; finding_id: Field required;"
           " paypal_subscription_id: Field required; approved_by: Field required"),
    (json.dumps({**VALID, "action": "refund"}), "malformed approval: action: Input should be 'cancel_paypal_subscription'"),
    (json.dumps({**VALID, "force": "maybe"}), "malformed approval: force: Input should be a valid boolean"),
])
def test_parse_errors_name_the_problem(body, message):
    with pytest.raises(ApprovalRefused) as raised:
        parse_approval(body)
    assert str(raised.value).startswith(message)


def test_parse_names_every_problem_up_to_five():
    body = json.dumps({"action": "refund", "finding_id": "x", "paypal_subscription_id": "i-1",
                       "approved_by": "nope", "reason": "y" * 200, "force": "maybe"})
    with pytest.raises(ApprovalRefused) as raised:
        parse_approval(body)
    named = [part.split(":")[0] for part in str(raised.value).removeprefix("malformed approval: ").split("; ")]
    assert named == ["action", "finding_id", "paypal_subscription_id", "approved_by", "reason"]


def test_approved_by_is_a_label_the_sender_is_the_proof():
    """Any well-formed e-mail parses: who sent the message is checked on its SenderId (approvers.py)."""
    assert parse_approval(json.dumps({**VALID, "approved_by": "Partner@Example.COM"})).approved_by == (
        "Partner@Example.COM")


def test_the_audit_keeps_the_body_as_it_arrived_cut_past_4_kb():
    assert stored_body(json.dumps(VALID)) == VALID
    assert stored_body('{"action": "cancel_paypal_subscription"') == {"raw": '{"action": "cancel_paypal_subscription"'}
    assert stored_body("x" * 5000) == {"raw": "x" * 4096, "length": 5000, "cut": True}
    big_json = json.dumps({**VALID, "note": "y" * 5000})
    assert stored_body(big_json) == {"raw": big_json[:4096], "length": len(big_json), "cut": True}
