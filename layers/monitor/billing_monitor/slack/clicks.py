"""A click on one of the scan message's buttons (slack-actions.md): verified, allowed, once, then queued.

The order is the contract's: Slack's signature over the raw body first (401 and nothing else when it fails:
no database read, no queue, no Slack post); then the clicking user against the allow-list; then the button's
mac (a forged button is refused before the database is read); then, once per interaction (the handler wraps
`act` in Powertools idempotency), the finding as the latest saved scan reports it: the approval the CLI
would send goes on the approvals queue (`approved_by` "slack:<user id>"), or the acknowledgement is recorded.
The clicked message is then updated through `response_url`. Nothing from the payload but the finding id
(proved by the mac), the user id (proved by the signature) and the acknowledgement's duration is used.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from slack_sdk.signature import Clock, SignatureVerifier

from billing_monitor.actions.approval import ApprovalRefused, build_approval, build_refund_approval
from billing_monitor.api_gateway import http, raw_body
from billing_monitor.db import redact
from billing_monitor.errors import MonitorError
from billing_monitor.report import customer_label
from billing_monitor.slack.buttons import (
    ACKNOWLEDGE,
    ACKNOWLEDGE_CHOICES,
    ACKNOWLEDGE_FOR,
    ACKNOWLEDGE_LABELS,
    ACTIONS,
    APPROVE_CANCEL,
    APPROVE_REFUND,
    ButtonMac,
)
from billing_monitor.slack.message import SLACK_MAX_BLOCKS, slack_escape
from billing_monitor.store.acks import AckRefused

log = logging.getLogger(__name__)

ALREADY_HANDLED = "already handled"
NOT_ALLOWED = "You are not allowed to act on billing-monitor findings from Slack (ask the owner to add your user id)."


class Refused(MonitorError):
    """A click that does nothing; str() is what the clicking user is told."""


@dataclass(frozen=True)
class Click:
    """What a verified block_actions payload says, as far as the monitor uses it."""

    user_id: str
    action_id: str
    value: str | None
    block_id: str | None
    action_ts: str | None
    message_ts: str | None
    channel_id: str | None
    response_url: str | None
    message: dict | None = None
    state: dict = field(default_factory=dict)

    @property
    def interaction(self) -> dict:
        """What makes two deliveries the same interaction: the button (action and value) in the same message.
        A retry, a replay and a double click are the same; next month's message is another."""
        return {"action_id": self.action_id, "value": self.value, "message_ts": self.message_ts,
                "channel_id": self.channel_id}

    def acknowledge_choice(self) -> str:
        """The duration picked beside the Acknowledge menu (the message's `state`), by default until it changes."""
        chosen = ((self.state.get("values") or {}).get(self.block_id or "") or {}).get(ACKNOWLEDGE_FOR) or {}
        value = (chosen.get("selected_option") or {}).get("value")
        return value if value in ACKNOWLEDGE_CHOICES else "changes"






def header(event: dict, name: str) -> str | None:
    headers = event.get("headers") or {}
    return next((v for k, v in headers.items() if k.lower() == name), None)


class _FixedClock(Clock):
    def __init__(self, now: datetime):
        self._now = now

    def now(self) -> float:
        return self._now.timestamp()


def signature_ok(event: dict, secret: str, now: datetime) -> bool:
    """Slack's signature over the raw body, at most 5 minutes old (slack_sdk's SignatureVerifier)."""
    timestamp, signature = header(event, "x-slack-request-timestamp"), header(event, "x-slack-signature")
    if not timestamp or not signature or not timestamp.strip().isdigit():
        return False
    try:
        body = raw_body(event)
    except ValueError:
        return False
    return SignatureVerifier(secret, clock=_FixedClock(now)).is_valid(body, timestamp.strip(), signature)


