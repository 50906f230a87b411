"""PayPal's webhooks and the hourly net (issue 21): real Postgres (the demo's data), the spec-validating PayPal
stand-in on 127.0.0.1 (it signs deliveries and answers verify-webhook-signature as PayPal does), the fake Slack.
The clock is an argument (`now`), never patched."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from billing_monitor.paypal import PayPalClient
from billing_monitor.paypal_net import run_hourly
from billing_monitor.slack.buttons import APPROVE_CANCEL, ButtonMac
from billing_monitor.webhooks import WebhookService
from scripts.paypal_webhook_event import WEBHOOK_ID, api_gateway_event
from tests.support.aws import LambdaContext, load_event, load_handler_module
from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal

pytestmark = pytest.mark.integration

OSKAR_FINDING, OSKAR_PAYPAL = "6c3f746973e9a73c", "I-LKL1NVUCV89B"     # the demo's 21-month disconnect
SIGNING_SECRET = "test-signing-secret"
NOW = datetime(2026, 12, 4, 10, 0, 5, tzinfo=UTC)
UNREACHABLE = "postgresql://nobody:x@127.0.0.1:1/none?connect_timeout=1"


@pytest.fixture
def paypal():
    with FakePayPal() as fake:
        fake.add(OSKAR_PAYPAL, "ACTIVE")
        yield fake
    assert fake.violations == []


def make_service(paypal, slack, dsn, *, store_dsn=None, webhook_id=WEBHOOK_ID, auto_cancel="off") -> WebhookService:
    return WebhookService(client=PayPalClient(paypal.url, CLIENT_ID, CLIENT_SECRET, backoff_s=0.001), dsn=dsn,
                          store_dsn=store_dsn or dsn, webhook_id=webhook_id, slack_webhook=slack.url,
                          buttons=ButtonMac(SIGNING_SECRET), auto_cancel=auto_cancel)


@pytest.fixture
def service(paypal, slack, demo_db):
    return make_service(paypal, slack, demo_db)


def delivery(paypal, event: dict, webhook_id: str = WEBHOOK_ID) -> dict:
    headers, body = paypal.deliver(event, webhook_id)
    return api_gateway_event(headers, body)


def rows(dsn: str, table: str) -> list[dict]:
    with psycopg.connect(dsn) as conn:
        if conn.execute("select to_regclass(%s)", (f"billing_monitor.{table}",)).fetchone()[0] is None:
            return []
        cur = conn.execute(f"select * from billing_monitor.{table}")
        return [dict(zip([d.name for d in cur.description], r, strict=True)) for r in cur.fetchall()]


def healthy_paypal_id(service, dsn) -> str:
    """A live PayPal id of the demo that the scan's rules do not report as at risk."""
    with psycopg.connect(dsn) as conn:
        ids = [r[0] for r in conn.execute("select distinct btrim(paypal_subscription_id) from subscriptions"
                                          " where paypal_subscription_id like 'I-%' and status = 'active' order by 1")]
    for pid in ids:
        if service.look_up(pid) is None:
            return pid
    raise AssertionError("the demo has no healthy PayPal subscription")


# ---------------------------------------------------------------- the stand-in verifies as PayPal does


def test_the_stand_in_verifies_only_what_it_signed_byte_for_byte(paypal):
    client = PayPalClient(paypal.url, CLIENT_ID, CLIENT_SECRET)
    headers, body = paypal.deliver(paypal.sale_completed(OSKAR_PAYPAL, NOW), WEBHOOK_ID)
    fields = {k: headers["PAYPAL-" + k.upper().replace("_", "-")]
              for k in ("auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time")}
    assert client.verify_webhook_signature(fields, WEBHOOK_ID, body) == "SUCCESS"
    reserialized = json.dumps(json.loads(body)).encode()          # the same event, other bytes
    assert reserialized != body
    assert client.verify_webhook_signature(fields, WEBHOOK_ID, reserialized) == "FAILURE"
    assert client.verify_webhook_signature(fields, "9XX00000000000000", body) == "FAILURE"
    assert client.verify_webhook_signature({**fields, "transmission_id": "other-1"}, WEBHOOK_ID, body) == "FAILURE"
    forged = body.replace(b'"22.00"', b'"2.00"')
    assert client.verify_webhook_signature(fields, WEBHOOK_ID, forged) == "FAILURE"


