"""The kajabi-paypal-v2 layout (../shared/spec/import-layouts.md) in a real PostgreSQL, as an owner's Supabase
database has it: tables owned by a non-superuser role (Supabase's `postgres` is no superuser) that may create
roles, row level security on with policies for Supabase's API roles only, enums for the statuses, citext e-mails,
`monthly`/`annual`, no `ended_at`, refund-type transactions. The same rows as the contract layout's, written the
way that layout writes them; the views of docs/owner-tables.md's block map it back.

(A minimal Supabase-like owner of our own: the RLS issue's fixture, tests/support/supabase.py, replaces it when
the two meet.)
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from tests.support.runbook import role_sql
from tests.support.supabase import new_database, supabase_rls

PAGE = Path(__file__).resolve().parents[2] / "docs" / "owner-tables.md"
V2 = "kajabi-paypal-v2"
VIEWS_SCHEMA = "billing_source"            # where the page's block puts the views
RUNBOOK_PASSWORDS = {"monitor_reader": "reader-pw", "monitor_writer": "writer-pw"}

# The layout's own enum labels; the rows' own spellings (" Active ", "CANCELED", ...) are added to them, so
# that the same rows fit in the enums (an enum label may hold any text).
SUBSCRIPTION_STATUSES = ("active", "paused", "canceled", "expired", "trial")
TRANSACTION_STATUSES = ("pending", "completed", "failed", "refunded", "disputed")
TRANSACTION_TYPES = ("purchase", "subscription", "refund", "adjustment")


def layout_block(layout: str = V2) -> str:
    """The ```sql block right after `<!-- layout: NAME -->` in docs/owner-tables.md, as written."""
    found = re.search(rf"<!-- layout: {re.escape(layout)} -->\s*```sql\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert found, f"no <!-- layout: {layout} --> sql block in {PAGE}"
    return found.group(1)


def schema_sql(subscription_statuses, transaction_statuses) -> str:
    def labels(values):
        return ", ".join("'" + v.replace("'", "''") + "'" for v in dict.fromkeys(values))

    # contact_id nullable and no foreign keys: the contract's data holds orphans (null or dangling contact ids),
    # which the scan must still report; everything else as the layout has it.
    return f"""
create extension if not exists citext;
create type public.subscription_status as enum ({labels([*SUBSCRIPTION_STATUSES, *subscription_statuses])});
create type public.transaction_status as enum ({labels([*TRANSACTION_STATUSES, *transaction_statuses])});
create type public.transaction_type as enum ({labels(TRANSACTION_TYPES)});
create table public.contacts (
    id uuid primary key default gen_random_uuid(), email citext not null, first_name text, last_name text,
    kajabi_id text, kajabi_member_id text, paypal_email text, paypal_first_name text, paypal_last_name text,
    paypal_payer_id text, created_at timestamptz not null default now(), updated_at timestamptz not null default now());
create table public.products (
    id uuid primary key default gen_random_uuid(), name text not null, kajabi_offer_id text,
    created_at timestamptz not null default now(), updated_at timestamptz not null default now());
create table public.subscriptions (
    id uuid primary key default gen_random_uuid(), contact_id uuid, product_id uuid,
    kajabi_subscription_id text, paypal_subscription_reference text, status public.subscription_status not null,
    amount numeric(12,2), currency text, billing_cycle text, start_date timestamptz, trial_end_date timestamptz,
    cancellation_date timestamptz, next_billing_date timestamptz, payment_processor text,
    created_at timestamptz not null default now(), updated_at timestamptz not null default now());
create table public.transactions (
    id uuid primary key default gen_random_uuid(), contact_id uuid, product_id uuid, subscription_id uuid,
    transaction_type public.transaction_type not null default 'subscription',
    status public.transaction_status not null, amount numeric(12,2), currency text, payment_method text,
    payment_processor text, transaction_date timestamptz, created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(), source_system text, external_transaction_id text,
    external_order_id text, kajabi_transaction_id text, order_number text);
"""


