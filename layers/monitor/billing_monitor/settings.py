"""What each function reads from its environment: one pydantic-settings model per function.

A setting X comes from, in order: the variable X itself (local runs and tests), X_SECRET (a Secrets
Manager secret name or ARN: plain text, or JSON with the key given by X_SECRET_KEY, default "value"),
or X_PARAMETER (an SSM parameter name, decrypted). Only the secret settings (typed `SecretStr`) look at
X_SECRET and X_PARAMETER; their values never appear in a repr, a log line or an error.
Secrets Manager and SSM are read through Powertools Parameters (cached for CACHE_SECONDS).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from billing_monitor.actions.approvers import parse_principal_arn
from billing_monitor.actions.policy import DEFAULT_GRACE_HOURS, DEFAULT_MAX_PER_RUN, OFF, UNAMBIGUOUS
from billing_monitor.errors import MonitorError
from billing_monitor.money import parse_tolerance
from billing_monitor.paypal import LIVE_URL, SANDBOX_URL
from billing_monitor.rules.registry import (
    DEFAULT_PAYPAL_MAX_CALLS,
    DEFAULT_PAYPAL_MAX_SECONDS,
    DEFAULT_PAYPAL_SEARCH_DAYS,
    DEFAULT_STALE_AFTER_DAYS,
)
from billing_monitor.source import DEFAULT_SOURCE_SCHEMA, SOURCE_SCHEMA_ENV, quote_ident

CACHE_SECONDS = 300


def resolve(name: str, *, env: Mapping[str, str] = os.environ) -> str | None:
    """The value of secret setting `name` from X, X_SECRET or X_PARAMETER; None when none is set."""
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
            except (ValueError, KeyError, TypeError):
                raise MonitorError(f"secret for {name} has no key {key or 'value'!r}") from None
        return raw
    if env.get(f"{name}_PARAMETER"):
        from aws_lambda_powertools.utilities import parameters

        return parameters.get_parameter(env[f"{name}_PARAMETER"], decrypt=True, max_age=CACHE_SECONDS)
    return None


def is_secret(field: FieldInfo) -> bool:
    return SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))


def variable_of(name: str, field: FieldInfo) -> str:
    return field.alias or name


class EnvironmentSource(PydanticBaseSettingsSource):
    """Plain settings from the environment; secret ones from X, X_SECRET or X_PARAMETER."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str] | None = None):
        super().__init__(settings_cls)
        self.env = os.environ if env is None else env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = variable_of(field_name, field)
        value = resolve(variable, env=self.env) if is_secret(field) else self.env.get(variable)
        return (value if value not in ("", None) else None), variable, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            value, variable, _ = self.get_field_value(field, name)
            if value is not None:
                values[variable] = value
        return values


