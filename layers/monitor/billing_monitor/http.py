"""One HTTP session recipe: timeouts on every call, 429/5xx retried with back-off and Retry-After."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = (3.05, 10)  # connect, read (seconds)
MAX_RETRY_AFTER_S = 30        # a longer Retry-After is waited for this long, then the call is tried again


class CappedRetry(Retry):
    """urllib3's Retry, honouring Retry-After up to MAX_RETRY_AFTER_S (a scan has a time budget)."""

    def get_retry_after(self, response):
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, MAX_RETRY_AFTER_S)


def retrying_session(*, total: int = 4, backoff_factor: float = 0.5, methods=("GET", "POST"),
                     max_backoff: float = 20, pool_maxsize: int = 10) -> requests.Session:
    """A Session that retries 429 and 5xx answers and connection errors, honouring Retry-After."""
    retry = CappedRetry(
        total=total, connect=total, read=0, status=total, backoff_factor=backoff_factor,
        backoff_max=max_backoff, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset(methods),
        respect_retry_after_header=True, raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
