"""Posting to Slack: the incoming webhook (the scan's message, the cancel function's outcome) and a click's
`response_url` (the clicked message replaced, or an ephemeral answer). One HTTP session recipe
(billing_monitor.http): timeouts on every call, 429 and 5xx retried."""

from __future__ import annotations

import requests

from billing_monitor.http import DEFAULT_TIMEOUT, retrying_session


class SlackError(Exception):
    """Slack did not take the message (after retries)."""


def post_to_slack(webhook_url: str, payload: dict, session: requests.Session | None = None,
                  timeout=DEFAULT_TIMEOUT) -> None:
    """POST to an incoming webhook; 429 and 5xx are retried with back-off. Raises SlackError."""
    session = session or retrying_session(methods=("POST",))
    try:
        answer = session.post(webhook_url, json=payload, timeout=timeout)
    except requests.RequestException as exc:
        raise SlackError(f"Slack unreachable: {type(exc).__name__}") from None
    if answer.status_code != 200:
        raise SlackError(f"Slack answered {answer.status_code}: {answer.text[:200]}")


RESPONSE_TIMEOUT = (0.8, 1.2)     # connect, read: a click is answered within Slack's 3 seconds


def post_to_response_url(response_url: str, payload: dict, session: requests.Session | None = None) -> None:
    """Update the clicked message, or answer the clicking user, through the click's `response_url` (Slack takes
    up to 5 posts within 30 minutes). Short timeouts and no retry: the click must be answered within 3 seconds,
    and what it did is done (the cancel function reports the outcome in the channel anyway). Raises SlackError."""
    post_to_slack(response_url, payload, session or retrying_session(total=0, methods=("POST",)),
                  timeout=RESPONSE_TIMEOUT)
