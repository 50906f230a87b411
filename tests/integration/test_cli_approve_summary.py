"""The line `billing-monitor approve` prints about the finding: it says charges only where there are some."""

from __future__ import annotations

import json

import pytest

from billing_monitor.cli import main
from tests.support.production import only

pytestmark = pytest.mark.integration


def approve_dry_run(capsys, dsn: str, finding_id: str, *extra: str) -> str:
    code = main(["approve", finding_id, "--by", "owner@example.com", "--dsn", dsn, "--dry-run", *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["finding_id"] == finding_id
    [line] = err.strip().splitlines()
    return line


def test_a_paypal_only_finding_is_not_said_to_be_charged_0x(prod, capsys):
    c = prod.contact(email="ada@example.com", first="Ada", last="Lovelace")
    prod.paypal(c, paypal="I-PAYPALONLY0001", amount="22.00")
    finding = only(prod.scan(), "paypal_only")
    code = main(["approve", finding["finding_id"], "--by", "owner@example.com", "--dsn", prod.dsn, "--dry-run",
                 "--force"])
    out, err = capsys.readouterr()
    assert code == 1                                  # a paying member: even --force does not cancel them
    assert out == ""
    line, error = err.strip().splitlines()
    assert line == (f"paypal_only {finding['finding_id']}: Ada Lovelace <ada@example.com>,"
                    " PayPal I-PAYPALONLY0001, 22.00 USD/month")
    assert "suggests no PayPal cancellation" in error


def test_a_disconnect_not_charged_yet_says_so(prod, capsys):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2025-05-20")
    prod.paypal(c, paypal="I-NOTCHARGED0001")
    finding = only(prod.scan(), "billing_disconnect")
    line = approve_dry_run(capsys, prod.dsn, finding["finding_id"])
    assert "0x" not in line
    assert line.endswith("; not charged after canceling (yet)")


def test_a_charged_disconnect_still_says_how_much(demo_db, capsys):
    line = approve_dry_run(capsys, demo_db, "6c3f746973e9a73c")
    assert line.endswith("; charged 21x after canceling, 462.00 USD")
