"""The PayPal side of the scan (docs/spec/paypal-reconciliation.md): PayPal's truth about the watched ids.

Read-only, after the database passes, which it never slows: in the scan's snapshot it reads the watched ids
and their cancellation times (rules/sql/paypal_watched.sql, one pass over subscriptions) and the remembered
settled ids; then, with the snapshot closed, it asks PayPal (one HTTP session, the token cached, a pool of
`workers` concurrent requests, 429 retried honouring Retry-After, a budget of calls and seconds after which
the rest is reported as not checked); then one short read-only query says which PayPal transactions were
imported and which searched subscriptions the database names. Nothing PayPal does can lose the database part:
every PayPal failure ends in a finding's `paypal` block and the top-level `paypal.errors`.

The only calls made: POST /v1/oauth2/token, GET /v1/billing/subscriptions/{id}, GET …/{id}/transactions and
GET /v1/reporting/transactions.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing_monitor import db
from billing_monitor.errors import MonitorError
from billing_monitor.http import DEFAULT_TIMEOUT
from billing_monitor.money import money_str
from billing_monitor.paypal import (
    LIVE_URL,
    SANDBOX_URL,
    PayPalClient,
    PayPalError,
    PayPalNotFound,
    parse_paypal_time,
)
from billing_monitor.rules.checks import _stream
from billing_monitor.rules.finding import Charge, Contact, Finding
from billing_monitor.rules.registry import (
    BILLING_DISCONNECT,
    BLANKS,
    DEFAULT_PAYPAL_MAX_CALLS,
    DEFAULT_PAYPAL_MAX_SECONDS,
    DEFAULT_PAYPAL_SEARCH_DAYS,
    DEFAULT_PAYPAL_WORKERS,
    PAYPAL_ACTIVE_STATUSES,
    PAYPAL_CHARGED_STATUSES,
    PAYPAL_FINAL_STATUSES,
    PAYPAL_ID,
    PAYPAL_NOT_FOUND,
    PAYPAL_OWED_STATUS,
    PAYPAL_PARTIALLY_REFUNDED_STATUS,
    PAYPAL_REFUNDED_STATUS,
    PAYPAL_STILL_ACTIVE,
    PAYPAL_SUBSCRIPTION_NOT_IMPORTED,
    POST_CANCELLATION_CHARGE,
    REFUND_OWED,
    REFUND_PAYPAL_CHARGES,
    SEARCH_COMPLETED,
    SEARCH_EVENT_CODE,
    SEARCH_PAGE_SIZE,
    SEARCH_REFERENCE_TYPE,
    SEARCH_WINDOW_DAYS,
)
from billing_monitor.source import Source

log = logging.getLogger(__name__)

ENVIRONMENTS = {"live": LIVE_URL, "sandbox": SANDBOX_URL}
#: kept back from a Lambda's remaining time: calls in flight (retries included), saving, SNS and Slack
RESERVE_S = 150.0
DEFAULT_WORKERS, DEFAULT_MAX_CALLS, DEFAULT_MAX_SECONDS = DEFAULT_PAYPAL_WORKERS, DEFAULT_PAYPAL_MAX_CALLS, DEFAULT_PAYPAL_MAX_SECONDS
_ZERO = Decimal("0.00")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class PayPalOptions:
    """How to reach PayPal, and how much of it one scan may use."""

    base_url: str
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    environment: str = "custom"                 # live, sandbox, or custom (PAYPAL_BASE_URL)
    search_days: int = DEFAULT_PAYPAL_SEARCH_DAYS
    workers: int = DEFAULT_WORKERS
    max_calls: int = DEFAULT_MAX_CALLS
    max_seconds: float = DEFAULT_MAX_SECONDS
    backoff_s: float = 0.5
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    #: the seconds left to the whole run (a Lambda's remaining time): the budget never runs into it
    remaining_s: Callable[[], float] | None = field(default=None, repr=False, compare=False)

    def seconds_allowed(self) -> float:
        if self.remaining_s is None:
            return self.max_seconds
        return max(0.0, min(self.max_seconds, self.remaining_s() - RESERVE_S))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kw) -> PayPalOptions:
        """PAYPAL_CLIENT_ID, PAYPAL_CLIENT_SECRET, and PAYPAL_BASE_URL or PAYPAL_ENVIRONMENT (live|sandbox): no
        default environment. Raises MonitorError naming what is missing (never a value)."""
        env = os.environ if env is None else env
        missing = [name for name in ("PAYPAL_CLIENT_ID", "PAYPAL_CLIENT_SECRET") if not env.get(name)]
        base_url, environment = env.get("PAYPAL_BASE_URL"), env.get("PAYPAL_ENVIRONMENT")
        if not base_url and not environment:
            missing.append("PAYPAL_BASE_URL or PAYPAL_ENVIRONMENT (live or sandbox)")
        if missing:
            raise MonitorError(f"--paypal needs PayPal credentials: set {', '.join(missing)}")
        if not base_url and environment not in ENVIRONMENTS:
            raise MonitorError(f"PAYPAL_ENVIRONMENT must be live or sandbox, got {environment!r}")
        return cls(base_url or ENVIRONMENTS[environment], env["PAYPAL_CLIENT_ID"], env["PAYPAL_CLIENT_SECRET"],
                   environment="custom" if base_url else environment, **kw)

    def client(self) -> PayPalClient:
        return PayPalClient(self.base_url, self.client_id, self.client_secret, timeout=self.timeout,
                            backoff_s=self.backoff_s, pool_size=self.workers)


# ---------------------------------------------------------------- what is watched (in the scan's snapshot)


@dataclass
class Watched:
    paypal_id: str
    kind: int                          # 1: a finding's cancellation; 2: held by ended rows only
    canceled_at: datetime | None
    all_ended: bool
    subscription_id: str | None = None  # the latest-ended row and what the report says about it
    contact_id: str | None = None
    contact: Contact | None = None
    amount: Decimal | None = None
    currency: str | None = None
    billing_cycle: str | None = None
    kajabi_subscription_id: str | None = None


@dataclass
class WatchList:
    watched: list[Watched]
    remembered_settled: int


def kind1_ids(findings: Iterable[Finding]) -> list[str]:
    """The PayPal ids that a billing_disconnect or a cancelling post_cancellation_charge is about."""
    return sorted({f.action_paypal_id for f in findings
                   if f.check in (BILLING_DISCONNECT, POST_CANCELLATION_CHARGE) and f.action_paypal_id
                   and PAYPAL_ID.match(f.action_paypal_id)})


def find_watched(conn, findings: list[Finding], tolerance: Decimal, settled: set[str],
                 source: Source | None = None) -> WatchList:
    """The watched ids, each once, with their cancellation time: the earlier of K and P (P only when every row
    holding the id is ended). A kind (1) id with neither counts from the latest end among its ended rows."""
    first = set(kind1_ids(findings))
    watched, skipped = [], 0
    for r in _stream(conn, "paypal_watched", {"tol": tolerance, "kind1": sorted(first)}, source or Source()):
        kind = 1 if r.paypal_id in first else 2
        if kind == 2 and r.paypal_id in settled:
            skipped += 1
            continue
        times = [t for t in (r.k_time, r.p_time if r.all_ended else None) if t is not None]
        canceled_at = min(times) if times else r.p_time
        watched.append(Watched(
            r.paypal_id, kind, canceled_at, r.all_ended, r.subscription_id, r.contact_id,
            None if r.orphaned or r.contact_id is None else Contact.from_row(r.contact_id, r.email, r.first_name,
                                                                                r.last_name),
            r.amount, r.cur, r.cycle, r.k_kajabi_id))
    return WatchList(watched, skipped)


# ---------------------------------------------------------------- the settled ids' memory


SETTLED_TABLE = "billing_monitor.paypal_settled"
_READABLE = ("select coalesce(bool_and(has_schema_privilege(n.oid, 'usage') and has_table_privilege(c.oid, 'select')),"
             " false) from pg_namespace n join pg_class c on c.relnamespace = n.oid and c.relname = 'paypal_settled'"
             " where n.nspname = 'billing_monitor'")


def read_settled(conn) -> set[str]:
    """The ids an earlier saved reconciliation found settled; empty when the memory is absent or unreadable
    (checked in the catalog first: a denied read would abort the scan's transaction)."""
    if not conn.execute(_READABLE).fetchone()[0]:
        return set()
    return {r[0] for r in conn.execute(f"select paypal_subscription_id from {SETTLED_TABLE}")}


def read_settled_from(store_dsn: str, statement_timeout_s: float = 60) -> set[str]:
    """read_settled on the store's own database (read-only); nothing remembered when it cannot be read."""
    try:
        with db.connect(store_dsn, read_only=True, statement_timeout_s=statement_timeout_s,
                        application_name="billing-monitor-memory") as conn:
            return read_settled(conn)
    except MonitorError as exc:
        log.warning("settled PayPal ids not read: nothing remembered", extra={"error": str(exc)})
        return set()


# ---------------------------------------------------------------- asking PayPal


class BudgetSpent(Exception):
    pass


class Budget:
    """At most `max_calls` API calls and `max_seconds` of this scan's time; checked before each call."""

    def __init__(self, max_calls: int, max_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.max_calls, self.max_seconds, self.clock = max_calls, max_seconds, clock
        self.deadline = clock() + max_seconds
        self.taken = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.taken >= self.max_calls or self.clock() >= self.deadline:
                raise BudgetSpent(f"not checked: this scan's PayPal budget ({self.max_calls} calls,"
                                  f" {self.max_seconds:g} s) was spent")
            self.taken += 1


@dataclass(frozen=True)
class PayPalCharge:
    id: str
    time: datetime
    amount: Decimal
    currency: str
    status: str


@dataclass
class Asked:
    """What PayPal said about one watched id."""
    status: str | None = None
    error: str | None = None
    next_billing_time: datetime | None = None
    charges: list[PayPalCharge] | None = None     # after its cancellation; None when not asked


def _money(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def ask_about(client: PayPalClient, w: Watched, now: datetime, budget: Budget) -> Asked:
    """Its status, then (unless PayPal does not know it, or it is a kind (2) id neither active nor final) its
    transactions from the cancellation time to now: those strictly after it on which money was taken."""
    if w.canceled_at is None:
        return Asked(error=f"{w.paypal_id} has no cancellation time: not asked")
    try:
        budget.take()
        subscription = client.get_subscription(w.paypal_id)
    except PayPalNotFound:
        return Asked(status=PAYPAL_NOT_FOUND)
    except (PayPalError, BudgetSpent) as exc:
        return Asked(error=str(exc))
    status = subscription.get("status")
    next_billing = (subscription.get("billing_info") or {}).get("next_billing_time")
    asked = Asked(status=status, next_billing_time=parse_paypal_time(next_billing) if next_billing else None)
    if w.kind == 2 and status not in PAYPAL_ACTIVE_STATUSES + PAYPAL_FINAL_STATUSES:
        return asked                # APPROVAL_PENDING, APPROVED: neither active nor final, asked again next time
    try:
        budget.take()
        listed = client.list_transactions(w.paypal_id, w.canceled_at, now)
    except PayPalNotFound:
        return Asked(status=PAYPAL_NOT_FOUND)
    except (PayPalError, BudgetSpent) as exc:
        return Asked(error=str(exc))
    charges = {}
    for t in listed:
        when = parse_paypal_time(t["time"])
        if when > w.canceled_at and t.get("status") in PAYPAL_CHARGED_STATUSES:
            gross = t["amount_with_breakdown"]["gross_amount"]
            charges[t["id"]] = PayPalCharge(t["id"], when, _money(gross["value"]), gross["currency_code"].upper(),
                                            t["status"])
    asked.charges = sorted(charges.values(), key=lambda c: (c.time, c.id))
    return asked


@dataclass(frozen=True)
class SearchedPayment:
    id: str
    subscription_id: str
    time: datetime
    amount: Decimal
    currency: str
    email: str | None
    name: str | None


def search_windows(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end] in windows of at most SEARCH_WINDOW_DAYS; neighbours share their edge instant."""
    windows, step = [], timedelta(days=SEARCH_WINDOW_DAYS)
    while start < end:
        windows.append((start, min(start + step, end)))
        start += step
    return windows


def _payer_name(payer: dict) -> str | None:
    name = payer.get("payer_name") or {}
    if name.get("alternate_full_name"):
        return name["alternate_full_name"]
    joined = " ".join(p for p in (name.get("given_name"), name.get("surname")) if p)
    return joined or None


def qualifying_payments(details: Iterable[dict]) -> list[SearchedPayment]:
    """Subscription payments (T0002), completed (S), referring to a subscription (SUB)."""
    out = []
    for d in details:
        info = d.get("transaction_info") or {}
        if (info.get("transaction_event_code") != SEARCH_EVENT_CODE or info.get("transaction_status") != SEARCH_COMPLETED
                or info.get("paypal_reference_id_type") != SEARCH_REFERENCE_TYPE or not info.get("paypal_reference_id")):
            continue
        payer = d.get("payer_info") or {}
        amount = info.get("transaction_amount") or {}
        out.append(SearchedPayment(
            info["transaction_id"], info["paypal_reference_id"].strip(BLANKS),
            parse_paypal_time(info["transaction_initiation_date"]), _money(amount.get("value", "0")),
            str(amount.get("currency_code", "")).upper(), payer.get("email_address"), _payer_name(payer)))
    return out


def search_window(client: PayPalClient, start: datetime, end: datetime, budget: Budget) -> tuple[list[SearchedPayment], str | None]:
    """Every page of one window: its qualifying payments, and the error that stopped it (None: complete)."""
    payments, page, pages = [], 1, 1
    while page <= pages:
        try:
            budget.take()
            answer = client.search_transactions(start, end, page=page, page_size=SEARCH_PAGE_SIZE)
        except (PayPalError, BudgetSpent) as exc:
            return payments, f"Transaction Search {_iso(start)[:10]} to {_iso(end)[:10]}, page {page}: {exc}"
        payments += qualifying_payments(answer.get("transaction_details") or ())
        pages = int(answer.get("total_pages") or 1)
        page += 1
    return payments, None


# ---------------------------------------------------------------- the reconciliation


@dataclass
class PayPalSide:
    """What the scan adds: the new findings, the blocks of the kind (1) findings, the top-level block, and the
    ids found settled (remembered by a saved scan)."""
    findings: list[Finding]
    blocks: dict[str, IdBlocks]                        # PayPal id -> its blocks, for the kind (1) findings
    summary: dict
    settled: list[tuple[str, str]] = field(default_factory=list)    # (PayPal id, final status)


Lookup = Callable[[list[str], list[str]], tuple[set[str], set[str]]]


def lookup_in(dsn: str, statement_timeout_s: float = 600, source: Source | None = None) -> Lookup:
    """(imported transaction ids, subscription ids some row names), from one short read-only transaction on the
    source relations (`source`: as the scan found them)."""
    source = source or Source()

    def lookup(transaction_ids: list[str], subscription_ids: list[str]) -> tuple[set[str], set[str]]:
        if not transaction_ids and not subscription_ids:
            return set(), set()
        with db.connect(dsn, read_only=True, statement_timeout_s=statement_timeout_s) as conn:
            imported = {r.external_id for r in _stream(conn, "paypal_imported", {"ids": transaction_ids}, source)} \
                if transaction_ids else set()
            known = {r.id for r in _stream(conn, "paypal_known_ids", {"ids": subscription_ids}, source)} \
                if subscription_ids else set()
        return imported, known
    return lookup


def charges_block(charges: list[PayPalCharge], imported: set[str] | None) -> dict:
    total = sum((c.amount for c in charges), _ZERO)
    refunded = sum((c.amount for c in charges if c.status == PAYPAL_REFUNDED_STATUS), _ZERO)
    owed = sum((c.amount for c in charges if c.status == PAYPAL_OWED_STATUS), _ZERO)
    return {
        "count": len(charges), "total": money_str(total), "refunded": money_str(refunded), "owed": money_str(owed),
        "partially_refunded": [c.id for c in charges if c.status == PAYPAL_PARTIALLY_REFUNDED_STATUS],
        "not_imported": None if imported is None else [c.id for c in charges if c.id not in imported],
        "transactions": [c.id for c in charges],
    }


@dataclass
class IdBlocks:
    """What every finding about one watched id carries."""
    paypal: dict
    refund: dict | None = None
    owed: list[Charge] = field(default_factory=list)


def blocks_for(w: Watched, asked: Asked, imported: set[str] | None) -> IdBlocks:
    """The finding's `paypal` and `refund` blocks (paypal-reconciliation.md, "In the report")."""
    if asked.error is not None:
        return IdBlocks({"status": None, "error": asked.error})
    if asked.status == PAYPAL_NOT_FOUND:
        return IdBlocks({"status": PAYPAL_NOT_FOUND, "charges_after_cancellation": None})
    block = {"status": asked.status, "canceled_at": _iso(w.canceled_at), "next_billing_time": _iso(asked.next_billing_time),
             "charges_after_cancellation": None if asked.charges is None else charges_block(asked.charges, imported)}
    owed = [c for c in asked.charges or () if c.status == PAYPAL_OWED_STATUS]
    refund = None
    if owed:
        refund = {"type": REFUND_PAYPAL_CHARGES, "paypal_subscription_id": w.paypal_id,
                  "total": money_str(sum((c.amount for c in owed), _ZERO)), "transactions": [c.id for c in owed],
                  # each owed charge as PayPal lists it (a key added for the customer's letter, issue 14)
                  "charges": [{"transaction_id": c.id, "time": _iso(c.time), "amount": money_str(c.amount),
                               "currency": c.currency} for c in owed]}
    return IdBlocks(block, refund, [Charge(c.id, c.time, c.amount, c.currency) for c in owed])


def _finding_about(check: str, w: Watched, asked: Asked, imported: set[str] | None, blocks: IdBlocks) -> Finding:
    return Finding(
        check=check, key=w.paypal_id, subscription_id=w.subscription_id, paypal_subscription_id=w.paypal_id,
        kajabi_subscription_id=w.kajabi_subscription_id, contact_id=w.contact_id, contact=w.contact,
        amount=w.amount, currency=w.currency, billing_cycle=w.billing_cycle,
        charges=[Charge(c.id, c.time, c.amount, c.currency,
                        external_id=c.id if imported is not None and c.id in imported else None)
                 for c in asked.charges or ()],
        action_paypal_id=w.paypal_id if check == PAYPAL_STILL_ACTIVE else None, paypal=blocks.paypal,
        refund=blocks.refund, owed_charges=blocks.owed)


def not_imported_findings(payments: list[SearchedPayment], known: set[str], imported: set[str]) -> list[Finding]:
    by_subscription: dict[str, dict[str, SearchedPayment]] = {}
    for p in payments:
        if p.subscription_id not in known:
            by_subscription.setdefault(p.subscription_id, {})[p.id] = p      # listed twice: counted once
    findings = []
    for pid, listed in sorted(by_subscription.items()):
        ordered = sorted(listed.values(), key=lambda p: (p.time, p.id))
        last = ordered[-1]
        currencies = {p.currency for p in ordered}
        findings.append(Finding(
            check=PAYPAL_SUBSCRIPTION_NOT_IMPORTED, key=pid, paypal_subscription_id=pid,
            contact=Contact(None, last.email, last.name) if last.email or last.name else None,
            amount=last.amount, currency=last.currency if len(currencies) == 1 else None,
            charges=[Charge(p.id, p.time, p.amount, p.currency, external_id=p.id if p.id in imported else None)
                     for p in ordered]))
    return findings


def reconcile(options: PayPalOptions, watch: WatchList, lookup: Lookup, *, now: datetime | None = None,
              client: PayPalClient | None = None) -> PayPalSide:
    """Ask PayPal about every watched id and search the account's subscription payments; never raises for
    PayPal's sake."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)     # whole seconds: PayPal's query times have no more
    client = client or options.client()
    budget = Budget(options.max_calls, options.seconds_allowed())
    searched_from = now - timedelta(days=options.search_days)
    summary = {"environment": options.environment, "checked_at": _iso(now), "watched": len(watch.watched), "asked": 0,
               "remembered_settled": watch.remembered_settled, "searched_from": _iso(searched_from),
               "searched_to": _iso(now), "not_found": [], "errors": [], "not_checked": 0}
    asked: dict[str, Asked] = {}
    payments: list[SearchedPayment] = []
    try:
        client.access_token()           # bad credentials: one clear line for the whole reconciliation
    except PayPalError as exc:
        line = str(exc)
        summary["errors"].append(line)
        asked = {w.paypal_id: Asked(error=line) for w in watch.watched}
        summary["not_checked"] = len(watch.watched)
    else:
        with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="paypal") as pool:
            searches = [pool.submit(search_window, client, s, e, budget) for s, e in search_windows(searched_from, now)]
            futures = {w.paypal_id: pool.submit(ask_about, client, w, now, budget) for w in watch.watched}
            for window in searches:
                found, error = window.result()
                payments += found
                if error:
                    summary["errors"].append(error)
            for pid, future in futures.items():
                asked[pid] = future.result()
        failed = [(pid, a.error) for pid, a in asked.items() if a.error is not None]
        summary["not_checked"] = len(failed)
        budget_lines = [pid for pid, e in failed if e.startswith("not checked:")]
        summary["errors"] += [f"{pid}: {e}" for pid, e in failed if not e.startswith("not checked:")]
        if budget_lines:
            summary["errors"].append(f"{len(budget_lines)} watched subscription(s) not checked: this scan's PayPal budget"
                                     f" ({budget.max_calls} calls, {budget.max_seconds:g} s) was spent")
    summary["asked"] = client.calls

    transaction_ids = sorted({c.id for a in asked.values() for c in a.charges or ()} | {p.id for p in payments})
    searched_ids = sorted({p.subscription_id for p in payments})
    imported: set[str] | None
    try:
        imported, known = lookup(transaction_ids, searched_ids)
    except MonitorError as exc:
        summary["errors"].append(f"could not look up which PayPal transactions were imported: {exc}")
        imported, known = None, set(searched_ids)

    side = PayPalSide([], {}, summary)
    for w in watch.watched:
        a = asked[w.paypal_id]
        blocks = blocks_for(w, a, imported)
        if a.status == PAYPAL_NOT_FOUND:
            summary["not_found"].append(w.paypal_id)
        if w.kind == 1:
            side.blocks[w.paypal_id] = blocks
        if a.error is not None or a.status == PAYPAL_NOT_FOUND:
            continue
        owes = blocks.refund is not None
        if a.status in PAYPAL_FINAL_STATUSES and a.charges is not None and not owes:
            side.settled.append((w.paypal_id, a.status))
        if w.kind != 2:
            continue
        if a.status in PAYPAL_ACTIVE_STATUSES:
            side.findings.append(_finding_about(PAYPAL_STILL_ACTIVE, w, a, imported, blocks))
        elif a.status in PAYPAL_FINAL_STATUSES and owes:
            side.findings.append(_finding_about(REFUND_OWED, w, a, imported, blocks))
    side.findings += not_imported_findings(payments, known, imported or set())
    return side


def apply_blocks(findings: list[Finding], blocks: dict[str, IdBlocks]) -> None:
    """The kind (1) ids' blocks, on the findings that made them watched."""
    for f in findings:
        if f.check in (BILLING_DISCONNECT, POST_CANCELLATION_CHARGE) and f.action_paypal_id in blocks:
            b = blocks[f.action_paypal_id]
            f.paypal, f.refund, f.owed_charges = b.paypal, b.refund, b.owed
