"""Fixtures the function tests share: AWS settings for moto, the demo database, the fake Slack."""

from __future__ import annotations

import pytest

from billing_monitor.demo import load_demo_data
from tests.support.fake_slack import FakeSlack


@pytest.fixture
def aws_env(monkeypatch):
    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_METRICS_NAMESPACE": "BillingMonitorTest", "POWERTOOLS_SERVICE_NAME": "billing-monitor",
        "POWERTOOLS_TRACE_DISABLED": "true", "BILLING_MONITOR_HTTP_BACKOFF": "0.01",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def demo_db(fresh_database):
    dsn = fresh_database()
    load_demo_data(dsn, create_tables=False)
    return dsn


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake
