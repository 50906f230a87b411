"""Run the seven checks in Postgres and turn their rows into Findings.

Two set-based queries, read-only, inside one REPEATABLE READ snapshot:
  subscription_findings  one pass over subscriptions: billing_disconnect, duplicate_subscription,
                         paypal_only (every live PayPal subscription is in exactly one), and
                         orphaned_subscription, misfiled_paypal_id
  transaction_findings   one pass over transactions: orphaned_transaction, each billing_disconnect's
                         charges after its cancellation, post_cancellation_charge
(and ended_subscriptions, one row of array literals that transaction_findings' first stage takes
as parameters: PostgreSQL hashes a constant array once, where a join would cost a node per row).
Rows are streamed (libpq chunked-rows mode, which keeps parallel plans): only the rows that are
findings reach Python, never the transactions as a whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.string import TextLoader

from billing_monitor.rules.finding import Charge, Contact, Finding
from billing_monitor.rules.registry import (
    BILLING_DISCONNECT,
    CHECKS,
    DEFAULT_STALE_AFTER_DAYS,
    MISFILED_PAYPAL_ID,
    ORPHANED_SUBSCRIPTION,
    ORPHANED_TRANSACTION,
    POST_CANCELLATION_CHARGE,
    SHRANK_BELOW_SHARE,
    SHRANK_MIN_ROWS,
    SOURCE_SHRANK,
    STALE_IMPORT,
)
from billing_monitor.source import DEFAULT_SOURCE_SCHEMA, RELATIONS, Source, qualified, quote_ident, quote_literal

NEWEST_IMPORT = "newest_import"            # transaction_findings' last row: the newest transactions.created_at
_STREAM_CHUNK = 2000 if psycopg.capabilities.has_stream_chunked() else 1
_USES = re.compile(r"^-- uses:(.*)$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(source|source_text|transaction_type)\}")


@cache
def load_query(name: str, schema: str = DEFAULT_SOURCE_SCHEMA, transaction_type: bool = False) -> str:
    """A query file with the shared CTEs it names on its `-- uses:` line put in front, reading the source
    relations of `schema` (`{source}`: the schema quoted as an identifier; `{source_text}`: that as a string
    literal), and `transactions.transaction_type` when the relation has it (`{transaction_type}`). Once per
    schema: the text is cached."""
    sql_dir = resources.files("billing_monitor.rules") / "sql"
    text = (sql_dir / f"{name}.sql").read_text()
    uses = [u.strip() for u in _USES.search(text).group(1).split(",") if u.strip()]
    if uses:
        ctes = [(sql_dir / f"{u}.sql").read_text().strip() for u in uses]
        body = "\n".join(line for line in text.splitlines() if not line.startswith("--")).lstrip()
        if body.lower().startswith("select"):
            text = "with " + ",\n".join(ctes) + "\n" + text
        else:
            text = "with " + ",\n".join([*ctes, text])
    schema_ident = quote_ident(schema)
    values = {"source": schema_ident, "source_text": quote_literal(schema_ident),
              "transaction_type": "t.transaction_type::text" if transaction_type else "null::text"}
    # one pass: a value put in is never read again for placeholders
    return _PLACEHOLDER.sub(lambda m: values[m[1]], text)


def source_query(name: str, source: Source) -> str:
    """load_query for the source relations `source` describes."""
    return load_query(name, source.schema, source.has("transactions", "transaction_type"))


def _cursor(conn: psycopg.Connection) -> psycopg.Cursor:
    """A cursor that loads uuids as their text: the report prints them, and str(UUID) is slow."""
    cur = conn.cursor(row_factory=namedtuple_row)
    cur.adapters.register_loader("uuid", TextLoader)
    return cur


def _stream(conn: psycopg.Connection, name: str, params: dict, source: Source):
    with _cursor(conn) as cur:
        # chunks of rows (libpq >= 17; one row at a time with an older libpq): the memory of a
        # chunk, without the cost of one result object per row
        yield from cur.stream(source_query(name, source), params, size=_STREAM_CHUNK)


def find_subscription_findings(conn, tol: Decimal, source: Source) -> list[Finding]:
    """Checks 1-3 and the subscription rows of checks 5 and 6.

    billing_disconnects come back with empty charges; find_transaction_findings fills them.
    """
    findings = []
    for r in _stream(conn, "subscription_findings", {"tol": tol}, source):
        row = {
            "key": r.subscription_id, "subscription_id": r.subscription_id, "paypal_subscription_id": r.paypal_id,
            "contact_id": r.contact_id, "amount": r.amount, "currency": r.cur, "billing_cycle": r.cycle,
            "contact": None if r.orphaned else Contact.from_row(r.contact_id, r.email, r.first_name, r.last_name),
        }
        own_kajabi_id = None if r.paypal_id else r.kajabi_id_text
        if r.check_name:
            disconnect = r.check_name == BILLING_DISCONNECT
            findings.append(Finding(
                check=CHECKS[r.check_name].name, **row,
                kajabi_subscription_id=r.match_kajabi_id, kajabi_canceled_at=r.kajabi_canceled_at,
                charges=[] if disconnect else None, action_paypal_id=r.paypal_id if disconnect else None,
            ))
        if r.orphaned:
            findings.append(Finding(check=ORPHANED_SUBSCRIPTION, **row,
                                    kajabi_subscription_id=own_kajabi_id))
        if r.misfiled:
            findings.append(Finding(check=MISFILED_PAYPAL_ID, **row,
                                    kajabi_subscription_id=own_kajabi_id))
    return findings


def _disconnect_params(disconnects: list[Finding]) -> dict:
    return {
        "d_pid": [f.subscription_id for f in disconnects],
        "d_contact": [f.contact_id for f in disconnects],
        "d_cur": [f.currency for f in disconnects],
        "d_amount": [f.amount for f in disconnects],
        "d_canceled": [f.kajabi_canceled_at for f in disconnects],
    }


def _ended_params(conn, source: Source) -> dict:
    """The ended subscriptions as array literals (text from the server, sent back as it is)."""
    with _cursor(conn) as cur:
        return cur.execute(source_query("ended_subscriptions", source)).fetchone()._asdict()


def _newest_hint(conn, source: Source) -> datetime | None:
    """A lower bound of the newest transactions.created_at (the last pages); the exact max when they are empty,
    or when transactions is a view (no pages to look at the end of)."""
    hint = conn.execute(source_query("newest_hint", source)).fetchone()[0] if source.is_table("transactions") else None
    if hint is None:    # empty table, rows deleted at its end, a view: ask for it exactly (a pass)
        hint = conn.execute(f"select max(created_at) from {source.rel('transactions')}").fetchone()[0]
    return hint


@dataclass
class TransactionPass:
    findings: list[Finding]
    newest_import: datetime | None      # the newest transactions.created_at (None: no transaction)


def find_transaction_findings(conn, tol: Decimal, disconnects: list[Finding], source: Source) -> TransactionPass:
    """orphaned_transaction and post_cancellation_charge findings, and the newest import; fills each
    disconnect's charges."""
    by_subscription = {f.subscription_id: f for f in disconnects}
    orphans: list[Finding] = []
    post_cancellation: dict[tuple, Finding] = {}
    newest_import = None
    hint = _newest_hint(conn, source)
    params = {"tol": tol, **_disconnect_params(disconnects), **_ended_params(conn, source),
              "newest_hint": hint if hint is not None else datetime.max.replace(tzinfo=UTC)}
    for r in _stream(conn, "transaction_findings", params, source):
        if r.kind == NEWEST_IMPORT:          # the newest of the rows after the bound, else the bound itself
            newest_import = max(filter(None, (r.transaction_date, hint)), default=None)
            continue
        charge = Charge(r.transaction_id, r.transaction_date, r.amount, r.cur)
        if r.kind == ORPHANED_TRANSACTION:
            orphans.append(Finding(
                check=ORPHANED_TRANSACTION, key=r.transaction_id,
                subscription_id=r.subscription_id, transaction_id=r.transaction_id,
                contact_id=r.contact_id, amount=r.amount, currency=r.cur,
            ))
        elif r.kind == "disconnect_charge":
            by_subscription[r.subscription_id].charges.append(charge)
        else:  # unexplained_charge: one finding per (contact, latest-ended subscription)
            group = (r.contact_id, r.subscription_id)
            if group not in post_cancellation:
                post_cancellation[group] = Finding(
                    check=POST_CANCELLATION_CHARGE,
                    key=f"{r.contact_id}:{r.subscription_id}", subscription_id=r.subscription_id,
                    paypal_subscription_id=r.paypal_id,
                    kajabi_subscription_id=None if r.paypal_id else r.kajabi_id_text,
                    contact_id=r.contact_id, amount=r.subscription_amount, currency=r.subscription_cur,
                    billing_cycle=r.subscription_cycle, charges=[], action_paypal_id=r.paypal_id,
                )
            post_cancellation[group].charges.append(charge)
    return TransactionPass(orphans + list(post_cancellation.values()), newest_import)


