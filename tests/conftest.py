"""One real PostgreSQL for the session: embedded, or BILLING_MONITOR_TEST_DSN (e.g. a Postgres 15)."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from psycopg import conninfo, sql

from billing_monitor.demo import embedded_postgres, load_schema
from tests.support.production import ProductionDB

TEMPLATE = "billing_monitor_test_template"


def dsn_for(server_dsn: str, dbname: str) -> str:
    return conninfo.make_conninfo(server_dsn, dbname=dbname)


@pytest.fixture(scope="session")
def pg_server():
    external = os.environ.get("BILLING_MONITOR_TEST_DSN")
    if external:
        yield external
        return
    with embedded_postgres() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def template_db(pg_server):
    """An empty copy of the production schema that each test database is cloned from."""
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(TEMPLATE)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(TEMPLATE)))
    with psycopg.connect(dsn_for(pg_server, TEMPLATE), autocommit=True) as conn:
        load_schema(conn)
    return TEMPLATE


@pytest.fixture
def fresh_database(pg_server, template_db):
    """Factory: a new database holding the empty production tables; dropped after the test."""
    made = []

    def make() -> str:
        name = f"bm_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template_db)))
        made.append(name)
        return dsn_for(pg_server, name)

    yield make
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def prod(fresh_database) -> ProductionDB:
    return ProductionDB(fresh_database())
