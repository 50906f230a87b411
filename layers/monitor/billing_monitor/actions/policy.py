"""Auto-cancel (prevention.md, "Auto-cancel, opt-in"): which findings are unambiguous disconnects, the cap, and the
approval queued for each. Plain Python: no AWS, no database, no clock; the facts it needs and the time the scan
ran at are passed in, so the scheduled scan, the tests and the simulated year decide the same way.

The six criteria, each written once (`refusal`), for a finding about PayPal id X:
  1. a billing_disconnect or paypal_still_active whose action cancels X;
  2. PayPal reported X ACTIVE or SUSPENDED in this same scan;
  3. no live subscriptions row other than the finding's own holds X (either id column, trimmed);
  4. the cancellation that made X watched is at least the grace before the scan's time;
  5. the finding is not acknowledged;
  6. X was never canceled through an approval, nor queued by auto-cancel, before.
More candidates than the cap in one run: none is queued.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from billing_monitor.rules.registry import (
    AT_RISK_CHECKS,
    BILLING_DISCONNECT,
    CANCEL_PAYPAL_SUBSCRIPTION,
    PAYPAL_ACTIVE_STATUSES,
    PAYPAL_STILL_ACTIVE,
)

OFF, UNAMBIGUOUS = "off", "unambiguous"
MODES: tuple[str, ...] = (OFF, UNAMBIGUOUS)
DEFAULT_MAX_PER_RUN = 5
DEFAULT_GRACE_HOURS = 24
#: `approved_by` of an approval auto-cancel queues (a label; the proof is the scan function's role as sender)
AUTO_APPROVER = "auto-cancel"
#: criterion 1's checks
AUTO_CANCELABLE_CHECKS: tuple[str, ...] = (BILLING_DISCONNECT, PAYPAL_STILL_ACTIVE)


@dataclass(frozen=True)
class Facts:
    """What the database and the monitor's store say, gathered by the caller (actions/auto_cancel.py)."""

    live_rows: Mapping[str, Sequence[str]] = field(default_factory=dict)   # X -> live subscriptions rows holding X
    done_before: Collection[str] = ()      # PayPal ids canceled through an approval, or queued by auto-cancel, before


@dataclass
class Decision:
    policy: str
    queued: list[dict] = field(default_factory=list)            # the findings to queue an approval for
    not_queued: dict[str, str] = field(default_factory=dict)    # finding_id -> why not, for every other at-risk one
    line: str | None = None                                      # the run's one line (over the cap; no PayPal)

    def as_report(self) -> dict:
        """The report's `auto_cancel` block (a key added; absent when AutoCancel is off)."""
        return {"policy": self.policy, "queued": [f["finding_id"] for f in self.queued],
                "not_queued": dict(self.not_queued), "line": self.line}


def paypal_id_of(f: dict) -> str | None:
    action = f.get("action") or {}
    return action.get("paypal_subscription_id") if action.get("type") == CANCEL_PAYPAL_SUBSCRIPTION else None


def canceled_at(f: dict) -> datetime | None:
    """The cancellation that made X watched (paypal-reconciliation.md's cancellation time); the Kajabi one without it."""
    text = (f.get("paypal") or {}).get("canceled_at") or f.get("kajabi_canceled_at")
    return datetime.fromisoformat(text) if text else None


