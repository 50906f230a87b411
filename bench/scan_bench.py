#!/usr/bin/env python3
"""Scan speed and memory against a synthetic production database of a chosen size.

    python bench/scan_bench.py --contacts 400000      # about 5 million transactions

Builds the database in PostgreSQL itself (generate_series), then prints, in one run:
  - the floor: one sequential pass, `select count(*), sum(amount)` over transactions and subscriptions;
  - the whole `billing-monitor scan --format json` as a user runs it (a child process), wall time;
  - their ratio, and the scan's peak RSS (the child's max resident set).
  - stale_import's newest bound: the plan of rules/sql/newest_hint.sql (it must be a Tid Range Scan:
    the table's last pages, not a pass), its time, data_current_to, and how many rows the bound lets
    through the transaction pass's first stage (imported after it: few when imports append);
  - with --compare-with PATH, the same command run by another checkout's code (e.g. a git worktree of the
    previous version) on the same database, alternating with this one's, each run, best and median.
Target (issue 3): ratio <= 3 and peak RSS < 300 MB at 5 million transactions.
Uses the embedded PostgreSQL unless --dsn names an empty database to fill.
The scan command always runs this checkout's code (PYTHONPATH), whatever the venv's editable install.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]

# Per contact (by i % 1000): who they are. Rates are those of a business with the first clean-up's
# problems still in it: 3% duplicates, 2% PayPal-only, 0.3% disconnects, 15% churned, ~0.5% orphans.
BUILD = """
create temporary table people as
select i,
       case when i %% 997 = 0 then null else md5('c' || i)::uuid end as contact_id,
       case when r < 30 then 'duplicate' when r < 50 then 'paypal_only' when r < 53 then 'disconnect'
            when r between 100 and 249 then 'churned' else 'member' end as kind,
       (array[22.00, 33.00, 15.00])[1 + i %% 3] as amount,
       'I-' || upper(substr(md5('p' || i), 1, 12)) as paypal_id
from (select i, i %% 1000 as r from generate_series(1, %(n)s) i) x;

insert into public.contacts (id, email, first_name, last_name)
select md5('c' || i)::uuid, 'member' || i || '@example.com', 'Member', i::text
from generate_series(1, %(n)s) i;

insert into public.subscriptions (id, contact_id, kajabi_subscription_id, paypal_subscription_id, status,
                                  amount, currency, billing_cycle, started_at, canceled_at, updated_at)
select md5('s' || i || '-' || k)::uuid, contact_id,
       case when kind = 'paypal_only' or (kind = 'disconnect' and k = 2) then null
            when kind = 'duplicate' and k = 2 then paypal_id        -- the old import's misfiled id
            else (100000000 + i)::text end,
       case when kind = 'paypal_only' or (kind = 'disconnect' and k = 2) then paypal_id end,
       case when kind = 'churned' or (kind = 'disconnect' and k = 1) then 'canceled' else 'active' end,
       amount, 'USD', 'month', started, ended, coalesce(ended, started)
from (select p.*, ks.k,
             case when kind in ('churned', 'disconnect') then timestamptz '2023-07-01'
                  else timestamptz '2024-05-01' end + (i %% 28) * interval '1 day' as started,
             case when kind = 'churned' or (kind = 'disconnect' and ks.k = 1)
                  then timestamptz '2024-01-01' + (i %% 28) * interval '1 day' end as ended
      from people p
      cross join lateral generate_series(1, case when kind in ('duplicate', 'disconnect') then 2 else 1 end) ks(k)) s;

-- Each member's billing subscription charges monthly until it ends (or July 2025): PayPal rows
-- through PayPal (no subscription_id, as the export), Kajabi rows through Kajabi (linked every
-- other month). A disconnect's PayPal row keeps charging after the Kajabi row ended.
insert into public.transactions (id, contact_id, subscription_id, source, external_id, amount, currency,
                                 status, transaction_date)
select md5('t' || b.id || '-' || m)::uuid, b.contact_id,
       case when b.source = 'kajabi' and m %% 2 = 0 then b.id end,
       b.source, 'TX' || m, b.amount, 'USD',
       case when m %% 40 = 39 then 'refunded' else 'completed' end,
       b.started_at + m * interval '1 month'
from (select s.*, case when s.paypal_subscription_id is not null or s.kajabi_subscription_id like 'I-%%'
                       then 'paypal' else 'kajabi' end as source
      from public.subscriptions s
      where not exists (select 1 from people p                 -- a duplicate's Kajabi row bills nothing
                        where s.id = md5('s' || p.i || '-1')::uuid and p.kind in ('duplicate', 'disconnect'))
     ) b
cross join generate_series(0, 35) m
where b.started_at + m * interval '1 month'
      < case when b.source = 'kajabi' then coalesce(b.canceled_at, timestamptz '2025-07-01')
             else timestamptz '2025-07-01' end;

-- One-off purchases (no subscription: never a finding).
insert into public.transactions (id, contact_id, source, amount, currency, status, transaction_date)
select md5('o' || i)::uuid, md5('c' || i)::uuid, 'kajabi', 97.00, 'USD', 'completed',
       timestamptz '2024-03-01' + (i %% 200) * interval '1 day'
