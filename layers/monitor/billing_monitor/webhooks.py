"""PayPal's webhooks (docs/spec/paypal-webhooks.md): verify a delivery, then handle its event once.

The order is the contract's. A delivery without the PAYPAL-* headers, or that PayPal's own
verify-webhook-signature does not answer SUCCESS for (the raw body spliced in as received), is answered 400 and
nothing else happens: no database read, nothing recorded, no Slack post. When PayPal cannot be asked (5xx,
timeout, token refused) the answer is 503, so that PayPal delivers it again. A verified event is handled once by
its id (billing_monitor.paypal_events) and a charge once by its sale id (billing_monitor.paypal_sales), in one
transaction of the monitor's schema that also holds the Slack post: a duplicate delivered meanwhile waits for it,
then finds it handled; a Slack post that fails rolls it back and the answer is 500 (PayPal, or the hourly net,
brings it again).

A charge (PAYMENT.SALE.COMPLETED; an ACTIVATED subscription too) is judged with the scan's own rules by a
targeted read-only query (rules/lookup.py: the rows holding the PayPal id and their contacts' subscriptions, no
transaction read). On a billing_disconnect or a paypal_still_active it is posted to Slack at once: who, what was
just charged, since when they canceled, the running total after cancellation (PayPal's list of the subscription's
charges since then, one call), the approval (the Cancel button, and the command), and that a refund is now owed.
A charge on a healthy subscription is recorded and posts nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from billing_monitor import db
from billing_monitor.actions.policy import (
    DEFAULT_GRACE_HOURS,
    DEFAULT_MAX_PER_RUN,
    UNAMBIGUOUS,
    Facts,
    approval_message,
    decide,
)
from billing_monitor.api_gateway import http, raw_body
from billing_monitor.paypal import WEBHOOK_HEADER_FIELDS, PayPalClient, PayPalError, PayPalTransient, parse_paypal_time
from billing_monitor.report import customer_label, display_money
from billing_monitor.rules.lookup import AtRisk, look_up_paypal_id
from billing_monitor.rules.registry import BILLING_DISCONNECT, CANCEL_PAYPAL_SUBSCRIPTION, PAYPAL_CHARGED_STATUSES, PAYPAL_ID
from billing_monitor.slack.buttons import APPROVE_CANCEL, ButtonMac
from billing_monitor.slack.message import slack_escape
from billing_monitor.slack.post import post_to_slack
from billing_monitor.source import Source
from billing_monitor.store import open_store
from billing_monitor.store.actions import canceled_before, remember_queued
from billing_monitor.store.scans import months_between
from billing_monitor.store.webhooks import (
    Sale,
    claim_event,
    claim_sale,
    forget_settled,
    mark_sale_at_risk,
    recorded_sales,
    refund_sale,
    remember_status,
    set_outcome,
)

log = logging.getLogger(__name__)

SALE_COMPLETED = "PAYMENT.SALE.COMPLETED"
SALE_REFUNDED, SALE_REVERSED = "PAYMENT.SALE.REFUNDED", "PAYMENT.SALE.REVERSED"
SUBSCRIPTION_STATUS = {"BILLING.SUBSCRIPTION.CANCELLED": "CANCELLED", "BILLING.SUBSCRIPTION.SUSPENDED": "SUSPENDED",
                       "BILLING.SUBSCRIPTION.EXPIRED": "EXPIRED", "BILLING.SUBSCRIPTION.ACTIVATED": "ACTIVE",
                       "BILLING.SUBSCRIPTION.RE-ACTIVATED": "ACTIVE"}
#: the event types to subscribe the webhook to (README, docs/deploy.md)
EVENT_TYPES = (SALE_COMPLETED, SALE_REFUNDED, SALE_REVERSED, *SUBSCRIPTION_STATUS)
AUTO_CANCEL_NOT_CONFIGURED = "auto-cancel not configured"


class WebhookConfigError(Exception):
    """The function cannot verify deliveries (no PAYPAL_WEBHOOK_ID, no PayPal credentials)."""






def paypal_headers(event: dict) -> dict[str, str] | None:
    """verify-webhook-signature's five fields from the PAYPAL-* headers (any case); None when one is missing."""
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    out = {}
    for name in WEBHOOK_HEADER_FIELDS:
        value = headers.get("paypal-" + name.replace("_", "-"))
        if not value or not str(value).strip():
            return None
        out[name] = str(value).strip()
    return out


