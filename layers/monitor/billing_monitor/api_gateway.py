"""The HTTP API's side of a request (API Gateway, payload format 2.0), for the functions behind it (Slack's clicks,
PayPal's webhooks): the body exactly as the caller sent it (signatures are over those bytes), and an answer."""

from __future__ import annotations

import base64
import json


def raw_body(event: dict) -> bytes:
    """The body exactly as the caller sent it (API Gateway base64-encodes it when it says so)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode() if isinstance(body, str) else body


def http(status: int, body: dict | str) -> dict:
    """An answer: a dict as JSON, a string as plain text."""
    if isinstance(body, str):
        return {"statusCode": status, "headers": {"Content-Type": "text/plain"}, "body": body}
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
