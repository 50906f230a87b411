#!/usr/bin/env python3
"""A simulated year of prevention (prevention.md, "Measured: a simulated year"): how many members who canceled in
Kajabi PayPal charges again, under three ways of running the monitor.

    python bench/simulate_year.py                      # the owner's size, 365 days, seed 19
    python bench/simulate_year.py --days 30 --members 60 --contacts 500 --seed 7

The world: `--contacts` contacts, `--members` of them with a live subscription (a Kajabi row and its PayPal row,
as the imports leave them), each billed by PayPal on its anniversary day at 10:00 UTC; about 5% of live members
cancel in Kajabi each month, at random days and hours, and as many new members join; the imports run daily at
06:00 UTC (bringing the Kajabi cancellations, the new members and PayPal's charges), except for two gaps of three
days. The monitor's REAL code runs against it: the scheduled run (monitor.run_monitoring: scan with PayPal
reconciliation, save, auto-cancel) at 09:00 UTC, and the approvals handled by the cancel function's own code
(CancellationService: re-check, cancel once, read back, audit) against the PayPal stand-in, whose clock the
simulation moves (it bills each ACTIVE subscription when its next_billing_time comes). The monitor is told the time
(`now=`); nothing is patched.

Policies:
  monthly+3d   the monthly scan (1st, 09:00); the owner approves every cancellation it names 3 days later
  daily+1d     the daily scan; the owner approves every cancellation a message names 1 day after it first did
  daily+auto   the daily scan with AutoCancel=unambiguous (no owner approvals): its approvals are handled at once

For each: the charges PayPal took after a member's Kajabi cancellation (count, money), and, among them, those of
members who canceled less than AutoCancelGraceHours + one scan interval (a day) before their due ("too close"):
counted and named. The rest are named too. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "monitor"))

START = datetime(2025, 11, 1, tzinfo=UTC)       # ends before today: the database's own now() stays after every event
IMPORT_AT, SCAN_AT, BILL_AT = timedelta(hours=6), timedelta(hours=9), timedelta(hours=10)
MONTHLY_CANCEL_SHARE = 0.05
GAPS = ((100, 3), (250, 3))                    # (first day, days) without an import
AMOUNTS = (Decimal("22.00"), Decimal("33.00"), Decimal("49.00"))
SCAN_ROLE_ARN = "arn:aws:iam::123456789012:role/billing-monitor-ScanFunctionRole-SIM"
OWNER_ARN = "arn:aws:iam::123456789012:user/owner"
POLICIES = ("monthly+3d", "daily+1d", "daily+auto")


@dataclass
class Member:
    n: int
    contact: uuid.UUID
    kajabi_row: uuid.UUID
    paypal_row: uuid.UUID
    paypal_id: str
    amount: Decimal
    joined: datetime
    canceled: datetime | None = None

    @property
    def name(self) -> str:
        return f"Member {self.n}"


def add_month(t: datetime) -> datetime:
    return t.replace(year=t.year + (t.month == 12), month=t.month % 12 + 1)


def first_billing(joined: datetime) -> datetime:
    """The anniversary day (28 at most), at 10:00 UTC: the first charge is at joining."""
    return joined.replace(day=min(joined.day, 28), hour=10, minute=0, second=0, microsecond=0)


@dataclass
class Plan:
    """Everything random about the year, drawn once from the seed: the same for every policy."""

    contacts: list[uuid.UUID]
    members: list[Member]
    joins: list[Member]                       # in time order
    cancels: dict[int, datetime]              # member n -> when they cancel in Kajabi
    days: int

    @classmethod
    def draw(cls, seed: int, contacts: int, members: int, days: int) -> Plan:
        rng = random.Random(seed)
        uid = lambda: uuid.UUID(int=rng.getrandbits(128), version=4)  # noqa: E731
        people = [uid() for _ in range(contacts)]
        daily = 1 - (1 - MONTHLY_CANCEL_SHARE) ** (12 / 365)

        def member(n: int, joined: datetime) -> Member:
            return Member(n, people[n - 1], uid(), uid(), f"I-SIM{n:09d}", rng.choice(AMOUNTS), joined)

        # the members at the start joined on a random day of the last year
        live = [member(n, START - timedelta(days=rng.randint(1, 360), hours=rng.randint(0, 23))) for n in range(1, members + 1)]
        everyone, joins, cancels = list(live), [], {}
        next_n = members + 1
        for day in range(days):
            base = START + timedelta(days=day)
            leaving = [m for m in live if rng.random() < daily]
            for m in leaving:
                cancels[m.n] = base + timedelta(seconds=rng.randint(0, 86399))
                live.remove(m)
            for _ in leaving:              # as many join: the business keeps its size
                if next_n > contacts:
                    break
                m = member(next_n, base + timedelta(seconds=rng.randint(0, 86399)))
                next_n += 1
                joins.append(m)
                everyone.append(m)
                live.append(m)
        return cls(people, everyone, sorted(joins, key=lambda m: m.joined), cancels, days)


# ---------------------------------------------------------------- the database the imports fill


def copy_rows(conn, table: str, columns: str, rows) -> None:
    with conn.cursor().copy(f"copy public.{table} ({columns}) from stdin") as copy:
        for row in rows:
            copy.write_row(row)


def subscription_rows(m: Member, status: str = "active"):
    yield (m.kajabi_row, m.contact, str(700000000 + m.n), None, status, m.amount, "USD", "month", m.joined, m.joined)
    yield (m.paypal_row, m.contact, None, m.paypal_id, status, m.amount, "USD", "month", m.joined, m.joined)


SUBSCRIPTION_COLUMNS = ("id, contact_id, kajabi_subscription_id, paypal_subscription_id, status, amount, currency,"
                        " billing_cycle, started_at, created_at")
TRANSACTION_COLUMNS = "id, contact_id, source, external_id, amount, currency, status, transaction_date, created_at"


def load_base(dsn: str, plan: Plan) -> None:
    """The production tables at the start (bulk-loaded with COPY): every contact, the live members' rows, and each
    member's last charge before the start (imported)."""
    import psycopg

    start_members = [m for m in plan.members if m.joined < START]
    with psycopg.connect(dsn) as conn:
        copy_rows(conn, "contacts", "id, email, first_name, last_name, created_at",
                  ((c, f"member{i}@example.com", "Member", str(i), START - timedelta(days=400))
                   for i, c in enumerate(plan.contacts, 1)))
        copy_rows(conn, "subscriptions", SUBSCRIPTION_COLUMNS, (r for m in start_members for r in subscription_rows(m)))
        copy_rows(conn, "transactions", TRANSACTION_COLUMNS,
                  ((uuid.UUID(int=m.n, version=4), m.contact, "paypal", f"PAST{m.n:013d}", m.amount, "USD", "completed",
                    last_charge_before(m), last_charge_before(m)) for m in start_members))
        conn.execute("analyze")