from generate_series(1, %(n)s) i where i %% 10 = 5;
"""


def build(dsn: str, contacts: int) -> dict:
    sys.path.insert(0, str(ROOT / "layers" / "monitor"))
    from billing_monitor.demo import load_schema

    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        load_schema(conn)
        psycopg.ClientCursor(conn).execute(BUILD, {"n": contacts})  # several statements
        conn.execute("vacuum analyze")
    counts = counts_of(dsn)
    counts["build_s"] = time.perf_counter() - started
    return counts


def counts_of(dsn: str) -> dict:
    with psycopg.connect(dsn) as conn:
        counts = {t: conn.execute(f"select count(*) from public.{t}").fetchone()[0]
                  for t in ("contacts", "subscriptions", "transactions")}
    return {**counts, "build_s": 0.0}


def sequential_pass(dsn: str) -> float:
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        conn.execute("select count(*), sum(amount) from public.transactions").fetchone()
        conn.execute("select count(*), sum(amount) from public.subscriptions").fetchone()
        return time.perf_counter() - started


PROBE_PER_ROW = """select t.id from public.transactions t
where not exists (select 1 from public.contacts c where c.id = t.contact_id)"""


def one_probe_per_row(dsn: str) -> float:
    """The orphaned_transaction check alone: one hash probe per transaction, the least any exact scan does."""
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        conn.execute(PROBE_PER_ROW).fetchall()
        return time.perf_counter() - started


def phases(dsn: str) -> dict[str, float]:
    """Where the scan's time goes, measured in this process (best of one run each)."""
    import gc

    import orjson

    sys.path.insert(0, str(ROOT / "layers" / "monitor"))
    from billing_monitor import db, row_security
    from billing_monitor.report import build_report
    from billing_monitor.rules import checks
    from billing_monitor.rules.registry import BILLING_DISCONNECT
    from billing_monitor.scan import ScanResult
    from billing_monitor.source import RELATIONS, check_source

    tolerance = Decimal("1.00")
    times, clock = {}, time.perf_counter
    gc.disable()
    try:
        with db.connect(dsn, read_only=True) as conn:
            source = check_source(conn)
            t = clock()
            row_security.require_every_row(conn, source.schema, RELATIONS)
            times["row level security check (catalog)"] = clock() - t
            t = clock()
            checks.find_row_counts(conn, source)
            times["row counts of the four tables (source_shrank)"] = clock() - t
            t = clock()
            findings = checks.find_subscription_findings(conn, tolerance, source)
            times["subscription pass (SQL + rows to findings)"] = clock() - t
            t = clock()
            disconnects = [f for f in findings if f.check == BILLING_DISCONNECT]
            findings += checks.find_transaction_findings(conn, tolerance, disconnects, source).findings
            times["transaction pass (ended subscriptions, then SQL)"] = clock() - t
        t = clock()
        now = datetime.now(UTC)
        report = build_report(ScanResult(scan_id="bench", started_at=now, finished_at=now,
                                         tolerance=tolerance, findings=findings))
        times["report (findings to dicts, sorted)"] = clock() - t
        t = clock()
        orjson.dumps(report)
        times["JSON"] = clock() - t
    finally:
        gc.enable()
    return times


