"""When an acknowledgement holds (store/acks.py): an unchanged finding, before `until`; refused for the at-risk and owed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing_monitor.rules.registry import BILLING_DISCONNECT, DUPLICATE_SUBSCRIPTION, PAYPAL_ONLY, REFUND_OWED, SOURCE_SHRANK
from billing_monitor.store.acks import Ack, ack_fingerprint, why_not_acknowledgeable
from tests.unit.test_notify import finding

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def ack_of(f: dict, until: datetime | None = None, lapsed: datetime | None = None) -> Ack:
    return Ack(f["finding_id"], "slack:U012AB3CDE", NOW, None, until, ack_fingerprint(f), lapsed)


@pytest.mark.parametrize("change", [
    {"amount": "27.00"}, {"currency": "EUR"}, {"billing_cycle": "year"}, {"severity": "warning"},
    {"paypal_subscription_id": "I-OTHER"}, {"paypal": {"status": "CANCELLED"}},
])
def test_any_change_ends_it(change):
    f = finding(1, PAYPAL_ONLY)
    ack = ack_of(f)
    assert ack.holds_for(f, NOW + timedelta(days=400))
    assert not ack.holds_for(dict(f, **change), NOW)


def test_more_charges_end_it():
    f = finding(2, DUPLICATE_SUBSCRIPTION)
    f["charges"] = {"count": 1, "total": "22.00"}
    ack = ack_of(f)
    assert not ack.holds_for(dict(f, charges={"count": 2, "total": "44.00"}), NOW)


def test_until_passing_ends_it_and_a_lapse_is_for_good():
    f = finding(3, PAYPAL_ONLY)
    ack = ack_of(f, until=NOW + timedelta(days=30))
    assert ack.holds_for(f, NOW + timedelta(days=29, hours=23))
    assert not ack.holds_for(f, NOW + timedelta(days=30))
    assert not ack_of(f, lapsed=NOW).holds_for(f, NOW)
    assert ack.block() == {"by": "slack:U012AB3CDE", "at": "2026-12-01T09:00:00+00:00", "note": None,
                           "until": "2026-12-31T09:00:00+00:00"}


def test_at_risk_and_owed_cannot_be_acknowledged():
    assert "customer at risk" in why_not_acknowledgeable(finding(4, BILLING_DISCONNECT, 0))
    owed = dict(finding(5, PAYPAL_ONLY), check=REFUND_OWED)
    assert "owed money" in why_not_acknowledgeable(owed)
    refund = dict(finding(6, PAYPAL_ONLY), refund={"transactions": ["T1"], "total": "22.00"})
    assert "owed money" in why_not_acknowledgeable(refund)
    assert why_not_acknowledgeable(finding(7, PAYPAL_ONLY)) is None


def test_a_table_that_shrank_cannot_be_acknowledged_it_ends_with_the_next_saved_scan():
    shrank = dict(finding(8, PAYPAL_ONLY), check=SOURCE_SHRANK, action=None)
    assert "every other finding may be wrong" in why_not_acknowledgeable(shrank)
