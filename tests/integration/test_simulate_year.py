"""The simulated year (bench/simulate_year.py), a month of it at a small size: deterministic for a seed, and
auto-cancel lets PayPal charge nobody but members who canceled too close to their due."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "simulate_year.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("simulate_year", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["simulate_year"] = module          # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def figures(outcomes) -> list[tuple]:
    return [(o.policy, o.leavers, o.charges, str(o.money), o.too_close, o.others, o.canceled_in_paypal, o.prevented, o.scans)
            for o in outcomes]


def test_a_simulated_month_is_deterministic_and_auto_cancel_misses_only_the_too_close(pg_server):
    bench = load_bench()
    logging.disable(logging.WARNING)
    try:
        first = bench.simulate(pg_server, seed=3, contacts=400, members=80, days=30)
        again = bench.simulate(pg_server, seed=3, contacts=400, members=80, days=30)
    finally:
        logging.disable(logging.NOTSET)
    assert figures(first) == figures(again)
    monthly, daily, auto = first
    assert monthly.leavers > 0
    assert auto.others == []                       # 0 charges after cancellation but the too-close ones
    assert auto.charges == auto.too_close_charges
    assert auto.canceled_in_paypal == auto.prevented > 0
    assert monthly.charges >= daily.charges >= auto.charges
    assert (monthly.scans, daily.scans, auto.scans) == (1, 30, 30)
    assert "| daily+auto |" in bench.table(first)
