"""A real HTTP server on 127.0.0.1 (a free port), in a thread, for the fakes of Slack and PayPal."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer:
    """Subclasses implement on_request(handler, method); `url` is the server's base URL.

    Listens on 127.0.0.1 and a free port unless told otherwise (scripts/sam_local.py: the docker bridge)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.on_request(self, "get")

            def do_POST(self):
                owner.on_request(self, "post")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
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
