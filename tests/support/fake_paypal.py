"""A fake PayPal on 127.0.0.1: real HTTP, stateful, every request and response checked against the spec.

The OpenAPI description (tests/data/paypal/billing_subscriptions_v1.json, PayPal's own) validates each
subscriptions call with openapi-core; anything off-spec is recorded in `violations` and answered 400.
/v1/oauth2/token is not in that spec: it checks Basic auth and the form body by hand.
Faults can be queued per operation: 429, 500, "timeout" (nothing done, no answer in time),
"500-after-cancel" and "timeout-after-cancel" (the cancel is done, the answer is lost),
"204-but-still-active" (the answer says done, the subscription stays ACTIVE).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

from tests.support.loopback import LoopbackServer

SPEC = Path(__file__).resolve().parents[1] / "data" / "paypal" / "billing_subscriptions_v1.json"
SPEC_HOST = "https://api-m.sandbox.paypal.com"
CLIENT_ID, CLIENT_SECRET = "test-client-id", "test-client-secret"
NOT_FOUND_TEXT = "Specified resource ID does not exist. Please check the resource ID and try again."
UNPROCESSABLE_TEXT = "The requested action could not be performed, semantically incorrect, or failed business validation."


@cache
def openapi() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC))


def validate(kind: str, *args) -> None:
    """openapi-core validation; its OAuth2 scheme is not checked (it warns so), the token check is ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unsupported scheme type")
        getattr(openapi(), f"validate_{kind}")(*args)


@dataclass
class SpecRequest:
    """openapi-core's Request protocol for one received request."""
    method: str
    path: str
    query: str
    headers: dict
    body: bytes | None
    host_url: str = SPEC_HOST

    def __post_init__(self):
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(self.query)), header=Headers(self.headers), cookie=ImmutableMultiDict())

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/json").lower()


@dataclass
class SpecResponse:
    status_code: int
    data: bytes | None
    content_type: str = "application/json"

    @property
    def headers(self):
        return Headers({"Content-Type": self.content_type})


