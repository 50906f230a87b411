"""Money: Decimal rounded half-up to the cent, printed with two places, never a float (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_monitor.errors import MonitorError
from billing_monitor.money import money_str, parse_tolerance, to_money


@pytest.mark.parametrize(("value", "expected"), [
    ("2.005", "2.01"),      # half-up, where banker's rounding would give 2.00
    ("0.125", "0.13"),      # banker's: 0.12
    ("2.004", "2.00"),
    ("-2.005", "-2.01"),    # half away from zero for refunds too
    ("21.995", "22.00"),
])
def test_to_money_rounds_half_up_to_the_cent(value, expected):
    assert to_money(Decimal(value)) == Decimal(expected)
    assert str(to_money(Decimal(value))) == expected


def test_to_money_takes_ints_and_strings_and_keeps_two_places():
    assert str(to_money(22)) == "22.00"
    assert str(to_money("22.5")) == "22.50"
    assert to_money(Decimal("462")).as_tuple().exponent == -2


@pytest.mark.parametrize("value", [0.1, 22.0, float("nan")])
def test_floats_are_refused(value):
    with pytest.raises(TypeError, match="money must not be a float"):
        to_money(value)
    with pytest.raises(TypeError, match="money must not be a float"):
        money_str(value)


@pytest.mark.parametrize(("value", "expected"), [
    (Decimal("462"), "462.00"),
    (462, "462.00"),
    (Decimal("0"), "0.00"),
    (Decimal("1E+3"), "1000.00"),                    # never exponent notation
    (Decimal("0.1") + Decimal("0.2"), "0.30"),
    (Decimal("989.995"), "990.00"),
    ("22.4", "22.40"),
])
def test_money_str_always_has_two_places(value, expected):
    assert money_str(value) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("1", Decimal("1")), (" 0.50 ", Decimal("0.50")), ("0", Decimal("0")), ("0.005", Decimal("0.005")),
    (Decimal("2.5"), Decimal("2.5")),
])
def test_parse_tolerance_accepts_non_negative_numbers(text, expected):
    value = parse_tolerance(text)
    assert value == expected
    assert isinstance(value, Decimal)


@pytest.mark.parametrize("text", ["-1", "-0.01", "abc", "nan", "NaN", "sNaN", "inf", "-Infinity", "", "  ", "1,5", None])
def test_parse_tolerance_errors_name_the_input(text):
    with pytest.raises(MonitorError) as raised:
        parse_tolerance(text)
    assert str(raised.value) == f"tolerance must be a non-negative number, got {text!r}"
