#!/usr/bin/env python3
"""A click on one of the scan message's buttons, signed as Slack signs it, for trying the endpoint locally.

    sam build && sam local start-api --env-vars events/env.json      # serves POST /slack/actions on :3000
    .venv/bin/python scripts/slack_click.py 6c3f746973e9a73c          # Cancel in PayPal, by U012AB3CDE
    .venv/bin/python scripts/slack_click.py 6c3f746973e9a73c --action approve_refund
    .venv/bin/python scripts/slack_click.py 0745bd9ca6f14ef9 --action acknowledge --for 30d
    .venv/bin/python scripts/slack_click.py 6c3f746973e9a73c --event > /tmp/click.json   # for sam local invoke -e

The secret is the local one (SLACK_SIGNING_SECRET, else events/env.json's "local-signing-secret"); the button's
value is made with it, so the function takes it as one of its own. --stale signs it 6 minutes ago (401),
--forge makes the value with another key (refused). Prints the HTTP status and the answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from billing_monitor.slack import simulate
from billing_monitor.slack.buttons import ACKNOWLEDGE, ACKNOWLEDGE_CHOICES, ACTIONS, APPROVE_CANCEL, ButtonMac

LOCAL_SECRET = "local-signing-secret"      # events/env.json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Send a signed Slack click to the local endpoint (or print it as an event).")
    p.add_argument("finding_id", help="the finding's id (billing-monitor scan lists them)")
    p.add_argument("--action", choices=ACTIONS, default=APPROVE_CANCEL)
    p.add_argument("--for", dest="duration", choices=list(ACKNOWLEDGE_CHOICES), default=None,
                   help="with --action acknowledge: how long (default: until it changes)")
    p.add_argument("--user", default="U012AB3CDE", help="the clicking Slack user id (default U012AB3CDE, events/env.json's)")
    p.add_argument("--secret", default=os.environ.get("SLACK_SIGNING_SECRET") or LOCAL_SECRET,
                   help="the signing secret (default: $SLACK_SIGNING_SECRET, else events/env.json's local one)")
    p.add_argument("--url", default="http://127.0.0.1:3000/slack/actions", help="where sam local start-api listens")
    p.add_argument("--response-url", default="http://host.docker.internal:15001/actions/T0BILLING1/1/local",
                   help="the click's response_url (the fake Slack of scripts/sam_local.py --serve by default)")
    p.add_argument("--event", action="store_true", help="print the API Gateway (payload 2.0) event instead of sending")
    p.add_argument("--base64", action="store_true", help="with --event: the body base64-encoded, as API Gateway may")
    p.add_argument("--stale", action="store_true", help="sign it 6 minutes ago (the function answers 401)")
    p.add_argument("--timestamp", type=int, default=None, help="sign it at this Unix time (events/slack_click.json: a fixed one)")
    p.add_argument("--forge", action="store_true", help="make the button's value with another key (refused)")
    args = p.parse_args(argv)

    value = ButtonMac("not-the-secret" if args.forge else args.secret).value(args.action, args.finding_id)
    block_id = f"ack:{args.finding_id}" if args.action == ACKNOWLEDGE else None
    payload = simulate.block_actions(user_id=args.user, action_id=args.action, value=value, block_id=block_id,
                                     response_url=args.response_url, acknowledge_for=args.duration)
    timestamp = args.timestamp or int(time.time()) - (360 if args.stale else 0)
    event = simulate.signed_event(args.secret, payload, timestamp=timestamp, base64_encoded=args.base64)
    if args.event:
        print(json.dumps(event, indent=2))
        return 0
    import requests

    body = simulate.form_body(payload)
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Slack-Request-Timestamp": event["headers"]["x-slack-request-timestamp"],
               "X-Slack-Signature": event["headers"]["x-slack-signature"]}
    started = time.perf_counter()
    answer = requests.post(args.url, data=body, headers=headers, timeout=30)
    print(f"HTTP {answer.status_code} in {time.perf_counter() - started:.2f} s: {answer.text}")
    return 0 if answer.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
