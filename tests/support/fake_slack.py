"""A real HTTP server on 127.0.0.1 standing in for a Slack incoming webhook."""

from __future__ import annotations

import json

from tests.support.loopback import LoopbackServer


class FakeSlack(LoopbackServer):
    """Records every POST; answers from a script of (status, headers), or `always`, then 200 "ok".

    An error answer's body is `error_body` when set (Slack's own error text, e.g. "invalid_blocks").
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port)
        self.requests: list[dict] = []
        self.script: list[tuple[int, dict]] = []
        self.always: tuple[int, dict] | None = None
        self.error_body: str | None = None
        self.url += "/services/T000/B000/XXXX"

    def on_request(self, http, method: str) -> None:
        body = http.rfile.read(int(http.headers.get("Content-Length", 0)))
        self.requests.append({"path": http.path, "json": json.loads(body or b"null")})
        status, headers = self.always or (self.script.pop(0) if self.script else (200, {}))
        payload = (b"ok" if status == 200 else self.error_body.encode() if self.error_body is not None
                   else b"rate_limited" if status == 429 else b"error")
        http.send_response(status)
        for key, value in headers.items():
            http.send_header(key, value)
        http.send_header("Content-Length", str(len(payload)))
        http.end_headers()
        http.wfile.write(payload)

    @property
    def messages(self) -> list[dict]:
        return [r["json"] for r in self.requests]