# ---------------------------------------------------------------- a charge on a disconnected customer


def test_a_verified_charge_on_a_disconnected_customer_is_posted_once_and_recorded(aws_env, monkeypatch, paypal,
                                                                                   slack, demo_db):
    """Through the handler, with the events/ file as API Gateway hands it over (signed by the stand-in)."""
    paypal.charge(OSKAR_PAYPAL, "2026-12-04T10:00:00Z", "22.00", txn_id="5TY05013RG002845M")   # PayPal's side of it
    for key, value in {"BILLING_MONITOR_DSN": demo_db, "SLACK_WEBHOOK_URL": slack.url, "PAYPAL_WEBHOOK_ID": WEBHOOK_ID,
                       "PAYPAL_BASE_URL": paypal.url, "PAYPAL_CLIENT_ID": CLIENT_ID,
                       "PAYPAL_CLIENT_SECRET": CLIENT_SECRET, "SLACK_SIGNING_SECRET": SIGNING_SECRET}.items():
        monkeypatch.setenv(key, value)
    app = load_handler_module("paypal_webhook")
    event = load_event("paypal_sale_completed.json")
    answer = app.lambda_handler(event, LambdaContext())
    assert answer["statusCode"] == 200, answer
    [message] = slack.messages
    text = message["text"]
    assert "*Oskar Dunmore &lt;oskar.dunmore92@example.com&gt;* was just charged *22.00 USD*" in text
    assert "canceling in Kajabi on 2023-08-16" in text
    assert f"`billing-monitor approve {OSKAR_FINDING}`" in text
    assert "A refund of 22.00 USD is now owed" in text
    [button] = message["blocks"][1]["elements"]
    assert button["value"] == ButtonMac(SIGNING_SECRET).value(APPROVE_CANCEL, OSKAR_FINDING)
    [sale] = rows(demo_db, "paypal_sales")
    assert (sale["sale_id"], sale["paypal_subscription_id"], sale["amount"], sale["finding_id"], sale["check_name"]) \
        == ("5TY05013RG002845M", OSKAR_PAYPAL, Decimal("22.00"), OSKAR_FINDING, "billing_disconnect")
    assert sale["posted_at"] is not None

    for _ in range(5):                                            # PayPal delivers it again
        again = app.lambda_handler(event, LambdaContext())
        assert again["statusCode"] == 200
        assert "already handled" in json.loads(again["body"])["handled"]
    body = json.loads(event["body"])                              # the same sale under a new event id
    body["id"] = "WH-0NEW0000000000000-000000000000000X"
    headers, raw = paypal.deliver(body, WEBHOOK_ID)
    twin = app.lambda_handler(api_gateway_event(headers, raw), LambdaContext())
    assert twin["statusCode"] == 200
    assert "sale 5TY05013RG002845M already handled" in json.loads(twin["body"])["handled"]
    assert len(slack.messages) == 1
    assert len(rows(demo_db, "paypal_sales")) == 1
    assert len(rows(demo_db, "paypal_events")) == 2


def test_the_running_total_counts_paypal_charges_since_the_cancellation(service, paypal, slack):
    paypal.monthly(OSKAR_PAYPAL, "2026-09-16T10:00:00Z", 2, "22.00")      # two earlier charges after canceling
    event = paypal.sale_completed(OSKAR_PAYPAL, NOW - timedelta(seconds=5))
    assert service.handle_delivery(delivery(paypal, event), NOW)["statusCode"] == 200
    assert "charged after canceling 3 times, 66.00 USD in all" in slack.messages[0]["text"]