class FakePayPal(LoopbackServer):
    def __init__(self, token_ttl_s: int = 32400, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.subscriptions: dict[str, str] = {}       # id -> status
        self.status_changes: dict[str, tuple[str, str]] = {}   # id -> (status_change_note, status_update_time)
        self.calls: list[tuple[str, str, dict | None]] = []
        self.violations: list[str] = []
        self.faults: dict[str, list] = {"get": [], "cancel": [], "token": []}
        self.tokens: set[str] = set()
        self.token_calls = 0
        self.token_ttl_s = token_ttl_s
        self.slow_s = 0.8
        # build the validators now, not inside the first request (a client's read timeout is short)
        with contextlib.suppress(Exception):
            validate("request", SpecRequest("get", "/v1/billing/subscriptions/I-WARMUP", "", {}, None))

    # ------------------------------------------------------------------ test API

    def add(self, subscription_id: str, status: str = "ACTIVE") -> str:
        self.subscriptions[subscription_id] = status
        self.status_changes.pop(subscription_id, None)
        return subscription_id

    def cancel_in_paypal(self, subscription_id: str, note: str, when: str = "2026-11-02T10:00:00Z") -> None:
        """What the owner (or another tool) does in PayPal's own site."""
        self.subscriptions[subscription_id] = "CANCELLED"
        self.status_changes[subscription_id] = (note, when)

    def cancel_calls(self, subscription_id: str | None = None) -> list:
        return [c for c in self.calls if c[0] == "cancel" and (subscription_id is None or c[1] == subscription_id)]

    # ------------------------------------------------------------------ serving

    def on_request(self, http: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(http.path)
        body = http.rfile.read(int(http.headers.get("Content-Length", 0))) or None
        if parts.path == "/v1/oauth2/token" and method == "post":
            return self.token(http, body)
        segments = parts.path.strip("/").split("/")
        if segments[:3] != ["v1", "billing", "subscriptions"] or len(segments) not in (4, 5):
            return self.send(http, 404, {"name": "RESOURCE_NOT_FOUND", "message": "no such path"})
        operation = "cancel" if len(segments) == 5 and segments[4] == "cancel" and method == "post" else "get"
        subscription_id = segments[3]
        spec_request = SpecRequest(method, parts.path, parts.query, dict(http.headers.items()), body)
        try:
            validate("request", spec_request)
        except Exception as exc:  # noqa: BLE001 - any spec error is recorded and answered 400
            self.violations.append(f"{method.upper()} {parts.path}: {exc!r}")
            return self.send(http, 400, {"name": "INVALID_REQUEST", "message": str(exc)[:120]})
        if http.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return self.send(http, 401, {"error": "invalid_token"})
        self.calls.append((operation, subscription_id, json.loads(body) if body else None))
        fault = self.faults[operation].pop(0) if self.faults[operation] else None
        if fault == "timeout":                       # no answer in time, nothing done
            time.sleep(self.slow_s)
            return self.send(http, 504, {"name": "TIMEOUT"}, spec=False)
        if fault in (429, 500):
            headers = {"Retry-After": "0"} if fault == 429 else {}
            return self.send(http, fault, {"name": "RATE_LIMIT_REACHED" if fault == 429 else "INTERNAL_SERVER_ERROR",
                                           "message": "injected", "debug_id": "f00"}, headers, spec=False)
        status = self.subscriptions.get(subscription_id)
        if status is None:
            return self.send(http, 404, {"name": "RESOURCE_NOT_FOUND", "message": "The specified resource does not exist.",
                                         "debug_id": "d404", "details": [{"issue": "INVALID_RESOURCE_ID",
                                                                          "description": NOT_FOUND_TEXT}]},
                             spec_request=spec_request)
        if operation == "get":
            subscription = {"id": subscription_id, "plan_id": "P-5ML4271244454362WXNWU5NQ", "status": status,
                            "start_time": "2023-01-16T00:00:00Z"}
            if subscription_id in self.status_changes:
                note, when = self.status_changes[subscription_id]
                subscription.update(status_change_note=note, status_update_time=when)
            return self.send(http, 200, subscription, spec_request=spec_request)
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
        self.status_changes[subscription_id] = (json.loads(body)["reason"],
                                                datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        if fault == "500-after-cancel":              # done, but the answer says otherwise
            return self.send(http, 500, {"name": "INTERNAL_SERVER_ERROR", "message": "injected"}, spec=False)
        if fault == "timeout-after-cancel":          # done, but the answer never arrives in time
            time.sleep(self.slow_s)
        return self.send(http, 204, None, spec_request=spec_request)

    def token(self, http: BaseHTTPRequestHandler, body: bytes | None) -> None:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        form = parse_qs((body or b"").decode())
        if http.headers.get("Authorization") != expected or form.get("grant_type") != ["client_credentials"]:
            return self.send(http, 401, {"error": "invalid_client"}, spec=False)
        self.token_calls += 1
        fault = self.faults["token"].pop(0) if self.faults["token"] else None
        if fault:
            return self.send(http, fault, {"error": "injected"}, spec=False)
        token = f"A21AA{uuid.uuid4().hex}"
        self.tokens.add(token)
        self.send(http, 200, {"scope": "https://uri.paypal.com/services/subscriptions", "access_token": token,
                              "token_type": "Bearer", "app_id": "APP-TEST", "expires_in": self.token_ttl_s,
                              "nonce": "n"}, spec=False)
        return None

    def send(self, http, status: int, payload, headers: dict | None = None, *, spec: bool = True,
             spec_request: SpecRequest | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        if spec and spec_request is not None:
            try:  # the fake must answer as PayPal's spec says PayPal answers
                validate("response", spec_request, SpecResponse(status, data or None))
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
