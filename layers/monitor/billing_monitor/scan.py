"""One scan: connect read-only, check the tables are there, run every check, time it; with PayPal options,
reconcile with PayPal after the database part (reconcile.py), which it never slows or loses."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing_monitor import db, row_security
from billing_monitor.errors import MonitorError
from billing_monitor.rules import Finding, run_checks
from billing_monitor.rules.registry import DEFAULT_STALE_AFTER_DAYS
from billing_monitor.source import DEFAULT_SOURCE_SCHEMA, RELATIONS, check_source

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = Decimal("1.00")


@dataclass
class ScanResult:
    scan_id: str
    started_at: datetime
    finished_at: datetime
    tolerance: Decimal
    findings: list[Finding]
    data_current_to: datetime | None = None    # the newest transactions.created_at
    paypal: dict | None = None                 # the report's top-level `paypal` block (None: not reconciled)
    settled: list[tuple[str, str]] = field(default_factory=list)   # PayPal ids found settled: a saved scan remembers
    row_counts: dict[str, int] | None = None   # the rows read in each of the four tables: a saved scan keeps them


def run_scan(dsn: str, tolerance: Decimal = DEFAULT_TOLERANCE, *, statement_timeout_s: float = 600,
             work_mem: str = "64MB", stale_after_days: int = DEFAULT_STALE_AFTER_DAYS,
             now: datetime | None = None, paypal=None, store_dsn: str | None = None,
             paypal_client=None, paypal_only: set[str] | None = None,
             source_schema: str = DEFAULT_SOURCE_SCHEMA) -> ScanResult:
    """Scan the source relations (schema `source_schema`: tables, or views presenting the owner's tables in the
    contract layout, docs/owner-tables.md) behind `dsn`. Raises MonitorError with a readable message; a missing
    relation or column stops it before any check runs.

    `paypal` (reconcile.PayPalOptions) adds PayPal's side; the settled ids are read from the `billing_monitor`
    schema of `store_dsn` (default: the scanned database), read-only. `paypal_only` asks PayPal about those
    watched ids alone (a refund's re-check: one customer, not the whole account).

    `now` is the time the scan runs at (prevention.md: the clock is an input): production passes nothing and the
    real time is used; the simulated year passes its own. Every check, PayPal's transaction window and the
    report's started_at read it; finished_at is started_at plus the time the scan took.
    """
    started = (now or datetime.now(UTC)).astimezone(UTC)
    timer = time.monotonic()
    with db.connect(dsn, read_only=True, statement_timeout_s=statement_timeout_s, work_mem=work_mem) as conn:
        source = check_source(conn, source_schema)
        row_security.require_every_row(conn, source.schema, RELATIONS)      # never a report from a partial view
        checked = run_checks(conn, tolerance, stale_after_days=stale_after_days, now=started, source=source,
                             previous_counts=_previous_counts(conn, dsn, store_dsn, statement_timeout_s))
        _add_posted_sales(conn, dsn, store_dsn, checked.findings, source, statement_timeout_s)
        watch = None
        if paypal is not None:
            from billing_monitor import reconcile

            settled = reconcile.read_settled(conn) if not store_dsn or store_dsn == dsn else None
            if settled is None:
                settled = reconcile.read_settled_from(store_dsn)
            watch = reconcile.find_watched(conn, checked.findings, tolerance, settled, source)
            if paypal_only is not None:
                watch.watched = [w for w in watch.watched if w.paypal_id in paypal_only]
    findings = checked.findings
    paypal_block, settled_now = None, []
    if watch is not None:
        from billing_monitor import reconcile

        side = reconcile.reconcile(paypal, watch, reconcile.lookup_in(dsn, statement_timeout_s, source), now=started,
                                   client=paypal_client)
        reconcile.apply_blocks(findings, side.blocks)
        findings = findings + side.findings
        paypal_block, settled_now = side.summary, side.settled
    return ScanResult(
        scan_id=str(uuid.uuid4()), started_at=started, finished_at=started + timedelta(seconds=time.monotonic() - timer),
        tolerance=tolerance, findings=findings, data_current_to=checked.data_current_to,
        paypal=paypal_block, settled=settled_now, row_counts=checked.row_counts,
    )


def _previous_counts(conn, dsn: str, store_dsn: str | None, statement_timeout_s: float):
    """The previous saved scan's row counts (source_shrank), from the scanned database's monitor schema or the
    store's; None when there is no saved scan to compare with or its schema cannot be read."""
    from billing_monitor.store.scans import previous_row_counts

    if not store_dsn or store_dsn == dsn:
        return previous_row_counts(conn)
    try:
        with db.connect(store_dsn, read_only=True, statement_timeout_s=statement_timeout_s,
                        application_name="billing-monitor-memory") as store:
            return previous_row_counts(store)
    except MonitorError as exc:
        log.warning("the previous saved scan's row counts could not be read: source_shrank not checked",
                    extra={"error": str(exc)})
        return None


def _add_posted_sales(conn, dsn: str, store_dsn: str | None, findings: list[Finding], source, statement_timeout_s: float
                      ) -> None:
    """A billing_disconnect's charges gain the PayPal sales a webhook (or the hourly net) posted about it, dated after
    its cancellation, that the imports have not brought in yet (no transactions row holds the sale id as its
    external_id): the scan and the money lines know a charge before the imports do (docs/rule-choices.md)."""
    from billing_monitor.rules.checks import _stream
    from billing_monitor.rules.finding import Charge
    from billing_monitor.rules.registry import BILLING_DISCONNECT
    from billing_monitor.store.webhooks import posted_sales

    by_id = {f.finding_id: f for f in findings if f.check == BILLING_DISCONNECT and f.charges is not None}
    if not by_id:
        return
    if not store_dsn or store_dsn == dsn:
        sales = posted_sales(conn, sorted(by_id))
    else:
        try:
            with db.connect(store_dsn, read_only=True, statement_timeout_s=statement_timeout_s,
                            application_name="billing-monitor-memory") as store:
                sales = posted_sales(store, sorted(by_id))
        except MonitorError as exc:
            log.warning("the sales heard by webhook could not be read: counted when imported", extra={"error": str(exc)})
            return
    if not sales:
        return
    imported = {r.external_id for r in _stream(conn, "paypal_imported", {"ids": [s["sale_id"] for s in sales]}, source)}
    for sale in sales:
        f = by_id[sale["finding_id"]]
        if sale["sale_id"] in imported or (f.kajabi_canceled_at and sale["charged_at"] <= f.kajabi_canceled_at):
            continue
        if any(c.transaction_id == sale["sale_id"] or c.external_id == sale["sale_id"] for c in f.charges):
            continue
        f.charges.append(Charge(sale["sale_id"], sale["charged_at"], sale["amount"], sale["currency"],
                                external_id=sale["sale_id"]))
        f.charges.sort(key=lambda c: (c.date, str(c.transaction_id)))