def scan_command(dsn: str, checkout: Path = ROOT) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS in MB, and the figures of one run of the command by `checkout`'s code.

    A small wrapper process runs it, so RUSAGE_CHILDREN is the scan's own peak, not this script's.
    """
    exe = Path(sys.executable).with_name("billing-monitor")
    code = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "sys.stderr.write(p.stderr.decode())\n"
        "print(json.dumps({'code': p.returncode, 'wall': wall, 'rss': rss, 'bytes': len(p.stdout),"
        " 'head': p.stdout[:1000].decode(errors='replace')}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(checkout / "layers" / "monitor")}
    out = subprocess.run([sys.executable, "-c", code, str(exe), "scan", "--dsn", dsn, "--format", "json"],
                         capture_output=True, text=True, check=True, env=env)
    figures = json.loads(out.stdout.splitlines()[-1])
    if figures["code"] != 0:
        raise SystemExit(f"scan failed: {out.stderr}")
    current = re.search(r'"data_current_to":\s*("[^"]*"|null)', figures.pop("head"))
    figures["data_current_to"] = json.loads(current.group(1)) if current else "-"   # "-": a version without it
    return figures["wall"], figures["rss"], figures


def newest_bound(dsn: str) -> dict:
    """stale_import's newest bound as the scan computes it: its plan's scan node, its time, the bound, and
    the rows imported after it, which the transaction pass's first stage lets through (counted here by a
    pass of the bench's own, not the scan's)."""
    sys.path.insert(0, str(ROOT / "layers" / "monitor"))
    from billing_monitor import db
    from billing_monitor.rules import checks
    from billing_monitor.source import check_source

    with db.connect(dsn, read_only=True) as conn:
        source = check_source(conn)
        plan = [line for (line,) in conn.execute("explain " + checks.load_query("newest_hint"))]
        node = next((m.group(1) for line in plan
                     if (m := re.search(r"((?:Parallel )?(?:Tid Range|Seq|Tid|Index|Index Only|Bitmap Heap) Scan)"
                                        r" on transactions", line))), "?")
        started = time.perf_counter()
        hint = checks._newest_hint(conn, source)
        seconds = time.perf_counter() - started
        through = conn.execute("select count(*) from public.transactions where created_at > %s",
                               (hint,)).fetchone()[0] if hint is not None else 0
    return {"node": node, "seconds": seconds, "hint": hint, "through": through}


def compare(dsn: str, other: Path, repeat: int) -> None:
    """This checkout's scan command and `other`'s, alternating on the same database; each run, best, median."""
    runs: dict[str, list[tuple[float, float, dict]]] = {"this": [], "other": []}
    print(f"alternating runs, this checkout ({ROOT}) and --compare-with ({other}):", flush=True)
    for i in range(repeat):
        for name, checkout in (("other", other), ("this", ROOT)):
            run = scan_command(dsn, checkout)
            runs[name].append(run)
            print(f"  run {i + 1} {name:<5} {run[0]:6.2f} s  {run[1]:4.0f} MB"
                  f"  data_current_to {run[2]['data_current_to']}", flush=True)
    for name in ("other", "this"):
        walls = [r[0] for r in runs[name]]
        print(f"  {name:<5} best {min(walls):.2f} s, median {statistics.median(walls):.2f} s,"
              f" peak RSS {max(r[1] for r in runs[name]):.0f} MB", flush=True)
    ratio = statistics.median(r[0] for r in runs["this"]) / statistics.median(r[0] for r in runs["other"])
    print(f"  this / other (medians): {ratio:.2f}x", flush=True)


@contextlib.contextmanager
def database(dsn: str | None):
    if dsn:
        yield dsn
        return
    sys.path.insert(0, str(ROOT / "layers" / "monitor"))
    from billing_monitor.demo import embedded_postgres

    with embedded_postgres() as server_dsn:
        yield server_dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=40_000)
    parser.add_argument("--dsn", help="an empty database to fill (default: an embedded PostgreSQL)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is kept")
    parser.add_argument("--no-build", action="store_true",
                        help="--dsn names a database an earlier run built: measure it again as it is")
    parser.add_argument("--compare-with", type=Path, metavar="CHECKOUT",
                        help="another checkout of the project (e.g. `git worktree add ../old COMMIT`): run its scan"
                             " command alternately with this one's on the same database, --repeat times each")
    args = parser.parse_args()
    if args.compare_with and not (args.compare_with / "layers" / "monitor" / "billing_monitor").is_dir():
        parser.error(f"--compare-with {args.compare_with}: no layers/monitor/billing_monitor there")

    with database(args.dsn) as dsn:
        counts = counts_of(dsn) if args.no_build else build(dsn, args.contacts)
        print(f"database: {counts['contacts']:,} contacts, {counts['subscriptions']:,} subscriptions, "
              f"{counts['transactions']:,} transactions (built in {counts['build_s']:.1f} s)")
        floor = min(sequential_pass(dsn) for _ in range(args.repeat))
        runs = [scan_command(dsn) for _ in range(args.repeat)]
        wall = min(r[0] for r in runs)
        rss = max(r[1] for r in runs)
        report_mb = runs[0][2]["bytes"] / 1e6
        print(f"sequential pass (count+sum, transactions and subscriptions): {floor:.2f} s", flush=True)
        print(f"billing-monitor scan --format json (whole command):          {wall:.2f} s", flush=True)
        print(f"ratio scan / sequential pass:                                {wall / floor:.2f}x  (target <= 3)", flush=True)
        print(f"scan peak RSS:                                               {rss:.0f} MB  (target < 300)", flush=True)
        print(f"report size:                                                 {report_mb:.1f} MB", flush=True)
        print(f"scan's data_current_to:                                      {runs[0][2]['data_current_to']}", flush=True)
        bound = newest_bound(dsn)
        print(f"stale_import's newest bound (newest_hint.sql):               {bound['node']}, {bound['seconds']:.3f} s"
              f"{'' if bound['node'] == 'Tid Range Scan' else '  (NOT a Tid Range Scan: a pass over transactions)'}",
              flush=True)
        print(f"  bound {bound['hint']}; rows imported after it (through the first stage): {bound['through']:,}",
              flush=True)
        probe = min(one_probe_per_row(dsn) for _ in range(args.repeat))
        print(f"one hash probe per transaction (orphan check alone):         {probe:.2f} s"
              f"  ({probe / floor:.2f}x)", flush=True)
        print("where the scan's time goes (in process):", flush=True)
        for name, seconds in phases(dsn).items():
            print(f"  {name:<58} {seconds:.2f} s", flush=True)
        if args.compare_with:
            compare(dsn, args.compare_with.resolve(), args.repeat)


if __name__ == "__main__":
    main()
