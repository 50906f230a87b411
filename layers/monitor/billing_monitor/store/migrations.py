"""The monitor's own schema (billing_monitor): its numbered migrations, and opening it for writing."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import psycopg
from psycopg import errors as pgerrors

from billing_monitor import db
from billing_monitor.errors import MonitorError

SCHEMA = "billing_monitor"
MIGRATION_LOCK = 0x626D0001   # pg_advisory_xact_lock keys: one for migrations (scans.py has the other)


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("billing_monitor.store")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql") and entry.name[:3].isdigit():
            found.append((int(entry.name[:3]), entry.name, entry.read_text()))
    return sorted(found)


def apply_migrations(conn: psycopg.Connection) -> list[str]:
    """Apply the migrations not applied yet, in the caller's transaction. Returns the names applied.

    Serialised by an advisory lock: running it twice is a no-op, and two at once take turns.
    """
    conn.execute("select pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
    # Created only when missing: a writer given the schema (docs/deploy.md) needs no CREATE on the database,
    # and `create schema if not exists` asks for that privilege even when the schema is there.
    if conn.execute("select to_regnamespace(%s) is null", (SCHEMA,)).fetchone()[0]:
        conn.execute(f"create schema {SCHEMA}")
    conn.execute(f"create table if not exists {SCHEMA}.schema_migrations ("
                 " version int primary key, name text not null, applied_at timestamptz not null default now())")
    applied = {v for (v,) in conn.execute(f"select version from {SCHEMA}.schema_migrations")}
    done = []
    for version, name, sql in _migrations():
        if version in applied:
            continue
        conn.execute(sql)
        conn.execute(f"insert into {SCHEMA}.schema_migrations (version, name) values (%s, %s)", (version, name))
        done.append(name)
    return done


@contextmanager
def open_store(dsn: str, application_name: str = "billing-monitor-store", *,
               timeout_s: float | None = None) -> Iterator[psycopg.Connection]:
    """The monitor's own schema, migrated, in one read-write transaction (committed on success). `timeout_s`: how
    long connecting and each statement may take (waiting for another's migration lock included), for a caller
    that must answer quickly (a Slack click); else the defaults."""
    with db.connect(dsn, read_only=False, application_name=application_name, **_timeouts(timeout_s)) as conn:
        apply_migrations(conn)
        yield conn


@contextmanager
def read_store(dsn: str, application_name: str = "billing-monitor-cli", *,
               timeout_s: float | None = None) -> Iterator[psycopg.Connection | None]:
    """The monitor's schema for reading only (history, actions, approve): no migration, no write, so the reader
    role does when it may read the schema (docs/deploy.md grants it). Yields None when there is no schema yet;
    a role that may not read it gets a MonitorError saying which role to use."""
    with db.connect(dsn, read_only=True, application_name=application_name, **_timeouts(timeout_s)) as conn:
        user, present, usable = conn.execute(
            "select current_user, to_regnamespace(%s) is not null,"
            " to_regnamespace(%s) is not null and has_schema_privilege(%s, 'USAGE')", (SCHEMA, SCHEMA, SCHEMA)).fetchone()
        if not present:
            yield None
            return
        if not usable:
            raise MonitorError(_use_another_role(user))
        try:
            yield conn
        except pgerrors.InsufficientPrivilege:
            raise MonitorError(_use_another_role(user)) from None


def _timeouts(timeout_s: float | None) -> dict:
    if timeout_s is None:
        return {}
    return {"statement_timeout_s": timeout_s, "connect_timeout_s": max(2, math.ceil(timeout_s))}


def has_table(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (f"{SCHEMA}.{table}",)).fetchone()[0]


def _use_another_role(user: str) -> str:
    return (f"role {user} may not read the monitor's schema {SCHEMA}: use the writer's DSN (--store-dsn or"
            f" BILLING_MONITOR_STORE_DSN, the monitor_writer role), or let the reader read it (docs/deploy.md, step 1:"
            f" grant usage on schema {SCHEMA} to {user}; grant select on all tables in schema {SCHEMA} to {user})")
