#!/usr/bin/env python3
"""Write a PayPal webhook delivery, signed by the PayPal stand-in, as API Gateway (payload 2.0) hands it to
PayPalWebhookFunction: events/paypal_sale_completed.json and friends are made with it.

    .venv/bin/python scripts/paypal_webhook_event.py sale I-LKL1NVUCV89B 22.00 > events/paypal_sale_completed.json
    .venv/bin/python scripts/paypal_webhook_event.py cancelled I-LKL1NVUCV89B > events/paypal_subscription_cancelled.json

The delivery verifies against any stand-in (its signing key is fixed: paypal_standin.STANDIN_WEBHOOK_KEY) with
the webhook id of events/env.json; against PayPal it does not (PayPal signs with its own certificate).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from billing_monitor.paypal_standin import PayPalStandIn, paypal_time

WEBHOOK_ID = "8PT597110X687430LKGECATA"


def api_gateway_event(headers: dict[str, str], body: bytes) -> dict:
    """What API Gateway (HTTP API, payload 2.0) hands the function: headers lower-cased, the body as a string."""
    return {
        "version": "2.0", "routeKey": "POST /paypal/webhook", "rawPath": "/paypal/webhook", "rawQueryString": "",
        "headers": {"accept": "*/*", "content-type": "application/json", "content-length": str(len(body)),
                    "host": "abc123.execute-api.us-east-1.amazonaws.com", "user-agent": "PayPal/AUHR-214.0-58399024",
                    **{k.lower(): v for k, v in headers.items()}},
        "requestContext": {"accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                           "http": {"method": "POST", "path": "/paypal/webhook", "protocol": "HTTP/1.1",
                                    "sourceIp": "173.0.80.116", "userAgent": "PayPal/AUHR-214.0-58399024"},
                           "requestId": "PPWH1a2b3c4d=", "routeKey": "POST /paypal/webhook", "stage": "$default",
                           "time": "04/Dec/2026:10:00:04 +0000", "timeEpoch": 1796378404000},
        "body": body.decode(), "isBase64Encoded": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["sale", "cancelled", "refunded"])
    parser.add_argument("paypal_id", help="the subscription's I-... id (refunded: the sale id)")
    parser.add_argument("amount", nargs="?", default="22.00")
    parser.add_argument("--when", default="2026-12-04T10:00:00Z")
    parser.add_argument("--sale-id", default="5TY05013RG002845M")
    parser.add_argument("--event-id", default=None)
    parser.add_argument("--webhook-id", default=WEBHOOK_ID)
    args = parser.parse_args(argv)
    standin = PayPalStandIn()            # not started: only its signing and its event shapes are used
    when = datetime.fromisoformat(args.when.replace("Z", "+00:00")).astimezone(UTC)
    if args.kind == "sale":
        event = standin.sale_completed(args.paypal_id, when, args.amount, sale_id=args.sale_id,
                                       event_id=args.event_id or "WH-2WR32451HC0233532-67976317FL4543714")
    elif args.kind == "refunded":
        event = standin.sale_refunded(args.paypal_id, when, args.amount,
                                      event_id=args.event_id or "WH-1GE84257G0350133W-6RW800890C634293G")
    else:
        event = standin.subscription_event("BILLING.SUBSCRIPTION.CANCELLED", args.paypal_id, "CANCELLED", when,
                                           event_id=args.event_id or "WH-77687562XN25889J8-8Y6T55435R66168T6")
    headers, body = standin.deliver(event, args.webhook_id, when=when)
    json.dump(api_gateway_event(headers, body), sys.stdout, indent=2)
    sys.stdout.write("\n")
    print(f"event {event['id']} ({event['event_type']}) at {paypal_time(when)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
