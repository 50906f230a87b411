"""Scan history: each saved scan, its findings, and what is new, still open and resolved since last time."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from billing_monitor.report import money_line
from billing_monitor.store.migrations import SCHEMA

SAVE_LOCK = 0x626D0002        # pg_advisory_xact_lock key: two scans saving at once take turns


def fingerprint(finding: dict) -> str:
    """What makes a finding worth reporting again: its severity and what it was charged."""
    charges = finding.get("charges") or {}
    key = [finding["severity"], charges.get("count"), charges.get("total")]
    if finding.get("paypal"):       # PayPal's view changing (its status, what is owed) is news too
        paypal = finding["paypal"]
        key += [paypal.get("status"), ((paypal.get("charges_after_cancellation") or {}).get("owed"))]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def months_between(start: datetime, end: datetime) -> int:
    return max(0, (end.year - start.year) * 12 + end.month - start.month - (end.day < start.day))


@dataclass
class OpenFinding:
    finding: dict
    first_seen_at: datetime
    months_open: int
    changed: bool
    unreported: bool = False   # no Slack message has carried it yet (the post that would have failed or never ran)


@dataclass
class ScanDiff:
    scan_id: str
    previous_scan_id: str | None
    new: list[dict] = field(default_factory=list)
    still_open: list[OpenFinding] = field(default_factory=list)
    resolved: list[dict] = field(default_factory=list)

    @property
    def changed(self) -> list[OpenFinding]:
        return [o for o in self.still_open if o.changed]

    def as_dict(self) -> dict:
        return {
            "previous_scan_id": self.previous_scan_id,
            "new": [f["finding_id"] for f in self.new],
            "still_open": [{"finding_id": o.finding["finding_id"], "months_open": o.months_open,
                            "changed": o.changed} for o in self.still_open],
            "resolved": [f["finding_id"] for f in self.resolved],
        }


def save_scan(conn: psycopg.Connection, report: dict, settled: list[tuple[str, str]] = ()) -> ScanDiff:
    """Record a scan and its findings in the caller's transaction (from open_store: migrated); returns what
    changed since the last one. `settled`: the PayPal ids (and final status) its reconciliation found settled,
    remembered so that no scan asks about them again.

    The caller commits: a scan that fails half-way leaves the previous state as it was.
    """
    conn.execute("select pg_advisory_xact_lock(%s)", (SAVE_LOCK,))
    scan_id, started = report["scan_id"], datetime.fromisoformat(report["started_at"])
    previous = conn.execute(f"select scan_id from {SCHEMA}.scan_runs order by started_at desc limit 1").fetchone()
    conn.execute(
        f"insert into {SCHEMA}.scan_runs (scan_id, started_at, finished_at, tolerance, summary, money_line, row_counts)"
        " values (%s, %s, %s, %s, %s, %s, %s)",
        (scan_id, started, report["finished_at"], report["tolerance"], Jsonb(report["summary"]), money_line(report),
         Jsonb(report["row_counts"]) if report.get("row_counts") else None),
    )
    ids = [f["finding_id"] for f in report["findings"]]
    known = {
        r[0]: r[1:] for r in conn.execute(
            f"select finding_id, fingerprint, first_seen_at, last_reported_at is null from {SCHEMA}.findings"
            " where resolved_scan is null and finding_id = any(%s)", (ids,))
    }
    diff = ScanDiff(scan_id=scan_id, previous_scan_id=str(previous[0]) if previous else None)
    rows = []
    for f in report["findings"]:
        fp = fingerprint(f)
        if f["finding_id"] in known:
            old_fp, first_seen, unreported = known[f["finding_id"]]
            diff.still_open.append(OpenFinding(f, first_seen, months_between(first_seen, started), old_fp != fp,
                                               unreported))
        else:
            diff.new.append(f)
        rows.append((f["finding_id"], f["check"], f["severity"], f["paypal_subscription_id"], scan_id, started,
                     scan_id, started, fp, Jsonb(f)))
    with conn.cursor() as cur:
        cur.executemany(
            f"insert into {SCHEMA}.findings as f (finding_id, check_name, severity, paypal_subscription_id,"
            " first_seen_scan, first_seen_at, last_seen_scan, last_seen_at, fingerprint, finding)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (finding_id) do update set"
            "   severity = excluded.severity, last_seen_scan = excluded.last_seen_scan,"
            "   last_seen_at = excluded.last_seen_at, fingerprint = excluded.fingerprint, finding = excluded.finding,"
            # a finding that comes back after it was resolved is new again
            "   first_seen_scan = case when f.resolved_scan is null then f.first_seen_scan"
            "                          else excluded.first_seen_scan end,"
            "   first_seen_at = case when f.resolved_scan is null then f.first_seen_at else excluded.first_seen_at end,"
            "   resolved_scan = null, resolved_at = null",
            rows,
        )
        with cur.copy(f"copy {SCHEMA}.scan_findings (scan_id, finding_id, severity) from stdin") as copy:
            for f in report["findings"]:
                copy.write_row((scan_id, f["finding_id"], f["severity"]))
    remember_settled(conn, scan_id, started, settled)
    diff.resolved = [r[0] for r in conn.execute(
        f"update {SCHEMA}.findings set resolved_scan = %s, resolved_at = %s"
        " where resolved_scan is null and last_seen_scan <> %s returning finding",
        (scan_id, started, scan_id))]
    return diff


def remember_settled(conn: psycopg.Connection, scan_id: str, when: datetime, settled) -> None:
    """Add ids to the settled memory (an id already remembered keeps its first record)."""
    if not settled:
        return
    with conn.cursor() as cur:
        cur.executemany(
            f"insert into {SCHEMA}.paypal_settled (paypal_subscription_id, paypal_status, settled_scan, settled_at)"
            " values (%s, %s, %s, %s) on conflict (paypal_subscription_id) do nothing",
            [(pid, status, scan_id, when) for pid, status in settled])


def mark_reported(conn: psycopg.Connection, diff: ScanDiff, when: datetime, *, everything: bool) -> None:
    """Remember what a Slack message carried: the news (new, changed, not carried before), or, for the
    monthly message (`everything`), every open finding. A finding no message has carried is news again
    for the next daily scan (alerts.md: the Slack post that failed does not lose it)."""
    reported = [f["finding_id"] for f in diff.new] + [o.finding["finding_id"] for o in diff.still_open
                                                       if everything or o.changed or o.unreported]
    conn.execute(f"update {SCHEMA}.findings set last_reported_at = %s where finding_id = any(%s)", (when, reported))


def list_scans(conn: psycopg.Connection, limit: int = 12) -> list[dict]:
    rows = conn.execute(
        f"select scan_id, started_at, summary, money_line from {SCHEMA}.scan_runs order by started_at desc limit %s",
        (limit,)).fetchall()
    return [{"scan_id": str(r[0]), "started_at": r[1], "summary": r[2], "money_line": r[3]} for r in rows]


def load_finding(conn: psycopg.Connection, finding_id: str) -> tuple[dict, bool] | None:
    """The latest saved copy of a finding and whether it is still open."""
    row = conn.execute(f"select finding, resolved_scan is null from {SCHEMA}.findings where finding_id = %s",
                       (finding_id,)).fetchone()
    return (row[0], row[1]) if row else None


# Whether the scan's role may read the saved counts (asked of the catalog first: a denied read would abort the
# scan's transaction), and the newest saved counts.
_COUNTS_READABLE = (
    "select coalesce(bool_and(has_schema_privilege(n.oid, 'usage') and has_column_privilege(c.oid, 'row_counts', 'select')"
    " and has_column_privilege(c.oid, 'started_at', 'select')), false)"
    " from pg_namespace n join pg_class c on c.relnamespace = n.oid and c.relname = 'scan_runs'"
    " join pg_attribute a on a.attrelid = c.oid and a.attname = 'row_counts' and not a.attisdropped"
    f" where n.nspname = '{SCHEMA}'")


def previous_row_counts(conn: psycopg.Connection) -> tuple[dict[str, int], datetime] | None:
    """The row counts of the newest saved scan that recorded them, and when it started; None when there is none
    (or the schema is absent or unreadable to this role)."""
    if not conn.execute(_COUNTS_READABLE).fetchone()[0]:
        return None
    row = conn.execute(f"select row_counts, started_at from {SCHEMA}.scan_runs where row_counts is not null"
                       " order by started_at desc limit 1").fetchone()
    return (row[0], row[1]) if row else None


def mark_schedule(conn: psycopg.Connection, scan_id: str, schedule: str) -> None:
    """Which schedule saved the scan (monthly, daily, manual): the monthly message counts from the previous monthly."""
    conn.execute(f"update {SCHEMA}.scan_runs set schedule = %s where scan_id = %s", (schedule, scan_id))


def previous_monthly_at(conn: psycopg.Connection, before: datetime) -> datetime | None:
    """When the newest monthly scan before `before` started (None: there was none)."""
    row = conn.execute(f"select max(started_at) from {SCHEMA}.scan_runs where schedule = 'monthly' and started_at < %s",
                       (before,)).fetchone()
    return row[0] if row else None
