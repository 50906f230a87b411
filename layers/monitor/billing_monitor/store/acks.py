"""Acknowledged findings (007_acknowledgements.sql): "known, leave it" (slack-actions.md, "Acknowledge").

Only a finding that needs no action can be acknowledged: never one with a customer at risk or money owed
(it ends by canceling and refunding). An acknowledgement holds while the finding is unchanged (check,
severity, amounts, charges, PayPal's status: `ack_fingerprint`) and `until` has not passed; the report then
carries `"acknowledged": {"by", "at", "note", "until"}` and Slack leaves it out of its counts. A change ends
it for good (a scan that saves records `lapsed_at`), so it comes back by itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from billing_monitor.errors import MonitorError
from billing_monitor.rules.registry import AT_RISK_CHECKS, OWED_CHECKS, SOURCE_SHRANK
from billing_monitor.store.migrations import SCHEMA, has_table
from billing_monitor.store.scans import fingerprint, load_finding

NOTE_MAX = 500


class AckRefused(MonitorError):
    """The finding cannot be acknowledged; str() says why."""


@dataclass(frozen=True)
class Ack:
    finding_id: str
    by: str
    at: datetime
    note: str | None
    until: datetime | None
    fingerprint: str
    lapsed_at: datetime | None = None

    def block(self) -> dict:
        """The report's `acknowledged` block."""
        return {"by": self.by, "at": self.at.astimezone(UTC).isoformat(), "note": self.note,
                "until": self.until.astimezone(UTC).isoformat() if self.until else None}

    def holds_for(self, finding: dict, now: datetime) -> bool:
        return (self.lapsed_at is None and self.fingerprint == ack_fingerprint(finding)
                and (self.until is None or now < self.until))


def ack_fingerprint(finding: dict) -> str:
    """What must stay the same for an acknowledgement to hold: scans.fingerprint (severity, charges, PayPal's
    status and what it says is owed) and the check, the PayPal id, the amount, currency and billing cycle."""
    key = [fingerprint(finding), finding["check"], finding.get("paypal_subscription_id"), finding.get("amount"),
           finding.get("currency"), finding.get("billing_cycle"), (finding.get("paypal") or {}).get("status")]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def why_not_acknowledgeable(finding: dict) -> str | None:
    """None when the finding may be acknowledged; else the reason, for the owner."""
    who = f"finding {finding['finding_id']} ({finding['check']})"
    if finding["check"] in AT_RISK_CHECKS:
        return f"{who} names a customer at risk of being charged after canceling: it ends by canceling in PayPal"
    if finding["check"] in OWED_CHECKS or (finding.get("refund") or {}).get("transactions"):
        return f"{who} names a customer owed money: it ends by refunding"
    if finding.get("action"):
        return f"{who} asks for an action ({finding['action'].get('type')}): approve it instead"
    if finding["check"] == SOURCE_SHRANK:
        return (f"{who} says a table lost most of its rows and every other finding may be wrong: it ends by itself"
                " with the next saved scan that reads the table as it is")
    return None


def acknowledge(conn: psycopg.Connection, finding_id: str, by: str, now: datetime, *, note: str | None = None,
                until: datetime | None = None) -> tuple[Ack, dict]:
    """Acknowledge the finding as the latest saved scan reports it. Raises AckRefused (unknown, resolved, at risk,
    owed, `until` not in the future). Returns the acknowledgement and the finding."""
    saved = load_finding(conn, finding_id) if has_table(conn, "findings") else None
    if saved is None:
        raise AckRefused(f"finding {finding_id} is in no saved scan (`billing-monitor scan --save` records one)")
    finding, still_open = saved
    if not still_open:
        raise AckRefused(f"finding {finding_id} ({finding['check']}) is resolved: nothing to acknowledge")
    reason = why_not_acknowledgeable(finding)
    if reason:
        raise AckRefused(f"cannot acknowledge: {reason}")
    if until is not None and until <= now:
        raise AckRefused(f"--until {until.date()} is not in the future")
    note = (note or "").strip()[:NOTE_MAX] or None
    ack = Ack(finding_id, by, now, note, until, ack_fingerprint(finding))
    conn.execute(
        f"insert into {SCHEMA}.acknowledgements (finding_id, acked_by, acked_at, note, until, fingerprint)"
        " values (%s, %s, %s, %s, %s, %s) on conflict (finding_id) do update set acked_by = excluded.acked_by,"
        " acked_at = excluded.acked_at, note = excluded.note, until = excluded.until,"
        " fingerprint = excluded.fingerprint, lapsed_at = null, lapsed_reason = null",
        (ack.finding_id, ack.by, ack.at, ack.note, ack.until, ack.fingerprint))
    return ack, finding


def unacknowledge(conn: psycopg.Connection, finding_id: str) -> bool:
    """Forget the finding's acknowledgement; False when it had none."""
    return conn.execute(f"delete from {SCHEMA}.acknowledgements where finding_id = %s", (finding_id,)).rowcount > 0


def acks_of(conn: psycopg.Connection) -> dict[str, Ack]:
    if not has_table(conn, "acknowledgements"):
        return {}
    rows = conn.execute(f"select finding_id, acked_by, acked_at, note, until, fingerprint, lapsed_at"
                        f" from {SCHEMA}.acknowledgements").fetchall()
    return {r[0]: Ack(*r) for r in rows}


def attach_acknowledgements(conn: psycopg.Connection, report: dict, now: datetime, *, record_lapsed: bool) -> list[str]:
    """Set each finding's `acknowledged` block (null unless an acknowledgement holds). With `record_lapsed` (a
    transaction that may write: the saved scan's), acknowledgements whose finding changed are ended for good.
    Returns the ids of those that lapsed because the finding changed."""
    acks = acks_of(conn)
    lapsed = []
    for f in report["findings"]:
        ack = acks.get(f["finding_id"])
        f["acknowledged"] = ack.block() if ack and ack.holds_for(f, now) else None
        if ack and ack.lapsed_at is None and ack.fingerprint != ack_fingerprint(f):
            lapsed.append(f["finding_id"])
    if record_lapsed and lapsed:
        conn.execute(f"update {SCHEMA}.acknowledgements set lapsed_at = %s, lapsed_reason = 'the finding changed'"
                     " where finding_id = any(%s) and lapsed_at is null", (now, lapsed))
    return lapsed
