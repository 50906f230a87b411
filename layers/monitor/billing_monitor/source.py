"""The source schema: where the four relations the monitor reads live, and what they must hold.

The rules are written against the contract layout (production_schema.sql): `contacts`, `products`,
`subscriptions` and `transactions` with the contract's column names. An owner whose imports wrote another
layout presents it through views in a schema of the monitor's (docs/owner-tables.md); the monitor reads the
schema named by BILLING_MONITOR_SOURCE_SCHEMA (template SourceSchema, CLI --source-schema; default public).
The monitor's own schema (billing_monitor) is not the source schema and never changes with it.

This module is the one home of that contract: the relations, the columns each check reads, and the check,
made before any query runs, that they are all there (a missing one is one line naming relation and column,
never a partial scan).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg

from billing_monitor.errors import MonitorError

DEFAULT_SOURCE_SCHEMA = "public"
SOURCE_SCHEMA_ENV = "BILLING_MONITOR_SOURCE_SCHEMA"
#: Where the owner reads how to map a layout (README, doctor and every missing-column message point to it).
PAGE = "docs/owner-tables.md"
#: The layouts seen in production that the page carries a ready SQL block for.
KAJABI_PAYPAL_V2 = "kajabi-paypal-v2"

RELATIONS: tuple[str, ...] = ("contacts", "products", "subscriptions", "transactions")

#: The columns the monitor reads, per relation (the contract: production_schema.sql). `products` is read by
#: nobody yet, but must be there and readable (doctor, docs/deploy.md's grants).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "contacts": ("id", "email", "first_name", "last_name"),
    "products": ("id",),
    "subscriptions": (
        "id", "contact_id", "kajabi_subscription_id", "paypal_subscription_id", "status", "amount",
        "currency", "billing_cycle", "canceled_at", "ended_at", "updated_at",
    ),
    "transactions": (
        "id", "contact_id", "subscription_id", "source", "external_id", "amount", "currency", "status",
        "transaction_date", "created_at",
    ),
}

#: Columns the monitor uses when they are there (rule-choices.md, "Refund-type transactions").
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "transactions": ("transaction_type",),
}

#: The cancel function's mark writes these subscriptions columns: through a view they must stay plain
#: column references (an auto-updatable view).
MARK_WRITES: tuple[str, ...] = ("status", "canceled_at", "updated_at")


# '%': the queries carry psycopg's %(name)s parameters; braces: the query files' placeholders; control characters
# (a line break among them): nothing a schema's name needs, and a line break could end an SQL comment
_UNSAFE = re.compile(r"[\x00-\x1f\x7f%{}]")


def quote_ident(name: str) -> str:
    """An SQL identifier, double-quoted as PostgreSQL quotes one (psycopg.sql.Identifier's rule)."""
    if not name or _UNSAFE.search(name):
        raise MonitorError(f"source schema {name!r} is not a schema name the monitor reads (empty, or holding a"
                           " control character, '%', '{' or '}')")
    return '"' + name.replace('"', '""') + '"'


_PLAIN = re.compile(r"^[a-z_][a-z0-9_]*$")
# SQL key words that cannot stand as a bare name (PostgreSQL's reserved ones a layout might use as a name)
_RESERVED = frozenset("""all analyse analyze and any array as asc asymmetric both case cast check collate column constraint
    create current_catalog current_date current_role current_time current_timestamp current_user default deferrable desc
    distinct do else end except false fetch for foreign from grant group having in initially intersect into lateral
    leading limit localtime localtimestamp not null offset on only or order placing primary references returning select
    session_user some symmetric system_user table then to trailing true union unique user using variadic when where
    window with""".split())  # noqa: SIM905 (a list a person can read)


def name_sql(name: str) -> str:
    """An identifier as a person writes it: bare when it can be, quoted otherwise (for SQL printed to people)."""
    return name if _PLAIN.match(name) and name not in _RESERVED else quote_ident(name)


def quote_literal(text: str) -> str:
    """An SQL string literal (standard_conforming_strings, on since PostgreSQL 9.1)."""
    return "'" + text.replace("'", "''") + "'"


def qualified(schema: str, relation: str) -> str:
    """'schema.relation' as people read it in messages."""
    return f"{schema}.{relation}"


@dataclass(frozen=True)
class Source:
    """The source relations as this connection sees them: the schema, and which optional columns are there."""
    schema: str = DEFAULT_SOURCE_SCHEMA
    kinds: dict[str, str] = field(default_factory=dict, compare=False, hash=False)  # relation -> pg_class.relkind
    optional: frozenset[tuple[str, str]] = frozenset()                             # (relation, column) present

    def rel(self, relation: str) -> str:
        """The quoted, schema-qualified name of a source relation, for SQL."""
        return f"{quote_ident(self.schema)}.{quote_ident(relation)}"

    def has(self, relation: str, column: str) -> bool:
        return (relation, column) in self.optional

    def is_table(self, relation: str) -> bool:
        """A plain (or partitioned, or materialized) table: it has pages (newest_hint.sql's TID range scan)."""
        return self.kinds.get(relation) in ("r", "m")


def columns_of(conn: psycopg.Connection, schema: str, relations=RELATIONS) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(relation -> relkind, relation -> {column: type}) of the relations this role can see in `schema`.

    pg_catalog, not information_schema: information_schema.columns lists only the columns the role has a
    privilege on, which would name a column missing that is only unreadable."""
    rows = conn.execute(
        "select c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod)"
        " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped"
        " where n.nspname = %s and c.relname = any(%s) and c.relkind in ('r', 'p', 'v', 'm', 'f')"
        " order by c.relname, a.attnum",
        (schema, list(relations))).fetchall()
    kinds: dict[str, str] = {}
    columns: dict[str, dict[str, str]] = {}
    for relation, kind, column, type_name in rows:
        kinds[relation] = kind
        if column is not None:
            columns.setdefault(relation, {})[column] = type_name
    return kinds, columns


def missing_columns(columns: dict[str, dict[str, str]], relations=RELATIONS) -> dict[str, list[str]]:
    """relation -> the required columns it lacks (a relation that is absent lacks all of them)."""
    return {r: [c for c in REQUIRED_COLUMNS[r] if c not in columns.get(r, {})]
            for r in relations if any(c not in columns.get(r, {}) for c in REQUIRED_COLUMNS[r])}


def check_source(conn: psycopg.Connection, schema: str = DEFAULT_SOURCE_SCHEMA) -> Source:
    """The source relations, checked before any check runs: the first missing relation or column is one
    MonitorError naming it and pointing to the page."""
    kinds, columns = columns_of(conn, schema)
    for relation in RELATIONS:           # what a scan reads (products: its row count and its row level security)
        if relation not in kinds:
            raise MonitorError(f"table {qualified(schema, relation)} missing (or not readable by this role):"
                               f" see {PAGE}")
        for column in REQUIRED_COLUMNS[relation]:
            if column not in columns.get(relation, {}):
                raise MonitorError(f"column {qualified(schema, relation)}.{column} missing: the monitor reads the"
                                   f" contract layout; map yours with views as {PAGE} shows")
    optional = frozenset((r, c) for r, cols in OPTIONAL_COLUMNS.items() for c in cols if c in columns.get(r, {}))
    return Source(schema, kinds, optional)


# ---------------------------------------------------------------- mapping another layout (doctor's proposal)

#: The schema the proposed views go to (a schema of the monitor's: what SourceSchema then names).
PROPOSED_SCHEMA = "billing_source"

#: Other names the imports give a contract column, most likely first (import-layouts.md and layouts seen since).
ALIASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("contacts", "email"): ("email_address", "paypal_email"),
    ("contacts", "first_name"): ("firstname", "given_name", "paypal_first_name"),
    ("contacts", "last_name"): ("lastname", "family_name", "surname", "paypal_last_name"),
    ("products", "id"): ("product_id",),
    ("subscriptions", "contact_id"): ("member_id", "customer_id", "user_id"),
    ("subscriptions", "kajabi_subscription_id"): ("kajabi_id", "kajabi_subscription", "kajabi_offer_subscription_id"),
    ("subscriptions", "paypal_subscription_id"): ("paypal_subscription_reference", "paypal_subscription",
                                                  "paypal_id", "paypal_reference"),
    ("subscriptions", "status"): ("subscription_status", "state"),
    ("subscriptions", "amount"): ("price", "amount_usd", "recurring_amount"),
    ("subscriptions", "currency"): ("currency_code",),
    ("subscriptions", "billing_cycle"): ("billing_period", "billing_interval", "interval", "cycle"),
    ("subscriptions", "canceled_at"): ("cancellation_date", "cancelled_at", "canceled_on", "cancelled_on",
                                       "cancel_date", "cancellation_at"),
    ("subscriptions", "ended_at"): ("end_date", "ended_on", "expired_at", "expiration_date"),
    ("subscriptions", "updated_at"): ("modified_at", "updated_on", "last_updated"),
    ("transactions", "contact_id"): ("member_id", "customer_id", "user_id"),
    ("transactions", "subscription_id"): ("subscription_uuid",),
    ("transactions", "source"): ("source_system", "payment_processor", "processor", "provider", "platform"),
    ("transactions", "external_id"): ("external_transaction_id", "paypal_transaction_id", "provider_transaction_id",
                                      "processor_transaction_id"),
    ("transactions", "status"): ("transaction_status", "payment_status", "state"),
    ("transactions", "currency"): ("currency_code",),
    ("transactions", "transaction_date"): ("transaction_at", "paid_at", "payment_date", "charged_at", "date"),
}

#: What a column no other name provides may be, where the rules allow it (the columns a scan can do without).
FALLBACKS: dict[tuple[str, str], str] = {
    ("subscriptions", "ended_at"): "null::timestamptz",
    ("subscriptions", "kajabi_subscription_id"): "null::text",
    ("subscriptions", "paypal_subscription_id"): "null::text",
    ("transactions", "external_id"): "null::text",
    ("transactions", "subscription_id"): "null::uuid",
    ("contacts", "first_name"): "null::text",
    ("contacts", "last_name"): "null::text",
    ("products", "name"): "null::text",
}

#: The columns each proposed view carries (the contract's, then the optional ones when there).
VIEW_COLUMNS: dict[str, tuple[str, ...]] = {
    "contacts": ("id", "email", "first_name", "last_name"),
    "products": ("id", "name"),
    "subscriptions": REQUIRED_COLUMNS["subscriptions"],
    "transactions": REQUIRED_COLUMNS["transactions"],
}

#: A layout is recognized by columns only it has: name -> relation -> columns.
LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    KAJABI_PAYPAL_V2: {
        "subscriptions": ("paypal_subscription_reference", "cancellation_date", "start_date", "trial_end_date"),
        "transactions": ("source_system", "external_transaction_id", "transaction_type"),
        "contacts": ("kajabi_member_id", "paypal_payer_id"),
    },
}


def recognize_layout(columns: dict[str, dict[str, str]]) -> str | None:
    """The name of the known layout these relations are in, if any."""
    for name, signature in LAYOUTS.items():
        if all(c in columns.get(r, {}) for r, cols in signature.items() for c in cols):
            return name
    return None


@dataclass
class Proposal:
    sql: str
    mapped: list[str]          # 'relation.column <- other_name' or '... = null' lines, for a person
    unresolved: list[str]      # 'relation.column' no other name provides (the SQL then does not run as it is)


def propose_views(schema: str, columns: dict[str, dict[str, str]], *, target: str = PROPOSED_SCHEMA,
                  reader: str | None = None, writer: str | None = None, api_roles: tuple[str, ...] = ()) -> Proposal:
    """Views in `target` presenting the relations of `schema` in the contract layout, from the usual other names;
    the grants the reader (select) and the writer (select, update on subscriptions) need, and nobody else
    (`api_roles`: Supabase's anon, authenticated, ... where they exist). Every column the cancel's mark writes stays
    a plain column reference: the subscriptions view stays auto-updatable."""
    t = name_sql(target)
    lines = [f"-- views presenting {schema}'s tables as billing-monitor reads them ({PAGE});",
             "-- run as the owner of the tables (Supabase: postgres), then set the source schema"
             f" (SourceSchema, --source-schema, {SOURCE_SCHEMA_ENV}) to {target}",
             f"create schema if not exists {t};"]
    mapped, unresolved = [], []
    for relation in RELATIONS:
        present = columns.get(relation, {})
        select = []
        wanted = VIEW_COLUMNS[relation] + tuple(c for c in OPTIONAL_COLUMNS.get(relation, ()) if c in present)
        for column in wanted:
            if column in present:
                select.append(f"t.{name_sql(column)}")
                continue
            other = next((a for a in ALIASES.get((relation, column), ()) if a in present), None)
            if other:
                select.append(f"t.{name_sql(other)} as {name_sql(column)}")
                mapped.append(f"{relation}.{column} <- {other}")
            elif (relation, column) in FALLBACKS:
                select.append(f"{FALLBACKS[relation, column]} as {name_sql(column)}")
                mapped.append(f"{relation}.{column} = null (no such column)")
            else:
                select.append(f"/* FILL IN */ as {name_sql(column)}")
                unresolved.append(f"{relation}.{column}")
        lines.append(f"create or replace view {t}.{relation} as\n    select "
                     + ", ".join(select)
                     + f"\n    from {name_sql(schema)}.{relation} t;")
    views = ", ".join(f"{t}.{r}" for r in RELATIONS)
    lines.append(f"revoke all on {views} from {', '.join(['public', *map(name_sql, api_roles)])};")
    grantees = [name_sql(r) for r in (reader, writer) if r]
    if grantees:
        lines.append(f"grant usage on schema {t} to {', '.join(grantees)};")
    if reader:
        lines.append(f"grant select on {views} to {name_sql(reader)};")
    if writer:
        lines.append(f"grant select, update on {t}.subscriptions to {name_sql(writer)};")
    return Proposal("\n".join(lines), mapped, unresolved)