def find_stale_import(conn, newest_import: datetime | None, now: datetime, stale_after_days: int,
                      source: Source) -> list[Finding]:
    """stale_import: the newest import is older than `stale_after_days`, or transactions is empty while
    subscriptions is not (the imports have stopped; every other finding may be out of date)."""
    if newest_import is None:
        if not conn.execute(f"select exists (select 1 from {source.rel('subscriptions')})").fetchone()[0]:
            return []                                       # an empty database is not a stopped import
        detail = "no transaction imported, but subscriptions are: the imports have stopped or never ran"
    else:
        age = now - newest_import
        if age <= timedelta(days=stale_after_days):
            return []
        detail = (f"newest transaction imported {newest_import.astimezone(UTC):%Y-%m-%d}, {age.days} days before"
                  f" the scan (stale after {stale_after_days} days): every other finding may be out of date")
    # keyed on the relation's name as people write it: public.transactions on the contract layout
    return [Finding(check=STALE_IMPORT, key=contract_key("transactions"), detail=detail)]


def contract_key(relation: str) -> str:
    """A finding about a whole relation (stale_import, source_shrank) is keyed by the contract's name of it
    ('public.transactions'), whatever the source schema: the same problem has the same finding id on any layout,
    and the ids saved before source schemas existed stay the same. Its detail names the relation read."""
    return qualified(DEFAULT_SOURCE_SCHEMA, relation)