def ago(delta: timedelta) -> str:
    """'3 hours', '40 minutes', '2 days'."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} minute{'s' if minutes != 1 else ''}"
    if minutes < 48 * 60:
        return f"{minutes // 60} hour{'s' if minutes // 60 != 1 else ''}"
    return f"{minutes // 1440} days"


def _where_canceled(f: dict) -> str:
    return "canceled in Kajabi" if f.get("kajabi_canceled_at") or f.get("kajabi_subscription_id") else \
        "ended in the database"


def refusal(f: dict, *, now: datetime, grace_hours: float, facts: Facts) -> str | None:
    """Why finding `f` is not an unambiguous disconnect (the first criterion it fails), or None when it is one."""
    pid = paypal_id_of(f)
    if f["check"] not in AUTO_CANCELABLE_CHECKS or pid is None:                                        # 1
        return (f"{f['check']} needs a person's approval (auto-cancel takes billing_disconnect and paypal_still_active)"
                if pid else "nothing to cancel in PayPal")
    block = f.get("paypal")
    if not block or block.get("status") is None:                                                       # 2
        return "PayPal could not be checked"
    if block["status"] not in PAYPAL_ACTIVE_STATUSES:
        return f"PayPal shows {block['status']}"
    others = [r for r in facts.live_rows.get(pid, ()) if str(r) != str(f.get("subscription_id"))]     # 3
    if others:
        return f"another live subscriptions row holds {pid} ({others[0]}): ambiguous"
    when = canceled_at(f)                                                                              # 4
    if when is None:
        return "its cancellation time is unknown"
    grace = timedelta(hours=grace_hours)
    if now - when < grace:
        return f"{_where_canceled(f)} {ago(now - when)} ago (grace {grace_hours:g} h)"
    if f.get("acknowledged") is not None:                                                              # 5
        return "acknowledged"
    if pid in facts.done_before:                                                                       # 6
        return f"{pid} was canceled or auto-canceled before: never auto-canceled again"
    return None


def over_cap_line(count: int, max_per_run: int) -> str:
    return (f"{count} subscriptions would be auto-canceled, more than AutoCancelMaxPerRun ({max_per_run}): nothing was"
            " canceled; approve them one by one, or raise the limit")


def decide(findings: Sequence[dict], *, now: datetime, grace_hours: float = DEFAULT_GRACE_HOURS,
           max_per_run: int = DEFAULT_MAX_PER_RUN, reconciled: bool, facts: Facts) -> Decision:
    """What a scheduled scan that ran at `now` queues. `reconciled`: the scan asked PayPal (else nothing is queued)."""
    decision = Decision(UNAMBIGUOUS)
    at_risk = [f for f in findings if f["check"] in AT_RISK_CHECKS]
    if not reconciled:
        decision.not_queued = {f["finding_id"]: "PayPal was not checked by this scan" for f in at_risk}
        decision.line = "Auto-cancel: nothing queued, this scan did not reconcile with PayPal" if at_risk else None
        return decision
    candidates = []
    for f in at_risk:
        why = refusal(f, now=now, grace_hours=grace_hours, facts=facts)
        if why is None:
            candidates.append(f)
        else:
            decision.not_queued[f["finding_id"]] = why
    if len(candidates) > max_per_run:
        decision.line = over_cap_line(len(candidates), max_per_run)
        decision.not_queued.update({f["finding_id"]: f"over the limit of {max_per_run} a run" for f in candidates})
        return decision
    decision.queued = candidates
    return decision


def approval_reason(f: dict) -> str:
    """'Canceled in Kajabi on 2026-12-02; auto-canceled before PayPal's charge of 2026-12-16' (PayPal keeps 128)."""
    when = canceled_at(f)
    where = _where_canceled(f)
    head = f"{where[0].upper()}{where[1:]} on {when.astimezone(UTC).date().isoformat() if when else 'an unknown date'}"
    due = (f.get("paypal") or {}).get("next_billing_time")
    tail = f"auto-canceled before PayPal's charge of {due[:10]}" if due else \
        f"auto-canceled (PayPal {(f.get('paypal') or {}).get('status')}, no charge scheduled)"
    return f"{head}; {tail}"[:128]


def approval_message(f: dict) -> dict:
    """report-format.md's approval message, as auto-cancel sends it."""
    return {"action": CANCEL_PAYPAL_SUBSCRIPTION, "finding_id": f["finding_id"], "paypal_subscription_id": paypal_id_of(f),
            "approved_by": AUTO_APPROVER, "policy": UNAMBIGUOUS, "reason": approval_reason(f)}
