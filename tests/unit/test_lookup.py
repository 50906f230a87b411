"""rules/lookup.py's verdict on one PayPal id, from the rows paypal_id_lookup.sql returns (issue 21)."""

from __future__ import annotations

from collections import namedtuple
from datetime import UTC, datetime
from decimal import Decimal

from billing_monitor.rules.finding import finding_id_for
from billing_monitor.rules.lookup import judge

Row = namedtuple("Row", "subscription_id contact_id ended end_time amount cur cycle live_match k_time k_kajabi_id"
                        " orphaned email first_name last_name")
PID = "I-LKL1NVUCV89B"
K = datetime(2023, 8, 16, tzinfo=UTC)
P = datetime(2026, 11, 2, tzinfo=UTC)


def row(sid="s1", *, ended=False, end_time=None, live_match=False, k_time=None, k_kajabi_id=None):
    return Row(sid, "c1", ended, end_time, Decimal("22.00"), "USD", "month", live_match, k_time, k_kajabi_id,
               False, "oskar@example.com", "Oskar", "Dunmore")


def test_a_live_row_whose_kajabi_match_ended_is_a_billing_disconnect_about_that_row():
    verdict = judge([row(k_time=K, k_kajabi_id="644797565")], PID)
    assert verdict.check == "billing_disconnect"
    assert verdict.finding_id == finding_id_for("billing_disconnect", "s1")
    assert (verdict.canceled_at, verdict.kajabi_subscription_id, verdict.other_live_rows) == (K, "644797565", 0)
    assert verdict.contact.name == "Oskar Dunmore"


def test_every_row_ended_is_paypal_still_active_from_the_earlier_of_k_and_p():
    verdict = judge([row("s2", ended=True, end_time=P, k_time=K), row("s1", ended=True, end_time=K)], PID)
    assert verdict.check == "paypal_still_active"
    assert verdict.finding_id == finding_id_for("paypal_still_active", PID)
    assert verdict.subscription_id == "s2"              # the latest-ended row (the query's order)
    assert verdict.canceled_at == K


def test_healthy_ids_and_unknown_ids_are_not_at_risk():
    assert judge([row(live_match=True)], PID) is None                  # its Kajabi subscription is live
    assert judge([row()], PID) is None                                  # PayPal-only: no Kajabi match at all
    assert judge([], PID) is None                                       # no row holds it: the scan reports it
    assert judge([row(), row("s2", ended=True, end_time=P, k_time=K)], PID) is None   # a live row, not a disconnect