def auto_cancel_finding(at_risk: AtRisk, subscription: dict | None) -> dict:
    """The charge's at-risk customer as a report finding for auto-cancel's policy (actions/policy.py): its check,
    the PayPal id its action cancels, the cancellation that made it watched, and PayPal's status as just read
    (None: PayPal could not be asked). Never acknowledged: a customer at risk cannot be."""
    canceled = at_risk.canceled_at.isoformat() if at_risk.canceled_at else None
    billing = (subscription or {}).get("billing_info") or {}
    return {
        "finding_id": at_risk.finding_id, "check": at_risk.check, "subscription_id": at_risk.subscription_id,
        "paypal_subscription_id": at_risk.paypal_id, "kajabi_subscription_id": at_risk.kajabi_subscription_id,
        "kajabi_canceled_at": canceled if at_risk.check == BILLING_DISCONNECT else None,
        "action": {"type": CANCEL_PAYPAL_SUBSCRIPTION, "paypal_subscription_id": at_risk.paypal_id},
        "paypal": {"status": (subscription or {}).get("status"), "canceled_at": canceled,
                   "next_billing_time": billing.get("next_billing_time")},
        "acknowledged": None,
    }


@dataclass(frozen=True)
class RunningTotal:
    count: int
    total: Decimal
    currency: str
    source: str               # "PayPal" (its list of the subscription's charges) or "recorded" (PayPal failed)


