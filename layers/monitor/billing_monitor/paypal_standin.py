"""The project's PayPal stand-in: a real HTTP server on 127.0.0.1 holding a small PayPal world.

Used by the tests (tests/support/fake_paypal.py), by `billing-monitor demo --paypal` and by the bench. It
answers the calls the monitor makes, as PayPal does:

  POST /v1/oauth2/token                          Basic auth, grant_type=client_credentials
  GET  /v1/billing/subscriptions/{id}            status, billing_info.next_billing_time, status_change_note
  POST /v1/billing/subscriptions/{id}/cancel     204; 422 SUBSCRIPTION_STATUS_INVALID when not active
  GET  /v1/billing/subscriptions/{id}/transactions?start_time&end_time
  POST /v2/payments/captures/{id}/refund         a full refund: 201; the same PayPal-Request-Id answers its first
                                                 answer again (no second refund); 422 CAPTURE_FULLY_REFUNDED
  GET  /v1/reporting/transactions                Transaction Search: windows of at most 31 days (else 400, as
                                                 PayPal answers), pages of at most 500, dates written +0000
  POST /v1/notifications/verify-webhook-signature   SUCCESS only for a delivery it signed itself (`deliver`), the
                                                 event byte for byte as signed; FAILURE otherwise
  GET  /v1/notifications/webhooks-events         the events it delivered (start_time, end_time, page_size, `next`)

Given `spec_dir` (a folder holding PayPal's OpenAPI files, as tests/data/paypal does), every request and
response is validated with openapi-core (a test dependency, imported only then): anything off-spec is recorded
in `violations` and the request answered 400. The validation accepts exactly the places where PayPal's files are
stricter than PayPal's answers (tests/data/paypal/README.md). Without it (the demo, the bench) nothing but the
standard library is needed.

Faults can be queued per operation (`faults["get"|"cancel"|"token"|"transactions"|"search"]`) or per
subscription id (`id_faults[id]`): 429 (with `retry_after`), 500, "timeout" (nothing done, no answer in time),
"500-after-cancel" and "timeout-after-cancel" (the cancel is done, the answer is lost), "204-but-still-active",
"500-after-refund" (the refund is done, the answer is lost; `faults["refund"]` or `id_faults[capture id]`);
`faults["verify"]` and `faults["events"]` for the webhook calls.
Every request is logged in `log` as (method, path) in arrival order.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
import warnings
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

CLIENT_ID, CLIENT_SECRET = "test-client-id", "test-client-secret"
NOT_FOUND_TEXT = "Specified resource ID does not exist. Please check the resource ID and try again."
UNPROCESSABLE_TEXT = "The requested action could not be performed, semantically incorrect, or failed business validation."
SYNTAX_TEXT = "The value of a field does not conform to the expected format."
INVALID_REQUEST_TEXT = "Request is not well-formed, syntactically incorrect, or violates schema."
SEARCH_MAX_DAYS = 31
SEARCH_MAX_PAGE = 500
SUBSCRIPTIONS_SPEC = "billing_subscriptions_v1.json"
REPORTING_SPEC = "reporting_transactions_v1.json"
PAYMENTS_SPEC = "payments_payment_v2.json"
NOTIFICATIONS_SPEC = "notifications_webhooks_v1.json"
SPEC_HOST = "https://api-m.sandbox.paypal.com"
REPORTING_HOST = "https://api-m.paypal.com"
#: the stand-in's own signing key: what it signs verifies on any stand-in (events/paypal_*.json were signed with it)
STANDIN_WEBHOOK_KEY = b"billing-monitor PayPal stand-in webhook key"
REPORTING_SPEC_PREFIX = "/v1/reporting"     # the reporting file's server URL repeats /v1/reporting
#: Transaction Search's status codes for a payment, from the Subscriptions API's capture status
SEARCH_STATUS = {"COMPLETED": "S", "PARTIALLY_REFUNDED": "S", "REFUNDED": "S", "PENDING": "P", "DECLINED": "D"}


class LoopbackServer:
    """A real HTTP server in a thread, on 127.0.0.1 and a free port unless told otherwise (scripts/sam_local.py:
    the docker bridge); subclasses implement on_request."""

    protocol = "HTTP/1.0"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = owner.protocol
            disable_nagle_algorithm = True     # headers and body are two writes: no 40 ms wait for the peer's ACK

            def do_GET(self):
                owner.on_request(self, "get")

            def do_POST(self):
                owner.on_request(self, "post")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def on_request(self, http: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def paypal_time(value: datetime) -> str:
    """The Subscriptions API's way: 2024-01-02T10:00:00Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def search_time(value: datetime) -> str:
    """Transaction Search's way (outside its own file's pattern): 2024-01-02T10:00:00+0000."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Txn:
    """One payment of a subscription, as PayPal keeps it."""
    id: str
    time: datetime
    amount: Decimal
    status: str = "COMPLETED"          # COMPLETED, DECLINED, PARTIALLY_REFUNDED, PENDING, REFUNDED
    currency: str = "USD"
    event_code: str = "T0002"          # Transaction Search's code (T0002: a subscription payment)


@dataclass
class Payer:
    email: str
    given_name: str | None = None
    surname: str | None = None
    alternate_full_name: str | None = None


@dataclass
class _Spec:
    """openapi-core's Request/Response protocols, and the two OpenAPI files."""
    folder: Path
    apis: dict = field(default_factory=dict)

    def api(self, name: str):
        if name not in self.apis:
            from openapi_core import OpenAPI  # a test dependency: only with spec_dir

            self.apis[name] = OpenAPI.from_file_path(str(self.folder / name))
        return self.apis[name]

    def validate(self, name: str, kind: str, *args) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Unsupported scheme type")   # OAuth2: the token check is ours
            getattr(self.api(name), f"validate_{kind}")(*args)

    @staticmethod
    def request(method: str, path: str, query: str, headers: dict, body: bytes | None, host_url: str):
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        class SpecRequest:
            def __init__(self):
                self.method, self.path, self.host_url, self.body = method, path, host_url, body
                self.parameters = RequestParameters(query=ImmutableMultiDict(parse_qs(query)), header=Headers(headers),
                                                    cookie=ImmutableMultiDict())
                self.content_type = headers.get("Content-Type", "application/json").lower()

        return SpecRequest()

    @staticmethod
    def response(status: int, data: bytes | None):
        from werkzeug.datastructures import Headers

        class SpecResponse:
            def __init__(self):
                self.status_code, self.data, self.content_type = status, data, "application/json"
                self.headers = Headers({"Content-Type": "application/json"})

        return SpecResponse()


