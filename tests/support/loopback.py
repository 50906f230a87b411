"""A real HTTP server on 127.0.0.1 (a free port), in a thread, for the fakes of Slack and PayPal."""

from billing_monitor.paypal_standin import LoopbackServer

__all__ = ["LoopbackServer"]
