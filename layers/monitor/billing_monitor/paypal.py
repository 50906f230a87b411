"""PayPal client: OAuth2 client credentials; get, cancel and list the payments of a subscription; search the
account's transactions.

Built against PayPal's OpenAPI descriptions (tests/data/paypal/):
  GET  /v1/billing/subscriptions/{id}          200 subscription (status ACTIVE, SUSPENDED, CANCELLED, ...)
  POST /v1/billing/subscriptions/{id}/cancel   body {"reason": 1-128 chars}, 204
       422 with details[].issue == SUBSCRIPTION_STATUS_INVALID: the subscription has already ended
  GET  /v1/billing/subscriptions/{id}/transactions?start_time&end_time   its payments in that range
  GET  /v1/reporting/transactions              Transaction Search (at most 31 days a call, pages of at most 500)
  POST /v1/oauth2/token (not in those specs)   Basic auth, grant_type=client_credentials
  POST /v1/notifications/verify-webhook-signature   a webhook delivery's PAYPAL-* headers, the webhook id and the
       event exactly as received (the raw body spliced in, never re-serialized): SUCCESS or FAILURE
  GET  /v1/notifications/webhooks-events       the webhook's past events (start_time, end_time, page_size)

GET and the token call are retried on 429/5xx with back-off honouring Retry-After. A cancel that
answers 5xx or times out has an unknown outcome: the client reads the subscription before trying again,
so a cancel that went through is never sent twice. Credentials and tokens are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import requests

from billing_monitor.http import DEFAULT_TIMEOUT, retrying_session
from billing_monitor.rules.registry import PAYPAL_ID

log = logging.getLogger(__name__)

LIVE_URL = "https://api-m.paypal.com"
SANDBOX_URL = "https://api-m.sandbox.paypal.com"
CANCELABLE = ("ACTIVE", "SUSPENDED")
ENDED = ("CANCELLED", "EXPIRED")
TOKEN_MARGIN_S = 120
#: verify-webhook-signature's fields, each from the delivery's PAYPAL-<FIELD> header (transmission_id: PAYPAL-TRANSMISSION-ID)
WEBHOOK_HEADER_FIELDS = ("auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time")


class PayPalError(Exception):
    """A PayPal call failed. `transient` says whether trying again later may succeed."""

    transient = False


class PayPalNotFound(PayPalError):
    """No such subscription: permanent."""


class PayPalTransient(PayPalError):
    """PayPal is rate limiting or failing (after retries), or did not answer: try again later."""

    transient = True


class PayPalCredentialsRejected(PayPalTransient):
    """PayPal refused the app's credentials or its permissions (401/403): a configuration to fix (a rotated
    secret, a missing scope), never a judgement on the approval. Retried, then dead-lettered with an alarm."""


class PayPalCancelNotConfirmed(PayPalTransient):
    """PayPal answered the cancel as done, but reading the subscription back shows another status."""


@dataclass(frozen=True)
class CancelResult:
    outcome: str            # "canceled" (this call, or an earlier one whose answer was lost) or "already_canceled"
    status_before: str | None
    status_after: str | None      # as read back from PayPal
    detail: str
    status_note: str | None = None       # PayPal's status_change_note (the reason given when it was canceled)
    status_changed_at: str | None = None  # PayPal's status_update_time
    billing_before: dict | None = None    # billing_info as read just before canceling (the charge it prevents)


@dataclass(frozen=True)
class RefundResult:
    outcome: str                 # "refunded" (this request, or PayPal's first answer to its PayPal-Request-Id)
                                 # or "already_refunded" (422 CAPTURE_FULLY_REFUNDED)
    refund_id: str | None
    status: str | None           # PayPal's refund status: COMPLETED, PENDING, ...
    amount: str | None
    currency: str | None
    detail: str


@dataclass
class PayPalClient:
    base_url: str
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    backoff_s: float = 0.5
    cancel_attempts: int = 4
    sleep: Callable[[float], None] = time.sleep
    _session: requests.Session = field(default=None, repr=False)
    _plain: requests.Session = field(default=None, repr=False)
    _token: str | None = field(default=None, repr=False)
    _token_expires: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    pool_size: int = 10
    calls: int = 0                  # API requests sent (retries included; the token excluded)

    def __post_init__(self):
        self.base_url = self.base_url.rstrip("/")
        self._session = self._session or retrying_session(methods=("GET", "POST"), backoff_factor=self.backoff_s,
                                                          pool_maxsize=self.pool_size)
        self._plain = self._plain or requests.Session()
        self._count_lock = threading.Lock()

    def _count(self, answer: requests.Response | None) -> None:
        retries = getattr(getattr(answer, "raw", None), "retries", None)
        sent = 1 + len(getattr(retries, "history", ()) or ())
        with self._count_lock:
            self.calls += sent

    # ------------------------------------------------------------------ auth

    def access_token(self) -> str:
        """A cached bearer token, fetched again shortly before it expires."""
        with self._lock:
            if self._token and time.monotonic() < self._token_expires - TOKEN_MARGIN_S:
                return self._token
            try:
                answer = self._session.post(
                    f"{self.base_url}/v1/oauth2/token", auth=(self.client_id, self.client_secret),
                    data={"grant_type": "client_credentials"}, headers={"Accept": "application/json"},
                    timeout=self.timeout)
            except requests.RequestException as exc:
                raise PayPalTransient(f"PayPal token endpoint unreachable: {type(exc).__name__}") from None
            if answer.status_code in (429,) or answer.status_code >= 500:
                raise PayPalTransient(f"PayPal token endpoint answered {answer.status_code}")
            if answer.status_code != 200:
                raise PayPalCredentialsRejected(f"PayPal refused the client credentials ({answer.status_code}):"
                                                " check PAYPAL_CLIENT_ID / PAYPAL_CLIENT_SECRET and the environment")
            body = answer.json()
            self._token = body["access_token"]
            self._token_expires = time.monotonic() + float(body.get("expires_in", 0))
            return self._token

    def _forget_token(self) -> None:
        with self._lock:
            self._token = None

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.access_token()}", "Accept": "application/json",
                "Content-Type": "application/json"}

    # ------------------------------------------------------------------ calls

    def _get(self, url: str, what: str, params: dict | None = None) -> dict:
        """A read, retried by the session on 429/5xx; a 401 fetches a new token once."""
        for _ in range(2):  # a second time only after a 401 (expired token)
            try:
                answer = self._session.get(url, params=params, headers=self._headers(), timeout=self.timeout)
            except requests.RequestException as exc:
                self._count(None)
                raise PayPalTransient(f"PayPal unreachable {what}: {type(exc).__name__}") from None
            self._count(answer)
            if answer.status_code == 401:
                self._forget_token()
                continue
            if answer.status_code == 200:
                return answer.json()
            if answer.status_code == 404:
                raise PayPalNotFound(f"PayPal has no such resource {what} (404)")
            if answer.status_code == 429 or answer.status_code >= 500:
                raise PayPalTransient(f"PayPal answered {answer.status_code} {what}")
            if answer.status_code == 403:
                raise PayPalCredentialsRejected(f"PayPal denied {what} (403): the REST app lacks the permission")
            raise PayPalError(f"PayPal answered {answer.status_code} {what}: {_issue(answer)}")
        raise PayPalCredentialsRejected("PayPal rejected a fresh access token (401)")

    def get_subscription(self, subscription_id: str) -> dict:
        _check_id(subscription_id)
        try:
            return self._get(f"{self.base_url}/v1/billing/subscriptions/{subscription_id}",
                             f"reading {subscription_id}")
        except PayPalNotFound:
            raise PayPalNotFound(f"PayPal has no subscription {subscription_id}") from None

    def list_transactions(self, subscription_id: str, start: datetime, end: datetime) -> list[dict]:
        """The subscription's payments PayPal lists from `start` to `end` (both whole seconds, inclusive)."""
        _check_id(subscription_id)
        params = {"start_time": api_time(start), "end_time": api_time(end, up=True)}
        try:
            body = self._get(f"{self.base_url}/v1/billing/subscriptions/{subscription_id}/transactions",
                             f"listing the transactions of {subscription_id}", params)
        except PayPalNotFound:
            raise PayPalNotFound(f"PayPal has no subscription {subscription_id}") from None
        return list(body.get("transactions") or ())

    def search_transactions(self, start: datetime, end: datetime, *, page: int = 1, page_size: int = 500,
                            transaction_type: str = "T0002") -> dict:
        """One page of Transaction Search (`fields=all`); the window (whole seconds) must be at most 31 days."""
        params = {"start_date": api_time(start), "end_date": api_time(end), "transaction_type": transaction_type,
                  "fields": "all", "page_size": page_size, "page": page}
        return self._get(f"{self.base_url}/v1/reporting/transactions",
                         f"searching transactions {params['start_date']} to {params['end_date']} (page {page})", params)

    def verify_webhook_signature(self, headers: dict[str, str], webhook_id: str, raw_event: bytes) -> str:
        """PayPal's verdict on one webhook delivery: "SUCCESS" or "FAILURE" (also for a request PayPal calls
        malformed: 4xx). `headers`: auth_algo, cert_url, transmission_id, transmission_sig, transmission_time.
        The event goes in exactly as received (the bytes spliced into the request body): re-serializing it breaks
        PayPal's check. Raises PayPalTransient when PayPal cannot be asked (5xx, timeout, token refused)."""
        fields = {k: headers[k] for k in WEBHOOK_HEADER_FIELDS}
        body = (json.dumps({**fields, "webhook_id": webhook_id})[:-1] + ', "webhook_event": ').encode() \
            + raw_event + b"}"
        for _ in range(2):      # a second time only after a 401 (expired token)
            try:
                answer = self._session.post(f"{self.base_url}/v1/notifications/verify-webhook-signature", data=body,
                                            headers=self._headers(), timeout=self.timeout)
            except requests.RequestException as exc:
                self._count(None)
                raise PayPalTransient(f"PayPal unreachable verifying a webhook: {type(exc).__name__}") from None
            self._count(answer)
            if answer.status_code == 401:
                self._forget_token()
                continue
            if answer.status_code == 429 or answer.status_code >= 500:
                raise PayPalTransient(f"PayPal answered {answer.status_code} verifying a webhook")
            if answer.status_code == 403:
                raise PayPalCredentialsRejected("PayPal denied verifying a webhook (403): the REST app lacks the"
                                                " permission")
            if answer.status_code != 200:
                return "FAILURE"
            try:
                status = answer.json().get("verification_status")
            except ValueError:
                raise PayPalTransient("PayPal answered verify-webhook-signature with no JSON") from None
            return "SUCCESS" if status == "SUCCESS" else "FAILURE"
        raise PayPalCredentialsRejected("PayPal rejected a fresh access token (401)")

    def list_webhook_events(self, start: datetime, end: datetime, *, page_size: int = 300) -> list[dict]:
        """Every event PayPal lists as created from `start` to `end` (every page, following its `next` links)."""
        url, params = f"{self.base_url}/v1/notifications/webhooks-events", {
            "start_time": api_time(start), "end_time": api_time(end, up=True), "page_size": page_size}
        events: list[dict] = []
        for _ in range(1000):
            body = self._get(url, "listing webhook events", params)
            events += list(body.get("events") or ())
            following = next((link.get("href") for link in body.get("links") or ()
                              if isinstance(link, dict) and link.get("rel") == "next" and link.get("href")), None)
            if not following or not body.get("events"):
                break
            parts = urlsplit(following)
            url, params = f"{self.base_url}{parts.path}", {k: v[0] for k, v in parse_qs(parts.query).items()}
        return events

    def _read_back(self, subscription_id: str, before: str | None, detail: str) -> CancelResult:
        """After PayPal says a cancel is done: read the subscription and trust what it shows."""
        now = self.get_subscription(subscription_id)
        if now.get("status") not in ENDED:
            raise PayPalCancelNotConfirmed(f"PayPal answered the cancel of {subscription_id} as done, but the"
                                           f" subscription reads back {now.get('status')}")
        return CancelResult("canceled", before, now["status"], f"{detail}; reads back {now['status']}",
                            now.get("status_change_note"), now.get("status_update_time"))

    def cancel_subscription(self, subscription_id: str, reason: str) -> CancelResult:
        """Cancel once. Reads the subscription first; an ended one is 'already_canceled'. The result carries the
        billing_info read first (next_billing_time, last_payment): the charge a cancellation prevents."""
        _check_id(subscription_id)
        reason = (reason or "Canceled by billing-monitor").strip()[:128] or "Canceled by billing-monitor"
        current = self.get_subscription(subscription_id)
        return replace(self._cancel_read(subscription_id, reason, current), billing_before=current.get("billing_info"))

    def _cancel_read(self, subscription_id: str, reason: str, current: dict) -> CancelResult:
        before = current.get("status")
        if before in ENDED:
            return CancelResult("already_canceled", before, before, f"PayPal already shows {before}",
                                current.get("status_change_note"), current.get("status_update_time"))
        if before not in CANCELABLE:
            raise PayPalError(f"PayPal subscription {subscription_id} is {before}: not active, nothing to cancel")
        url = f"{self.base_url}/v1/billing/subscriptions/{subscription_id}/cancel"
        for attempt in range(self.cancel_attempts):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                answer = self._plain.post(url, json={"reason": reason}, headers=self._headers(), timeout=self.timeout)
            except requests.RequestException as exc:
                answer, unknown = None, f"no answer ({type(exc).__name__})"
            if answer is not None:
                if answer.status_code == 204:
                    return self._read_back(subscription_id, before, "PayPal canceled the subscription (204)")
                if answer.status_code == 422 and "SUBSCRIPTION_STATUS_INVALID" in _issue(answer):
                    now = self.get_subscription(subscription_id)
                    return CancelResult("already_canceled", before, now.get("status"),
                                        "PayPal answered SUBSCRIPTION_STATUS_INVALID: already ended",
                                        now.get("status_change_note"), now.get("status_update_time"))
                if answer.status_code == 404:
                    raise PayPalNotFound(f"PayPal has no subscription {subscription_id}")
                if answer.status_code == 401:
                    self._forget_token()
                    continue
                if answer.status_code == 403:
                    raise PayPalCredentialsRejected(f"PayPal denied canceling {subscription_id} (403): the REST app"
                                                    " lacks the subscriptions permission")
                if answer.status_code == 429:  # not processed: wait as told, then try again
                    self.sleep(min(_retry_after(answer, self.backoff_s), 30))
                    continue
                if answer.status_code < 500:
                    raise PayPalError(f"PayPal refused to cancel {subscription_id} ({answer.status_code}):"
                                      f" {_issue(answer)}")
                unknown = f"PayPal answered {answer.status_code}"
            # 5xx or no answer: the cancel may or may not have happened. Look before trying again.
            log.warning("cancel outcome unknown, reading the subscription", extra={"detail": unknown})
            now = self.get_subscription(subscription_id)
            if now.get("status") in ENDED:
                return CancelResult("canceled", before, now["status"], f"{unknown}; PayPal now shows {now['status']}",
                                    now.get("status_change_note"), now.get("status_update_time"))
        raise PayPalTransient(f"PayPal did not confirm the cancellation of {subscription_id}"
                              f" after {self.cancel_attempts} attempts")

    def refund_capture(self, capture_id: str, request_id: str) -> RefundResult:
        """Refund a captured payment in full (`POST /v2/payments/captures/{id}/refund`, an empty body).

        `request_id` is sent as PayPal-Request-Id: PayPal answers a repeated request with its first answer, so
        every retry here (429, 5xx, no answer) and every later retry with the same id refunds at most once.
        """
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", capture_id or ""):
            raise PayPalError(f"not a PayPal transaction id: {capture_id!r}")
        url = f"{self.base_url}/v2/payments/captures/{capture_id}/refund"
        unknown = "no attempt"
        for attempt in range(self.cancel_attempts):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            headers = {**self._headers(), "PayPal-Request-Id": request_id, "Prefer": "return=representation"}
            try:
                answer = self._plain.post(url, json={}, headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                unknown = f"no answer ({type(exc).__name__})"
                continue
            self._count(answer)
            if answer.status_code in (200, 201):
                body = answer.json()
                amount = body.get("amount") or {}
                return RefundResult("refunded", body.get("id"), body.get("status"), amount.get("value"),
                                    amount.get("currency_code"),
                                    f"PayPal refund {body.get('id')} {body.get('status')} ({answer.status_code})")
            if answer.status_code == 422 and "CAPTURE_FULLY_REFUNDED" in _issue(answer):
                return RefundResult("already_refunded", None, None, None, None,
                                    "PayPal answered CAPTURE_FULLY_REFUNDED: already refunded")
            if answer.status_code == 401:
                self._forget_token()
                continue
            if answer.status_code == 404:
                raise PayPalNotFound(f"PayPal has no capture {capture_id}")
            if answer.status_code == 403:
                raise PayPalCredentialsRejected(f"PayPal denied refunding {capture_id} (403): the REST app lacks"
                                                " the payments permission")
            if answer.status_code in (409, 429):      # in progress / rate limited: the same request id again
                self.sleep(min(_retry_after(answer, self.backoff_s), 30))
                unknown = f"PayPal answered {answer.status_code}"
                continue
            if answer.status_code < 500:
                raise PayPalError(f"PayPal refused to refund {capture_id} ({answer.status_code}): {_issue(answer)}")
            unknown = f"PayPal answered {answer.status_code}"
        raise PayPalTransient(f"PayPal did not confirm the refund of {capture_id} after {self.cancel_attempts}"
                              f" attempts ({unknown}); the same PayPal-Request-Id is sent on the next try")


def api_time(value: datetime, *, up: bool = False) -> str:
    """PayPal's query time: UTC, whole seconds (rounded down, or up with `up`), 2024-01-02T10:00:00Z."""
    value = value.astimezone(UTC)
    whole = value.replace(microsecond=0)
    if up and whole < value:
        whole += timedelta(seconds=1)
    return whole.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_paypal_time(text: str) -> datetime:
    """A time as PayPal writes it: ...Z, ...+00:00, or Transaction Search's ...+0000."""
    text = text.strip()
    if text[-1:] in "Zz":
        text = text[:-1] + "+00:00"
    elif len(text) >= 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _check_id(subscription_id: str) -> None:
    if not PAYPAL_ID.match(subscription_id or ""):
        raise PayPalError(f"not a PayPal subscription id: {subscription_id!r}")


def _issue(answer: requests.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    issues = [d.get("issue", "") for d in body.get("details", []) if isinstance(d, dict)]
    return ", ".join(filter(None, [body.get("name"), *issues])) or str(body)[:200]


def _retry_after(answer: requests.Response, default: float) -> float:
    try:
        return max(0.0, float(answer.headers.get("Retry-After", default)))
    except ValueError:
        return default
