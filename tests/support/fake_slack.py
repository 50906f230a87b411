"""A real HTTP server on 127.0.0.1 standing in for a Slack incoming webhook."""

from __future__ import annotations

import json

from tests.support.loopback import LoopbackServer


class FakeSlack(LoopbackServer):
    """Records every POST; answers from a script of (status, headers), or `always`, then 200 "ok"."""

    def __init__(self):
        super().__init__()
        self.requests: list[dict] = []
        self.script: list[tuple[int, dict]] = []
        self.always: tuple[int, dict] | None = None
        self.url += "/services/T000/B000/XXXX"

    def on_request(self, http, method: str) -> None:
        body = http.rfile.read(int(http.headers.get("Content-Length", 0)))
        self.requests.append({"path": http.path, "json": json.loads(body or b"null")})
        status, headers = self.always or (self.script.pop(0) if self.script else (200, {}))
        payload = b"ok" if status == 200 else b"rate_limited" if status == 429 else b"error"
        http.send_response(status)
        for key, value in headers.items():
            http.send_header(key, value)
        http.send_header("Content-Length", str(len(payload)))
        http.end_headers()
        http.wfile.write(payload)

    @property
    def messages(self) -> list[dict]:
        return [r["json"] for r in self.requests]
