"""Approved cancellations: check the sender, re-check the finding, cancel in PayPal once, read it back,
record it and mark the row, tell Slack.

This is the only code that writes to a production table: it marks the canceled subscription row
(status, canceled_at, updated_at), in the same transaction as the audit row of what was done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from billing_monitor.actions.approval import ApprovalMessage, RefundApprovalMessage, approver_label, stored_body
from billing_monitor.actions.approvers import Principal, verified_sender
from billing_monitor.paypal import PayPalClient, PayPalError, PayPalTransient, parse_paypal_time
from billing_monitor.report import build_report, customer_label
from billing_monitor.rules.registry import (
    BILLING_DISCONNECT,
    DUPLICATE_SUBSCRIPTION,
    PAYPAL_ACTIVE_STATUSES,
    PAYPAL_ONLY,
    PAYPAL_STILL_ACTIVE,
)
from billing_monitor.scan import run_scan
from billing_monitor.settings import CancelSettings
from billing_monitor.store import ActionRecord, load_finding, open_store, record_action
from billing_monitor.store.actions import ALREADY_CANCELED, CANCELED, REFUSED
from billing_monitor.store.refunds import (
    ALREADY_REFUNDED,
    DONE,
    FAILED,
    PENDING,
    REFUNDED,
    RefundRow,
    claim_refund,
    complete_refund,
    refunds_of,
)

log = logging.getLogger(__name__)
#: the checks every live PayPal row is in exactly one of (detection-rules.md, checks 1-3)
LIVE_ROW_CHECKS = (BILLING_DISCONNECT, DUPLICATE_SUBSCRIPTION, PAYPAL_ONLY)


def paypal_client_for(settings: CancelSettings) -> PayPalClient:
    return PayPalClient(settings.paypal_base_url, settings.paypal_client_id.get_secret_value(),
                        settings.paypal_client_secret.get_secret_value(), backoff_s=settings.http_backoff_s)


@dataclass(frozen=True)
class Delivery:
    """One SQS record as it arrived: the proof of who sent it is SQS's SenderId, not the body."""
    message_id: str
    body: str
    sender_id: str | None


class RefundNotRecorded(Exception):
    """PayPal refunded, and recording it failed: the retry sends the same PayPal-Request-Id, gets PayPal's first
    refund back, and records it."""

    paypal_changed = "yes: PayPal refunded (the retry gets the same refund back)"


class CancellationNotRecorded(Exception):
    """PayPal canceled, and recording it failed: the retry finds it canceled and records it as this approval's."""

    paypal_changed = "yes: PayPal canceled the subscription"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def prevented_charge(result, finding: dict | None, now: datetime) -> tuple[datetime, Decimal, str] | None:
    """The charge a cancellation prevented (prevention.md): the due PayPal showed just before the cancel, when the
    subscription was ACTIVE or SUSPENDED and the due was in the future, at the amount PayPal would have taken: its
    billing_info.last_payment (what it took last cycle), else the subscription's amount in the finding. None: no charge
    was prevented (already ended, no due, a due already past, no amount known)."""
    billing = result.billing_before or {}
    if result.status_before not in PAYPAL_ACTIVE_STATUSES or not billing.get("next_billing_time"):
        return None
    due = parse_paypal_time(billing["next_billing_time"])
    if due <= now:
        return None
    last = (billing.get("last_payment") or {}).get("amount") or {}
    try:
        if last.get("value"):
            return due, Decimal(str(last["value"])).quantize(Decimal("0.01")), str(last.get("currency_code") or "").upper()
        if finding and finding.get("amount"):
            return due, Decimal(finding["amount"]), (finding.get("currency") or "").upper()
    except InvalidOperation:
        return None
    return None