class FunctionSettings(BaseSettings):
    """What both functions read: the databases, the tolerance, Slack, HTTP back-off."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    dsn: SecretStr = Field(alias="BILLING_MONITOR_DSN", description="the production database (read-only role)")
    store_dsn: SecretStr | None = Field(None, alias="BILLING_MONITOR_STORE_DSN",
                                        description="the monitor's own schema (default: the DSN above)")
    tolerance: Decimal = Field(Decimal("1.00"), alias="BILLING_MONITOR_TOLERANCE")
    source_schema: str = Field(DEFAULT_SOURCE_SCHEMA, alias=SOURCE_SCHEMA_ENV,
                               description="the schema of the four relations the scan reads and the cancel marks"
                                           " (tables, or views: docs/owner-tables.md)")
    slack_webhook_url: SecretStr | None = Field(None, alias="SLACK_WEBHOOK_URL")
    http_backoff_s: float = Field(0.5, alias="BILLING_MONITOR_HTTP_BACKOFF", ge=0)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, EnvironmentSource(settings_cls))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None):
        """The settings from `env` (default: the process environment). Raises MonitorError naming the problem."""
        try:
            return cls.model_validate(EnvironmentSource(cls, env)())
        except ValidationError as exc:
            raise MonitorError(describe_settings_error(cls, exc)) from None

    @field_validator("tolerance", mode="before")
    @classmethod
    def _tolerance(cls, value):
        return parse_tolerance(value)       # MonitorError: "tolerance must be a non-negative number, got ..."

    @field_validator("source_schema", mode="before")
    @classmethod
    def _source_schema(cls, value):
        quote_ident(str(value))            # MonitorError: a name the queries cannot carry
        return value

    @model_validator(mode="after")
    def _store_defaults_to_production(self):
        if self.store_dsn is None:
            object.__setattr__(self, "store_dsn", self.dsn)
        return self

    # the secret values, for the code that needs them (never logged)
    @property
    def dsn_value(self) -> str:
        return self.dsn.get_secret_value()

    @property
    def store_dsn_value(self) -> str:
        return (self.store_dsn or self.dsn).get_secret_value()

    @property
    def slack_webhook(self) -> str | None:
        return self.slack_webhook_url.get_secret_value() if self.slack_webhook_url else None


class AutoCancelSettings(FunctionSettings):
    """Auto-cancel (prevention.md), the same four settings wherever it may queue an approval: the scheduled scan
    and PayPal's webhooks. Off, or queue an approval for every unambiguous disconnect on the approvals queue."""

    auto_cancel: Literal["off", "unambiguous"] = Field(OFF, alias="BILLING_MONITOR_AUTO_CANCEL")
    auto_cancel_max_per_run: int = Field(DEFAULT_MAX_PER_RUN, alias="BILLING_MONITOR_AUTO_CANCEL_MAX_PER_RUN", ge=0)
    auto_cancel_grace_hours: float = Field(DEFAULT_GRACE_HOURS, alias="BILLING_MONITOR_AUTO_CANCEL_GRACE_HOURS", ge=0)
    approvals_queue_url: str | None = Field(None, alias="BILLING_MONITOR_APPROVALS_QUEUE_URL")

    @model_validator(mode="after")
    def _auto_cancel_has_a_queue(self):
        if self.auto_cancel == UNAMBIGUOUS and not self.approvals_queue_url:
            raise ValueError("BILLING_MONITOR_AUTO_CANCEL=unambiguous needs BILLING_MONITOR_APPROVALS_QUEUE_URL (the"
                             " approvals queue it sends to)")
        return self


class ScanSettings(AutoCancelSettings):
    """The scheduled scan function (functions/scan). It reconciles with PayPal whenever the PayPal credentials
    are configured (paypal-reconciliation.md)."""

    topic_arn: str | None = Field(None, alias="FINDINGS_TOPIC_ARN")
    statement_timeout_s: float = Field(600, alias="BILLING_MONITOR_STATEMENT_TIMEOUT", gt=0)
    stale_after_days: int = Field(DEFAULT_STALE_AFTER_DAYS, alias="BILLING_MONITOR_STALE_AFTER_DAYS", ge=1)
    paypal_client_id: SecretStr | None = Field(None, alias="PAYPAL_CLIENT_ID")
    paypal_client_secret: SecretStr | None = Field(None, alias="PAYPAL_CLIENT_SECRET")
    paypal_environment: Literal["live", "sandbox"] | None = Field(None, alias="PAYPAL_ENVIRONMENT")
    paypal_base_url_override: str | None = Field(None, alias="PAYPAL_BASE_URL")
    paypal_search_days: int = Field(DEFAULT_PAYPAL_SEARCH_DAYS, alias="PAYPAL_SEARCH_DAYS", ge=1)
    paypal_max_seconds: float = Field(DEFAULT_PAYPAL_MAX_SECONDS, alias="PAYPAL_MAX_SECONDS", gt=0)
    paypal_max_calls: int = Field(DEFAULT_PAYPAL_MAX_CALLS, alias="PAYPAL_MAX_CALLS", ge=1)
    # The Slack app's signing secret: the buttons' macs (slack-actions.md). Not configured: no buttons.
    slack_signing_secret: SecretStr | None = Field(None, alias="SLACK_SIGNING_SECRET")

    @property
    def button_mac(self):
        """What makes the Slack message's buttons, or None (no signing secret: the commands alone)."""
        if self.slack_signing_secret is None:
            return None
        from billing_monitor.slack.buttons import ButtonMac

        return ButtonMac(self.slack_signing_secret.get_secret_value())

    @model_validator(mode="after")
    def _paypal_complete(self):
        given = [self.paypal_client_id is not None, self.paypal_client_secret is not None]
        if any(given) and not all(given):
            raise ValueError("PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET: set both, or neither (no reconciliation)")
        if all(given) and not (self.paypal_environment or self.paypal_base_url_override):
            raise ValueError("PAYPAL_ENVIRONMENT is not configured (live or sandbox; or PAYPAL_BASE_URL)")
        return self

    def paypal_options(self, remaining_s=None):
        """The reconciliation's options, or None when PayPal is not configured."""
        if self.paypal_client_id is None or self.paypal_client_secret is None:
            return None
        from billing_monitor.reconcile import PayPalOptions

        base_url = self.paypal_base_url_override or CancelSettings.BASE_URLS[self.paypal_environment]
        return PayPalOptions(base_url, self.paypal_client_id.get_secret_value(),
                             self.paypal_client_secret.get_secret_value(),
                             environment="custom" if self.paypal_base_url_override else self.paypal_environment,
                             search_days=self.paypal_search_days, max_seconds=self.paypal_max_seconds,
                             max_calls=self.paypal_max_calls, backoff_s=self.http_backoff_s, remaining_s=remaining_s)


