"""Settings: plain variables, Secrets Manager (plain or JSON) and SSM, through Powertools Parameters."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from billing_monitor.errors import MonitorError
from billing_monitor.settings import CancelSettings, ScanSettings, resolve


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def test_plain_variable_wins():
    assert resolve("X", env={"X": "plain", "X_SECRET": "ignored"}) == "plain"


def test_secret_plain_and_json(aws):
    sm = boto3.client("secretsmanager")
    plain = sm.create_secret(Name="dsn", SecretString="postgresql://a@b/c")["ARN"]
    as_json = sm.create_secret(Name="paypal", SecretString=json.dumps({"client_id": "id-1", "value": "v"}))["ARN"]
    assert resolve("DSN", env={"DSN_SECRET": plain}) == "postgresql://a@b/c"
    assert resolve("PAYPAL_CLIENT_ID", env={"PAYPAL_CLIENT_ID_SECRET": as_json,
                                             "PAYPAL_CLIENT_ID_SECRET_KEY": "client_id"}) == "id-1"
    assert resolve("HOOK", env={"HOOK_SECRET": as_json}) == "v"
    with pytest.raises(MonitorError, match="has no key 'client_secret'"):
        resolve("S", env={"S_SECRET": as_json, "S_SECRET_KEY": "client_secret"})


def test_ssm_parameter_decrypted(aws):
    boto3.client("ssm").put_parameter(Name="/billing-monitor/dsn", Value="postgresql://x@y/z", Type="SecureString")
    assert resolve("BILLING_MONITOR_DSN", env={"BILLING_MONITOR_DSN_PARAMETER": "/billing-monitor/dsn"}) == (
        "postgresql://x@y/z")


def test_missing_required_setting_names_all_three_ways():
    with pytest.raises(MonitorError, match=r"BILLING_MONITOR_DSN is not configured .*_SECRET or .*_PARAMETER"):
        ScanSettings.from_env(env={})


def test_settings_never_show_secrets_in_their_repr():
    settings = ScanSettings.from_env(env={"BILLING_MONITOR_DSN": "postgresql://u:hunter2@h/d",
                                          "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/SECRET"})
    assert "hunter2" not in repr(settings)
    assert "SECRET" not in repr(settings)
    assert settings.store_dsn == settings.dsn
    assert str(settings.tolerance) == "1.00"


def test_bad_numbers_are_named():
    with pytest.raises(MonitorError, match="BILLING_MONITOR_STATEMENT_TIMEOUT must be a number"):
        ScanSettings.from_env(env={"BILLING_MONITOR_DSN": "x", "BILLING_MONITOR_STATEMENT_TIMEOUT": "soon"})
    with pytest.raises(MonitorError, match="tolerance must be a non-negative number"):
        ScanSettings.from_env(env={"BILLING_MONITOR_DSN": "x", "BILLING_MONITOR_TOLERANCE": "-1"})


OWNER, ROLE = "arn:aws:iam::123456789012:user/owner", "arn:aws:iam::123456789012:role/team/approver"
CANCEL_ENV = {"BILLING_MONITOR_DSN": "postgresql://u:hunter2@h/d", "BILLING_MONITOR_APPROVER_ARNS": f" {OWNER} ,{ROLE}",
              "PAYPAL_CLIENT_ID": "id-1", "PAYPAL_CLIENT_SECRET": "pp-secret", "IDEMPOTENCY_TABLE": "idem",
              "PAYPAL_ENVIRONMENT": "sandbox"}


def test_cancel_settings_read_approvers_and_paypal():
    settings = CancelSettings.from_env(env=CANCEL_ENV)
    assert settings.approver_arns == (OWNER, ROLE)
    assert settings.paypal_base_url == "https://api-m.sandbox.paypal.com"
    assert CancelSettings.from_env(env={**CANCEL_ENV, "PAYPAL_ENVIRONMENT": "live"}).paypal_base_url == (
        "https://api-m.paypal.com")
    assert CancelSettings.from_env(env={**CANCEL_ENV, "PAYPAL_BASE_URL": "http://127.0.0.1:9"}).paypal_base_url == (
        "http://127.0.0.1:9")
    shown = repr(settings)
    assert "hunter2" not in shown
    assert "pp-secret" not in shown


def test_paypal_environment_has_no_default():
    """Live or sandbox is chosen, never assumed; a run against another PayPal (a local fake) may leave it out."""
    without = {k: v for k, v in CANCEL_ENV.items() if k != "PAYPAL_ENVIRONMENT"}
    for unset in (without, {**without, "PAYPAL_ENVIRONMENT": ""}):
        with pytest.raises(MonitorError) as raised:
            CancelSettings.from_env(env=unset)
        assert str(raised.value) == ("PAYPAL_ENVIRONMENT is not configured (set it to live, or to sandbox for PayPal's"
                                     " test environment)")
    local = CancelSettings.from_env(env={**without, "PAYPAL_BASE_URL": "http://127.0.0.1:9"})
    assert local.paypal_base_url == "http://127.0.0.1:9"


def test_cancel_settings_name_every_problem_at_once():
    with pytest.raises(MonitorError) as raised:
        CancelSettings.from_env(env={**CANCEL_ENV, "BILLING_MONITOR_APPROVER_ARNS": " , ", "PAYPAL_ENVIRONMENT": "prod",
                                     "PAYPAL_CLIENT_SECRET": ""})
    message = str(raised.value)
    assert "BILLING_MONITOR_APPROVER_ARNS is empty: nobody could approve a cancellation" in message
    assert "PAYPAL_ENVIRONMENT" in message
    assert "'prod'" in message
    assert "PAYPAL_CLIENT_SECRET is not configured" in message


def test_an_approver_that_is_not_a_user_or_role_arn_is_named():
    with pytest.raises(MonitorError, match=r"not an IAM user or role ARN: 'owner@example\.com'"):
        CancelSettings.from_env(env={**CANCEL_ENV, "BILLING_MONITOR_APPROVER_ARNS": f"{OWNER},owner@example.com"})


def test_auto_cancel_settings_default_off_and_need_the_queue_when_on():
    base = {"BILLING_MONITOR_DSN": "postgresql://r@h/d"}
    settings = ScanSettings.from_env(env=base)
    assert (settings.auto_cancel, settings.auto_cancel_max_per_run, settings.auto_cancel_grace_hours) == ("off", 5, 24)
    with pytest.raises(MonitorError, match=r"^BILLING_MONITOR_AUTO_CANCEL=unambiguous needs BILLING_MONITOR_APPROVALS_QUEUE_URL"):
        ScanSettings.from_env(env={**base, "BILLING_MONITOR_AUTO_CANCEL": "unambiguous"})
    with pytest.raises(MonitorError, match="BILLING_MONITOR_AUTO_CANCEL: Input should be 'off' or 'unambiguous'"):
        ScanSettings.from_env(env={**base, "BILLING_MONITOR_AUTO_CANCEL": "all"})
    on = ScanSettings.from_env(env={**base, "BILLING_MONITOR_AUTO_CANCEL": "unambiguous",
                                    "BILLING_MONITOR_APPROVALS_QUEUE_URL": "https://sqs/q",
                                    "BILLING_MONITOR_AUTO_CANCEL_MAX_PER_RUN": "2", "BILLING_MONITOR_AUTO_CANCEL_GRACE_HOURS": "6"})
    assert (on.auto_cancel, on.auto_cancel_max_per_run, on.auto_cancel_grace_hours) == ("unambiguous", 2, 6)