class CancellationService:
    """Handles the approvals of one batch (the fresh scan used for re-checks is made once per batch)."""

    def __init__(self, settings: CancelSettings, paypal: PayPalClient, approvers: Iterable[Principal],
                 notify: Callable[[str], None] | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.settings, self.paypal, self.notify, self.clock = settings, paypal, notify, clock
        self.approvers = tuple(approvers)
        self._fresh: dict[str, dict] | None = None
        self.paypal_progress: dict[str, str] = {}     # approval key -> how far PayPal got (for failure lines)

    # ------------------------------------------------------------------ what is true now

    def fresh_findings(self) -> dict[str, dict]:
        """finding_id -> finding, every finding of a fresh read-only scan."""
        if self._fresh is None:
            report = build_report(run_scan(self.settings.dsn_value, self.settings.tolerance, now=self.clock(),
                                           source_schema=self.settings.source_schema))
            self._fresh = {f["finding_id"]: f for f in report["findings"]}
        return self._fresh

    def _store(self):
        return open_store(self.settings.store_dsn_value, application_name="billing-monitor-cancel")

    def verified_sender(self, delivery: Delivery) -> Principal | None:
        return verified_sender(delivery.sender_id, self.approvers)

    # ------------------------------------------------------------------ outcomes

    def refuse(self, delivery: Delivery, approval: ApprovalMessage | None, reason: str,
               sender: Principal | None = None) -> dict:
        key = approval.idempotency_key if approval else f"message:{delivery.message_id}"
        with self._store() as conn:
            result = record_action(conn, ActionRecord(
                key=key, outcome=REFUSED, detail=reason, approval=approval, message=stored_body(delivery.body),
                message_length=len(delivery.body), sender_id=delivery.sender_id, sender_arn=sender and sender.arn),
                source_schema=self.settings.source_schema)
        self._tell(f":no_entry: Refused: {reason}"
                   + (f" (finding {approval.finding_id}, approved by {approval.approved_by})" if approval else ""))
        log.warning("approval refused", extra={"reason": reason, "key": key, "message_id": delivery.message_id})
        return {**result, "key": key}

    def handle(self, approval: ApprovalMessage, delivery: Delivery, sender: Principal) -> dict:
        """Cancel the approval's PayPal subscription if it still needs it (or `force` may skip that re-check)."""
        key = approval.idempotency_key
        checked = self.recheck(approval)
        if isinstance(checked, str):
            return self.refuse(delivery, approval, checked, sender)
        finding, reason = checked
        self.paypal_progress[key] = "unknown: the cancel may have been sent"
        try:
            result = self.paypal.cancel_subscription(approval.paypal_subscription_id, reason)
        except PayPalTransient:
            raise                                   # SQS tries again, then the DLQ (and its alarm)
        except PayPalError as exc:                  # no such subscription, not active, refused: permanent
            self.paypal_progress[key] = "no"
            return self.refuse(delivery, approval, str(exc), sender)
        self.paypal_progress[key] = f"yes: PayPal shows {result.status_after}"
        outcome, detail = result.outcome, result.detail
        if outcome == ALREADY_CANCELED and result.status_note == reason:
            # canceled with this approval's own words: a delivery before this one did it, and its record failed
            outcome = CANCELED
            detail = f"canceled by this approval at {result.status_changed_at} (recorded on a later delivery)"
        now = self.clock()
        prevented = prevented_charge(result, finding, now) if outcome == CANCELED else None
        if approval.automatic:
            detail = f"{detail} (auto-cancel, policy {approval.policy})"
        try:
            with self._store() as conn:
                recorded = record_action(conn, ActionRecord(
                    key=key, outcome=outcome, detail=detail, approval=approval, message=stored_body(delivery.body),
                    message_length=len(delivery.body), sender_id=delivery.sender_id, sender_arn=sender.arn,
                    paypal_before=result.status_before, paypal_after=result.status_after,
                    paypal_canceled_at=result.status_changed_at, reason=reason, handled_at=now,
                    prevented_due=prevented and prevented[0], prevented_amount=prevented and prevented[1],
                    prevented_currency=prevented and prevented[2]),
                    source_schema=self.settings.source_schema)
        except Exception as exc:
            raise CancellationNotRecorded(f"PayPal {approval.paypal_subscription_id} is {result.status_after},"
                                          f" but recording it failed: {first_line(exc)}") from exc
        if recorded["mark_problem"]:
            log.error("PayPal canceled; the database row could not be marked",
                      extra={"key": key, "paypal_subscription_id": approval.paypal_subscription_id,
                             "problem": recorded["mark_problem"]})
        line = self.done_line(approval, finding, outcome, sender, recorded["detail"])
        if recorded["mark_problem"]:        # done in PayPal, not in the database: not a plain check mark
            line = line.replace(":white_check_mark:", ":warning:", 1)
        if prevented:
            line += f" Prevented PayPal's charge of {prevented[1]} {prevented[2]} on {prevented[0].date().isoformat()}."
        self._tell(line)
        return {**recorded, "key": key, "paypal_status_before": result.status_before,
                "prevented": prevented and {"due": prevented[0].isoformat(), "amount": str(prevented[1]),
                                            "currency": prevented[2]}}

    def recheck(self, approval: ApprovalMessage) -> tuple[dict | None, str] | str:
        """(the finding, the reason PayPal is given) when the approval may go ahead, else why it may not.

        `force` skips the fresh scan's verdict only for a finding that a saved scan reported with a
        cancellation of this very PayPal id, and that no other finding is now about.
        """
        fid, pid = approval.finding_id, approval.paypal_subscription_id
        fresh = self.fresh_findings()
        finding = fresh.get(fid)
        if finding is not None and finding["action"]:
            if finding["action"]["paypal_subscription_id"] != pid:
                return f"finding {fid} is about PayPal {finding['action']['paypal_subscription_id']}, not {pid}"
            return finding, approval.paypal_reason
        with self._store() as conn:
            saved = load_finding(conn, fid)
        if finding is None and saved is not None and saved[1] and saved[0]["check"] == PAYPAL_STILL_ACTIVE:
            return self.recheck_still_active(saved[0], approval, fresh)
        why = (f"a fresh scan reports it as {finding['check']}, which suggests no cancellation" if finding
               else "a fresh scan does not report it")
        if not approval.force:
            if saved is None and finding is None:
                return f"finding {fid} is unknown (no saved or fresh scan reports it)"
            return f"finding {fid} is not a problem any more ({why})"
        if saved is None:
            return f"force refused: finding {fid} is unknown (no saved scan reported it)"
        saved_finding = saved[0]
        action = saved_finding.get("action")
        if not action:
            return f"force refused: finding {fid} ({saved_finding['check']}) never suggested a cancellation"
        if action["paypal_subscription_id"] != pid:
            return f"force refused: finding {fid} is about PayPal {action['paypal_subscription_id']}, not {pid}"
        others = [f for f in fresh.values() if f["finding_id"] != fid and pid in (
            f.get("paypal_subscription_id"), (f.get("action") or {}).get("paypal_subscription_id"))]
        if others:
            return (f"force refused: PayPal {pid} is now reported as {others[0]['check']}"
                    f" (finding {others[0]['finding_id']})")
        return saved_finding, f"Forced by {approval.approved_by}: {why}"[:128]

    def recheck_still_active(self, saved: dict, approval: ApprovalMessage, fresh: dict[str, dict]):
        """A paypal_still_active finding is PayPal's: the fresh (database) scan cannot report it. It still needs
        the cancellation when the saved finding is open and about this id, and no row holding the id is live again
        (a live row makes a database finding about it); PayPal's own status is read again before canceling
        (an ended subscription is already_canceled, never canceled twice)."""
        fid, pid = approval.finding_id, approval.paypal_subscription_id
        if (saved.get("action") or {}).get("paypal_subscription_id") != pid:
            return f"finding {fid} is about PayPal {(saved.get('action') or {}).get('paypal_subscription_id')}, not {pid}"
        live = [f for f in fresh.values() if f["check"] in LIVE_ROW_CHECKS and f.get("paypal_subscription_id") == pid]
        if live:
            return (f"finding {fid} is not a problem any more (PayPal {pid} is live in the database again:"
                    f" {live[0]['check']} {live[0]['finding_id']})")
        return saved, approval.paypal_reason

    def done_line(self, approval: ApprovalMessage, finding: dict | None, outcome: str, sender: Principal,
                  detail: str) -> str:
        """Slack: who, which PayPal subscription, the money it was charging, who approved, what PayPal shows."""
        who = customer_label(finding.get("contact")) if finding else "(customer unknown)"
        money = ""
        if finding and finding.get("amount"):
            money = f", {finding['amount']} {finding['currency']}/{finding.get('billing_cycle') or '?'}"
            charges = finding.get("charges") or {}
            if charges.get("count"):
                money += f"; charged {charges['count']}x after canceling, {charges['total']} {finding['currency']}"
        return (f":white_check_mark: {outcome.replace('_', ' ').capitalize()}: {who}, PayPal"
                f" {approval.paypal_subscription_id}{money}. Approved by {approver_label(approval.approved_by)}"
                f"{f' (policy {approval.policy})' if approval.automatic else ''}"
                f" (sent by {sender.arn}){' (forced)' if approval.force else ''}. {detail}")

    # ------------------------------------------------------------------ refunds

    def fresh_reconciliation(self, paypal_id: str | None = None):
        """finding_id -> (report finding, Finding) of a fresh scan with PayPal's side: about `paypal_id` alone when
        it is known (one customer's calls, within the function's time; Transaction Search over one day only, as
        no refund depends on it), else the whole reconciliation. Made once per batch and PayPal id."""
        cache = self.__dict__.setdefault("_fresh_paypal", {})
        if paypal_id not in cache:
            from billing_monitor.reconcile import PayPalOptions

            s = self.settings
            options = PayPalOptions(s.paypal_base_url, s.paypal_client_id.get_secret_value(),
                                    s.paypal_client_secret.get_secret_value(), backoff_s=s.http_backoff_s,
                                    **({"search_days": 1} if paypal_id else {}))
            result = run_scan(s.dsn_value, s.tolerance, paypal=options, store_dsn=s.store_dsn_value, now=self.clock(),
                              paypal_client=self.paypal, paypal_only={paypal_id} if paypal_id else None,
                              source_schema=s.source_schema)
            report = build_report(result)
            objects = {f.finding_id: f for f in result.findings}
            cache[paypal_id] = {f["finding_id"]: (f, objects.get(f["finding_id"])) for f in report["findings"]}
        return cache[paypal_id]

    def refund_paypal_id(self, approval: RefundApprovalMessage) -> str | None:
        """The PayPal id the refund is about: the message's, else the saved finding's refund block's."""
        if approval.paypal_subscription_id:
            return approval.paypal_subscription_id
        with self._store() as conn:
            saved = load_finding(conn, approval.finding_id)
        return ((saved[0].get("refund") or {}).get("paypal_subscription_id") if saved else None) or None

    def handle_refund(self, approval: RefundApprovalMessage, delivery: Delivery, sender: Principal) -> dict:
        """Refund the approval's charges in full, each once: a capture already claimed by this finding is
        (re)sent with its own PayPal-Request-Id; a new one must be owed by the finding in a fresh reconciliation,
        else the whole message is refused."""
        fid, ids = approval.finding_id, approval.transactions
        key = approval.idempotency_key
        with self._store() as conn:
            rows = refunds_of(conn, ids)
        theirs = [t for t, r in rows.items() if r.finding_id != fid]
        if theirs:
            return self.refuse(delivery, approval, f"transaction {theirs[0]} was refunded for another finding"
                               f" ({rows[theirs[0]].finding_id})", sender)
        new = [t for t in ids if t not in rows]
        finding = None
        if new or not rows:
            fresh = self.fresh_reconciliation(self.refund_paypal_id(approval)).get(fid)
            finding, found = fresh if fresh else (None, None)
            refund = (finding or {}).get("refund") or {}
            owed = {c.transaction_id: c for c in (found.owed_charges or ())} if found else {}
            if approval.paypal_subscription_id and refund and \
                    refund.get("paypal_subscription_id") != approval.paypal_subscription_id:
                return self.refuse(delivery, approval, f"finding {fid} is about PayPal"
                                   f" {refund.get('paypal_subscription_id')}, not {approval.paypal_subscription_id}",
                                   sender)
            for t in new:
                if t not in (refund.get("transactions") or ()):
                    why = ("a fresh reconciliation does not report the finding" if finding is None else
                           f"a fresh reconciliation does not list it as owed by finding {fid}")
                    return self.refuse(delivery, approval, f"transaction {t} is not owed any more ({why});"
                                       " nothing in this approval was refunded", sender)
            with self._store() as conn:
                for t in new:
                    c = owed.get(t)
                    rows[t] = claim_refund(conn, fid, t, paypal_subscription_id=refund.get("paypal_subscription_id"),
                                           amount=c and c.amount, currency=c and c.currency,
                                           approved_by=approval.approved_by, sender_arn=sender.arn,
                                           message_id=delivery.message_id, charged_at=c and c.date)
        done: list[RefundRow] = []
        for t in ids:
            row = rows[t]
            if row.state != PENDING:
                continue
            self.paypal_progress[key] = f"unknown: the refund of {t} may have been sent"
            try:
                result = self.paypal.refund_capture(t, row.request_id)
            except PayPalTransient:
                raise                                # SQS tries again: the same PayPal-Request-Id
            except PayPalError as exc:                # permanent for this capture: recorded, not retried
                state, refund_id, status, amount, currency, detail = FAILED, None, None, None, None, str(exc)
            else:
                state = REFUNDED if result.outcome == "refunded" else ALREADY_REFUNDED
                refund_id, status, amount, currency, detail = (result.refund_id, result.status, result.amount,
                                                               result.currency, result.detail)
            try:
                with self._store() as conn:
                    complete_refund(conn, t, state=state, paypal_refund_id=refund_id, paypal_status=status,
                                    amount=amount, currency=currency, detail=detail)
                    rows[t] = refunds_of(conn, [t])[t]
            except Exception as exc:
                raise RefundNotRecorded(f"PayPal answered the refund of {t} ({detail}), but recording it failed:"
                                        f" {first_line(exc)}") from exc
            done.append(rows[t])
        self.paypal_progress[key] = "yes: refunds recorded"
        if done:
            self._tell(self.refund_line(approval, finding, done, sender))
        states = {rows[t].state for t in ids}
        outcome = REFUNDED if states <= {REFUNDED, ALREADY_REFUNDED} else FAILED
        return {"outcome": outcome, "key": key, "detail": "; ".join(f"{t}: {rows[t].state}" for t in ids),
                "refunds": {t: rows[t].paypal_refund_id for t in ids}, "handled_now": [r.transaction_id for r in done]}

    def refund_line(self, approval: RefundApprovalMessage, finding: dict | None, done: list[RefundRow],
                    sender: Principal) -> str:
        who = customer_label(finding.get("contact")) if finding else "(customer unknown)"
        parts = []
        for r in done:
            if r.state == REFUNDED:
                parts.append(f"{r.transaction_id} {r.amount} {r.currency} refunded (PayPal refund {r.paypal_refund_id},"
                             f" {r.paypal_status})")
            elif r.state == ALREADY_REFUNDED:
                parts.append(f"{r.transaction_id} already refunded at PayPal")
            else:
                parts.append(f"{r.transaction_id} NOT refunded: {r.detail}")
        icon = ":white_check_mark:" if all(r.state in DONE[:2] for r in done) else ":warning:"
        forced = " (force ignored: refunds are always re-checked)" if approval.force else ""
        return (f"{icon} Refund: {who}, finding {approval.finding_id}: {'; '.join(parts)}. Approved by"
                f" {approver_label(approval.approved_by)} (sent by {sender.arn}){forced}.")

    def _tell(self, text: str) -> None:
        if self.notify is None:
            return
        try:
            self.notify(text)
        except Exception as exc:  # noqa: BLE001 - Slack never decides the outcome of a cancellation
            log.error("Slack notification failed", extra={"error": first_line(exc)})
