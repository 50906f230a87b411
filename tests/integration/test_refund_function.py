# ruff: noqa: F811  - test parameters name the imported fixtures
"""Refund approvals through the approvals function (issue 14): real Postgres, moto SQS + DynamoDB, the
spec-validating fake PayPal (Payments v2 refunds with PayPal-Request-Id), the fake Slack."""

from __future__ import annotations

import json

import psycopg
import pytest

from billing_monitor.actions import cancel as cancellation
from billing_monitor.store.refunds import refund_request_id

# the cancel tests' harness (fixtures approvals and paypal), shared: pytest fixtures are imported by name
from tests.integration.test_cancel_function import OSKAR_FINDING, OSKAR_PAYPAL, approvals, paypal, sqs_event  # noqa: F401

pytestmark = pytest.mark.integration

OTHER_PAYPAL = "I-7JJKPZMDVUM4"          # another disconnect of the demo


@pytest.fixture
def owed(approvals, paypal):
    """Two PayPal charges of Oskar's after his Kajabi cancellation (2023-08-16), still COMPLETED: owed."""
    return paypal.monthly(OSKAR_PAYPAL, "2026-09-16T10:00:00Z", 2, "22.00")


def refund_approval(transactions, finding_id=OSKAR_FINDING, key="paypal_transaction_ids", **extra) -> str:
    return json.dumps({"action": "refund_paypal_charges", "finding_id": finding_id, key: list(transactions),
                       "approved_by": "owner@example.com", **extra})


def refunds(dsn: str) -> list[dict]:
    with psycopg.connect(dsn) as conn:
        if conn.execute("select to_regclass('billing_monitor.refunds')").fetchone()[0] is None:
            return []
        cur = conn.execute("select transaction_id, finding_id, state, request_id, paypal_refund_id, paypal_status,"
                           " amount::text as amount, currency from billing_monitor.refunds order by transaction_id")
        return [dict(zip([d.name for d in cur.description], r, strict=False)) for r in cur.fetchall()]


def ok(result: dict) -> bool:
    return result == {"batchItemFailures": []}


def assert_refunded_once(approvals, paypal, owed):
    assert sorted(r["capture_id"] for r in paypal.refunds) == sorted(owed)     # one refund per charge at PayPal
    rows = refunds(approvals.dsn)
    assert [r["transaction_id"] for r in rows] == sorted(owed)                # one record per charge
    by_capture = {r["capture_id"]: r for r in paypal.refunds}
    for row in rows:
        assert row["state"] == "refunded"
        assert (row["amount"], row["currency"], row["paypal_status"]) == ("22.00", "USD", "COMPLETED")
        assert row["paypal_refund_id"] == by_capture[row["transaction_id"]]["id"]
        assert row["request_id"] == refund_request_id(OSKAR_FINDING, row["transaction_id"])
    assert {t.id: t.status for t in paypal.transactions[OSKAR_PAYPAL]} == dict.fromkeys(owed, "REFUNDED")


def test_a_valid_refund_refunds_each_charge_in_full_records_it_then_tells_slack(approvals, paypal, owed, slack,
                                                                               monkeypatch):
    told_after = []
    real_tell = cancellation.CancellationService._tell

    def tell(self, text):
        told_after.append([r["state"] for r in refunds(approvals.dsn)])     # what was recorded when Slack heard
        real_tell(self, text)

    monkeypatch.setattr(cancellation.CancellationService, "_tell", tell)
    assert ok(approvals.invoke(sqs_event(refund_approval(owed))))
    assert_refunded_once(approvals, paypal, owed)
    for t in owed:
        [call] = paypal.refund_calls(t)
        assert call[2] == {"request_id": refund_request_id(OSKAR_FINDING, t), "body": {}}   # {}: in full
    assert told_after == [["refunded", "refunded"]]
    text = slack.messages[-1]["text"]
    assert text.startswith(":white_check_mark: Refund: Oskar Dunmore <oskar.dunmore92@example.com>")
    for r in paypal.refunds:
        assert f"PayPal refund {r['id']}" in text
    assert paypal.cancel_calls() == []


def test_the_specs_key_transactions_is_accepted(approvals, paypal, owed):
    assert ok(approvals.invoke(sqs_event(refund_approval(owed, key="transactions",
                                                         paypal_subscription_id=OSKAR_PAYPAL))))
    assert_refunded_once(approvals, paypal, owed)
    asked = {p.split("?")[0].split("/")[4] for m, p in paypal.log if p.startswith("/v1/billing/subscriptions/")}
    assert asked == {OSKAR_PAYPAL}                 # the re-check asks PayPal about this customer alone


def test_the_same_approval_redelivered_refunds_once(approvals, paypal, owed):
    event = sqs_event(refund_approval(owed))
    assert ok(approvals.invoke(event))
    assert ok(approvals.invoke(event))
    assert ok(approvals.invoke(sqs_event(refund_approval(owed))))    # a new message id, the same approval
    assert len(paypal.refund_calls()) == 2
    assert_refunded_once(approvals, paypal, owed)


def test_two_copies_in_one_batch_refund_once(approvals, paypal, owed):
    body = refund_approval(owed)
    assert ok(approvals.invoke(sqs_event(body, body)))
    assert len(paypal.refund_calls()) == 2
    assert_refunded_once(approvals, paypal, owed)