def last_charge_before(m: Member) -> datetime:
    t = first_billing(m.joined)
    while add_month(t) <= START:
        t = add_month(t)
    return t


# ---------------------------------------------------------------- one policy's year


@dataclass
class Outcome:
    policy: str
    charges: int = 0
    money: Decimal = Decimal("0.00")
    too_close: list[str] = field(default_factory=list)     # "Member 12 (canceled 2026-03-15 22:10, due 2026-03-16)"
    others: list[str] = field(default_factory=list)
    too_close_charges: int = 0
    leavers: int = 0                                        # members who canceled in Kajabi during the year
    canceled_in_paypal: int = 0
    prevented: int = 0
    scans: int = 0
    seconds: float = 0.0


class Year:
    def __init__(self, plan: Plan, policy: str, dsn: str, grace_hours: float = 24, max_per_run: int = 5):
        from billing_monitor.actions.approvers import Principal
        from billing_monitor.paypal_standin import CLIENT_ID, CLIENT_SECRET, PayPalStandIn
        from billing_monitor.settings import CancelSettings, ScanSettings

        self.plan, self.policy, self.dsn, self.grace_hours = plan, policy, dsn, grace_hours
        self.paypal = PayPalStandIn()
        self.paypal.__enter__()
        self.now = START
        self.paypal.clock_now = START
        for m in plan.members:
            if m.joined < START:
                self.paypal.add(m.paypal_id, "ACTIVE", next_billing_time=add_month(last_charge_before(m)))
                self.paypal.amounts[m.paypal_id] = m.amount
                self.paypal.charge(m.paypal_id, last_charge_before(m), m.amount)
        env = {"BILLING_MONITOR_DSN": dsn, "PAYPAL_BASE_URL": self.paypal.url, "PAYPAL_CLIENT_ID": CLIENT_ID,
               "PAYPAL_CLIENT_SECRET": CLIENT_SECRET, "PAYPAL_SEARCH_DAYS": "31", "BILLING_MONITOR_HTTP_BACKOFF": "0.01",
               "BILLING_MONITOR_AUTO_CANCEL": "unambiguous" if policy == "daily+auto" else "off",
               "BILLING_MONITOR_AUTO_CANCEL_GRACE_HOURS": str(grace_hours),
               "BILLING_MONITOR_AUTO_CANCEL_MAX_PER_RUN": str(max_per_run),
               "BILLING_MONITOR_APPROVALS_QUEUE_URL": "simulated://approvals"}
        self.scan_settings = ScanSettings.from_env(env=env)
        self.cancel_settings = CancelSettings.from_env(env={**env, "IDEMPOTENCY_TABLE": "simulated",
                                                            "BILLING_MONITOR_APPROVER_ARNS": f"{OWNER_ARN},{SCAN_ROLE_ARN}"})
        self.scan_role = Principal(SCAN_ROLE_ARN, "role", "AROASIMULATEDSCAN0001")
        self.owner = Principal(OWNER_ARN, "user", "AIDASIMULATEDOWNER001")
        self.pending: list[tuple[datetime, dict, object]] = []      # (when, approval, sender)
        self.approved: set[str] = set()                              # findings the owner approved
        self.imported_until = START
        self.joined = {m.n for m in plan.members if m.joined < START}
        self.outcome = Outcome(policy)

    # -- the imports

    def run_import(self, at: datetime) -> None:
        import psycopg

        since, self.imported_until = self.imported_until, at
        new = [m for m in self.plan.joins if since < m.joined <= at]
        canceled = [(m, self.plan.cancels[m.n]) for m in self.plan.members
                    if m.n in self.plan.cancels and since < self.plan.cancels[m.n] <= at]
        charges = [(sid, t) for sid, txns in self.paypal.transactions.items() for t in txns if since < t.time <= at]
        by_paypal = {m.paypal_id: m for m in self.plan.members}
        with psycopg.connect(self.dsn) as conn:
            if new:
                copy_rows(conn, "subscriptions", SUBSCRIPTION_COLUMNS, (r for m in new for r in subscription_rows(m)))
            for m, when in canceled:
                conn.execute("update public.subscriptions set status = 'canceled', canceled_at = %s, updated_at = %s"
                             " where id = %s", (when, at, m.kajabi_row))
            if charges:
                copy_rows(conn, "transactions", TRANSACTION_COLUMNS,
                          ((uuid.uuid5(uuid.NAMESPACE_OID, t.id), by_paypal[sid].contact, "paypal", t.id, t.amount, "USD",
                            "completed", t.time, at) for sid, t in charges))

    def people_join(self, until: datetime) -> None:
        """New members subscribe in PayPal (their first charge at joining); the import brings their rows later."""
        for m in self.plan.joins:
            if m.n not in self.joined and m.joined <= until:
                self.joined.add(m.n)
                self.paypal.add(m.paypal_id, "ACTIVE", next_billing_time=add_month(first_billing(m.joined)))
                self.paypal.amounts[m.paypal_id] = m.amount
                self.paypal.charge(m.paypal_id, m.joined, m.amount)

    # -- the monitor

    def scheduled_scan(self, schedule: str) -> None:
        from billing_monitor.monitor import run_monitoring
        from billing_monitor.rules.registry import AT_RISK_CHECKS

        queued = []
        outcome = run_monitoring(self.scan_settings, schedule=schedule, publish=None, now=self.now,
                                 queue_approval=queued.append)
        self.outcome.scans += 1
        for message in queued:                              # the cancel function takes them off the queue at once
            self.pending.append((self.now + timedelta(seconds=30), message, self.scan_role))
        if self.policy == "daily+auto":
            return
        from billing_monitor.actions.approval import build_approval

        delay = timedelta(days=3) if self.policy == "monthly+3d" else timedelta(days=1)
        for f in outcome.report["findings"]:
            if f["check"] in AT_RISK_CHECKS and f.get("action") and f["finding_id"] not in self.approved:
                self.approved.add(f["finding_id"])
                self.pending.append((self.now + delay, build_approval(f, "owner@example.com"), self.owner))

    def handle_approvals(self, until: datetime) -> None:
        from billing_monitor.actions.approval import ApprovalMessage
        from billing_monitor.actions.cancel import CancellationService, Delivery, paypal_client_for

        due = sorted([p for p in self.pending if p[0] <= until], key=lambda p: p[0])
        self.pending = [p for p in self.pending if p[0] > until]
        if not due:
            return
        service = CancellationService(self.cancel_settings, paypal_client_for(self.cancel_settings),
                                      [self.owner, self.scan_role], clock=lambda: self.now)
        for when, message, sender in due:
            body = json.dumps(message)
            result = service.handle(ApprovalMessage.model_validate(message),
                                    Delivery(f"sim-{when:%Y%m%d%H%M%S}-{message['finding_id']}", body, sender.unique_id), sender)
            if result["outcome"] == "canceled":
                self.outcome.canceled_in_paypal += 1
                self.outcome.prevented += bool(result.get("prevented"))

    # -- the clock

    def advance(self, to: datetime) -> None:
        self.paypal.advance_to(to)
        self.now = to

    def run(self) -> Outcome:
        started = time.monotonic()
        try:
            for day in range(self.plan.days):
                base = START + timedelta(days=day)
                events = [(base + SCAN_AT, "scan")]
                if not any(first <= day < first + length for first, length in GAPS):
                    events.append((base + IMPORT_AT, "import"))
                events += [(p[0], "approvals") for p in self.pending if p[0] < base + timedelta(days=1)]
                for when, kind in sorted(set(events)):
                    self.people_join(when)
                    self.advance(when)
                    if kind == "import":
                        self.run_import(when)
                    elif kind == "scan":
                        if self.policy != "monthly+3d":
                            self.scheduled_scan("monthly" if base.day == 1 else "daily")
                        elif base.day == 1:
                            self.scheduled_scan("monthly")
                        self.handle_approvals(when + timedelta(seconds=30))
                    else:
                        self.handle_approvals(when)
                self.people_join(base + timedelta(days=1))
                self.advance(base + timedelta(days=1))
            self.measure()
        finally:
            self.paypal.__exit__(None, None, None)
        self.outcome.seconds = time.monotonic() - started
        return self.outcome

    def measure(self) -> None:
        """The truth, from PayPal's side: every charge after a member's Kajabi cancellation."""
        window = timedelta(hours=self.grace_hours) + timedelta(days=1)
        for m in self.plan.members:
            canceled = self.plan.cancels.get(m.n)
            if canceled is None:
                continue
            self.outcome.leavers += 1
            after = [t for t in self.paypal.transactions.get(m.paypal_id, ()) if t.time > canceled]
            if not after:
                continue
            self.outcome.charges += len(after)
            self.outcome.money += sum((t.amount for t in after), Decimal("0.00"))
            first_due = min(t.time for t in after)
            label = f"{m.name} (canceled {canceled:%Y-%m-%d %H:%M}, charged {first_due:%Y-%m-%d}, {len(after)}x)"
            if first_due - canceled < window:
                self.outcome.too_close.append(label)
                self.outcome.too_close_charges += len(after)
            else:
                self.outcome.others.append(label)


