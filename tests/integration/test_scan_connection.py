"""The README's safety claim, asked of the server: the scan reads one snapshot and cannot write.

The database's own defaults are set to the opposite of what the scan needs (read-write, READ COMMITTED),
so these tests only pass when the scan's connection asks for read-only REPEATABLE READ itself.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pgerrors

from billing_monitor import db, scan
from billing_monitor.errors import MonitorError
from billing_monitor.rules import checks
from tests.support.production import ProductionDB, only

pytestmark = pytest.mark.integration


def set_database_defaults(prod: ProductionDB, *, isolation: str, read_only: bool) -> None:
    name = prod.execute("select current_database()")[0][0]
    prod.execute(f"alter database {name} set default_transaction_isolation = '{isolation}'")
    prod.execute(f"alter database {name} set default_transaction_read_only = {'on' if read_only else 'off'}")


def transaction_state(conn: psycopg.Connection) -> tuple[str, str]:
    """(isolation, read_only) of the transaction `conn` is in, as the server reports them."""
    return conn.execute("select current_setting('transaction_isolation'),"
                        " current_setting('transaction_read_only')").fetchone()


def try_to_write(conn: psycopg.Connection) -> Exception | None:
    """Insert a contact inside a savepoint; the error the server raised, or None if it wrote."""
    try:
        with conn.transaction():
            conn.execute("insert into public.contacts (email) values ('written.by.the.scan@example.com')")
    except psycopg.Error as exc:
        return exc
    return None


@pytest.fixture
def prod_read_write_default(prod):
    """A production database whose sessions default to read-write READ COMMITTED (checked here)."""
    set_database_defaults(prod, isolation="read committed", read_only=False)
    with psycopg.connect(prod.dsn) as conn:
        assert transaction_state(conn) == ("read committed", "off")
    return prod


def test_run_scan_transaction_is_read_only_repeatable_read(prod_read_write_default, monkeypatch):
    prod = prod_read_write_default
    seen = {}
    real_run_checks = scan.run_checks

    def spy(conn, tolerance, **options):
        seen["state"] = transaction_state(conn)
        seen["write"] = try_to_write(conn)
        return real_run_checks(conn, tolerance, **options)

    monkeypatch.setattr(scan, "run_checks", spy)
    scan.run_scan(prod.dsn)
    assert seen["state"] == ("repeatable read", "on")
    assert isinstance(seen["write"], pgerrors.ReadOnlySqlTransaction)
    assert prod.execute("select count(*) from public.contacts") == [(0,)]


def test_read_only_connect_refuses_a_write_whatever_the_database_default(prod_read_write_default):
    prod = prod_read_write_default
    seen = []

    def write_through_the_scan_connection():
        with db.connect(prod.dsn, read_only=True) as conn:
            seen.append(transaction_state(conn))
            conn.execute("insert into public.contacts (email) values ('x@example.com')")

    with pytest.raises(MonitorError, match="cannot execute INSERT in a read-only transaction"):
        write_through_the_scan_connection()
    assert seen == [("repeatable read", "on")]
    assert prod.execute("select count(*) from public.contacts") == [(0,)]


def test_writer_connection_is_read_committed_and_read_write_whatever_the_database_default(prod):
    # the store's writer relies on READ COMMITTED to see what the previous advisory-lock holder committed
    set_database_defaults(prod, isolation="serializable", read_only=True)
    with db.connect(prod.dsn, read_only=False) as conn:
        assert transaction_state(conn) == ("read committed", "off")
        assert try_to_write(conn) is None
    assert prod.execute("select count(*) from public.contacts") == [(1,)]


def test_a_charge_committed_while_the_scan_runs_is_not_half_seen(prod_read_write_default, monkeypatch):
    """The checks read one snapshot: a charge committed between the subscription pass and the
    transaction pass must not turn up in the second pass only."""
    prod = prod_read_write_default
    c = prod.contact()
    prod.kajabi(c, status="canceled", canceled_at="2024-03-16")
    prod.paypal(c)
    real_pass = checks.find_subscription_findings

    def then_a_charge_lands(conn, tolerance, *source):
        found = real_pass(conn, tolerance, *source)
        prod.charge(c, date="2024-04-16")          # another session, committed
        return found

    monkeypatch.setattr(checks, "find_subscription_findings", then_a_charge_lands)
    f = only(prod.scan(), "billing_disconnect")
    assert f["charges"]["count"] == 0
    assert f["severity"] == "warning"
    monkeypatch.undo()
    assert only(prod.scan(), "billing_disconnect")["charges"]["count"] == 1   # the next scan sees it
