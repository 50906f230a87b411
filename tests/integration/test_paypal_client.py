"""The PayPal client against a fake PayPal that checks every call against PayPal's OpenAPI spec."""

from __future__ import annotations

import pytest

from billing_monitor.paypal import (
    PayPalClient,
    PayPalCredentialsRejected,
    PayPalError,
    PayPalNotFound,
    PayPalTransient,
)
from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal


@pytest.fixture
def paypal():
    with FakePayPal() as fake:
        yield fake
    assert fake.violations == []


def client(fake, **kw) -> PayPalClient:
    return PayPalClient(fake.url, CLIENT_ID, CLIENT_SECRET, backoff_s=0.01, timeout=(1, 0.5), **kw)


def test_cancel_active_subscription_once(paypal):
    paypal.add("I-ACTIVE0001")
    result = client(paypal).cancel_subscription("I-ACTIVE0001", "Canceled in Kajabi on 2023-08-16")
    assert (result.outcome, result.status_before, result.status_after) == ("canceled", "ACTIVE", "CANCELLED")
    assert paypal.cancel_calls() == [("cancel", "I-ACTIVE0001", {"reason": "Canceled in Kajabi on 2023-08-16"})]
    assert paypal.subscriptions["I-ACTIVE0001"] == "CANCELLED"


def test_token_is_cached_across_calls(paypal):
    for i in range(3):
        paypal.add(f"I-TOKEN{i}")
    c = client(paypal)
    for i in range(3):
        c.get_subscription(f"I-TOKEN{i}")
    assert paypal.token_calls == 1


def test_expired_token_is_fetched_again(paypal):
    paypal.token_ttl_s = 60                    # inside the refresh margin: every call needs a new one
    paypal.add("I-SHORTTOKEN")
    c = client(paypal)
    c.get_subscription("I-SHORTTOKEN")
    c.get_subscription("I-SHORTTOKEN")
    assert paypal.token_calls == 2


def test_already_ended_is_success_without_a_cancel_call(paypal):
    paypal.add("I-GONE0001", "CANCELLED")
    paypal.add("I-GONE0002", "EXPIRED")
    c = client(paypal)
    assert c.cancel_subscription("I-GONE0001", "r").outcome == "already_canceled"
    assert c.cancel_subscription("I-GONE0002", "r").outcome == "already_canceled"
    assert paypal.cancel_calls() == []


def test_422_status_invalid_means_already_canceled(paypal):
    paypal.add("I-RACE0001")
    c = client(paypal)
    original = c.get_subscription
    # PayPal ends it between our read and our cancel: the cancel answers 422 SUBSCRIPTION_STATUS_INVALID
    c.get_subscription = lambda sid: (paypal.subscriptions.__setitem__(sid, "EXPIRED"), {"status": "ACTIVE"})[1]
    result = c.cancel_subscription("I-RACE0001", "r")
    c.get_subscription = original
    assert result.outcome == "already_canceled"
    assert "SUBSCRIPTION_STATUS_INVALID" in result.detail
    assert len(paypal.cancel_calls()) == 1


def test_404_is_permanent(paypal):
    with pytest.raises(PayPalNotFound):
        client(paypal).cancel_subscription("I-NOSUCH0001", "r")


def test_429_then_success(paypal):
    paypal.add("I-BUSY0001")
    paypal.faults["cancel"] = [429]
    assert client(paypal).cancel_subscription("I-BUSY0001", "r").outcome == "canceled"
    assert len(paypal.cancel_calls()) == 2


def test_500_after_cancel_reads_back_and_never_cancels_twice(paypal):
    paypal.add("I-LOST0001")
    paypal.faults["cancel"] = ["500-after-cancel"]
    result = client(paypal).cancel_subscription("I-LOST0001", "r")
    assert result.outcome == "canceled"
    assert "now shows CANCELLED" in result.detail
    assert len(paypal.cancel_calls()) == 1


def test_timeout_after_cancel_reads_back_and_does_not_cancel_again(paypal):
    paypal.add("I-SLOW0001")
    paypal.faults["cancel"] = ["timeout-after-cancel"]
    result = client(paypal).cancel_subscription("I-SLOW0001", "r")
    assert result.outcome == "canceled"
    assert len(paypal.cancel_calls()) == 1


def test_timeout_before_cancel_reads_back_then_cancels(paypal):
    paypal.add("I-SLOW0002")
    paypal.faults["cancel"] = ["timeout"]
    result = client(paypal).cancel_subscription("I-SLOW0002", "r")
    assert result.outcome == "canceled"
    assert result.detail == "PayPal canceled the subscription (204); reads back CANCELLED"
    assert len(paypal.cancel_calls()) == 2
    assert paypal.subscriptions["I-SLOW0002"] == "CANCELLED"


def test_paypal_down_is_transient(paypal):
    paypal.add("I-DOWN0001")
    paypal.faults["cancel"] = [500] * 10
    with pytest.raises(PayPalTransient):
        client(paypal).cancel_subscription("I-DOWN0001", "r")
    assert paypal.subscriptions["I-DOWN0001"] == "ACTIVE"
    assert len(paypal.cancel_calls()) == 4


def test_get_retries_5xx(paypal):
    paypal.add("I-FLAKY0001")
    paypal.faults["get"] = [500, 500]
    assert client(paypal).get_subscription("I-FLAKY0001")["status"] == "ACTIVE"


def test_a_bad_id_is_permanent_bad_credentials_are_retried_and_alarmed(paypal):
    with pytest.raises(PayPalError, match="not a PayPal subscription id"):
        client(paypal).get_subscription("../../v1/oauth2/token")
    bad = PayPalClient(paypal.url, CLIENT_ID, "wrong", backoff_s=0.01)
    with pytest.raises(PayPalCredentialsRejected, match="refused the client credentials") as raised:
        bad.get_subscription("I-ANY0001")
    assert raised.value.transient          # a configuration to fix: retried, then the DLQ's alarm, never a refusal
    assert "wrong" not in str(raised.value)
