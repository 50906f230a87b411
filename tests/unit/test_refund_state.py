"""Slack's refund state of a customer (issue 14): owed, refund approved, refunded with PayPal's refund id."""

from __future__ import annotations

from billing_monitor.notify import customer_line_text, refund_state
from billing_monitor.slack.message import customer_line_slack

FINDING = {
    "finding_id": "6c3f746973e9a73c", "check": "billing_disconnect", "contact": {"name": "Oskar Dunmore",
                                                                                  "email": "o@example.com"},
    "paypal_subscription_id": "I-LKL1NVUCV89B", "currency": "USD", "kajabi_canceled_at": "2023-08-16T00:00:00+00:00",
    "charges": {"count": 2, "total": "44.00", "first": "2026-09-16", "last": "2026-10-16"},
    "action": {"type": "cancel_paypal_subscription", "paypal_subscription_id": "I-LKL1NVUCV89B"},
    "refund": {"type": "refund_paypal_charges", "paypal_subscription_id": "I-LKL1NVUCV89B", "total": "44.00",
               "transactions": ["AAA1", "BBB2"],
               "charges": [{"transaction_id": "AAA1", "time": "2026-09-16T10:00:00+00:00", "amount": "22.00",
                            "currency": "USD"},
                           {"transaction_id": "BBB2", "time": "2026-10-16T10:00:00+00:00", "amount": "22.00",
                            "currency": "USD"}]},
}


def row(txn, state, refund_id=None):
    return {"transaction_id": txn, "state": state, "amount": "22.00", "currency": "USD", "paypal_refund_id": refund_id}


def test_owed_and_not_approved_says_so_with_the_refund_command():
    assert refund_state(FINDING) == "Refund: owed 44.00 USD (2 charges, refund not approved yet)"
    line = customer_line_slack(FINDING)
    assert "Refund: owed 44.00 USD" in line
    assert "`billing-monitor approve 6c3f746973e9a73c --refund --by YOU@EXAMPLE.COM`" in line


def test_approved_then_refunded_with_paypals_refund_id():
    approved = {**FINDING, "refunds": [row("AAA1", "pending"), row("BBB2", "pending")]}
    assert refund_state(approved) == "Refund: refund approved (2 charges, in progress)"
    assert "--refund" not in customer_line_slack(approved)
    refunded = {**FINDING, "refund": None, "refunds": [row("AAA1", "refunded", "R1"), row("BBB2", "refunded", "R2")]}
    assert refund_state(refunded) == "Refund: refunded 44.00 USD (PayPal refund R1, R2)"
    assert "Refund: refunded 44.00 USD (PayPal refund R1, R2)" in customer_line_text(refunded)


def test_part_refunded_part_owed():
    mixed = {**FINDING, "refunds": [row("AAA1", "refunded", "R1")]}
    assert refund_state(mixed) == ("Refund: owed 22.00 USD (1 charge, refund not approved yet);"
                                   " refunded 22.00 USD (PayPal refund R1)")


def test_nothing_owed_nothing_refunded_says_nothing():
    assert refund_state({**FINDING, "refund": None}) is None
