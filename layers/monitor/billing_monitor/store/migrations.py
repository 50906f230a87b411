"""The monitor's own schema (billing_monitor): its numbered migrations, and opening it for writing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import psycopg

from billing_monitor import db

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
    conn.execute(f"create schema if not exists {SCHEMA}")
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
def open_store(dsn: str, application_name: str = "billing-monitor-store") -> Iterator[psycopg.Connection]:
    """The monitor's own schema, migrated, in one read-write transaction (committed on success)."""
    with db.connect(dsn, read_only=False, application_name=application_name) as conn:
        apply_migrations(conn)
        yield conn