def _as_published(payload):
    """A Transaction Search answer rewritten where PayPal's file is stricter than PayPal (README): dates
    with +00:00, ids without '-', no empty transaction_details. Only for validating; the answer is sent as is."""
    def fix(value, key=None):
        if isinstance(value, dict):
            return {k: fix(v, k) for k, v in value.items() if not (k == "transaction_details" and v == [])}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str):
            if value.endswith("+0000") and len(value) >= 24:
                return value[:-5] + "+00:00"
            if key == "paypal_reference_id":
                return value.replace("-", "")
        return value
    return fix(payload)


def raw_members(body: bytes) -> dict[str, bytes]:
    """The top-level members of a JSON object, each value as the exact bytes it was sent as."""
    text, decoder, out = body.decode(), json.JSONDecoder(), {}
    ws = " \t\r\n"
    i = len(text) - len(text.lstrip(ws))
    if text[i:i + 1] != "{":
        return out
    i += 1
    while True:
        while text[i:i + 1] in tuple(ws):
            i += 1
        if text[i:i + 1] == "}":
            return out
        key, i = decoder.raw_decode(text, i)
        while text[i:i + 1] in tuple(ws) or text[i:i + 1] == ":":
            i += 1
        start = i
        _, i = decoder.raw_decode(text, i)
        out[key] = text[start:i].encode()
        while text[i:i + 1] in tuple(ws):
            i += 1
        if text[i:i + 1] == ",":
            i += 1
        elif text[i:i + 1] in ("}", ""):
            return out


def _without_event(body: bytes | None) -> bytes | None:
    """verify-webhook-signature's request as its file can validate it: the file marks every field of `event`
    readOnly (sent by PayPal only), yet this call must carry the event as received (tests/data/paypal/README.md)."""
    if body is None:
        return None
    request = json.loads(body)
    if isinstance(request.get("webhook_event"), dict):
        request["webhook_event"] = {}
    return json.dumps(request).encode()


