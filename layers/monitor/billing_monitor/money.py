"""Money is Decimal, always two places, printed as "462.00"."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from billing_monitor.errors import MonitorError

CENT = Decimal("0.01")


def to_money(value) -> Decimal:
    """A Decimal rounded to the cent; floats are refused (they cannot hold cents exactly)."""
    if type(value) is not Decimal:
        if isinstance(value, float):
            raise TypeError("money must not be a float")
        value = Decimal(value)
    return value.quantize(CENT, ROUND_HALF_UP)


def money_str(value) -> str:
    return format(to_money(value), "f")


def parse_tolerance(text) -> Decimal:
    """The matching tolerance from user input: a non-negative, finite number."""
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise MonitorError(f"tolerance must be a non-negative number, got {text!r}") from None
    if not value.is_finite() or value < 0:
        raise MonitorError(f"tolerance must be a non-negative number, got {text!r}")
    return value