class CancelSettings(FunctionSettings):
    """The approvals function (functions/cancel)."""

    approver_arns: tuple[str, ...] = Field(alias="BILLING_MONITOR_APPROVER_ARNS",
                                           description="IAM users/roles whose messages the function accepts")
    # No default: live or sandbox is a decision (template.yaml's PayPalEnvironment has none either); only a run
    # against another PayPal (PAYPAL_BASE_URL: a local fake) may leave it out.
    paypal_environment: Literal["live", "sandbox"] | None = Field(None, alias="PAYPAL_ENVIRONMENT")
    paypal_base_url_override: str | None = Field(None, alias="PAYPAL_BASE_URL")
    paypal_client_id: SecretStr = Field(alias="PAYPAL_CLIENT_ID")
    paypal_client_secret: SecretStr = Field(alias="PAYPAL_CLIENT_SECRET")
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE")

    BASE_URLS: ClassVar[dict[str, str]] = {"live": LIVE_URL, "sandbox": SANDBOX_URL}

    @field_validator("approver_arns", mode="before")
    @classmethod
    def _approver_arns(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        arns = tuple(a.strip() for a in value if a.strip())
        if not arns:
            raise ValueError("is empty: nobody could approve a cancellation")
        for arn in arns:
            parse_principal_arn(arn)          # ApproverConfigError (a ValueError) names the bad one
        return arns

    @model_validator(mode="after")
    def _paypal_environment_chosen(self):
        if self.paypal_environment is None and not self.paypal_base_url_override:
            raise ValueError("PAYPAL_ENVIRONMENT is not configured (set it to live, or to sandbox for PayPal's"
                             " test environment)")
        return self

    @property
    def paypal_base_url(self) -> str:
        return self.paypal_base_url_override or self.BASE_URLS[self.paypal_environment]


SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


class SlackActionsSettings(FunctionSettings):
    """The Slack clicks function (functions/slack_actions): Slack's signing secret, who may click, where the
    approvals go. It reads the monitor's schema (the saved findings, acknowledgements) with the store DSN."""

    slack_signing_secret: SecretStr = Field(alias="SLACK_SIGNING_SECRET",
                                            description="the Slack app's signing secret (Basic Information)")
    approver_ids: tuple[str, ...] = Field(alias="SLACK_APPROVER_IDS",
                                          description="Slack user ids allowed to click, comma-separated")
    approvals_queue_url: str = Field(alias="BILLING_MONITOR_APPROVALS_QUEUE_URL")
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE")

    @field_validator("approver_ids", mode="before")
    @classmethod
    def _approver_ids(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        ids = tuple(v.strip() for v in value if v.strip())
        if not ids:
            raise ValueError("is empty: nobody could act from Slack")
        bad = [v for v in ids if not SLACK_USER_ID.match(v)]
        if bad:
            raise ValueError(f"is not a list of Slack user ids (like U012AB3CDE): {', '.join(bad[:3])}")
        return ids

    @property
    def signing_secret(self) -> str:
        return self.slack_signing_secret.get_secret_value()


class PayPalWebhookSettings(AutoCancelSettings):
    """PayPal's webhooks and the hourly net (functions/paypal_webhook, paypal-webhooks.md): the webhook id its
    deliveries are verified against, PayPal's credentials (verification, the search, the running total), the
    Slack buttons' key, and auto-cancel (prevention.md: a charge on an unambiguous disconnect queues its approval)."""

    webhook_id: str | None = Field(None, alias="PAYPAL_WEBHOOK_ID",
                                   description="the id PayPal gave the webhook when its URL was registered")
    paypal_client_id: SecretStr | None = Field(None, alias="PAYPAL_CLIENT_ID")
    paypal_client_secret: SecretStr | None = Field(None, alias="PAYPAL_CLIENT_SECRET")
    paypal_environment: Literal["live", "sandbox"] | None = Field(None, alias="PAYPAL_ENVIRONMENT")
    paypal_base_url_override: str | None = Field(None, alias="PAYPAL_BASE_URL")
    slack_signing_secret: SecretStr | None = Field(None, alias="SLACK_SIGNING_SECRET")

    @field_validator("webhook_id", mode="before")
    @classmethod
    def _webhook_id(cls, value):
        if value is not None and not re.fullmatch(r"[A-Za-z0-9]{1,50}", str(value).strip()):
            raise ValueError("is not a PayPal webhook id (letters and digits, like 1JE4291016473214C)")
        return None if value is None else str(value).strip()

    @model_validator(mode="after")
    def _paypal_complete(self):
        if self.paypal_client_id is None or self.paypal_client_secret is None:
            raise ValueError("PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET are not configured: webhooks cannot be"
                             " verified without PayPal")
        if not (self.paypal_environment or self.paypal_base_url_override):
            raise ValueError("PAYPAL_ENVIRONMENT is not configured (live or sandbox; or PAYPAL_BASE_URL)")
        return self

    @property
    def paypal_base_url(self) -> str:
        return self.paypal_base_url_override or CancelSettings.BASE_URLS[self.paypal_environment]

    @property
    def button_mac(self):
        if self.slack_signing_secret is None:
            return None
        from billing_monitor.slack.buttons import ButtonMac

        return ButtonMac(self.slack_signing_secret.get_secret_value())

    def paypal_client(self):
        from billing_monitor.paypal import PayPalClient

        return PayPalClient(self.paypal_base_url, self.paypal_client_id.get_secret_value(),
                            self.paypal_client_secret.get_secret_value(), backoff_s=self.http_backoff_s)


def describe_settings_error(model: type[BaseSettings], exc: ValidationError) -> str:
    """One sentence per problem, naming the variable; a secret's value is never repeated."""
    secret_variables = {variable_of(n, f) for n, f in model.model_fields.items() if is_secret(f)}
    problems = []
    for error in exc.errors(include_url=False):
        variable = str(error["loc"][0]) if error["loc"] else model.__name__
        if not error["loc"]:                  # a check across settings: its message names the variables
            problems.append(error["msg"].removeprefix("Value error, "))
        elif error["type"] == "missing":
            hint = f"set {variable}, {variable}_SECRET or {variable}_PARAMETER" if variable in secret_variables \
                else f"set {variable}"
            problems.append(f"{variable} is not configured ({hint})")
        elif variable in secret_variables:
            problems.append(f"{variable} is invalid")
        elif error["type"] in ("float_parsing", "int_parsing", "decimal_parsing"):
            problems.append(f"{variable} must be a number, got {error['input']!r}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{variable} {message}" if message.startswith("is ") else
                            f"{variable}: {message}, got {error['input']!r}")
    return "; ".join(problems)