@dataclass
class WebhookService:
    """What handling PayPal's events needs; the handler builds it from PayPalWebhookSettings."""

    client: PayPalClient
    dsn: str                                     # the source database (read-only)
    store_dsn: str                               # the monitor's schema (written)
    webhook_id: str | None = None
    tolerance: Decimal = Decimal("1.00")
    source_schema: str = "public"
    slack_webhook: str | None = None
    buttons: ButtonMac | None = None
    auto_cancel: str = "off"
    auto_cancel_grace_hours: float = DEFAULT_GRACE_HOURS
    auto_cancel_max_per_run: int = DEFAULT_MAX_PER_RUN
    send_approval: Callable[[dict], None] | None = field(default=None, repr=False)   # onto the approvals queue
    slack_session: object = None
    statement_timeout_s: float = 30
    post: Callable[[str, dict], None] | None = field(default=None, repr=False)
    lookups: int = 0                             # targeted look-ups made (the bench reads it)

    def __post_init__(self):
        if self.post is None:
            self.post = lambda url, payload: post_to_slack(url, payload, self.slack_session)

    # ------------------------------------------------------------------ a delivery

    def handle_delivery(self, event: dict, now: datetime | None = None) -> dict:
        """An API Gateway request to POST /paypal/webhook: its HTTP answer."""
        now = now or datetime.now(UTC)
        headers = paypal_headers(event)
        if headers is None:
            log.warning("webhook refused: PAYPAL-* headers missing")
            return http(400, {"error": "not a PayPal webhook delivery: PAYPAL-* headers missing"})
        if not self.webhook_id:
            raise WebhookConfigError("PAYPAL_WEBHOOK_ID is not configured: deliveries cannot be verified"
                                     " (docs/deploy.md, registering the webhook)")
        try:
            body = raw_body(event)
        except ValueError:
            return http(400, {"error": "body not readable"})
        try:
            verdict = self.client.verify_webhook_signature(headers, self.webhook_id, body)
        except PayPalTransient as exc:
            log.warning("webhook not verified: PayPal cannot be asked; PayPal will deliver it again",
                        extra={"error": str(exc)})
            return http(503, {"error": "PayPal's verification is unavailable; deliver again"})
        except PayPalError as exc:
            log.warning("webhook not verified: PayPal refused the verification request", extra={"error": str(exc)})
            return http(400, {"error": "verification refused"})
        if verdict != "SUCCESS":
            log.warning("webhook refused: PayPal's verification answered FAILURE")
            return http(400, {"error": "signature verification failed"})
        try:
            parsed = json.loads(body)
        except ValueError:
            return http(400, {"error": "body is not JSON"})
        outcome = self.handle_event(parsed, now, via="webhook")
        return http(200, {"handled": outcome})

    # ------------------------------------------------------------------ an event (verified, or listed by PayPal)

    def handle_event(self, event: dict, now: datetime, *, via: str) -> str:
        """Handle a verified event once by its id; returns what was done (one line)."""
        event_id, event_type = str(event.get("id") or ""), str(event.get("event_type") or "")
        resource = event.get("resource") if isinstance(event.get("resource"), dict) else {}
        if not event_id or not event_type:
            return "not an event: no id or event_type"
        created = _time(event.get("create_time"))
        with open_store(self.store_dsn, application_name="billing-monitor-paypal") as store:
            if not claim_event(store, event_id, event_type, _text(resource.get("id")), created, now, via):
                return f"event {event_id} already handled"
            if event_type == SALE_COMPLETED:
                outcome = self._sale_event(store, event_id, resource, now, via)
            elif event_type in (SALE_REFUNDED, SALE_REVERSED):
                outcome = self._refund_event(store, event_type, resource)
            elif event_type in SUBSCRIPTION_STATUS:
                outcome = self._subscription_event(store, event_id, event_type, resource, now)
            else:
                outcome = f"{event_type}: recorded as seen"
            set_outcome(store, event_id, outcome)
        log.info("PayPal event handled", extra={"event_id": event_id, "event_type": event_type, "outcome": outcome})
        return outcome

    def _sale_event(self, store, event_id: str, resource: dict, now: datetime, via: str) -> str:
        paypal_id = _text(resource.get("billing_agreement_id"))
        if not paypal_id or not PAYPAL_ID.match(paypal_id):
            return "a sale of no subscription: recorded as seen"
        amount = resource.get("amount") or {}
        try:
            sale = Sale(str(resource["id"]), paypal_id, Decimal(str(amount["total"])).quantize(Decimal("0.01")),
                        str(amount["currency"]).upper(), _time(resource.get("create_time")) or now)
        except (KeyError, InvalidOperation):
            return "a sale without id or amount: recorded as seen"
        return self.handle_charge(store, sale, now, via=via, event_id=event_id)

    def charge_once(self, sale: Sale, now: datetime, *, via: str) -> str:
        """handle_charge in a transaction of its own (the hourly search: one per payment found)."""
        with open_store(self.store_dsn, application_name="billing-monitor-paypal") as store:
            return self.handle_charge(store, sale, now, via=via)

    def handle_charge(self, store, sale: Sale, now: datetime, *, via: str, event_id: str | None = None) -> str:
        """A subscription payment PayPal took, heard by webhook, by the listing or by Transaction Search: once by
        its sale id; posted when the customer is at risk. `store`: the open transaction of the monitor's schema."""
        if not claim_sale(store, sale, now, via, event_id):
            return f"sale {sale.sale_id} already handled"
        at_risk = self.look_up(sale.paypal_subscription_id)
        if at_risk is None:
            return f"sale {sale.sale_id} on {sale.paypal_subscription_id}: not at risk, nothing posted"
        running = self.running_total(store, at_risk, sale, now)
        auto = self.queue_auto_cancel_if_unambiguous(store, at_risk, now)
        self._post(charge_message(at_risk, sale, running, now, self.buttons, auto))
        mark_sale_at_risk(store, sale.sale_id, at_risk.check, at_risk.finding_id, at_risk.canceled_at, now)
        return f"sale {sale.sale_id} on {sale.paypal_subscription_id}: {at_risk.check} {at_risk.finding_id}, posted; {auto}"

    def queue_auto_cancel_if_unambiguous(self, store, at_risk: AtRisk, now: datetime) -> str:
        """With AutoCancel on (prevention.md), the charge's customer goes through auto-cancel's policy as a scan's
        would (actions/policy.py: PayPal's status read now, the other live rows holding the id, the grace, an id
        canceled or queued before; the cap), and an unambiguous one's approval goes on the approvals queue at once,
        remembered in the same transaction as the event (never queued twice). The cancel function carries it out as
        any approval. Returns one line for the post."""
        if self.auto_cancel != UNAMBIGUOUS:
            return AUTO_CANCEL_NOT_CONFIGURED
        try:
            subscription = self.client.get_subscription(at_risk.paypal_id)
        except PayPalError as exc:
            log.warning("auto-cancel: PayPal's status could not be read", extra={"error": str(exc)})
            subscription = None
        finding = auto_cancel_finding(at_risk, subscription)
        facts = Facts(live_rows={at_risk.paypal_id: [f"another row ({n + 1})" for n in range(at_risk.other_live_rows)]},
                      done_before=canceled_before(store, [at_risk.paypal_id]))
        decision = decide([finding], now=now, grace_hours=self.auto_cancel_grace_hours,
                          max_per_run=self.auto_cancel_max_per_run, reconciled=True, facts=facts)
        if not decision.queued:
            return f"not auto-canceled: {decision.not_queued.get(at_risk.finding_id) or decision.line}"
        message = approval_message(finding)
        try:
            with store.transaction():        # a savepoint: a send that fails is not remembered
                if not remember_queued(store, message, None, now):
                    return "not auto-canceled: queued by auto-cancel before: never again"
                (self.send_approval or _no_queue)(message)
        except Exception as exc:  # noqa: BLE001 - the post still names the customer with the approval
            log.error("auto-cancel could not queue an approval", extra={"finding_id": at_risk.finding_id,
                                                                        "error": f"{type(exc).__name__}: {exc}"[:300]})
            return f"auto-cancel could not queue the approval ({type(exc).__name__}): approve it by hand"
        log.info("auto-cancel queued an approval", extra={"finding_id": at_risk.finding_id,
                                                          "paypal_subscription_id": at_risk.paypal_id})
        return "auto-cancel: the cancellation is queued (policy unambiguous); the outcome follows"

    def look_up(self, paypal_id: str) -> AtRisk | None:
        self.lookups += 1
        with db.connect(self.dsn, read_only=True, statement_timeout_s=self.statement_timeout_s,
                        application_name="billing-monitor-paypal") as conn:
            return look_up_paypal_id(conn, paypal_id, self.tolerance, Source(self.source_schema))

    def running_total(self, store, at_risk: AtRisk, sale: Sale, now: datetime) -> RunningTotal:
        """The charges after cancellation, this one included: PayPal's list of the subscription's charges since the
        cancellation (as the reconciliation counts them); the recorded sales when PayPal cannot be asked."""
        charges: dict[str, Decimal] = {}
        source = "PayPal"
        try:
            if at_risk.canceled_at is None:
                raise PayPalError("no cancellation time")
            for t in self.client.list_transactions(at_risk.paypal_id, at_risk.canceled_at, now):
                if t.get("status") in PAYPAL_CHARGED_STATUSES and parse_paypal_time(t["time"]) > at_risk.canceled_at:
                    charges[t["id"]] = Decimal(str(t["amount_with_breakdown"]["gross_amount"]["value"]))
        except (PayPalError, KeyError, ValueError) as exc:
            log.warning("running total from the recorded sales: PayPal's list failed", extra={"error": str(exc)})
            source = "recorded"
            for r in recorded_sales(store, [at_risk.paypal_id]):
                if at_risk.canceled_at is None or r["charged_at"] > at_risk.canceled_at:
                    charges[r["sale_id"]] = r["amount"]
        charges.setdefault(sale.sale_id, sale.amount)        # PayPal's list may lag the webhook
        return RunningTotal(len(charges), sum(charges.values(), Decimal("0.00")), sale.currency, source)

    def _refund_event(self, store, event_type: str, resource: dict) -> str:
        sale_id = _text(resource.get("sale_id"))
        amount = resource.get("amount") or {}
        if not sale_id:
            return f"{event_type} naming no sale: recorded as seen"
        try:
            value = abs(Decimal(str(amount.get("total"))))
        except InvalidOperation:
            return f"{event_type} of sale {sale_id} without an amount: recorded as seen"
        state = "reversed" if event_type == SALE_REVERSED else "refunded"
        sale = refund_sale(store, sale_id, value, state)
        if sale is None:
            return f"{event_type} of sale {sale_id}, a sale not recorded here: recorded as seen"
        owed = sale["amount"] - sale["refunded"]
        return (f"sale {sale_id} on {sale['paypal_subscription_id']} {state} {value:.2f} {sale['currency']};"
                f" still owed on it {owed:.2f}")

    def _subscription_event(self, store, event_id: str, event_type: str, resource: dict, now: datetime) -> str:
        paypal_id = _text(resource.get("id"))
        if not paypal_id or not PAYPAL_ID.match(paypal_id):
            return f"{event_type} naming no subscription: recorded as seen"
        status = SUBSCRIPTION_STATUS[event_type]
        when = _time(resource.get("status_update_time")) or now
        before = remember_status(store, paypal_id, status, event_type, event_id, when)
        if status == "ACTIVE":
            unsettled = forget_settled(store, paypal_id)
            at_risk = self.look_up(paypal_id)
            note = "; no longer remembered as settled" if unsettled else ""
            if at_risk is None:
                return f"{paypal_id} is ACTIVE at PayPal{note}"
            self._post(activated_message(at_risk, now, self.buttons))
            return f"{paypal_id} is ACTIVE at PayPal, but the database says it is over: {at_risk.check} posted{note}"
        at_risk = self.look_up(paypal_id)
        if at_risk is None or before == status:
            return f"{paypal_id} is {status} at PayPal"
        if by_the_monitor(store, paypal_id) and status == "CANCELLED":
            return f"{paypal_id} is CANCELLED at PayPal (by billing-monitor's cancel function, which told Slack)"
        self._post(status_message(at_risk, status, resource.get("status_change_note"), when))
        return f"{paypal_id} is {status} at PayPal; {at_risk.check} {at_risk.finding_id} told"

    def _post(self, payload: dict) -> None:
        if not self.slack_webhook:
            log.warning("Slack is not configured: the owner is not told")
            return
        self.post(self.slack_webhook, payload)       # SlackError: the transaction rolls back, PayPal delivers again


