"""Settings from the environment; secrets from Secrets Manager or SSM (Powertools Parameters, cached).

A value X comes from, in order: the variable X itself (local runs and tests), X_SECRET (a Secrets
Manager secret name or ARN: plain text, or JSON with the key given by X_SECRET_KEY, default "value"),
or X_PARAMETER (an SSM parameter name, decrypted). Secret values are never logged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from decimal import Decimal

from billing_monitor.errors import MonitorError
from billing_monitor.money import parse_tolerance

CACHE_SECONDS = 300


def resolve(name: str, *, required: bool = True, env=os.environ) -> str | None:
    if env.get(name):
        return env[name]
    if env.get(f"{name}_SECRET"):
        from aws_lambda_powertools.utilities import parameters

        raw = parameters.get_secret(env[f"{name}_SECRET"], max_age=CACHE_SECONDS)
        if isinstance(raw, bytes):
            raw = raw.decode()
        key = env.get(f"{name}_SECRET_KEY")
        if key or raw.lstrip().startswith("{"):
            try:
                return json.loads(raw)[key or "value"]
            except (ValueError, KeyError):
                raise MonitorError(f"secret for {name} has no key {key or 'value'!r}") from None
        return raw
    if env.get(f"{name}_PARAMETER"):
        from aws_lambda_powertools.utilities import parameters

        return parameters.get_parameter(env[f"{name}_PARAMETER"], decrypt=True, max_age=CACHE_SECONDS)
    if required:
        raise MonitorError(f"{name} is not configured (set {name}, {name}_SECRET or {name}_PARAMETER)")
    return None


def env_number(env, name: str, default: str) -> float:
    try:
        return float(env.get(name, default))
    except ValueError:
        raise MonitorError(f"{name} must be a number, got {env.get(name)!r}") from None


@dataclass
class ScanSettings:
    # What the scan function reads: secrets (X, X_SECRET or X_PARAMETER) and plain settings.
    SECRETS = ("BILLING_MONITOR_DSN", "BILLING_MONITOR_STORE_DSN", "SLACK_WEBHOOK_URL")
    PLAIN = ("BILLING_MONITOR_TOLERANCE", "FINDINGS_TOPIC_ARN", "BILLING_MONITOR_STATEMENT_TIMEOUT")

    dsn: str = field(repr=False)
    store_dsn: str = field(repr=False)
    tolerance: Decimal
    topic_arn: str | None
    slack_webhook_url: str | None = field(repr=False)
    statement_timeout_s: float
    http_backoff_s: float = 0.5

    @classmethod
    def from_env(cls, env=os.environ) -> ScanSettings:
        dsn = resolve("BILLING_MONITOR_DSN", env=env)
        return cls(
            dsn=dsn,
            store_dsn=resolve("BILLING_MONITOR_STORE_DSN", required=False, env=env) or dsn,
            tolerance=parse_tolerance(env.get("BILLING_MONITOR_TOLERANCE", "1.00")),
            topic_arn=env.get("FINDINGS_TOPIC_ARN") or None,
            slack_webhook_url=resolve("SLACK_WEBHOOK_URL", required=False, env=env),
            statement_timeout_s=env_number(env, "BILLING_MONITOR_STATEMENT_TIMEOUT", "600"),
            http_backoff_s=env_number(env, "BILLING_MONITOR_HTTP_BACKOFF", "0.5"),
        )
