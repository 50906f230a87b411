"""`billing-monitor scan --paypal` and `billing-monitor demo --paypal` (paypal-reconciliation.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from billing_monitor.cli import main
from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal

pytestmark = pytest.mark.integration

PAYPAL_ENV = ("PAYPAL_CLIENT_ID", "PAYPAL_CLIENT_SECRET", "PAYPAL_BASE_URL", "PAYPAL_ENVIRONMENT")


@pytest.fixture
def paypal(monkeypatch):
    with FakePayPal() as fake:
        monkeypatch.setenv("PAYPAL_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("PAYPAL_CLIENT_SECRET", CLIENT_SECRET)
        monkeypatch.setenv("PAYPAL_BASE_URL", fake.url)
        yield fake
    assert fake.violations == []
    assert fake.writes() == []


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def hand_marked(prod, pid="I-HANDMARKED1"):
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2025-01-16")
    prod.paypal(c, paypal=pid, status="canceled", updated_at="2025-06-01")


@pytest.mark.parametrize("missing", [("PAYPAL_CLIENT_ID",), ("PAYPAL_CLIENT_SECRET",),
                                     ("PAYPAL_BASE_URL", "PAYPAL_ENVIRONMENT")])
def test_scan_paypal_without_credentials_is_an_error_and_prints_nothing(prod, capsys, monkeypatch, missing):
    for name in PAYPAL_ENV:
        monkeypatch.setenv(name, "x" if name != "PAYPAL_ENVIRONMENT" else "live")
    for name in missing:
        monkeypatch.delenv(name)
    code, out, err = run_cli(capsys, "scan", "--dsn", prod.dsn, "--paypal")
    assert (code, out) == (1, "")
    assert f"set {missing[0]}" in err
    assert err.count("\n") == 1


def test_no_default_environment_and_a_wrong_one_is_named(prod, capsys, monkeypatch):
    monkeypatch.setenv("PAYPAL_CLIENT_ID", "id")
    monkeypatch.setenv("PAYPAL_CLIENT_SECRET", "secret-value")
    monkeypatch.delenv("PAYPAL_BASE_URL", raising=False)
    monkeypatch.setenv("PAYPAL_ENVIRONMENT", "production")
    code, out, err = run_cli(capsys, "scan", "--dsn", prod.dsn, "--paypal")
    assert (code, out) == (1, "")
    assert "PAYPAL_ENVIRONMENT must be live or sandbox" in err
    assert "secret-value" not in err


def test_credentials_without_paypal_flag_do_nothing(prod, paypal, capsys):
    hand_marked(prod)
    code, out, _ = run_cli(capsys, "scan", "--dsn", prod.dsn, "--format", "json")
    assert code == 0
    assert json.loads(out)["paypal"] is None
    assert paypal.log == []


def test_refused_credentials_still_print_the_report_with_one_error_line(prod, paypal, capsys, monkeypatch):
    monkeypatch.setenv("PAYPAL_CLIENT_SECRET", "wrong-secret-xyz")
    hand_marked(prod)
    code, out, err = run_cli(capsys, "scan", "--dsn", prod.dsn, "--paypal", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert len(report["paypal"]["errors"]) == 1
    assert err.count("billing-monitor: PayPal:") == 1
    assert "wrong-secret-xyz" not in out + err


def test_scan_paypal_table_and_save_remembers_settled(prod, paypal, capsys):
    hand_marked(prod)
    hand_marked(prod, "I-SETTLED0001")
    paypal.add("I-HANDMARKED1")
    paypal.charge("I-HANDMARKED1", "2025-02-16", "22.00")
    paypal.add("I-SETTLED0001", "CANCELLED")
    code, out, _ = run_cli(capsys, "scan", "--dsn", prod.dsn, "--paypal", "--save")
    assert code == 0
    assert out.splitlines()[0] == "1 customer charged after canceling: 1 charges, 22.00 USD; 1 customer owed 22.00 USD"
    assert "PayPal: ACTIVE; 1 charges after canceling 22.00, refunded 0.00, owed 22.00 USD, 1 not imported" in out
    code, out, _ = run_cli(capsys, "scan", "--dsn", prod.dsn, "--paypal", "--format", "json",
                           "--paypal-search-days", "31")
    block = json.loads(out)["paypal"]
    assert (block["watched"], block["remembered_settled"]) == (1, 1)
    assert block["asked"] == 1 + 2                 # one search window, the one unsettled id


def test_demo_paypal_shows_the_worked_example_offline_and_leaves_nothing():
    exe = Path(sys.executable).with_name("billing-monitor")
    private_tmp = Path(tempfile.mkdtemp(prefix="bm-demo-"))
    try:
        done = subprocess.run([str(exe), "demo", "--paypal", "--format", "json"], capture_output=True, text=True,
                              timeout=180, env={**os.environ, "TMPDIR": str(private_tmp), "NO_PROXY": "127.0.0.1"})
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        still = [f for f in report["findings"] if f["check"] == "paypal_still_active"]
        assert sorted(f["charges"]["count"] for f in still) == [3, 9, 11, 22]
        assert all(f["severity"] == "critical" for f in still)
        assert sum(f["charges"]["count"] for f in still) == 45
        assert report["summary"]["owed"] == {"USD": {"customers": 4, "total": "1089.00"}}
        assert sum(len(f["paypal"]["charges_after_cancellation"]["not_imported"]) for f in still) == 4
        assert report["summary"]["by_check"]["billing_disconnect"] == 0      # the database alone sees nothing
        assert report["paypal"]["errors"] == []
        assert list(private_tmp.glob("billing-monitor-pg-*")) == []
        found = subprocess.run(["pgrep", "-f", str(private_tmp)], capture_output=True, text=True)
        assert found.stdout.split() == []
    finally:
        shutil.rmtree(private_tmp, ignore_errors=True)


def test_demo_paypal_walkthrough_cancels_the_four_refunds_everything_and_leaves_nothing_owed():
    """The worked example carried through (issue 14): approve the four cancellations, scan, approve every refund
    owed (the approvals function's own code, against the stand-in), scan again: 0 owed."""
    exe = Path(sys.executable).with_name("billing-monitor")
    private_tmp = Path(tempfile.mkdtemp(prefix="bm-demo-"))
    try:
        done = subprocess.run([str(exe), "demo", "--paypal", "--walkthrough", "--format", "json"], capture_output=True,
                              text=True, timeout=300,
                              env={**os.environ, "TMPDIR": str(private_tmp), "NO_PROXY": "127.0.0.1"})
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["summary"]["owed"] == {}
        assert report["summary"]["by_check"]["paypal_still_active"] == 0
        assert report["summary"]["by_check"]["refund_owed"] == 0
        assert report["paypal"]["errors"] == []
        assert done.stderr.count(":white_check_mark: Canceled:") == 4
        assert done.stderr.count(":white_check_mark: Refund:") == 4
        assert "Refused" not in done.stderr
        assert done.stderr.count(" refunded (PayPal refund ") == 45
        assert list(private_tmp.glob("billing-monitor-pg-*")) == []
    finally:
        shutil.rmtree(private_tmp, ignore_errors=True)