def by_the_monitor(store, paypal_id: str) -> bool:
    """The cancel function canceled it (an audit row with outcome canceled): Slack heard of it from there."""
    return store.execute("select exists (select 1 from billing_monitor.actions where paypal_subscription_id = %s"
                         " and outcome = 'canceled')", (paypal_id,)).fetchone()[0]


# ---------------------------------------------------------------- Slack


def _who(at_risk: AtRisk) -> str:
    c = at_risk.contact
    return customer_label({"name": c.name, "email": c.email} if c else None)


def _since(at_risk: AtRisk, now: datetime) -> str:
    if at_risk.canceled_at is None:
        return "after canceling"
    months = months_between(at_risk.canceled_at, now)
    where = "in Kajabi" if at_risk.check == BILLING_DISCONNECT or at_risk.kajabi_subscription_id else "(the database"\
        " says the subscription is over)"
    ago = f"{months} month{'s' if months != 1 else ''} after" if months else "after"
    return f"{ago} canceling {where} on {at_risk.canceled_at.astimezone(UTC):%Y-%m-%d}"


def _approval(at_risk: AtRisk, buttons: ButtonMac | None) -> tuple[str, list[dict]]:
    command = f"`billing-monitor approve {at_risk.finding_id}`"
    blocks = []
    if buttons is not None:
        first = _who(at_risk).split(" <")[0][:40]
        blocks.append({"type": "actions", "elements": [{
            "type": "button", "action_id": APPROVE_CANCEL, "style": "danger",
            "text": {"type": "plain_text", "text": f"Cancel in PayPal: {first}"[:75], "emoji": False},
            "value": buttons.value(APPROVE_CANCEL, at_risk.finding_id),
            "confirm": {"title": {"type": "plain_text", "text": "Cancel in PayPal?"},
                        "text": {"type": "mrkdwn", "text": f"Cancel PayPal subscription `{at_risk.paypal_id}` of"
                                                           f" *{slack_escape(_who(at_risk))}*?"},
                        "confirm": {"type": "plain_text", "text": "Cancel it"},
                        "deny": {"type": "plain_text", "text": "Not now"}, "style": "danger"}}]})
    return command, blocks