def find_row_counts(conn, source: Source) -> dict[str, int]:
    """How many rows each of the four relations holds, in the scan's snapshot."""
    with _cursor(conn) as cur:
        return cur.execute(source_query("row_counts", source)).fetchone()._asdict()


def find_source_shrank(counts: dict[str, int], previous: tuple[dict[str, int], datetime] | None,
                       source: Source) -> list[Finding]:
    """source_shrank: a table holding less than half of what the previous saved scan read (which read at least 20):
    a truncated import, a changed policy or grant, the wrong database; every other finding may be wrong."""
    if previous is None:
        return []
    before, when = previous
    findings = []
    for table in RELATIONS:
        was, now = before.get(table), counts.get(table)
        if was is None or now is None or was < SHRANK_MIN_ROWS or now >= was * SHRANK_BELOW_SHARE:
            continue
        name = qualified(source.schema, table)
        findings.append(Finding(check=SOURCE_SHRANK, key=contract_key(table), detail=(
            f"{name} holds {now:,} rows; the previous saved scan ({when.astimezone(UTC):%Y-%m-%d}) read"
            f" {was:,}: an import that emptied it, a changed policy or grant, or the wrong database")))
    return findings


@dataclass
class CheckResults:
    findings: list[Finding]
    data_current_to: datetime | None    # the newest transactions.created_at
    row_counts: dict[str, int] | None = None   # the rows read in each of the four tables


def run_checks(conn: psycopg.Connection, tolerance: Decimal, *, stale_after_days: int = DEFAULT_STALE_AFTER_DAYS,
               now: datetime | None = None, source: Source | None = None,
               previous_counts: tuple[dict[str, int], datetime] | None = None) -> CheckResults:
    """Every check of the registry against the source relations (source.check_source's answer), read-only.
    `previous_counts`: the row counts of the previous saved scan and when it started (source_shrank; None:
    nothing to compare with)."""
    source = source or Source()
    counts = find_row_counts(conn, source)
    findings = find_subscription_findings(conn, tolerance, source)
    disconnects = [f for f in findings if f.check == BILLING_DISCONNECT]
    transactions = find_transaction_findings(conn, tolerance, disconnects, source)
    findings += transactions.findings
    findings += find_stale_import(conn, transactions.newest_import, now or datetime.now(UTC), stale_after_days, source)
    findings += find_source_shrank(counts, previous_counts, source)
    for finding in findings:
        if finding.charges:
            finding.charges.sort(key=lambda c: (c.date, str(c.transaction_id)))
    attach_contacts(conn, findings, source)
    attach_external_ids(conn, findings, source)
    return CheckResults(findings, transactions.newest_import, counts)


def attach_external_ids(conn, findings: list[Finding], source: Source) -> None:
    """Each listed charge's transactions.external_id, so that the owner can find it in PayPal (by primary key)."""
    ids = sorted({str(c.transaction_id) for f in findings for c in f.charges or ()})
    if not ids:
        return
    external = {r.id: r.external_id for r in _stream(conn, "external_ids", {"ids": ids}, source)}
    for finding in findings:
        if finding.charges:
            finding.charges = [replace(c, external_id=external.get(str(c.transaction_id))) for c in finding.charges]


def attach_contacts(conn, findings: list[Finding], source: Source) -> None:
    """Contact details for the findings that do not have them yet (one set-based query)."""
    findings = [f for f in findings if f.contact is None and f.contact_id is not None]
    ids = sorted({f.contact_id for f in findings})
    if not ids:
        return
    contacts = {
        r.id: Contact.from_row(r.id, r.email, r.first_name, r.last_name)
        for r in _stream(conn, "contacts", {"ids": ids}, source)
    }
    for finding in findings:
        finding.contact = contacts.get(finding.contact_id)
