"""A click as Slack sends it, signed with a given secret: for trying the endpoint locally (scripts/slack_click.py),
the benchmark (bench/slack_click_bench.py) and the tests. Nothing here is used by a deployed function.

Slack POSTs `application/x-www-form-urlencoded` with one field, `payload` (JSON, `type: block_actions`), and
signs `v0:<timestamp>:<body>` with HMAC-SHA256 of the app's signing secret (X-Slack-Signature: v0=<hex>,
X-Slack-Request-Timestamp). API Gateway hands it to the function as an HTTP API payload 2.0 event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

from billing_monitor.slack.buttons import ACKNOWLEDGE, ACKNOWLEDGE_FOR, ButtonMac

CHANNEL, MESSAGE_TS = "C0BILLING1", "1764579600.000100"


def block_actions(*, user_id: str, action_id: str, value: str, response_url: str, block_id: str | None = None,
                  message: dict | None = None, message_ts: str = MESSAGE_TS, acknowledge_for: str | None = None,
                  action_ts: str | None = None) -> dict:
    """The `payload` of a click on a button (or a choice in the Acknowledge menu) of a message in a channel."""
    block_id = block_id or ("ack:x" if action_id == ACKNOWLEDGE else f"finding:{value.split('.')[0]}")
    action = {"type": "button", "action_id": action_id, "block_id": block_id, "value": value,
              "action_ts": action_ts or f"{time.time():.6f}"}
    state = {"values": {}}
    if action_id == ACKNOWLEDGE:
        action = {"type": "static_select", "action_id": action_id, "block_id": block_id,
                  "selected_option": {"text": {"type": "plain_text", "text": "a finding"}, "value": value},
                  "action_ts": action["action_ts"]}
        if acknowledge_for:
            state["values"][block_id] = {ACKNOWLEDGE_FOR: {"type": "static_select", "selected_option": {
                "text": {"type": "plain_text", "text": acknowledge_for}, "value": acknowledge_for}}}
    return {
        "type": "block_actions", "api_app_id": "A0BILLING1", "token": "deprecated-verification-token",
        "team": {"id": "T0BILLING1", "domain": "example"},
        "user": {"id": user_id, "username": "owner", "name": "owner", "team_id": "T0BILLING1"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": CHANNEL, "is_ephemeral": False},
        "channel": {"id": CHANNEL, "name": "billing"},
        "message": message or {"type": "message", "ts": message_ts, "text": "billing-monitor", "blocks": [
            {"type": "section", "block_id": "s1", "text": {"type": "mrkdwn", "text": "*A customer* · PayPal `I-…`"}},
            {"type": "actions", "block_id": block_id, "elements": [dict(action, text={"type": "plain_text", "text": "…"})]}]},
        "state": state, "response_url": response_url, "trigger_id": "1.2.3", "actions": [action],
    }


def form_body(payload: dict) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def http_event(body: bytes, headers: dict, *, base64_encoded: bool = False) -> dict:
    """API Gateway HTTP API (payload format 2.0) event for POST /slack/actions."""
    return {
        "version": "2.0", "routeKey": "POST /slack/actions", "rawPath": "/slack/actions", "rawQueryString": "",
        "headers": {"content-type": "application/x-www-form-urlencoded", "user-agent": "Slackbot 1.0",
                    "host": "abc123.execute-api.us-east-1.amazonaws.com", **{k.lower(): v for k, v in headers.items()}},
        "requestContext": {"accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                           "http": {"method": "POST", "path": "/slack/actions", "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": "Slackbot 1.0"},
                           "requestId": "slack-click", "routeKey": "POST /slack/actions", "stage": "$default",
                           "time": "01/Dec/2026:09:05:00 +0000", "timeEpoch": int(time.time() * 1000)},
        "body": base64.b64encode(body).decode() if base64_encoded else body.decode(),
        "isBase64Encoded": base64_encoded,
    }


def signed_event(secret: str, payload: dict, *, timestamp: int | None = None, base64_encoded: bool = False) -> dict:
    """The event API Gateway gives the function for this payload, signed as Slack signs it (now by default)."""
    body = form_body(payload)
    timestamp = int(time.time()) if timestamp is None else timestamp
    return http_event(body, {"X-Slack-Request-Timestamp": str(timestamp),
                             "X-Slack-Signature": signature(secret, timestamp, body)}, base64_encoded=base64_encoded)


def resign(event: dict, secret: str, timestamp: int | None = None) -> dict:
    """The same event (same body) signed again, now: an events/ file is older than Slack's 5 minutes."""
    body = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"].encode()
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = dict(event["headers"], **{"x-slack-request-timestamp": str(timestamp),
                                        "x-slack-signature": signature(secret, timestamp, body)})
    return dict(event, headers=headers)


def click(secret: str, *, user_id: str, action_id: str, finding_id: str, response_url: str, **extra) -> dict:
    """A signed click on a genuine button (its value made with the secret) of the finding."""
    value = ButtonMac(secret).value(action_id, finding_id)
    return signed_event(secret, block_actions(user_id=user_id, action_id=action_id, value=value,
                                              response_url=response_url, **extra))
