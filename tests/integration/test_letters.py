"""`billing-monitor letter`: every date and amount of the letter is one the report (or the recorded refund) has."""

from __future__ import annotations

import re
from decimal import Decimal

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


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def report_finding(capsys, dsn):
    import json

    code, out, err = run(capsys, "scan", "--paypal", "--dsn", dsn, "--format", "json")
    assert code in (0, 1, 2), err
    return next(f for f in json.loads(out)["findings"] if f["finding_id"] == OSKAR_FINDING)


def test_every_figure_of_the_letter_is_in_the_report(demo_db, paypal, capsys):
    paypal.charge(OSKAR_PAYPAL, "2026-09-16T10:00:00Z", "22.00")
    paypal.charge(OSKAR_PAYPAL, "2026-10-16T10:00:00Z", "23.50")
    finding = report_finding(capsys, demo_db)
    code, out, err = run(capsys, "letter", OSKAR_FINDING, "--dsn", demo_db)
    assert code == 0, err
    subject = out.splitlines()[0]
    assert subject == "Subject: Your refund of 45.50 USD is on its way"
    charges = finding["refund"]["charges"]
    amounts = {c["amount"] for c in charges} | {finding["refund"]["total"]}
    dates = {c["time"][:10] for c in charges} | {finding["kajabi_canceled_at"][:10]}
    assert set(re.findall(r"\b\d+\.\d\d\b", out)) == amounts           # no amount the report does not have
    assert set(re.findall(r"\b\d{4}-\d\d-\d\d\b", out)) == dates        # no date the report does not have
    for c in charges:
        assert f"{c['time'][:10]}: {c['amount']} USD (PayPal transaction {c['transaction_id']})" in out
    assert sum(Decimal(c["amount"]) for c in charges) == Decimal(finding["refund"]["total"])
    assert "Oskar Dunmore" in out
    assert "We are refunding" in out


def test_a_refunded_charge_is_told_with_paypals_refund_id(demo_db, paypal, capsys):
    from datetime import UTC, datetime

    with open_store(demo_db) as conn:
        claim_refund(conn, OSKAR_FINDING, "7XK01234AB5678901", paypal_subscription_id=OSKAR_PAYPAL, amount="22.00",
                     currency="USD", approved_by="owner@example.com", sender_arn=None, message_id="m1",
                     charged_at=datetime(2026, 9, 16, 10, tzinfo=UTC))
        complete_refund(conn, "7XK01234AB5678901", state=REFUNDED, paypal_refund_id="1JU08902781691411",
                        paypal_status="COMPLETED", amount="22.00", currency="USD", detail="PayPal refund")
    code, out, err = run(capsys, "letter", OSKAR_FINDING, "--dsn", demo_db)
    assert code == 0, err
    assert out.startswith("Subject: Your refund of 22.00 USD\n")
    assert ("2026-09-16: 22.00 USD (PayPal transaction 7XK01234AB5678901), refunded (PayPal refund 1JU08902781691411)"
            in out)
    assert "All of it has been refunded" in out


def test_nothing_owed_or_refunded_is_a_clear_error(demo_db, paypal, capsys):
    code, out, err = run(capsys, "letter", OSKAR_FINDING, "--dsn", demo_db)
    assert code == 1
    assert out == ""
    assert "has nothing owed or refunded: no letter" in err


def test_the_owners_template(demo_db, paypal, capsys, tmp_path):
    paypal.charge(OSKAR_PAYPAL, "2026-09-16T10:00:00Z", "22.00")
    template = tmp_path / "mine.j2"
    template.write_text("Subject: For {{ name }}\n{{ total }} {{ currency }} since {{ canceled_on }}\n")
    code, out, err = run(capsys, "letter", OSKAR_FINDING, "--dsn", demo_db, "--template", str(template))
    assert code == 0, err
    assert out == "Subject: For Oskar Dunmore\n\n22.00 USD since 2023-08-16\n"
    template.write_text("Subject: x\n{{ no_such_name }}\n")
    code, out, err = run(capsys, "letter", OSKAR_FINDING, "--dsn", demo_db, "--template", str(template))
    assert code == 1
    assert "no_such_name" in err
