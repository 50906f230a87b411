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


RUNBOOK_PASSWORDS = {"monitor_reader": "reader-pw", "monitor_writer": "writer-pw"}


def as_role(dsn: str, role: str, password: str | None = None) -> str:
    from psycopg import conninfo

    return conninfo.make_conninfo(dsn, user=role, password=password or RUNBOOK_PASSWORDS[role])


def drop_roles(admin_dsn: str, *roles: str) -> None:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for role in roles:
            if conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone():
                conn.execute(f'drop owned by "{role}" cascade')
                conn.execute(f'drop role "{role}"')


@pytest.fixture
def runbook_roles(demo_db):
    """monitor_reader and monitor_writer made by docs/deploy.md's SQL, as written, on the demo database.
    Yields their DSNs (and the admin's); roles are the server's, so they are dropped after."""
    import psycopg

    from tests.support.runbook import role_sql

    drop_roles(demo_db, *RUNBOOK_PASSWORDS)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute(role_sql(RUNBOOK_PASSWORDS["monitor_reader"], RUNBOOK_PASSWORDS["monitor_writer"]))
    yield {"reader": as_role(demo_db, "monitor_reader"), "writer": as_role(demo_db, "monitor_writer"), "admin": demo_db}
    drop_roles(demo_db, *RUNBOOK_PASSWORDS)