@pytest.mark.parametrize("how", ["forged", "another webhook id", "headers missing", "simulator"])
def test_a_delivery_that_does_not_verify_is_refused_and_nothing_else_happens(paypal, slack, how):
    """400, and no database read (the DSNs lead nowhere), nothing recorded, no Slack post."""
    service = make_service(paypal, slack, UNREACHABLE)
    event = delivery(paypal, paypal.sale_completed(OSKAR_PAYPAL, NOW))
    if how == "forged":
        event["body"] = event["body"].replace('"22.00"', '"2.00"')
    elif how == "another webhook id":
        event = delivery(paypal, paypal.sale_completed(OSKAR_PAYPAL, NOW), webhook_id="7YX00000000000000")
    elif how == "headers missing":
        event["headers"] = {k: v for k, v in event["headers"].items() if k != "paypal-transmission-sig"}
    else:     # PayPal's simulator: headers of its own, a signature verify-webhook-signature does not accept
        event["headers"]["paypal-transmission-sig"] = "SIMULATOR0signature0not0verifiable"
    answer = service.handle_delivery(event, NOW)
    assert answer["statusCode"] == 400
    assert slack.messages == []
    assert [c for c in paypal.calls if c[0] == "verify"] == ([] if how == "headers missing" else [("verify", WEBHOOK_ID, None)])
    assert [c for c in paypal.calls if c[0] != "verify"] == []


def test_verification_down_is_503_nothing_recorded_and_the_redelivery_is_handled(service, paypal, slack, demo_db):
    event = delivery(paypal, paypal.sale_completed(OSKAR_PAYPAL, NOW))
    paypal.faults["verify"] = [503] * 20
    assert service.handle_delivery(event, NOW)["statusCode"] == 503
    assert rows(demo_db, "paypal_events") == []
    assert rows(demo_db, "paypal_sales") == []
    assert slack.messages == []
    paypal.faults["verify"] = ["timeout"] * 20
    service.client.timeout = (0.5, 0.3)
    assert service.handle_delivery(event, NOW)["statusCode"] == 503
    paypal.faults["verify"] = []
    paypal.faults["token"] = [500] * 20
    service.client._forget_token()
    assert service.handle_delivery(event, NOW)["statusCode"] == 503
    paypal.faults["token"] = []
    assert service.handle_delivery(event, NOW)["statusCode"] == 200               # PayPal's redelivery
    assert len(slack.messages) == 1
    assert len(rows(demo_db, "paypal_sales")) == 1


def test_a_charge_on_a_healthy_subscription_posts_nothing(service, paypal, slack, demo_db):
    pid = healthy_paypal_id(service, demo_db)
    paypal.add(pid, "ACTIVE")
    answer = service.handle_delivery(delivery(paypal, paypal.sale_completed(pid, NOW)), NOW)
    assert answer["statusCode"] == 200
    assert "not at risk, nothing posted" in json.loads(answer["body"])["handled"]
    assert slack.messages == []
    [sale] = rows(demo_db, "paypal_sales")
    assert sale["finding_id"] is None


def test_a_refund_of_a_recorded_sale_lowers_what_is_owed(service, paypal, slack, demo_db):
    sale = paypal.sale_completed(OSKAR_PAYPAL, NOW)
    service.handle_delivery(delivery(paypal, sale), NOW)
    refund = paypal.sale_refunded(sale["resource"]["id"], NOW + timedelta(hours=1))
    answer = service.handle_delivery(delivery(paypal, refund), NOW + timedelta(hours=1))
    assert "refunded 22.00 USD; still owed on it 0.00" in json.loads(answer["body"])["handled"]
    [row] = rows(demo_db, "paypal_sales")
    assert (row["state"], row["refunded"]) == ("refunded", Decimal("22.00"))
    assert len(slack.messages) == 1


def test_a_cancellation_made_elsewhere_is_said_in_slack_and_remembered(service, paypal, slack, demo_db):
    event = paypal.subscription_event("BILLING.SUBSCRIPTION.CANCELLED", OSKAR_PAYPAL, "CANCELLED", NOW,
                                      note="Canceled from the PayPal dashboard")
    assert service.handle_delivery(delivery(paypal, event), NOW)["statusCode"] == 200
    [message] = slack.messages
    assert "is now *CANCELLED* at PayPal" in message["text"]
    assert "no longer at risk" in message["text"]
    assert "Oskar Dunmore" in message["text"]
    [status] = rows(demo_db, "paypal_subscription_events")
    assert (status["paypal_subscription_id"], status["status"]) == (OSKAR_PAYPAL, "CANCELLED")


def test_other_event_types_are_recorded_as_seen(service, paypal, slack, demo_db):
    event = paypal.webhook_event("CUSTOMER.DISPUTE.CREATED", {"dispute_id": "PP-D-1"}, resource_type="dispute")
    answer = service.handle_delivery(delivery(paypal, event), NOW)
    assert json.loads(answer["body"])["handled"] == "CUSTOMER.DISPUTE.CREATED: recorded as seen"
    assert [r["event_type"] for r in rows(demo_db, "paypal_events")] == ["CUSTOMER.DISPUTE.CREATED"]
    assert slack.messages == []


# ---------------------------------------------------------------- the hourly net


def test_the_net_posts_a_charge_the_webhook_missed_once(service, paypal, slack, demo_db):
    paypal.charge(OSKAR_PAYPAL, NOW - timedelta(hours=2), "22.00")                # no webhook for it
    first = run_hourly(service, NOW)
    assert first.errors == []
    assert len(slack.messages) == 1
    assert "was just charged *22.00 USD*" in slack.messages[0]["text"]
    run_hourly(service, NOW + timedelta(hours=1))                                 # the overlap lists it again
    assert len(slack.messages) == 1
    [sale] = rows(demo_db, "paypal_sales")
    assert sale["via"] == "search"


def test_the_net_does_not_post_again_what_the_webhook_posted(service, paypal, slack):
    event = paypal.sale_completed(OSKAR_PAYPAL, NOW - timedelta(minutes=30))
    service.handle_delivery(delivery(paypal, event), NOW - timedelta(minutes=29))
    assert len(slack.messages) == 1
    outcome = run_hourly(service, NOW)
    assert outcome.payments >= 1
    assert outcome.events == 0                        # the listed event was handled already (its id)
    assert len(slack.messages) == 1


def test_the_net_handles_an_event_paypal_gave_up_delivering(service, paypal, slack, demo_db):
    event = paypal.subscription_event("BILLING.SUBSCRIPTION.CANCELLED", OSKAR_PAYPAL, "CANCELLED", NOW - timedelta(hours=1))
    paypal.deliver(event, WEBHOOK_ID)                 # made, never received
    outcome = run_hourly(service, NOW)
    assert outcome.events == 1
    assert "CANCELLED" in slack.messages[0]["text"]
    assert [r["via"] for r in rows(demo_db, "paypal_events")] == ["listing"]


def test_a_failing_search_is_retried_every_hour_and_said_in_slack_after_a_day(service, paypal, slack, demo_db):
    missed = paypal.charge(OSKAR_PAYPAL, NOW - timedelta(hours=2), "22.00")
    paypal.faults["search"] = [500] * 10_000
    for hour in range(24):
        outcome = run_hourly(service, NOW + timedelta(hours=hour))
        assert outcome.errors
    assert slack.messages == []                        # 23 hours of failures: not yet a day
    run_hourly(service, NOW + timedelta(hours=24))
    [told] = slack.messages
    assert "Transaction Search (the hourly net) has failed since 2026-12-04 10:00 UTC" in told["text"]
    run_hourly(service, NOW + timedelta(hours=25))
    assert len(slack.messages) == 1                    # told once
    paypal.faults["search"] = []
    outcome = run_hourly(service, NOW + timedelta(hours=26))
    assert outcome.errors == []
    texts = [m["text"] for m in slack.messages]
    assert any("was just charged" in t for t in texts)          # the charge missed meanwhile is posted now
    assert any("works again" in t for t in texts)
    assert [r["sale_id"] for r in rows(demo_db, "paypal_sales")] == [missed]


# ---------------------------------------------------------------- the scan knows the charge before the import


def test_the_next_scan_counts_a_posted_charge_until_the_import_brings_it(service, paypal, demo_db):
    from billing_monitor.scan import run_scan

    def oskar():
        [f] = [f for f in run_scan(demo_db).findings if f.finding_id == OSKAR_FINDING]
        return len(f.charges), sum(c.amount for c in f.charges)

    before = oskar()
    event = paypal.sale_completed(OSKAR_PAYPAL, NOW)
    service.handle_delivery(delivery(paypal, event), NOW)
    assert oskar() == (before[0] + 1, before[1] + Decimal("22.00"))
    with psycopg.connect(demo_db) as conn:                       # the import brings it in
        conn.execute("insert into transactions (contact_id, subscription_id, source, external_id, amount, currency,"
                     " status, transaction_date) select contact_id, id, 'paypal', %s, 22.00, 'USD', 'completed', %s"
                     " from subscriptions where btrim(paypal_subscription_id) = %s and status = 'active'",
                     (event["resource"]["id"], NOW, OSKAR_PAYPAL))
    assert oskar() == (before[0] + 1, before[1] + Decimal("22.00"))        # counted once


