"""The fake PayPal of the tests: the project's stand-in (billing_monitor.paypal_standin) with every request and
response validated against PayPal's own OpenAPI files in tests/data/paypal/ (anything off-spec is recorded in
`violations` and answered 400)."""

from __future__ import annotations

from pathlib import Path

from billing_monitor.paypal_standin import CLIENT_ID, CLIENT_SECRET, NOT_FOUND_TEXT, Payer, PayPalStandIn, Txn

SPEC_DIR = Path(__file__).resolve().parents[1] / "data" / "paypal"

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "NOT_FOUND_TEXT", "SPEC_DIR", "FakePayPal", "Payer", "Txn"]


class FakePayPal(PayPalStandIn):
    def __init__(self, **kw):
        super().__init__(spec_dir=SPEC_DIR, **kw)