def charge_message(at_risk: AtRisk, sale: Sale, running: RunningTotal, now: datetime, buttons: ButtonMac | None,
                   auto: str) -> dict:
    """'Oskar Dunmore was just charged 22.00 USD, 21 months after canceling in Kajabi', with the approval."""
    command, blocks = _approval(at_risk, buttons)
    text = (f":rotating_light: *{slack_escape(_who(at_risk))}* was just charged *{sale.amount:.2f} {sale.currency}* by"
            f" PayPal ({sale.charged_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC, sale `{sale.sale_id}`), {_since(at_risk, now)}."
            f"\nPayPal `{at_risk.paypal_id}` ({at_risk.check}, finding `{at_risk.finding_id}`): charged after canceling"
            f" {running.count} time{'s' if running.count != 1 else ''}, {display_money(running.total)} {running.currency}"
            f" in all{'' if running.source == 'PayPal' else ' (as recorded here: PayPal could not be asked)'}."
            f"\nA refund of {sale.amount:.2f} {sale.currency} is now owed. Cancel it in PayPal: {command}"
            f" (or the button); then refund: `billing-monitor approve {at_risk.finding_id} --refund`."
            + ("" if auto == AUTO_CANCEL_NOT_CONFIGURED else f"\n_{slack_escape(auto)}_"))
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}, *blocks]}