class PayPalStandIn(LoopbackServer):
    """A PayPal world: subscriptions with statuses and transactions, the account's Transaction Search."""

    protocol = "HTTP/1.1"     # keep-alive: one session, one connection per worker

    def __init__(self, *, spec_dir: Path | str | None = None, token_ttl_s: int = 32400, latency_s: float = 0.0,
                 client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET, host: str = "127.0.0.1",
                 port: int = 0):
        super().__init__(host, port)
        self.client_id, self.client_secret = client_id, client_secret
        self.subscriptions: dict[str, str] = {}       # id -> status
        self.status_changes: dict[str, tuple[str, str]] = {}   # id -> (status_change_note, status_update_time)
        self.next_billing: dict[str, datetime] = {}
        self.transactions: dict[str, list[Txn]] = {}  # subscription id -> its payments
        self.payers: dict[str, Payer] = {}
        self.other_records: list[dict] = []           # Transaction Search records of no subscription
        self.calls: list[tuple[str, str, dict | None]] = []
        self.log: list[tuple[str, str]] = []          # (METHOD, path with query) of every request
        self.violations: list[str] = []
        self.faults: dict[str, list] = {"get": [], "cancel": [], "token": [], "transactions": [], "search": [],
                                        "refund": [], "verify": [], "events": []}
        self.refunds: list[dict] = []                 # every refund made, in order
        self.refund_answers: dict[str, tuple[int, dict]] = {}   # PayPal-Request-Id -> its first answer
        self.id_faults: dict[str, list] = {}
        self.retry_after = "0"
        self.tokens: set[str] = set()
        self.token_calls = 0
        self.token_ttl_s = token_ttl_s
        self.latency_s = latency_s
        self.slow_s = 0.8
        self.account = "MERCHANT0ACCOUNT"
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.spec = _Spec(Path(spec_dir)) if spec_dir else None
        self.amounts: dict[str, Decimal] = {}         # id -> what PayPal bills each cycle (advance_to)
        self.clock_now: datetime | None = None        # the stand-in's clock: None is the real time (advance_to sets it)
        self.webhook_key = STANDIN_WEBHOOK_KEY         # signs webhook deliveries (see `deliver`)
        self.webhook_events: list[dict] = []          # every event delivered, for GET webhooks-events
        if self.spec:   # build the validators now, not inside the first request (a client's read timeout is short)
            for name in (SUBSCRIPTIONS_SPEC, REPORTING_SPEC, PAYMENTS_SPEC, NOTIFICATIONS_SPEC):
                with contextlib.suppress(Exception):
                    self.spec.validate(name, "request", self.spec.request("get", "/warm-up", "", {}, None, SPEC_HOST))

    # ------------------------------------------------------------------ the world

    def add(self, subscription_id: str, status: str = "ACTIVE", *, next_billing_time: datetime | None = None,
            payer: Payer | None = None) -> str:
        self.subscriptions[subscription_id] = status
        self.status_changes.pop(subscription_id, None)
        self.transactions.setdefault(subscription_id, [])
        if next_billing_time:
            self.next_billing[subscription_id] = next_billing_time
        if payer:
            self.payers[subscription_id] = payer
        return subscription_id

    def now(self) -> datetime:
        return self.clock_now or datetime.now(UTC)

    def advance_to(self, when: datetime) -> list[tuple[str, Txn]]:
        """Move the stand-in's clock to `when`, billing every ACTIVE subscription whose next_billing_time has come, as
        PayPal does: one COMPLETED payment of its amount (`amounts`, default 22.00) at that time, and the next billing
        time one cycle (a calendar month, same day) later. Returns the payments made, in time order."""
        made = []
        with self._lock:
            for sid, due in sorted(self.next_billing.items()):
                while due <= when and self.subscriptions.get(sid) == "ACTIVE":
                    made.append((sid, self._bill(sid, due)))
                    month = due.month % 12 + 1
                    due = due.replace(year=due.year + (due.month == 12), month=month)
                    self.next_billing[sid] = due
            self.clock_now = when
        return sorted(made, key=lambda m: (m[1].time, m[0]))

    def _bill(self, subscription_id: str, when: datetime) -> Txn:
        txn = Txn(self.transaction_id(), when, self.amounts.get(subscription_id, Decimal("22.00")))
        self.transactions.setdefault(subscription_id, []).append(txn)
        return txn

    def transaction_id(self) -> str:
        """17 characters, as PayPal's."""
        return hashlib.sha256(f"{id(self)}:{next(self._ids)}".encode()).hexdigest()[:17].upper()

    def charge(self, subscription_id: str, when: datetime | str, amount: str | Decimal = "22.00", *,
               status: str = "COMPLETED", currency: str = "USD", txn_id: str | None = None) -> str:
        """A payment PayPal took (or tried to) on the subscription; returns its transaction id."""
        when = parse_time(when) if isinstance(when, str) else when
        txn = Txn(txn_id or self.transaction_id(), when, Decimal(str(amount)), status, currency)
        self.transactions.setdefault(subscription_id, []).append(txn)
        return txn.id

    def monthly(self, subscription_id: str, first: datetime | str, count: int, amount="22.00", **kw) -> list[str]:
        first = parse_time(first) if isinstance(first, str) else first
        out = []
        for n in range(count):
            month = first.month - 1 + n
            out.append(self.charge(subscription_id, first.replace(year=first.year + month // 12, month=month % 12 + 1),
                                   amount, **kw))
        return out

    def cancel_in_paypal(self, subscription_id: str, note: str, when: str = "2026-11-02T10:00:00Z") -> None:
        """What the owner (or another tool) does in PayPal's own site."""
        self.subscriptions[subscription_id] = "CANCELLED"
        self.status_changes[subscription_id] = (note, when)
        self.next_billing.pop(subscription_id, None)

    def cancel_calls(self, subscription_id: str | None = None) -> list:
        return [c for c in self.calls if c[0] == "cancel" and (subscription_id is None or c[1] == subscription_id)]

    def writes(self) -> list[tuple[str, str]]:
        """Every request that is not a read, the token excepted."""
        return [(m, p) for m, p in self.log if m != "GET" and not p.startswith("/v1/oauth2/token")]

    def api_calls(self) -> int:
        return sum(1 for _, p in self.log if not p.startswith("/v1/oauth2/token"))

    # ------------------------------------------------------------------ serving

    def on_request(self, http: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(http.path)
        body = http.rfile.read(int(http.headers.get("Content-Length", 0))) or None
        self.log.append((method.upper(), http.path))
        if self.latency_s:
            time.sleep(self.latency_s)
        if parts.path == "/v1/oauth2/token" and method == "post":
            return self.token(http, body)
        if parts.path == "/v1/reporting/transactions" and method == "get":
            return self.search(http, parts.query, body)
        if parts.path == "/v1/notifications/verify-webhook-signature" and method == "post":
            return self.verify_webhook(http, parts.path, parts.query, body)
        if parts.path == "/v1/notifications/webhooks-events" and method == "get":
            return self.list_webhook_events(http, parts.path, parts.query, body)
        segments = parts.path.strip("/").split("/")
        if segments[:3] == ["v2", "payments", "captures"] and len(segments) == 5 and segments[4] == "refund" \
                and method == "post":
            return self.refund(http, segments[3], parts.path, parts.query, body)
        if segments[:3] != ["v1", "billing", "subscriptions"] or len(segments) not in (4, 5):
            return self.send(http, 404, {"name": "RESOURCE_NOT_FOUND", "message": "no such path"})
        if len(segments) == 5 and segments[4] == "cancel" and method == "post":
            operation = "cancel"
        elif len(segments) == 5 and segments[4] == "transactions" and method == "get":
            operation = "transactions"
        elif len(segments) == 4 and method == "get":
            operation = "get"
        else:
            return self.send(http, 404, {"name": "RESOURCE_NOT_FOUND", "message": "no such path"})
        subscription_id = segments[3]
        spec_request = self.spec_request(method, parts.path, parts.query, http, body, SPEC_HOST)
        if not self.valid(spec_request, SUBSCRIPTIONS_SPEC, http, method, parts.path):
            return None
        if not self.authorized(http):
            return self.send(http, 401, {"error": "invalid_token"})
        self.calls.append((operation, subscription_id, json.loads(body) if body else None))
        fault = self.take_fault(operation, subscription_id)
        if self.faulted(http, fault):
            return None
        status = self.subscriptions.get(subscription_id)
        if status is None:
            return self.send(http, 404, {"name": "RESOURCE_NOT_FOUND", "message": "The specified resource does not exist.",
                                         "debug_id": "d404", "details": [{"issue": "INVALID_RESOURCE_ID",
                                                                          "description": NOT_FOUND_TEXT}]},
                             spec_request=spec_request)
        if operation == "get":
            return self.send(http, 200, self.subscription(subscription_id), spec_request=spec_request)
        if operation == "transactions":
            return self.list_transactions(http, subscription_id, parts.query, spec_request)
        return self.cancel(http, subscription_id, status, body, fault, spec_request)

    def spec_request(self, method, path, query, http, body, host):
        if self.spec is None:
            return None
        return self.spec.request(method, path, query, dict(http.headers.items()), body, host)

    def valid(self, spec_request, spec_name: str, http, method: str, path: str) -> bool:
        if spec_request is None:
            return True
        try:
            self.spec.validate(spec_name, "request", spec_request)
        except Exception as exc:  # noqa: BLE001 - any spec error is recorded and answered 400
            self.violations.append(f"{method.upper()} {path}: {exc!r}")
            self.send(http, 400, {"name": "INVALID_REQUEST", "message": str(exc)[:120]})
            return False
        return True

    def authorized(self, http) -> bool:
        return http.headers.get("Authorization", "").removeprefix("Bearer ") in self.tokens

    def take_fault(self, operation: str, subscription_id: str | None):
        with self._lock:
            if subscription_id and self.id_faults.get(subscription_id):
                return self.id_faults[subscription_id].pop(0)
            return self.faults[operation].pop(0) if self.faults[operation] else None

    def faulted(self, http, fault) -> bool:
        if fault == "timeout":                       # no answer in time, nothing done
            time.sleep(self.slow_s)
            self.send(http, 504, {"name": "TIMEOUT"})
            return True
        if fault in (429, 500, 503):
            headers = {"Retry-After": self.retry_after} if fault == 429 else {}
            self.send(http, fault, {"name": "RATE_LIMIT_REACHED" if fault == 429 else "INTERNAL_SERVER_ERROR",
                                    "message": "injected", "debug_id": "f00"}, headers)
            return True
        return False

    def subscription(self, subscription_id: str) -> dict:
        answer = {"id": subscription_id, "plan_id": "P-5ML4271244454362WXNWU5NQ",
                  "status": self.subscriptions[subscription_id], "start_time": "2023-01-16T00:00:00Z"}
        if subscription_id in self.status_changes:
            note, when = self.status_changes[subscription_id]
            answer.update(status_change_note=note, status_update_time=when)
        if subscription_id in self.next_billing:
            answer["billing_info"] = {"outstanding_balance": {"currency_code": "USD", "value": "0.00"},
                                      "next_billing_time": paypal_time(self.next_billing[subscription_id]),
                                      "failed_payments_count": 0}
            paid = [t for t in self.transactions.get(subscription_id, ()) if t.status == "COMPLETED"]
            if paid:
                last = max(paid, key=lambda t: t.time)
                answer["billing_info"]["last_payment"] = {
                    "amount": {"currency_code": last.currency, "value": f"{last.amount:.2f}"}, "time": paypal_time(last.time)}
        payer = self.payers.get(subscription_id)
        if payer:
            answer["subscriber"] = {"email_address": payer.email}
        return answer

    def list_transactions(self, http, subscription_id: str, query: str, spec_request) -> None:
        params = {k: v[0] for k, v in parse_qs(query).items()}
        try:
            start, end = parse_time(params["start_time"]), parse_time(params["end_time"])
        except (KeyError, ValueError):
            return self.send(http, 400, {"name": "INVALID_REQUEST", "message": INVALID_REQUEST_TEXT,
                                         "details": [{"issue": "INVALID_PARAMETER_SYNTAX", "description": SYNTAX_TEXT}]},
                             spec_request=spec_request)
        payer = self.payers.get(subscription_id)
        listed = []
        for t in sorted(self.transactions.get(subscription_id, ()), key=lambda t: t.time):
            if start <= t.time <= end:
                item = {"status": t.status, "id": t.id, "time": paypal_time(t.time),
                        "amount_with_breakdown": {"gross_amount": {"currency_code": t.currency, "value": str(t.amount)}}}
                if payer:
                    item["payer_email"] = payer.email
                    item["payer_name"] = {k: v for k, v in (("given_name", payer.given_name), ("surname", payer.surname))
                                          if v}
                listed.append(item)
        return self.send(http, 200, {"transactions": listed, "total_items": len(listed), "total_pages": 1},
                         spec_request=spec_request)

    def cancel(self, http, subscription_id: str, status: str, body: bytes | None, fault, spec_request) -> None:
        if status not in ("ACTIVE", "SUSPENDED"):
            return self.send(http, 422, {"name": "UNPROCESSABLE_ENTITY", "debug_id": "d422",
                                         "message": UNPROCESSABLE_TEXT,
                                         "details": [{"issue": "SUBSCRIPTION_STATUS_INVALID",
                                                      "description": "Invalid subscription status for cancel action;"
                                                                     " subscription status should be active or suspended."}]},
                             spec_request=spec_request)
        if fault == "204-but-still-active":          # PayPal says done; the subscription says otherwise
            return self.send(http, 204, None, spec_request=spec_request)
        self.subscriptions[subscription_id] = "CANCELLED"
        self.next_billing.pop(subscription_id, None)
        self.status_changes[subscription_id] = (json.loads(body)["reason"], paypal_time(self.now()))
        if fault == "500-after-cancel":              # done, but the answer says otherwise
            return self.send(http, 500, {"name": "INTERNAL_SERVER_ERROR", "message": "injected"})
        if fault == "timeout-after-cancel":          # done, but the answer never arrives in time
            time.sleep(self.slow_s)
        return self.send(http, 204, None, spec_request=spec_request)

    # ------------------------------------------------------------------ refunds (Payments v2)

    def capture(self, capture_id: str) -> Txn | None:
        for txns in self.transactions.values():
            for t in txns:
                if t.id == capture_id:
                    return t
        return None

    def refund_calls(self, capture_id: str | None = None) -> list:
        return [c for c in self.calls if c[0] == "refund" and (capture_id is None or c[1] == capture_id)]

    def refund(self, http, capture_id: str, path: str, query: str, body: bytes | None) -> None:
        spec_request = self.spec_request("post", path, query, http, body, SPEC_HOST)
        if not self.valid(spec_request, PAYMENTS_SPEC, http, "post", path):
            return None
        if not self.authorized(http):
            return self.send(http, 401, {"error": "invalid_token"})
        request_id = http.headers.get("PayPal-Request-Id")
        self.calls.append(("refund", capture_id, {"request_id": request_id, "body": json.loads(body) if body else None}))
        fault = self.take_fault("refund", capture_id)
        if self.faulted(http, fault):
            return None
        with self._lock:
            if request_id and request_id in self.refund_answers:     # PayPal: the first answer, nothing done again
                status, answer = self.refund_answers[request_id]
            else:
                status, answer = self._refund_once(capture_id)
                if request_id and status in (201, 422):
                    self.refund_answers[request_id] = (status, answer)
        if fault == "500-after-refund":               # done, but the answer says otherwise
            return self.send(http, 500, {"name": "INTERNAL_SERVER_ERROR", "message": "injected"})
        return self.send(http, status, answer, spec_request=spec_request, spec_name=PAYMENTS_SPEC)

    def _refund_once(self, capture_id: str) -> tuple[int, dict]:
        t = self.capture(capture_id)
        if t is None:
            return 404, {"name": "RESOURCE_NOT_FOUND", "message": "The specified resource does not exist.",
                         "debug_id": "d404", "details": [{"issue": "INVALID_RESOURCE_ID", "description": NOT_FOUND_TEXT}]}
        if t.status == "REFUNDED":
            return 422, {"name": "UNPROCESSABLE_ENTITY", "message": UNPROCESSABLE_TEXT, "debug_id": "d422",
                         "details": [{"issue": "CAPTURE_FULLY_REFUNDED",
                                      "description": "The capture has already been fully refunded"}]}
        t.status = "REFUNDED"
        refund_id = hashlib.sha256(f"refund:{capture_id}:{len(self.refunds)}".encode()).hexdigest()[:17].upper()
        answer = {"id": refund_id, "status": "COMPLETED",
                  "amount": {"currency_code": t.currency, "value": f"{t.amount:.2f}"},
                  "create_time": paypal_time(datetime.now(UTC)), "update_time": paypal_time(datetime.now(UTC)),
                  "links": [{"href": f"{SPEC_HOST}/v2/payments/refunds/{refund_id}", "rel": "self", "method": "GET"}]}
        self.refunds.append({"capture_id": capture_id, **answer})
        return 201, answer

    # ------------------------------------------------------------------ Transaction Search

    def search_records(self) -> list[dict]:
        """Every record of the account, as Transaction Search lists them (fields=all)."""
        records = []
        for sid, txns in self.transactions.items():
            payer = self.payers.get(sid)
            for t in txns:
                records.append(self.record(t.id, t.time, t.amount, t.currency, t.event_code,
                                           SEARCH_STATUS.get(t.status, "S"), sid, "SUB", payer))
                if t.status in ("REFUNDED", "PARTIALLY_REFUNDED"):   # the merchant's refund: its own record
                    refund = t.amount if t.status == "REFUNDED" else (t.amount / 2).quantize(Decimal("0.01"))
                    records.append(self.record(t.id[:-1] + "R", t.time + timedelta(days=2), -refund, t.currency,
                                               "T1107", "S", t.id, "TXN", payer))
        return records + self.other_records

    def record(self, txn_id, when, amount, currency, code, status, reference, reference_type, payer) -> dict:
        info = {"paypal_account_id": "PAYERACCOUNT1", "transaction_id": txn_id, "paypal_reference_id": reference,
                "paypal_reference_id_type": reference_type, "transaction_event_code": code,
                "transaction_initiation_date": search_time(when), "transaction_updated_date": search_time(when),
                "transaction_amount": {"currency_code": currency, "value": f"{amount:.2f}"},
                "transaction_status": status}
        detail = {"transaction_info": info}
        if payer:
            name = {"alternate_full_name": payer.alternate_full_name} if payer.alternate_full_name else {
                k: v for k, v in (("given_name", payer.given_name), ("surname", payer.surname)) if v}
            detail["payer_info"] = {"account_id": "PAYERACCOUNT1", "email_address": payer.email, "payer_name": name}
        return detail

    def search(self, http, query: str, body: bytes | None) -> None:
        spec_path = REPORTING_SPEC_PREFIX + "/v1/reporting/transactions"
        spec_request = self.spec_request("get", spec_path, query, http, body, REPORTING_HOST)
        if not self.valid(spec_request, REPORTING_SPEC, http, "get", "/v1/reporting/transactions"):
            return None
        if not self.authorized(http):
            return self.send(http, 401, {"error": "invalid_token"})
        self.calls.append(("search", query, None))
        if self.faulted(http, self.take_fault("search", None)):
            return None
        params = {k: v[0] for k, v in parse_qs(query).items()}
        start, end = parse_time(params["start_date"]), parse_time(params["end_date"])
        if end - start > timedelta(days=SEARCH_MAX_DAYS) or end < start:
            return self.send(http, 400, {"name": "INVALID_REQUEST", "message": INVALID_REQUEST_TEXT, "debug_id": "d400",
                                         "details": [{"field": "end_date", "value": params["end_date"], "location": "query",
                                                      "issue": "Date range is greater than 31 days"}]},
                             spec_request=spec_request, spec_name=REPORTING_SPEC)
        page_size, page = int(params.get("page_size", 100)), int(params.get("page", 1))
        found = [r for r in self.search_records()
                 if start <= parse_time(r["transaction_info"]["transaction_initiation_date"].replace("+0000", "+00:00")) <= end
                 and params.get("transaction_type") in (None, r["transaction_info"]["transaction_event_code"])
                 and params.get("transaction_status") in (None, r["transaction_info"]["transaction_status"])]
        found.sort(key=lambda r: (r["transaction_info"]["transaction_initiation_date"], r["transaction_info"]["transaction_id"]))
        if params.get("fields", "transaction_info") != "all":
            found = [{"transaction_info": r["transaction_info"]} for r in found]
        pages = max(1, -(-len(found) // page_size))
        chunk = found[(page - 1) * page_size: page * page_size]
        answer = {"transaction_details": chunk, "account_number": self.account, "start_date": search_time(start),
                  "end_date": search_time(end), "last_refreshed_datetime": search_time(datetime.now(UTC)),
                  "page": page, "total_items": len(found), "total_pages": pages,
                  "links": [{"href": f"{REPORTING_HOST}/v1/reporting/transactions?{query}", "rel": "self",
                             "method": "GET"}]}
        return self.send(http, 200, answer, spec_request=spec_request, spec_name=REPORTING_SPEC)

    # ------------------------------------------------------------------ webhooks (Notifications v1)

    def webhook_event(self, event_type: str, resource: dict, *, event_id: str | None = None,
                      create_time: datetime | str | None = None, resource_type: str = "sale",
                      summary: str | None = None) -> dict:
        """An event as PayPal sends it (the `event` schema)."""
        when = parse_time(create_time) if isinstance(create_time, str) else (create_time or datetime.now(UTC))
        event_id = event_id or "WH-" + hashlib.sha256(f"{id(self)}:ev:{next(self._ids)}".encode()).hexdigest()[:24].upper()
        return {"id": event_id, "event_version": "1.0", "create_time": paypal_time(when), "resource_type": resource_type,
                "event_type": event_type, "summary": summary or event_type.replace(".", " ").lower(),
                "resource": resource,
                "links": [{"href": f"{SPEC_HOST}/v1/notifications/webhooks-events/{event_id}", "rel": "self",
                           "method": "GET"}]}

    def sale_resource(self, subscription_id: str, sale_id: str, when: datetime, amount, currency: str = "USD",
                      state: str = "completed") -> dict:
        """Payments v1's `sale`, as a subscription's payment: billing_agreement_id is the I-... id."""
        return {"id": sale_id, "state": state, "amount": {"total": f"{Decimal(str(amount)):.2f}", "currency": currency,
                                                          "details": {"subtotal": f"{Decimal(str(amount)):.2f}"}},
                "payment_mode": "INSTANT_TRANSFER", "protection_eligibility": "ELIGIBLE",
                "transaction_fee": {"value": "1.02", "currency": currency}, "billing_agreement_id": subscription_id,
                "create_time": paypal_time(when), "update_time": paypal_time(when),
                "links": [{"href": f"{SPEC_HOST}/v1/payments/sale/{sale_id}", "rel": "self", "method": "GET"}]}

    def sale_completed(self, subscription_id: str, when: datetime | str, amount="22.00", *, currency: str = "USD",
                       sale_id: str | None = None, event_id: str | None = None) -> dict:
        """PayPal charges the subscription (Transaction Search lists it) and makes its PAYMENT.SALE.COMPLETED."""
        when = parse_time(when) if isinstance(when, str) else when
        sale_id = sale_id or self.charge(subscription_id, when, amount, currency=currency)
        if not any(t.id == sale_id for t in self.transactions.get(subscription_id, ())):
            self.charge(subscription_id, when, amount, currency=currency, txn_id=sale_id)
        return self.webhook_event("PAYMENT.SALE.COMPLETED",
                                  self.sale_resource(subscription_id, sale_id, when, amount, currency),
                                  event_id=event_id, create_time=when + timedelta(seconds=3),
                                  summary=f"Payment completed for $ {Decimal(str(amount)):.2f} {currency}")

    def sale_refunded(self, sale_id: str, when: datetime | str, amount="22.00", *, currency: str = "USD",
                      event_id: str | None = None, reversed_: bool = False) -> dict:
        """PAYMENT.SALE.REFUNDED (or REVERSED): Payments v1's `refund`, naming the sale (not the subscription)."""
        when = parse_time(when) if isinstance(when, str) else when
        refund_id = hashlib.sha256(f"{id(self)}:rf:{next(self._ids)}".encode()).hexdigest()[:17].upper()
        value = f"{Decimal(str(amount)):.2f}"
        resource = {"id": refund_id, "state": "completed", "amount": {"total": value, "currency": currency},
                    "sale_id": sale_id, "parent_payment": "PAYID-" + sale_id, "create_time": paypal_time(when),
                    "update_time": paypal_time(when),
                    "links": [{"href": f"{SPEC_HOST}/v1/payments/refund/{refund_id}", "rel": "self", "method": "GET"}]}
        return self.webhook_event("PAYMENT.SALE.REVERSED" if reversed_ else "PAYMENT.SALE.REFUNDED", resource,
                                  event_id=event_id, create_time=when, resource_type="refund")

    def subscription_event(self, event_type: str, subscription_id: str, status: str, when: datetime | str, *,
                           note: str | None = None, event_id: str | None = None) -> dict:
        """BILLING.SUBSCRIPTION.* with the subscription resource (Subscriptions v1) as PayPal now has it."""
        when = parse_time(when) if isinstance(when, str) else when
        resource = {"id": subscription_id, "plan_id": "P-5ML4271244454362WXNWU5NQ", "status": status,
                    "status_update_time": paypal_time(when), "start_time": "2023-01-16T00:00:00Z",
                    "links": [{"href": f"{SPEC_HOST}/v1/billing/subscriptions/{subscription_id}", "rel": "self",
                               "method": "GET"}]}
        if note:
            resource["status_change_note"] = note
        return self.webhook_event(event_type, resource, event_id=event_id, create_time=when,
                                  resource_type="subscription")

    def _webhook_signature(self, transmission_id: str, transmission_time: str, webhook_id: str, body: bytes) -> str:
        signed = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}".encode()
        return hmac.new(self.webhook_key, signed, hashlib.sha256).hexdigest()

    def deliver(self, event: dict, webhook_id: str, *, when: datetime | None = None,
                record: bool = True) -> tuple[dict[str, str], bytes]:
        """A delivery of `event` to the webhook `webhook_id`, as PayPal makes it: the PAYPAL-* headers and the body
        bytes (compact JSON, as PayPal writes it). Only these bytes with these headers verify. `record`: listed by
        GET webhooks-events (PayPal lists every event it made, delivered or not)."""
        body = json.dumps(event, separators=(",", ":")).encode()
        transmission_id = str(uuid.uuid4())
        transmission_time = paypal_time(when or datetime.now(UTC))
        headers = {"PAYPAL-AUTH-ALGO": "SHA256withRSA",
                   "PAYPAL-CERT-URL": f"{SPEC_HOST}/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
                   "PAYPAL-TRANSMISSION-ID": transmission_id, "PAYPAL-TRANSMISSION-TIME": transmission_time,
                   "PAYPAL-TRANSMISSION-SIG": self._webhook_signature(transmission_id, transmission_time, webhook_id, body)}
        if record and all(e.get("id") != event.get("id") for e in self.webhook_events):
            self.webhook_events.append(event)
        return headers, body

    def verify_webhook(self, http, path: str, query: str, body: bytes | None) -> None:
        request = json.loads(body or b"{}")
        spec_request = self.spec_request("post", path, query, http, _without_event(body), SPEC_HOST)
        if not self.valid(spec_request, NOTIFICATIONS_SPEC, http, "post", path):
            return None
        if not self.authorized(http):
            return self.send(http, 401, {"error": "invalid_token"})
        self.calls.append(("verify", request.get("webhook_id"), None))
        if self.faulted(http, self.take_fault("verify", None)):
            return None
        raw = raw_members(body or b"{}").get("webhook_event", b"")
        expected = self._webhook_signature(str(request.get("transmission_id")), str(request.get("transmission_time")),
                                           str(request.get("webhook_id")), raw)
        ok = hmac.compare_digest(expected, str(request.get("transmission_sig")))
        return self.send(http, 200, {"verification_status": "SUCCESS" if ok else "FAILURE"},
                         spec_request=spec_request, spec_name=NOTIFICATIONS_SPEC)

    def list_webhook_events(self, http, path: str, query: str, body: bytes | None) -> None:
        spec_request = self.spec_request("get", path, query, http, body, SPEC_HOST)
        if not self.valid(spec_request, NOTIFICATIONS_SPEC, http, "get", path):
            return None
        if not self.authorized(http):
            return self.send(http, 401, {"error": "invalid_token"})
        self.calls.append(("events", query, None))
        if self.faulted(http, self.take_fault("events", None)):
            return None
        params = {k: v[0] for k, v in parse_qs(query).items()}
        start = parse_time(params["start_time"]) if "start_time" in params else datetime.min.replace(tzinfo=UTC)
        end = parse_time(params["end_time"]) if "end_time" in params else datetime.max.replace(tzinfo=UTC)
        size, page = int(params.get("page_size", 10)), int(params.get("page", 1))
        found = sorted((e for e in self.webhook_events if start <= parse_time(e["create_time"]) <= end),
                       key=lambda e: (e["create_time"], e["id"]), reverse=True)        # newest first
        chunk = found[(page - 1) * size: page * size]
        links = [{"href": f"{SPEC_HOST}{path}?{query}", "rel": "self", "method": "GET"}]
        if page * size < len(found):
            following = {**params, "page": str(page + 1)}
            links.append({"href": f"{SPEC_HOST}{path}?" + "&".join(f"{k}={v}" for k, v in following.items()),
                          "rel": "next", "method": "GET"})
        return self.send(http, 200, {"events": chunk, "count": len(chunk), "links": links},
                         spec_request=spec_request, spec_name=NOTIFICATIONS_SPEC)

    # ------------------------------------------------------------------ tokens and answers

    def token(self, http: BaseHTTPRequestHandler, body: bytes | None) -> None:
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        form = parse_qs((body or b"").decode())
        if http.headers.get("Authorization") != expected or form.get("grant_type") != ["client_credentials"]:
            return self.send(http, 401, {"error": "invalid_client", "error_description": "Client Authentication failed"})
        self.token_calls += 1
        fault = self.take_fault("token", None)
        if fault:
            return self.send(http, fault, {"error": "injected"})
        token = f"A21AA{uuid.uuid4().hex}"
        self.tokens.add(token)
        self.send(http, 200, {"scope": "https://uri.paypal.com/services/subscriptions"
                                       " https://uri.paypal.com/services/reporting/search/read",
                              "access_token": token, "token_type": "Bearer", "app_id": "APP-TEST",
                              "expires_in": self.token_ttl_s, "nonce": "n"})
        return None

    def send(self, http, status: int, payload, headers: dict | None = None, *, spec_request=None,
             spec_name: str = SUBSCRIPTIONS_SPEC) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        if spec_request is not None and self.spec is not None:
            checked = data
            if spec_name == REPORTING_SPEC and payload is not None:
                checked = json.dumps(_as_published(payload)).encode()
            try:  # the stand-in must answer as PayPal's spec says PayPal answers
                self.spec.validate(spec_name, "response", spec_request, self.spec.response(status, checked or None))
            except Exception as exc:  # noqa: BLE001
                self.violations.append(f"response {status} to {spec_request.path}: {exc}")
        http.send_response(status)
        if payload is not None:
            http.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            http.send_header(key, value)
        http.send_header("Content-Length", str(len(data)))
        http.end_headers()
        http.wfile.write(data)
