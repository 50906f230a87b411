"""A database set up the way Supabase sets one up (issue 17), for the tests that must meet it as an owner would.

- The four tables belong to `supabase_owner`, Supabase's `postgres`: it may create roles and databases and owns
  what it creates, but it is no superuser (and has no BYPASSRLS).
- Supabase's API roles exist (`anon`, `authenticated`, `service_role`) and have every privilege on the tables.
- Row level security is on for every table of `public`, with the policies Supabase's dashboard suggests:
  reading for `authenticated`, everything for `service_role`. A role with SELECT and no policy reads no row.

The roles are the server's (PostgreSQL roles are cluster-wide): made once, kept for the session. Each database is
made for one test and dropped after it, with the runbook's roles when a test made them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
from psycopg import conninfo, sql

from billing_monitor.demo import load_demo_data, load_schema
from billing_monitor.source import RELATIONS as SOURCE_RELATIONS

OWNER = "supabase_owner"
OWNER_PASSWORD = "owner-pw"
API_ROLES = ("anon", "authenticated", "service_role")


def ensure_roles(server_dsn: str) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for role in API_ROLES:
            if not conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("create role {} nologin noinherit").format(sql.Identifier(role)))
        if not conn.execute("select 1 from pg_roles where rolname = %s", (OWNER,)).fetchone():
            conn.execute(sql.SQL("create role {} login createrole createdb password {}").format(
                sql.Identifier(OWNER), sql.Literal(OWNER_PASSWORD)))


@dataclass
class SupabaseDB:
    admin: str      # a superuser's DSN, for what only the test itself does (break a policy, empty a table)
    owner: str      # Supabase's postgres: owns the tables, no superuser
    name: str

    def run(self, statement: str, params=None, *, as_owner: bool = True):
        with psycopg.connect(self.owner if as_owner else self.admin, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else None


def new_database(server_dsn: str, prefix: str = "bm_supabase") -> tuple[str, str, str]:
    """(name, admin DSN, owner DSN) of a new empty database that Supabase's postgres owns, with its `public`."""
    ensure_roles(server_dsn)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} owner {} template template0").format(
            sql.Identifier(name), sql.Identifier(OWNER)))
    admin = conninfo.make_conninfo(server_dsn, dbname=name)
    owner = conninfo.make_conninfo(server_dsn, dbname=name, user=OWNER, password=OWNER_PASSWORD)
    with psycopg.connect(admin, autocommit=True) as conn:
        # PostgreSQL 14 and older: public is the bootstrap superuser's; Supabase's postgres owns it
        conn.execute(sql.SQL("alter schema public owner to {}").format(sql.Identifier(OWNER)))
    return name, admin, owner


def supabase_rls(conn: psycopg.Connection, tables=SOURCE_RELATIONS) -> None:
    """As the tables' owner: Supabase's API roles may use them, row level security on, with the policies
    Supabase's dashboard suggests (reading for `authenticated`, everything for `service_role`) and no other."""
    assert not conn.execute("select rolsuper or rolbypassrls from pg_roles where rolname = current_user").fetchone()[0]
    conn.execute(sql.SQL("grant usage on schema public to {}").format(sql.SQL(", ").join(map(sql.Identifier, API_ROLES))))
    for table in tables:
        ident = sql.Identifier("public", table)
        conn.execute(sql.SQL("grant all on {} to anon, authenticated, service_role").format(ident))
        conn.execute(sql.SQL("alter table {} enable row level security").format(ident))
        conn.execute(sql.SQL('create policy "Enable read access for authenticated users" on {}'
                             " for select to authenticated using (true)").format(ident))
        conn.execute(sql.SQL('create policy "Service role has full access" on {}'
                             " for all to service_role using (true) with check (true)").format(ident))


def make_supabase_db(server_dsn: str, *, demo_data: bool = True) -> SupabaseDB:
    """A new database as Supabase has it: the contract layout's tables, holding the worked example (the first
    clean-up) unless told not to."""
    name, admin, owner = new_database(server_dsn)
    with psycopg.connect(owner, autocommit=True) as conn:
        load_schema(conn)
        supabase_rls(conn)
    if demo_data:
        load_demo_data(owner, create_tables=False)
    return SupabaseDB(admin=admin, owner=owner, name=name)


def drop_supabase_db(server_dsn: str, db: SupabaseDB) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db.name)))