def activated_message(at_risk: AtRisk, now: datetime, buttons: ButtonMac | None) -> dict:
    command, blocks = _approval(at_risk, buttons)
    text = (f":rotating_light: PayPal subscription `{at_risk.paypal_id}` of *{slack_escape(_who(at_risk))}* was just"
            f" activated, {_since(at_risk, now)} ({at_risk.check}, finding `{at_risk.finding_id}`): PayPal will charge"
            f" it. Cancel it in PayPal: {command} (or the button).")
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}, *blocks]}


def status_message(at_risk: AtRisk, status: str, note, when: datetime) -> dict:
    """A cancellation (or suspension, expiry) made outside billing-monitor, of a customer at risk."""
    ends = status in ("CANCELLED", "EXPIRED")
    text = (f":information_source: PayPal subscription `{at_risk.paypal_id}` of *{slack_escape(_who(at_risk))}*"
            f" (finding `{at_risk.finding_id}`) is now *{status}* at PayPal"
            f" ({when.astimezone(UTC):%Y-%m-%d %H:%M} UTC{'; note: ' + slack_escape(str(note)[:200]) if note else ''}),"
            f" not by billing-monitor. "
            + ("PayPal will not charge it again: no longer at risk. Money taken after canceling is still owed until"
               f" refunded: `billing-monitor approve {at_risk.finding_id} --refund`." if ends else
               "PayPal does not charge it while suspended, but may resume it: still at risk."))
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]}


def _text(value) -> str | None:
    return str(value).strip() if value not in (None, "") else None


def _time(value) -> datetime | None:
    try:
        return parse_paypal_time(str(value)) if value else None
    except ValueError:
        return None


def _no_queue(message: dict) -> None:
    raise RuntimeError("no approvals queue configured")


def service_for(settings, send_approval: Callable[[dict], None] | None = None) -> WebhookService:
    """The service a PayPalWebhookSettings describes (the handler keeps one per container: the token is cached)."""
    from billing_monitor.http import retrying_session

    return WebhookService(
        client=settings.paypal_client(), dsn=settings.dsn_value, store_dsn=settings.store_dsn_value,
        webhook_id=settings.webhook_id, tolerance=settings.tolerance, source_schema=settings.source_schema,
        slack_webhook=settings.slack_webhook, buttons=settings.button_mac, auto_cancel=settings.auto_cancel,
        auto_cancel_grace_hours=settings.auto_cancel_grace_hours, auto_cancel_max_per_run=settings.auto_cancel_max_per_run,
        send_approval=send_approval, slack_session=retrying_session(methods=("POST",), backoff_factor=settings.http_backoff_s))


def is_hourly(event: object) -> bool:
    """The hourly schedule's constant input, {"schedule": "hourly"} (events/scheduled_hourly.json)."""
    return isinstance(event, dict) and event.get("schedule") == "hourly"
