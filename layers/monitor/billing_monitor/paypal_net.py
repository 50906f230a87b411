"""The hourly net under the webhooks (docs/spec/paypal-webhooks.md, "The net under the webhooks").

Every hour: Transaction Search for the account's subscription payments (T0002, status S, reference SUB) since the
last complete look less SEARCH_OVERLAP (Transaction Search lags up to 3 hours), in windows of at most 31 days,
every page; each payment handled exactly as a PAYMENT.SALE.COMPLETED for its PayPal id (WebhookService.handle_charge:
once by its sale id, so a charge the webhook posted is not posted again and one it missed is posted now). Then
the webhook's own events listed since the last look less EVENTS_OVERLAP, each not handled yet handled as if
delivered (PayPal lists only what it made for this app: no signature to check, the list itself is PayPal's answer
to the app's token).

A look that fails is not advanced: the next hour looks again from the same place. When the search has failed for
FAILURE_TOLD_AFTER, Slack is told once ("... has failed since ..."), and told again when it works again.
The memory (how far each look got, since when it fails) is billing_monitor.paypal_net. The clock is an argument.
The schedule runs it once an hour (a run takes seconds), so two runs never overlap; if they did, each charge is
still handled once (its sale id).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from billing_monitor.paypal import PayPalError
from billing_monitor.reconcile import Budget, search_window, search_windows
from billing_monitor.rules.registry import DEFAULT_PAYPAL_MAX_CALLS, DEFAULT_PAYPAL_MAX_SECONDS
from billing_monitor.slack.post import SlackError
from billing_monitor.store import open_store
from billing_monitor.store.webhooks import NetState, Sale, event_seen, net_state, save_net_state
from billing_monitor.webhooks import WebhookService

log = logging.getLogger(__name__)

HOURLY = "hourly"
SEARCH_OVERLAP = timedelta(hours=4)         # Transaction Search can lag 3 hours
EVENTS_OVERLAP = timedelta(hours=1)
FIRST_LOOK = timedelta(days=1)              # the first run looks back this far (the scans cover what came before)
FAILURE_TOLD_AFTER = timedelta(days=1)
MAX_LOOK_BACK = timedelta(days=400)         # a net stopped for longer resumes from here (the scans' search period)


@dataclass
class NetOutcome:
    searched: bool = False
    listed: bool = False
    payments: int = 0
    events: int = 0
    handled: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    told: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"searched": self.searched, "listed": self.listed, "payments": self.payments, "events": self.events,
                "posted": sum(1 for h in self.handled if ", posted" in h or " posted" in h),
                "errors": self.errors, "told": self.told}


def _start(state: NetState, now: datetime, overlap: timedelta) -> datetime:
    start = (state.looked_to or now - FIRST_LOOK) - overlap
    return max(start, now - MAX_LOOK_BACK)


def run_hourly(service: WebhookService, now: datetime) -> NetOutcome:
    """One hour's look; never raises for PayPal's sake (each failure is in `errors`, and remembered)."""
    now = now.replace(microsecond=0)
    outcome = NetOutcome()
    _search(service, now, outcome)
    _list_events(service, now, outcome)
    return outcome


def _search(service: WebhookService, now: datetime, outcome: NetOutcome) -> None:
    with open_store(service.store_dsn, application_name="billing-monitor-paypal-net") as store:
        state = net_state(store, "search")
    error = None
    # the reconciliation's own paging (every page of each window of at most 31 days), within its default budget
    budget = Budget(DEFAULT_PAYPAL_MAX_CALLS, DEFAULT_PAYPAL_MAX_SECONDS)
    try:
        for start, end in search_windows(_start(state, now, SEARCH_OVERLAP), now):
            payments, error = search_window(service.client, start, end, budget)
            for p in payments:
                outcome.payments += 1                 # each in its own transaction: a failure keeps what was done
                outcome.handled.append(service.charge_once(
                    Sale(p.id, p.subscription_id, p.amount, p.currency, p.time), now, via="search"))
            if error:
                break
    except SlackError as exc:
        error = f"a charge found by Transaction Search could not be posted: {exc}"
    outcome.searched = error is None
    _remember(service, state, now, error, outcome, "PayPal's Transaction Search (the hourly net)")
    with open_store(service.store_dsn, application_name="billing-monitor-paypal-net") as store:
        save_net_state(store, state, now)


def _list_events(service: WebhookService, now: datetime, outcome: NetOutcome) -> None:
    with open_store(service.store_dsn, application_name="billing-monitor-paypal-net") as store:
        state = net_state(store, "events")
    error = None
    try:
        events = service.client.list_webhook_events(_start(state, now, EVENTS_OVERLAP), now)
        with open_store(service.store_dsn, application_name="billing-monitor-paypal-net") as store:
            seen = event_seen(store, [str(e.get("id")) for e in events if e.get("id")])
        for e in sorted((e for e in events if e.get("id") and e["id"] not in seen),
                        key=lambda e: str(e.get("create_time"))):
            outcome.events += 1
            outcome.handled.append(service.handle_event(e, now, via="listing"))
    except PayPalError as exc:
        error = f"listing the webhook's events failed: {exc}"
    except SlackError as exc:
        error = f"an event found in the listing could not be posted: {exc}"
    outcome.listed = error is None
    _remember(service, state, now, error, outcome, "the listing of PayPal's webhook events (the hourly net)")
    with open_store(service.store_dsn, application_name="billing-monitor-paypal-net") as store:
        save_net_state(store, state, now)


def _remember(service: WebhookService, state: NetState, now: datetime, error: str | None, outcome: NetOutcome,
              what: str) -> None:
    """Advance the look, or keep it where it was and say so in Slack once it has failed for a day."""
    if error is None:
        state.looked_to = now
        if state.failure_told_at is not None:
            _tell(service, f":white_check_mark: {what} works again (it had failed since"
                           f" {state.failing_since:%Y-%m-%d %H:%M} UTC); the hours missed were looked at now.", outcome)
        state.failing_since = state.failure_told_at = state.last_error = None
        return
    log.warning("the hourly net failed; retried next hour", extra={"error": error})
    outcome.errors.append(error)
    state.failing_since = state.failing_since or now
    state.last_error = error[:500]
    due = state.failure_told_at is None and now - state.failing_since >= FAILURE_TOLD_AFTER
    if due and _tell(service, f":warning: {what} has failed since {state.failing_since:%Y-%m-%d %H:%M} UTC"
                              f" ({error[:300]}): charges PayPal takes on subscriptions that send this app no webhook"
                              " are not heard of until it works again or the next scan. It is retried every hour.",
                     outcome):
        state.failure_told_at = now


def _tell(service: WebhookService, text: str, outcome: NetOutcome) -> bool:
    if not service.slack_webhook:
        return False
    try:
        service.post(service.slack_webhook, {"text": text})
    except SlackError as exc:
        log.error("could not tell Slack about the hourly net", extra={"error": str(exc)})
        return False
    outcome.told.append(text)
    return True