def test_a_slack_post_that_fails_rolls_back_so_the_redelivery_posts_it(service, paypal, slack, demo_db):
    """The handler's error is Lambda's 500: PayPal delivers again; nothing was recorded meanwhile."""
    from billing_monitor.slack.post import SlackError

    event = delivery(paypal, paypal.sale_completed(OSKAR_PAYPAL, NOW))
    slack.always, slack.error_body = (400, {}), "invalid_payload"
    with pytest.raises(SlackError):
        service.handle_delivery(event, NOW)
    assert rows(demo_db, "paypal_events") == []
    assert rows(demo_db, "paypal_sales") == []
    slack.always = None
    assert service.handle_delivery(event, NOW)["statusCode"] == 200
    assert [m["text"][:16] for m in slack.messages[1:]] == [":rotating_light:"]
    assert len(rows(demo_db, "paypal_sales")) == 1


# ---------------------------------------------------------------- auto-cancel (prevention.md), from a charge


def auto_service(paypal, slack, demo_db, queued: list, **kw) -> WebhookService:
    service = make_service(paypal, slack, demo_db, auto_cancel="unambiguous")
    service.send_approval = queued.append
    for key, value in kw.items():
        setattr(service, key, value)
    return service


def test_with_auto_cancel_on_a_charge_on_an_unambiguous_disconnect_queues_its_approval_once(paypal, slack, demo_db):
    queued: list[dict] = []
    service = auto_service(paypal, slack, demo_db, queued)
    first = paypal.sale_completed(OSKAR_PAYPAL, NOW)
    assert service.handle_delivery(delivery(paypal, first), NOW)["statusCode"] == 200
    assert queued == [{"action": "cancel_paypal_subscription", "finding_id": OSKAR_FINDING,
                       "paypal_subscription_id": OSKAR_PAYPAL, "approved_by": "auto-cancel", "policy": "unambiguous",
                       "reason": queued[0]["reason"]}]
    assert queued[0]["reason"].startswith("Canceled in Kajabi on 2023-08-16; auto-canceled")
    assert "auto-cancel: the cancellation is queued" in slack.messages[-1]["text"]
    # the next charge of the same subscription (before the cancel function ran): never queued twice
    second = paypal.sale_completed(OSKAR_PAYPAL, NOW + timedelta(days=30), sale_id="8AB12345CD6789012")
    assert service.handle_delivery(delivery(paypal, second), NOW + timedelta(days=30))["statusCode"] == 200
    assert len(queued) == 1
    assert "not auto-canceled: " in slack.messages[-1]["text"]
    assert [r["paypal_subscription_id"] for r in rows(demo_db, "auto_cancel_queued")] == [OSKAR_PAYPAL]


def test_with_auto_cancel_on_an_ambiguous_or_recent_case_is_named_with_its_reason_not_queued(paypal, slack, demo_db):
    queued: list[dict] = []
    with psycopg.connect(demo_db, autocommit=True) as conn:        # another live row naming the PayPal id
        conn.execute("insert into public.subscriptions (contact_id, kajabi_subscription_id, status, amount, currency,"
                     " billing_cycle) select contact_id, paypal_subscription_id, 'active', amount, currency,"
                     " billing_cycle from public.subscriptions where paypal_subscription_id = %s", (OSKAR_PAYPAL,))
    service = auto_service(paypal, slack, demo_db, queued)
    assert service.handle_delivery(delivery(paypal, paypal.sale_completed(OSKAR_PAYPAL, NOW)), NOW)["statusCode"] == 200
    assert queued == []
    assert rows(demo_db, "auto_cancel_queued") == []
    assert f"not auto-canceled: another live subscriptions row holds {OSKAR_PAYPAL}" in slack.messages[-1]["text"]


def test_with_auto_cancel_off_a_charge_queues_nothing(service, paypal, slack, demo_db):
    service.send_approval = pytest.fail
    assert service.handle_delivery(delivery(paypal, paypal.sale_completed(OSKAR_PAYPAL, NOW)), NOW)["statusCode"] == 200
    assert "auto-cancel" not in slack.messages[-1]["text"]