# ---------------------------------------------------------------- running it


def simulate(dsn_of_server: str, *, seed: int = 19, contacts: int = 7000, members: int = 400, days: int = 365,
             policies=POLICIES, say=lambda text: None) -> list[Outcome]:
    """Every policy over the same drawn year; one base database loaded once, cloned for each policy."""
    import psycopg
    from psycopg import conninfo, sql

    from billing_monitor.demo import load_schema

    plan = Plan.draw(seed, contacts, members, days)
    base = f"sim_base_{uuid.uuid4().hex[:8]}"
    made = [base]
    with psycopg.connect(dsn_of_server, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(base)))
    try:
        with psycopg.connect(conninfo.make_conninfo(dsn_of_server, dbname=base), autocommit=True) as conn:
            load_schema(conn)
        load_base(conninfo.make_conninfo(dsn_of_server, dbname=base), plan)
        out = []
        for policy in policies:
            name = f"sim_{policy.replace('+', '_')}_{uuid.uuid4().hex[:6]}"
            with psycopg.connect(dsn_of_server, autocommit=True) as conn:
                conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(base)))
            made.append(name)
            say(f"{policy}: simulating {days} days...")
            out.append(Year(plan, policy, conninfo.make_conninfo(dsn_of_server, dbname=name)).run())
        return out
    finally:
        with psycopg.connect(dsn_of_server, autocommit=True) as conn:
            for name in made:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def table(outcomes: list[Outcome], plan_cancels: int | None = None) -> str:
    head = ("| policy | charges after cancellation | money | of which too close to catch | other | canceled in PayPal"
            " | prevented | scans | time |")
    lines = [head, "|" + "---|" * 9]
    for o in outcomes:
        lines.append(f"| {o.policy} | {o.charges} | {o.money:,.2f} USD | {o.too_close_charges} ({len(o.too_close)} members)"
                     f" | {o.charges - o.too_close_charges} ({len(o.others)} members) | {o.canceled_in_paypal} | {o.prevented}"
                     f" | {o.scans} | {o.seconds:.0f} s |")
    for o in outcomes:
        if o.too_close:
            lines.append(f"\n{o.policy}, too close to catch (canceled less than grace + one day before the charge):")
            lines += [f"  {label}" for label in o.too_close]
        if o.others and o.policy == "daily+auto":
            lines.append(f"\n{o.policy}, charged for another reason:")
            lines += [f"  {label}" for label in o.others]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--contacts", type=int, default=7000)
    parser.add_argument("--members", type=int, default=400)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--policy", action="append", choices=POLICIES, help="only this policy (repeatable)")
    parser.add_argument("--dsn", help="a PostgreSQL server (a role with CREATEDB); default: an embedded one")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)       # the monitor logs every refused or failed step; the table says what matters
    from billing_monitor.demo import embedded_postgres

    def run(dsn: str) -> list[Outcome]:
        return simulate(dsn, seed=args.seed, contacts=args.contacts, members=args.members, days=args.days,
                        policies=tuple(args.policy or POLICIES), say=lambda t: print(t, file=sys.stderr))

    started = time.monotonic()
    if args.dsn:
        outcomes = run(args.dsn)
    else:
        with embedded_postgres() as dsn:
            outcomes = run(dsn)
    print(f"Simulated {args.days} days, seed {args.seed}: {args.contacts:,} contacts, {args.members} live subscriptions,"
          f" ~5% canceling a month, imports daily at 06:00 UTC with gaps of 3 days from days {GAPS[0][0]} and {GAPS[1][0]},"
          f" scans at 09:00, PayPal billing at 10:00 on each anniversary.")
    print(f"{outcomes[0].leavers} members canceled in Kajabi during the period.")
    print(table(outcomes))
    print(f"\nWall time {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
    main()