def test_a_crash_after_paypal_refunded_and_before_the_record(approvals, paypal, owed, monkeypatch):
    real = cancellation.complete_refund
    crashes = []

    def crash_once(conn, transaction_id, **kw):
        if not crashes:
            crashes.append(transaction_id)
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real(conn, transaction_id, **kw)

    monkeypatch.setattr(cancellation, "complete_refund", crash_once)
    event = sqs_event(refund_approval(owed))
    message_id = event["Records"][0]["messageId"]
    assert approvals.invoke(event) == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert [r["state"] for r in refunds(approvals.dsn)] == ["pending", "pending"]
    assert [r["capture_id"] for r in paypal.refunds] == [owed[0]]      # PayPal refunded the first
    assert ok(approvals.invoke(event))                                 # SQS delivers it again
    calls = paypal.refund_calls(owed[0])
    assert len(calls) == 2
    assert calls[0][2] == calls[1][2]
    assert_refunded_once(approvals, paypal, owed)                      # PayPal's first refund, recorded once


def test_500_then_success_and_an_answer_lost_after_the_refund(approvals, paypal, owed):
    paypal.faults["refund"] = [500, "500-after-refund"]
    assert ok(approvals.invoke(sqs_event(refund_approval(owed))))
    assert_refunded_once(approvals, paypal, owed)


def test_429_is_retried(approvals, paypal, owed):
    paypal.faults["refund"] = [429, 429]
    assert ok(approvals.invoke(sqs_event(refund_approval(owed))))
    assert_refunded_once(approvals, paypal, owed)


def test_paypal_down_for_good_fails_the_message_and_the_retry_refunds_only_what_is_not_done(approvals, paypal, owed):
    paypal.id_faults[owed[1]] = [500] * 4                              # the second charge fails every attempt
    event = sqs_event(refund_approval(owed))
    assert approvals.invoke(event)["batchItemFailures"]
    assert {r["transaction_id"]: r["state"] for r in refunds(approvals.dsn)} == {owed[0]: "refunded", owed[1]: "pending"}
    assert ok(approvals.invoke(event))
    assert len(paypal.refund_calls(owed[0])) == 1                      # the first was done: not asked again
    assert_refunded_once(approvals, paypal, owed)


def test_capture_fully_refunded_counts_as_already_refunded(approvals, paypal, owed, monkeypatch):
    real = cancellation.claim_refund

    def refunded_meanwhile(conn, finding_id, transaction_id, **kw):
        row = real(conn, finding_id, transaction_id, **kw)
        paypal.capture(transaction_id).status = "REFUNDED"              # refunded by hand after the re-check
        return row

    monkeypatch.setattr(cancellation, "claim_refund", refunded_meanwhile)
    assert ok(approvals.invoke(sqs_event(refund_approval(owed[:1]))))
    assert paypal.refunds == []
    [row] = refunds(approvals.dsn)
    assert (row["transaction_id"], row["state"], row["amount"]) == (owed[0], "already_refunded", "22.00")


def test_a_transaction_of_another_finding_refuses_the_whole_message(approvals, paypal, owed, slack):
    other = paypal.charge(OTHER_PAYPAL, "2026-10-01T10:00:00Z", "33.00")
    assert ok(approvals.invoke(sqs_event(refund_approval([*owed, other]))))
    assert paypal.refund_calls() == []
    assert refunds(approvals.dsn) == []
    [refused] = approvals.actions()
    assert refused["outcome"] == "refused"
    assert other in refused["detail"]
    assert "Refused" in slack.messages[-1]["text"]
    assert other in slack.messages[-1]["text"]


def test_a_transaction_refunded_since_the_approval_is_refused_by_name(approvals, paypal, owed):
    paypal.capture(owed[1]).status = "REFUNDED"
    assert ok(approvals.invoke(sqs_event(refund_approval(owed))))
    assert paypal.refund_calls() == []
    assert refunds(approvals.dsn) == []
    [refused] = approvals.actions()
    assert f"transaction {owed[1]} is not owed any more" in refused["detail"]


@pytest.mark.parametrize("force", [True, False])
def test_force_is_ignored_for_refunds(approvals, paypal, owed, force):
    paypal.capture(owed[1]).status = "REFUNDED"
    assert ok(approvals.invoke(sqs_event(refund_approval(owed, force=force))))
    assert paypal.refund_calls() == []                                 # force skips no re-check
    assert approvals.actions()[0]["outcome"] == "refused"
    assert ok(approvals.invoke(sqs_event(refund_approval(owed[:1], force=True))))
    assert [r["capture_id"] for r in paypal.refunds] == owed[:1]


def test_a_malformed_refund_approval_is_refused(approvals, paypal, owed):
    assert ok(approvals.invoke(sqs_event(refund_approval(["../v1/x y"]))))
    assert ok(approvals.invoke(sqs_event(refund_approval([]))))
    assert paypal.refund_calls() == []
    assert [a["outcome"] for a in approvals.actions()] == ["refused", "refused"]
    assert "malformed approval" in approvals.actions()[0]["detail"]


def test_a_sender_who_is_not_an_approver_cannot_refund(approvals, paypal, owed):
    event = sqs_event(refund_approval(owed))
    event["Records"][0]["attributes"]["SenderId"] = "AIDAOTHERPERSON000001"
    assert ok(approvals.invoke(event))
    assert paypal.refund_calls() == []
    assert refunds(approvals.dsn) == []
    assert approvals.actions()[0]["outcome"] == "refused"