def parse_click(body: bytes) -> Click | None:
    """The click of a block_actions payload (form field `payload`, JSON); None for anything else."""
    try:
        fields = parse_qs(body.decode(), strict_parsing=False)
        payload = json.loads(fields["payload"][0])
    except (KeyError, IndexError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions" or not payload.get("actions"):
        return None
    action = payload["actions"][0]
    if not isinstance(action, dict):
        return None
    value = action.get("value")
    if value is None and isinstance(action.get("selected_option"), dict):
        value = action["selected_option"].get("value")
    container = payload.get("container") or {}
    message = payload.get("message") if isinstance(payload.get("message"), dict) else None
    return Click(
        user_id=str((payload.get("user") or {}).get("id") or ""), action_id=str(action.get("action_id") or ""),
        value=value if isinstance(value, str) else None, block_id=action.get("block_id"),
        action_ts=action.get("action_ts"), message_ts=container.get("message_ts") or (message or {}).get("ts"),
        channel_id=container.get("channel_id") or (payload.get("channel") or {}).get("id"),
        response_url=payload.get("response_url") if isinstance(payload.get("response_url"), str) else None,
        message=message, state=payload.get("state") if isinstance(payload.get("state"), dict) else {})


@dataclass
class ClickService:
    """What a click may do, with its dependencies given (the handler passes the real ones, tests theirs).

    load_finding(finding_id) -> (finding, still_open) | None: the latest saved copy (the store);
    send_approval(message) -> message id: the approvals queue;
    acknowledge(finding_id, by, now, until) -> finding: the store (store/acks.py; raises AckRefused);
    respond(response_url, payload): a POST to the click's response_url.
    """

    secret: str
    approver_ids: tuple[str, ...]
    load_finding: Callable[[str], tuple[dict, bool] | None]
    send_approval: Callable[[dict], str]
    acknowledge: Callable[..., dict]
    respond: Callable[[str, dict], None]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self):
        self.macs = ButtonMac(self.secret)

    def handle(self, event: dict, once: Callable[..., dict] | None = None) -> dict:
        """The HTTP answer to one request. `once(interaction=, click=, finding_id=)` runs `act` once per interaction
        (Powertools idempotency in the function): a repeat returns the first run's result (another nonce)."""
        now = self.clock()
        if not signature_ok(event, self.secret, now):
            log.warning("Slack request refused: signature missing, wrong or older than 5 minutes")
            return http(401, "invalid signature")
        click = parse_click(raw_body(event))
        if click is None:
            return http(200, "")                    # not a click of ours (url_verification, another type)
        if click.action_id == ACKNOWLEDGE_FOR:
            return http(200, "")                    # choosing the duration only: the menu beside it acts
        if click.user_id not in self.approver_ids:
            log.warning("Slack click refused: user not in SLACK_APPROVER_IDS", extra={"slack_user_id": click.user_id,
                                                                                        "action_id": click.action_id})
            self._tell(click, NOT_ALLOWED)
            return http(200, {"response_type": "ephemeral", "replace_original": False, "text": NOT_ALLOWED})
        finding_id = self.macs.finding_of(click.action_id, click.value) if click.action_id in ACTIONS else None
        if finding_id is None:
            log.warning("Slack click refused: not a button of ours (mac does not match)",
                        extra={"slack_user_id": click.user_id, "action_id": click.action_id})
            text = "Refused: this button was not made by billing-monitor (its value does not match). Nothing was done."
            self._tell(click, text)
            return http(200, {"response_type": "ephemeral", "replace_original": False, "text": text})
        nonce = uuid.uuid4().hex
        interaction = dict(click.interaction, nonce=nonce)
        try:
            if once is None:
                result = self.act(interaction=interaction, click=click, finding_id=finding_id)
            else:
                result = once(interaction=interaction, click=click, finding_id=finding_id)
        except Refused as refused:
            log.warning("Slack click refused", extra={"slack_user_id": click.user_id, "finding_id": finding_id,
                                                      "reason": str(refused)})
            self._tell(click, f"Refused: {refused}")
            return http(200, {"response_type": "ephemeral", "replace_original": False, "text": f"Refused: {refused}"})
        except AlreadyInProgress:
            return http(200, {"text": ALREADY_HANDLED})
        except Exception as exc:
            # the database or the queue failed: nothing was remembered (idempotency drops the record), so a
            # click again retries; the user hears it, and the function fails so that its alarm goes off
            first = (str(exc).splitlines() or [""])[0][:200]
            log.error("Slack click failed", extra={"slack_user_id": click.user_id, "finding_id": finding_id,
                                                   "error": f"{type(exc).__name__}: {redact(first, None)}"})
            self._tell(click, f"Could not do it ({type(exc).__name__}): nothing was queued or recorded. Click again in"
                              " a minute, or use `billing-monitor approve`.")
            raise
        if result.get("nonce") != nonce:
            log.info("Slack click already handled", extra={"slack_user_id": click.user_id, "finding_id": finding_id})
            return http(200, {"text": ALREADY_HANDLED})
        self._update_message(click, result)
        return http(200, {"text": result["text"]})

    def act(self, *, interaction: dict, click: Click, finding_id: str) -> dict:
        """Queue the approval, or record the acknowledgement; the result is remembered for the interaction."""
        now = self.clock()
        by = f"slack:{click.user_id}"
        when = now.strftime("%H:%M UTC")
        if click.action_id == ACKNOWLEDGE:
            choice = click.acknowledge_choice()
            days = ACKNOWLEDGE_CHOICES[choice]
            try:
                finding = self.acknowledge(finding_id, by, now, None if days is None else now + timedelta(days=days))
            except AckRefused as exc:
                raise Refused(str(exc).removeprefix("cannot acknowledge: ")) from None
            label = slack_escape(customer_label(finding["contact"])) if finding.get("contact") else finding["check"]
            return {"nonce": interaction["nonce"], "finding_id": finding_id, "action": ACKNOWLEDGE,
                    "text": f"Acknowledged {label} ({finding['check']}, {ACKNOWLEDGE_LABELS[choice]}) by"
                            f" <@{click.user_id}> at {when}"}
        saved = self.load_finding(finding_id)
        if saved is None:
            raise Refused(f"finding {finding_id} is in no saved scan")
        finding, still_open = saved
        if not still_open:
            raise Refused(f"finding {finding_id} is resolved: the latest scan no longer reports it")
        try:
            if click.action_id == APPROVE_CANCEL:
                message = build_approval(finding, by)
                what = "Cancellation"
            else:
                assert click.action_id == APPROVE_REFUND
                message = build_refund_approval(finding, by)
                what = f"Refund of {len(message['transactions'])} charge(s)"
        except ApprovalRefused as exc:
            raise Refused(str(exc)) from None
        message_id = self.send_approval(message)
        log.info("approval queued from Slack", extra={"slack_user_id": click.user_id, "finding_id": finding_id,
                                                       "action": message["action"], "message_id": message_id})
        return {"nonce": interaction["nonce"], "finding_id": finding_id, "action": click.action_id,
                "message_id": message_id,
                "text": f"{what} queued by <@{click.user_id}> at {when}"
                        f" ({slack_escape(customer_label(finding.get('contact')))}, PayPal"
                        f" {message.get('paypal_subscription_id')})."
                        " The outcome follows in this channel."}

    # ------------------------------------------------------------ answering through response_url

    def _tell(self, click: Click, text: str) -> None:
        if click.response_url:
            self._post(click.response_url, {"response_type": "ephemeral", "replace_original": False, "text": text})

    def _post(self, url: str, payload: dict) -> None:
        try:
            self.respond(url, payload)
        except Exception as exc:  # noqa: BLE001 - the click is done; Slack not showing it is logged, never fatal
            log.error("could not update the Slack message", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})

    def _update_message(self, click: Click, result: dict) -> None:
        """Replace the clicked buttons with what was done (the rest of the message as it was)."""
        if not click.response_url:
            return
        blocks = (click.message or {}).get("blocks")
        if not blocks:
            self._post(click.response_url, {"replace_original": False, "text": result["text"]})
            return
        # one "done" line per clicked block, replaced by the next click on it: acknowledging one finding after
        # another from a menu never grows the message
        done_id = f"done:{click.block_id or 'click'}"[:255]
        done = {"type": "context", "block_id": done_id,
                "elements": [{"type": "mrkdwn", "text": result["text"][:3000]}]}
        updated = []
        for block in blocks:
            if block.get("block_id") == done_id:
                continue
            if block.get("block_id") != click.block_id:
                updated.append(block)
            elif result["action"] == ACKNOWLEDGE:
                updated.extend(_without_option(block, click.value))
                updated.append(done)
            else:
                updated.append(done)
        if len(updated) > SLACK_MAX_BLOCKS:      # a full message keeps its own blocks (the heartbeat line last)
            updated = [b for b in updated if b is not done]
        self._post(click.response_url, {"replace_original": True, "text": (click.message or {}).get("text", ""),
                                        "blocks": updated[:SLACK_MAX_BLOCKS]})


def _without_option(block: dict, value: str | None) -> list[dict]:
    """An Acknowledge menu without the option just used (gone when none is left)."""
    block = json.loads(json.dumps(block))
    for element in block.get("elements", []):
        if element.get("action_id") == ACKNOWLEDGE:
            element["options"] = [o for o in element.get("options", []) if o.get("value") != value]
            if not element["options"]:
                return []
    return [block]


class AlreadyInProgress(Exception):
    """The same interaction is being handled right now (a double click): the function maps Powertools' error here."""
