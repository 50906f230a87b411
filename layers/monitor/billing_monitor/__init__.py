"""billing-monitor: finds members still charged after canceling, and cancels them on approval."""

__version__ = "0.1.0"
