"""`billing-monitor approve --refund` and refunds in `billing-monitor actions` (issue 14)."""

from __future__ import annotations

import json

import pytest

from billing_monitor.cli import main
from billing_monitor.store import open_store
from billing_monitor.store.refunds import REFUNDED, claim_refund, complete_refund
from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal

pytestmark = pytest.mark.integration

OSKAR_FINDING, OSKAR_PAYPAL = "6c3f746973e9a73c", "I-LKL1NVUCV89B"


@pytest.fixture
def paypal(monkeypatch):
    with FakePayPal() as fake:
        for key, value in {"PAYPAL_CLIENT_ID": CLIENT_ID, "PAYPAL_CLIENT_SECRET": CLIENT_SECRET,
                           "PAYPAL_BASE_URL": fake.url}.items():
            monkeypatch.setenv(key, value)
        fake.add(OSKAR_PAYPAL)
        yield fake
    assert fake.violations == []
    assert fake.writes() == []                  # approve --dry-run asks PayPal, never changes it


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_refund_defaults_to_every_owed_charge_and_shows_customer_charges_total(demo_db, paypal, capsys):
    owed = paypal.monthly(OSKAR_PAYPAL, "2026-09-16T10:00:00Z", 2, "22.00")
    code, out, err = run(capsys, "approve", OSKAR_FINDING, "--refund", "--by", "owner@example.com", "--dsn", demo_db,
                         "--dry-run")
    assert code == 0, err
    message = json.loads(out)
    assert message == {"action": "refund_paypal_charges", "finding_id": OSKAR_FINDING,
                       "paypal_subscription_id": OSKAR_PAYPAL, "transactions": owed,
                       "approved_by": "owner@example.com", "reason": "Charged after canceling; refunded in full"}
    assert "Oskar Dunmore <oskar.dunmore92@example.com>" in err
    assert f"{owed[0]}, {owed[1]}; total 44.00 USD" in err


def test_dry_run_refund_of_some_transactions_and_a_stranger_is_refused(demo_db, paypal, capsys):
    owed = paypal.monthly(OSKAR_PAYPAL, "2026-09-16T10:00:00Z", 2, "22.00")
    code, out, err = run(capsys, "approve", OSKAR_FINDING, "--refund", "--transactions", owed[1], "--by",
                         "owner@example.com", "--dsn", demo_db, "--dry-run")
    assert code == 0, err
    assert json.loads(out)["transactions"] == [owed[1]]
    code, out, err = run(capsys, "approve", OSKAR_FINDING, "--refund", "--transactions", "ABC123", "--by",
                         "owner@example.com", "--dsn", demo_db, "--dry-run")
    assert code == 1
    assert out == ""
    assert "transaction ABC123 is not owed by finding" in err


def test_a_finding_owing_nothing_cannot_be_refunded_and_force_does_not_apply(demo_db, paypal, capsys):
    code, out, err = run(capsys, "approve", OSKAR_FINDING, "--refund", "--by", "owner@example.com", "--dsn", demo_db,
                         "--dry-run")
    assert code == 1
    assert out == ""
    assert "owes no PayPal charge" in err
    code, out, err = run(capsys, "approve", OSKAR_FINDING, "--refund", "--force", "--by", "owner@example.com",
                         "--dsn", demo_db, "--dry-run")
    assert code == 1
    assert out == ""
    assert "--force does not apply to refunds" in err


def test_actions_lists_refunds_beside_cancellations(demo_db, capsys):
    with open_store(demo_db) as conn:
        claim_refund(conn, OSKAR_FINDING, "7XK01234AB5678901", paypal_subscription_id=OSKAR_PAYPAL, amount="22.00",
                     currency="USD", approved_by="owner@example.com", sender_arn=None, message_id="m1")
        complete_refund(conn, "7XK01234AB5678901", state=REFUNDED, paypal_refund_id="1JU08902781691411",
                        paypal_status="COMPLETED", amount="22.00", currency="USD", detail="PayPal refund")
    code, out, _ = run(capsys, "actions", "--dsn", demo_db)
    assert code == 0
    assert "Refunds:" in out
    [line] = [x for x in out.splitlines() if "7XK01234AB5678901" in x]
    assert "refunded" in line
    assert "22.00 USD" in line
    assert "PayPal refund 1JU08902781691411" in line
    assert OSKAR_FINDING in line
