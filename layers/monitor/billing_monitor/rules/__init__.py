"""The detection rules of detection-rules.md, as set-based SQL. No AWS in here."""

from billing_monitor.rules.checks import run_checks
from billing_monitor.rules.finding import Charge, Contact, Finding
from billing_monitor.rules.registry import CHECKS, SEVERITIES

__all__ = ["CHECKS", "SEVERITIES", "Charge", "Contact", "Finding", "run_checks"]
