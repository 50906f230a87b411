"""One scan: connect read-only, check the tables are there, run every check, time it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from billing_monitor import db
from billing_monitor.rules import Finding, run_checks
from billing_monitor.rules.registry import DEFAULT_STALE_AFTER_DAYS

DEFAULT_TOLERANCE = Decimal("1.00")


@dataclass
class ScanResult:
    scan_id: str
    started_at: datetime
    finished_at: datetime
    tolerance: Decimal
    findings: list[Finding]
    data_current_to: datetime | None = None    # the newest transactions.created_at


def run_scan(dsn: str, tolerance: Decimal = DEFAULT_TOLERANCE, *, statement_timeout_s: float = 600,
             work_mem: str = "64MB", stale_after_days: int = DEFAULT_STALE_AFTER_DAYS,
             now: datetime | None = None) -> ScanResult:
    """Scan the production tables behind `dsn`. Raises MonitorError with a readable message."""
    started = datetime.now(UTC)
    with db.connect(dsn, read_only=True, statement_timeout_s=statement_timeout_s, work_mem=work_mem) as conn:
        db.check_production_tables(conn)
        checked = run_checks(conn, tolerance, stale_after_days=stale_after_days, now=now or started)
    return ScanResult(
        scan_id=str(uuid.uuid4()), started_at=started, finished_at=datetime.now(UTC),
        tolerance=tolerance, findings=checked.findings, data_current_to=checked.data_current_to,
    )
