"""Connections to the production database: read-only, pooler-safe, errors a person can read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import conninfo
from psycopg import errors as pgerrors

from billing_monitor.errors import MonitorError

# The columns the scan reads, per production table (production_schema.sql).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "contacts": ("id", "email", "first_name", "last_name"),
    "subscriptions": (
        "id", "contact_id", "kajabi_subscription_id", "paypal_subscription_id", "status", "amount",
        "currency", "billing_cycle", "canceled_at", "ended_at", "updated_at",
    ),
    "transactions": (
        "id", "contact_id", "subscription_id", "source", "amount", "currency", "status",
        "transaction_date", "created_at",
    ),
}


def describe_target(dsn: str) -> str:
    """'host H, database D' for messages; never the password."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured database"
    host = parts.get("host") or "localhost"
    port = parts.get("port")
    where = f"{host}:{port}" if port else str(host)
    return f"host {where}" + (f", database {parts['dbname']}" if parts.get("dbname") else "")


def redact(text: str, dsn: str | None) -> str:
    """Remove the password (and a DSN's userinfo) from a message before anyone sees it."""
    if dsn:
        try:
            password = conninfo.conninfo_to_dict(dsn).get("password")
        except psycopg.ProgrammingError:
            password = None
        if password:
            text = text.replace(str(password), "***")
    return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else type(exc).__name__


@contextmanager
def connect(dsn: str, *, read_only: bool, statement_timeout_s: float = 600,
            work_mem: str = "64MB", application_name: str = "billing-monitor") -> Iterator[psycopg.Connection]:
    """One transaction on the database, committed on success, rolled back on any error.

    prepare_threshold=None: Supabase's transaction pooler (port 6543) cannot keep prepared statements.
    Settings are SET LOCAL (set_config(..., true)) so they never leak to a pooled session.
    """
    if not dsn:
        raise MonitorError("no database configured: pass --dsn or set BILLING_MONITOR_DSN")
    try:
        conn = psycopg.connect(dsn, prepare_threshold=None, connect_timeout=10,
                               application_name=application_name)
    except psycopg.ProgrammingError as exc:
        raise MonitorError(f"invalid database DSN: {redact(_first_line(exc), dsn)}") from None
    except psycopg.OperationalError as exc:
        raise MonitorError(f"cannot connect to {describe_target(dsn)}: {redact(_first_line(exc), dsn)}") from None
    try:
        # A scan reads one snapshot for every check; a writer works in READ COMMITTED so that what it
        # does after taking an advisory lock sees what the previous holder committed.
        conn.isolation_level = (psycopg.IsolationLevel.REPEATABLE_READ if read_only
                                else psycopg.IsolationLevel.READ_COMMITTED)
        conn.read_only = read_only
        with conn.transaction():
            conn.execute(
                # ISO dates whatever the server's default: times are read back in Python, and the scan
                # sends the ended subscriptions' end times back to the server as text.
                "select set_config('statement_timeout', %s, true), set_config('TimeZone', 'UTC', true),"
                " set_config('DateStyle', 'ISO, YMD', true),"
                " set_config('work_mem', %s, true),"
                # The checks are set work over whole tables with no indexes to use: plan hash joins
                # (CTE row estimates are poor, and a nested loop over them can run for minutes) and
                # let the big scans go parallel even though they return many rows to the leader.
                " set_config('enable_nestloop', 'off', true), set_config('parallel_tuple_cost', '0.01', true),"
                # JIT yes, LLVM's optimisation and inlining no: on a big database the checks' plans cost
                # enough to trigger them, and they took seconds longer than the query they were for
                # (measured on PostgreSQL 15 with LLVM: the transaction pass 6.3 s with them, 2.6 s without).
                " set_config('jit_optimize_above_cost', '-1', true), set_config('jit_inline_above_cost', '-1', true)",
                (f"{int(statement_timeout_s * 1000)}ms", work_mem),
            )
            yield conn
    except pgerrors.QueryCanceled:
        raise MonitorError(
            f"a query ran longer than the statement timeout ({statement_timeout_s:g} s) and was canceled"
        ) from None
    except pgerrors.InsufficientPrivilege as exc:
        raise MonitorError(f"permission denied on {describe_target(dsn)}: {redact(_first_line(exc), dsn)}") from None
    except psycopg.OperationalError as exc:
        raise MonitorError(f"lost the connection to {describe_target(dsn)}: {redact(_first_line(exc), dsn)}") from None
    except psycopg.Error as exc:
        raise MonitorError(f"database error on {describe_target(dsn)}: {redact(_first_line(exc), dsn)}") from None
    finally:
        conn.close()


def check_production_tables(conn: psycopg.Connection) -> None:
    """Name the first missing table or column, before any check runs."""
    rows = conn.execute(
        "select table_name, column_name from information_schema.columns"
        " where table_schema = 'public' and table_name = any(%s)",
        (list(REQUIRED_COLUMNS),),
    ).fetchall()
    present: dict[str, set[str]] = {}
    for table, column in rows:
        present.setdefault(table, set()).add(column)
    for table, columns in REQUIRED_COLUMNS.items():
        if table not in present:
            raise MonitorError(f"table public.{table} missing (or not readable by this role)")
        for column in columns:
            if column not in present[table]:
                raise MonitorError(f"column public.{table}.{column} missing")