def drop_roles(conn: psycopg.Connection, *roles: str) -> None:
    for role in roles:
        if conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone():
            conn.execute(sql.SQL("drop owned by {} cascade").format(sql.Identifier(role)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


@dataclass
class LayoutDB:
    admin: str      # a superuser's DSN to this database (loads rows; never used by the monitor)
    owner: str      # the tables' owner, a non-superuser (Supabase's postgres)
    server: str
    name: str

    def as_role(self, role: str) -> str:
        return conninfo.make_conninfo(self.admin, user=role, password=RUNBOOK_PASSWORDS[role])

    @property
    def reader(self) -> str:
        return self.as_role("monitor_reader")

    @property
    def writer(self) -> str:
        return self.as_role("monitor_writer")

    def run_as_owner(self, text: str) -> None:
        with psycopg.connect(self.owner, autocommit=True) as conn:
            conn.execute(text)


def create_layout_db(server_dsn: str, subscription_statuses=(), transaction_statuses=(), *, roles=True,
                     views=True) -> LayoutDB:
    """A new database with the kajabi-paypal-v2 tables owned by a non-superuser with RLS on; then, as that owner,
    the runbook's roles (docs/deploy.md step 1) and the page's SQL block, each as written."""
    name, admin, owner = new_database(server_dsn, "bm_layout")
    db = LayoutDB(admin=admin, owner=owner, server=server_dsn, name=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        drop_roles(conn, *RUNBOOK_PASSWORDS)
    db.run_as_owner(schema_sql(subscription_statuses, transaction_statuses))
    with psycopg.connect(db.owner, autocommit=True) as conn:          # Supabase's policies, as on the contract
        supabase_rls(conn)
    if roles:
        db.run_as_owner(role_sql(RUNBOOK_PASSWORDS["monitor_reader"], RUNBOOK_PASSWORDS["monitor_writer"]))
    if roles and views:
        db.run_as_owner(layout_block())
    return db


def drop_layout_db(db: LayoutDB) -> None:
    with psycopg.connect(db.admin, autocommit=True) as conn:
        drop_roles(conn, *RUNBOOK_PASSWORDS)
    with psycopg.connect(db.server, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db.name)))


# ---------------------------------------------------------------- the same rows, as the layout writes them

_CYCLES = {"month": "monthly", "year": "annual"}


def v2_cycle(cycle: str | None) -> str | None:
    """'month' -> 'monthly', ' Month' -> ' Monthly', 'YEAR\\n' -> 'ANNUAL\\n': the layout's word, same case, same blanks."""
    if cycle is None:
        return None
    word = cycle.strip()
    new = _CYCLES.get(word.lower())
    if new is None:
        return cycle
    new = new.upper() if word.isupper() else new.capitalize() if word[0].isupper() else new
    return cycle.replace(word, new)


def v2_subscription(row: tuple) -> tuple:
    """A contract subscriptions row (demo.TABLE_COLUMNS order) as the layout's: the PayPal id in
    paypal_subscription_reference, one cancellation date (the contract's canceled_at, else its ended_at: the
    layout has no ended_at, so the end time is the same), monthly/annual."""
    (sid, contact, product, kajabi, paypal, status, amount, currency, cycle, started, canceled, ended, created,
     updated) = row
    return (sid, contact, product, kajabi, paypal, status, amount, currency, v2_cycle(cycle), started,
            canceled or ended, "paypal" if paypal else "kajabi", created, updated)


V2_SUBSCRIPTION_COLUMNS = ("id, contact_id, product_id, kajabi_subscription_id, paypal_subscription_reference, status,"
                           " amount, currency, billing_cycle, start_date, cancellation_date, payment_processor,"
                           " created_at, updated_at")
V2_TRANSACTION_COLUMNS = ("id, contact_id, subscription_id, source_system, payment_processor, external_transaction_id,"
                          " amount, currency, status, transaction_type, transaction_date, created_at")


def v2_transaction(row: tuple, transaction_type: str = "subscription") -> tuple:
    tid, contact, subscription, source, external, amount, currency, status, date, created = row
    return (tid, contact, subscription, source, source, external, amount, currency, status, transaction_type, date,
            created)


def refund_rows(rows: list[tuple], contacts: set, every: int = 2) -> list[tuple]:
    """Refund-type rows for every `every`-th completed charge of a known contact, as the layout's imports write
    them: status completed, linked to the same subscription, dated a day later; the amount negative (the layout's
    rule) or, every other one, positive as some imports write it. None is a charge; a rule that took one for a
    charge would list it."""
    from datetime import timedelta

    out = []
    charges = [r for r in rows if str(r[7]).strip().lower() == "completed" and r[1] in contacts]
    for i, (tid, contact, subscription, source, _external, amount, currency, _status, date, created) in enumerate(
            charges[::every]):
        refund_amount = -Decimal(amount) if i % 2 == 0 else Decimal(amount)
        out.append((uuid.UUID(int=(tid.int ^ 0x5EF0_0000_0000_0000) % (1 << 128)), contact, subscription, source,
                    source, f"RF-{i:06d}", refund_amount, currency, "completed", "refund", date + timedelta(days=1),
                    created))
    return out


def disputed_rows(rows: list[tuple], contacts: set, every: int = 3) -> list[tuple]:
    """A disputed charge beside every `every`-th completed one (status disputed: never a charge)."""
    from datetime import timedelta

    out = []
    charges = [r for r in rows if str(r[7]).strip().lower() == "completed" and r[1] in contacts]
    for i, (tid, contact, subscription, source, _external, amount, currency, _status, date, created) in enumerate(
            charges[::every]):
        out.append((uuid.UUID(int=(tid.int ^ 0xD15_0000_0000_0000) % (1 << 128)), contact, subscription, source,
                    source, f"DP-{i:06d}", amount, currency, "disputed", "subscription", date + timedelta(hours=1),
                    created))
    return out


def copy_v2(conn: psycopg.Connection, contacts, products, subscriptions, transactions, *, extra_transactions=()) -> None:
    """COPY contract-layout rows (demo.TABLE_COLUMNS order) into the v2 tables, written the layout's way."""
    with conn.cursor() as cur:
        with cur.copy("copy public.contacts (id, email, first_name, last_name, kajabi_id, created_at, updated_at)"
                      " from stdin") as copy:
            for row in contacts:
                copy.write_row(row)
        with cur.copy("copy public.products (id, name, kajabi_offer_id, created_at) from stdin") as copy:
            for row in products:
                copy.write_row(row)
        with cur.copy(f"copy public.subscriptions ({V2_SUBSCRIPTION_COLUMNS}) from stdin") as copy:
            for row in subscriptions:
                copy.write_row(v2_subscription(row))
        with cur.copy(f"copy public.transactions ({V2_TRANSACTION_COLUMNS}) from stdin") as copy:
            for row in transactions:
                copy.write_row(v2_transaction(row))
            for row in extra_transactions:
                copy.write_row(row)
