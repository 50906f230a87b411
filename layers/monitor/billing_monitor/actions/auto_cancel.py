"""Auto-cancel's side effects (prevention.md): gather the facts policy.py decides on, then queue the approvals.

The scheduled scan calls `auto_cancel` after its scan is saved. It never calls PayPal: each approval goes on the
approvals queue (`send`), where the cancel function handles it like a person's (re-check, cancel once, read back,
audit, Slack). Each PayPal id is remembered in billing_monitor.auto_cancel_queued before it is sent, in its own
transaction: a send that fails forgets it again, so a later run tries again; one that succeeded is never queued
twice by auto-cancel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from billing_monitor import db
from billing_monitor.actions.policy import Decision, Facts, approval_message, decide, paypal_id_of
from billing_monitor.rules.registry import AT_RISK_CHECKS
from billing_monitor.source import DEFAULT_SOURCE_SCHEMA
from billing_monitor.store import has_table, open_store, read_store
from billing_monitor.store.actions import canceled_before, live_rows_holding, remember_queued

log = logging.getLogger(__name__)


def gather_facts(report: dict, *, dsn: str, store_dsn: str, read_only: bool = False,
                 source_schema: str = DEFAULT_SOURCE_SCHEMA) -> Facts:
    """Criterion 3's live rows (production, read-only) and criterion 6's ids done before (the store; `read_only`: the
    CLI's preview, which migrates nothing and reads no store that is not there yet)."""
    ids = sorted({pid for f in report["findings"] if f["check"] in AT_RISK_CHECKS and (pid := paypal_id_of(f))})
    if not ids:
        return Facts()
    with db.connect(dsn, read_only=True, application_name="billing-monitor-auto-cancel") as conn:
        live = live_rows_holding(conn, ids, source_schema)
    if read_only:
        with read_store(store_dsn) as conn:
            done = canceled_before(conn, ids) if conn is not None and has_table(conn, "auto_cancel_queued") else set()
    else:
        with open_store(store_dsn, application_name="billing-monitor-auto-cancel") as conn:
            done = canceled_before(conn, ids)
    return Facts(live_rows=live, done_before=done)


def preview(report: dict, *, dsn: str, store_dsn: str, now: datetime, grace_hours: float, max_per_run: int,
            source_schema: str = DEFAULT_SOURCE_SCHEMA) -> dict:
    """What auto-cancel would do with this report (`billing-monitor scan --paypal --auto-cancel-preview`): the
    report's `auto_cancel` block, marked a preview. Nothing is queued or recorded."""
    reconciled = report.get("paypal") is not None
    facts = gather_facts(report, dsn=dsn, store_dsn=store_dsn, read_only=True,
                         source_schema=source_schema) if reconciled else Facts()
    decision = decide(report["findings"], now=now, grace_hours=grace_hours, max_per_run=max_per_run,
                      reconciled=reconciled, facts=facts)
    return {**decision.as_report(), "preview": True}


def auto_cancel(report: dict, *, dsn: str, store_dsn: str, now: datetime, grace_hours: float, max_per_run: int,
                send: Callable[[dict], None], source_schema: str = DEFAULT_SOURCE_SCHEMA) -> Decision:
    """Decide on the report's findings and queue an approval for each unambiguous disconnect (none over the cap)."""
    reconciled = report.get("paypal") is not None
    facts = gather_facts(report, dsn=dsn, store_dsn=store_dsn, source_schema=source_schema) if reconciled else Facts()
    decision = decide(report["findings"], now=now, grace_hours=grace_hours, max_per_run=max_per_run,
                      reconciled=reconciled, facts=facts)
    queued, failed = [], []
    for f in decision.queued:
        message = approval_message(f)
        try:
            with open_store(store_dsn, application_name="billing-monitor-auto-cancel") as conn:
                if not remember_queued(conn, message, report["scan_id"], now):
                    decision.not_queued[f["finding_id"]] = "queued by auto-cancel before: never again"
                    continue
                send(message)           # inside the transaction: a failed send is not remembered
        except Exception as exc:  # noqa: BLE001 - the message still names the customer with the approval command
            log.error("auto-cancel could not queue an approval",
                      extra={"finding_id": f["finding_id"], "error": f"{type(exc).__name__}: {exc}"[:300]})
            failed.append(f)
            decision.not_queued[f["finding_id"]] = f"the approval could not be queued ({type(exc).__name__})"
            continue
        queued.append(f)
        log.info("auto-cancel queued an approval", extra={"finding_id": f["finding_id"],
                                                          "paypal_subscription_id": message["paypal_subscription_id"]})
    decision.queued = queued
    if failed:
        decision.line = (f"Auto-cancel could not queue {len(failed)} approval{'s' if len(failed) != 1 else ''}:"
                         " approve them by hand")
    return decision
