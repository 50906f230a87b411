"""One HTTP session recipe: timeouts on every call, 429/5xx retried with back-off and Retry-After."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = (3.05, 10)  # connect, read (seconds)


def retrying_session(*, total: int = 4, backoff_factor: float = 0.5, methods=("GET", "POST"),
                     max_backoff: float = 20) -> requests.Session:
    """A Session that retries 429 and 5xx answers and connection errors, honouring Retry-After."""
    retry = Retry(
        total=total, connect=total, read=0, status=total, backoff_factor=backoff_factor,
        backoff_max=max_backoff, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset(methods),
        respect_retry_after_header=True, raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
