"""`billing-monitor`: scan, demo, history, approve, ack, unack, actions, letter, doctor.

Exit codes: 0 the command ran, 1 any error (one line on stderr, no traceback, no password),
3 the scan ran and --fail-on was met.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from contextlib import contextmanager
from datetime import UTC, datetime

from billing_monitor.db import redact
from billing_monitor.errors import MonitorError
from billing_monitor.money import parse_tolerance
from billing_monitor.report import build_report, customer_label, render_table
from billing_monitor.rules.registry import (
    DEFAULT_PAYPAL_MAX_CALLS,
    DEFAULT_PAYPAL_MAX_SECONDS,
    DEFAULT_PAYPAL_SEARCH_DAYS,
    DEFAULT_STALE_AFTER_DAYS,
    SEVERITIES,
    at_least,
)
from billing_monitor.scan import DEFAULT_TOLERANCE, run_scan
from billing_monitor.source import DEFAULT_SOURCE_SCHEMA, PAGE, SOURCE_SCHEMA_ENV, quote_ident
from billing_monitor.store import (
    SCHEMA,
    has_table,
    list_actions,
    list_scans,
    load_finding,
    open_store,
    read_store,
    save_scan,
)

EXIT_OK, EXIT_ERROR, EXIT_FAIL_ON = 0, 1, 3
DSN_ENV = "BILLING_MONITOR_DSN"
STORE_DSN_ENV = "BILLING_MONITOR_STORE_DSN"
QUEUE_ENV = "BILLING_MONITOR_APPROVALS_QUEUE_URL"
DOCTOR_SECTIONS = ("database", "store", "paypal", "slack", "queue")     # billing_monitor.doctor.SECTIONS


def _positive_days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, 1 or more, got {text!r}")
    return days


def _future_date(text: str):
    from datetime import UTC, datetime

    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a date, YYYY-MM-DD, got {text!r}") from None


DESCRIPTION = """\
Checks the production billing tables (read-only) for problems, each reported as a finding:
above all, customers PayPal still charges after they canceled in Kajabi. The owner approves
canceling a finding's PayPal subscription; the deployed cancel function then carries it out."""
EPILOG = "Run `billing-monitor COMMAND --help` for a command's options."
DSN_HELP = ("the production database's DSN (connection string): postgresql://USER:PASSWORD@HOST:5432/DBNAME"
            " with special characters in the password percent-encoded (@ as %%40), or key=value pairs such as"
            f" host=HOST dbname=DBNAME user=USER password='...' (default: ${DSN_ENV})")


def _production_dsn_help(use: str) -> str:
    return f"the production database's DSN, as for scan; {use} (default: ${DSN_ENV})"


STORE_DSN_HELP = (f"DSN of the database that keeps the monitor's own schema, billing_monitor (default: ${STORE_DSN_ENV},"
                  " else the --dsn one)")


SOURCE_SCHEMA_HELP = (f"the schema of the four relations the scan reads: tables, or views mapping your tables to the"
                      f" layout the monitor reads ({PAGE}) (default: ${SOURCE_SCHEMA_ENV}, else public)")


def _add_source_schema(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source-schema", default=None, metavar="SCHEMA", help=SOURCE_SCHEMA_HELP)


def _source_schema(args) -> str:
    schema = getattr(args, "source_schema", None) or os.environ.get(SOURCE_SCHEMA_ENV) or DEFAULT_SOURCE_SCHEMA
    quote_ident(schema)           # MonitorError when the queries cannot carry it
    return schema


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table: for a person, starting with who was charged after canceling (default); json: the whole report,"
                        " for programs")
    p.add_argument("--tolerance", default=str(DEFAULT_TOLERANCE),
                   help="how far apart two amounts may be, in the currency, and still count as the same price"
                        " when matching a Kajabi subscription to a PayPal one or a charge to a subscription"
                        " (default 1.00)")
    p.add_argument("--fail-on", choices=SEVERITIES, default=None,
                   help="exit 3 when a finding of this severity or worse is found")
    p.add_argument("--stale-after-days", type=_positive_days, default=DEFAULT_STALE_AFTER_DAYS, metavar="DAYS",
                   help="report stale_import when the newest imported transaction is older than this"
                        f" (default {DEFAULT_STALE_AFTER_DAYS})")
    p.add_argument("--statement-timeout", type=float, default=600, metavar="SECONDS",
                   help="cancel any query that runs longer (default 600)")


def _add_paypal_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--paypal", action="store_true",
                   help="also ask PayPal, read-only, what it charged: subscriptions still active there, money owed,"
                        " payments the imports never brought in (needs $PAYPAL_CLIENT_ID, $PAYPAL_CLIENT_SECRET and"
                        " $PAYPAL_BASE_URL or $PAYPAL_ENVIRONMENT=live|sandbox)")
    p.add_argument("--paypal-search-days", type=_positive_days, default=DEFAULT_PAYPAL_SEARCH_DAYS, metavar="DAYS",
                   help="how far back Transaction Search looks for subscriptions the database does not name"
                        f" (default {DEFAULT_PAYPAL_SEARCH_DAYS}, so that a yearly subscription shows too)")
    p.add_argument("--paypal-max-calls", type=int, default=DEFAULT_PAYPAL_MAX_CALLS, metavar="N",
                   help="at most this many PayPal calls per scan; the rest is reported as not checked"
                        f" (default {DEFAULT_PAYPAL_MAX_CALLS})")
    p.add_argument("--paypal-max-seconds", type=float, default=DEFAULT_PAYPAL_MAX_SECONDS, metavar="SECONDS",
                   help="start no PayPal call after this many seconds; the rest is reported as not checked"
                        f" (default {DEFAULT_PAYPAL_MAX_SECONDS:g})")


def paypal_options(args, env=None):
    """The PayPal options of a --paypal scan (MonitorError, before anything is scanned, when one is missing)."""
    from billing_monitor.reconcile import PayPalOptions

    return PayPalOptions.from_env(env, search_days=args.paypal_search_days, max_calls=args.paypal_max_calls,
                                  max_seconds=args.paypal_max_seconds)


def report_paypal_errors(report: dict) -> None:
    """Each PayPal error on stderr (the report has them all in paypal.errors): the scan itself succeeded."""
    errors = (report.get("paypal") or {}).get("errors") or []
    for line in errors[:5]:
        print(f"billing-monitor: PayPal: {line}", file=sys.stderr)
    if len(errors) > 5:
        print(f"billing-monitor: PayPal: …and {len(errors) - 5} more (paypal.errors in --format json)", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="billing-monitor", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    def command(name: str, sentence: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=sentence, description=sentence[0].upper() + sentence[1:] + ".")

    scan = command("scan", "check the production database now and print what it finds")
    scan.add_argument("--dsn", default=None, help=DSN_HELP)
    scan.add_argument("--save", action="store_true",
                      help="record the scan in the billing_monitor schema, as the scheduled function does")
    scan.add_argument("--store-dsn", default=None, help=STORE_DSN_HELP)
    _add_source_schema(scan)
    _add_paypal_options(scan)
    scan.add_argument("--auto-cancel-preview", action="store_true",
                      help="with --paypal: say what AutoCancel=unambiguous would queue (nothing is sent); the limits are"
                           " BILLING_MONITOR_AUTO_CANCEL_MAX_PER_RUN and BILLING_MONITOR_AUTO_CANCEL_GRACE_HOURS, as the"
                           " scan function reads them")
    _add_output_options(scan)
    history = command("history", "list the saved scans, newest first, with their counts and who was charged after canceling")
    history.add_argument("--store-dsn", default=None, help=STORE_DSN_HELP)
    history.add_argument("--dsn", default=None, help=_production_dsn_help("used when no store DSN is given"))
    history.add_argument("--limit", type=int, default=12, help="how many scans to list (default 12)")
    approve = command("approve", "approve canceling the PayPal subscription of one finding (sent to the approvals queue)")
    approve.add_argument("finding_id", help="the finding's 16-character id, as the scan lists it")
    approve.add_argument("--by", required=True, metavar="EMAIL", help="who approves (must be on the allow-list)")
    approve.add_argument("--reason", default=None, help="recorded, and sent to PayPal (1-128 characters)")
    approve.add_argument("--force", action="store_true",
                         help="cancel even if a fresh scan no longer reports the finding")
    approve.add_argument("--refund", action="store_true",
                         help="approve refunding the finding's owed PayPal charges in full instead of a cancellation"
                              " (the finding as a --paypal scan reports it: a saved one, else a fresh one with PayPal)")
    approve.add_argument("--transactions", default=None, metavar="ID,...",
                         help="with --refund: only these PayPal transaction ids (default: every owed charge)")
    _add_paypal_options(approve)
    approve.add_argument("--dry-run", action="store_true", help="print the message instead of sending it")
    approve.add_argument("--queue-url", default=None, help=f"approvals queue (default: ${QUEUE_ENV})")
    approve.add_argument("--dsn", default=None, help=_production_dsn_help("scanned when no saved scan has the finding"))
    approve.add_argument("--store-dsn", default=None, help=STORE_DSN_HELP)
    _add_source_schema(approve)
    ack = command("ack", "acknowledge a finding that needs no action (a duplicate, a misfiled id, a member billed by PayPal"
                         " alone, ...): left out of Slack's counts until it changes, or until a date")
    ack.add_argument("finding_id", help="the finding's 16-character id, as the scan lists it")
    ack.add_argument("--note", default=None, help="why, for whoever reads the report (kept in its acknowledged block)")
    ack.add_argument("--until", type=_future_date, default=None, metavar="YYYY-MM-DD",
                     help="back in Slack from this date (00:00 UTC) even if unchanged (default: until it changes)")
    ack.add_argument("--by", default=None, help="who acknowledges (default: cli:$USER)")
    ack.add_argument("--store-dsn", default=None, help=STORE_DSN_HELP)
    ack.add_argument("--dsn", default=None, help=_production_dsn_help("used when no store DSN is given"))
    unack = command("unack", "forget a finding's acknowledgement: counted in Slack again from the next scan")
    unack.add_argument("finding_id", help="the finding's 16-character id")
    unack.add_argument("--store-dsn", default=None, help=STORE_DSN_HELP)
    unack.add_argument("--dsn", default=None, help=_production_dsn_help("used when no store DSN is given"))
    letter = command("letter", "print the e-mail to a customer charged after canceling: what was charged and refunded")
    letter.add_argument("finding_id", help="the finding's 16-character id")
    letter.add_argument("--template", default=None, metavar="PATH",
                        help="a Jinja2 template (first line 'Subject: ...'); default: the built-in one")
    letter.add_argument("--sender", default="The team", help="the signature (default: The team)")
    letter.add_argument("--dsn", default=None, help=_production_dsn_help("scanned when no saved scan has the finding"))
    letter.add_argument("--store-dsn", default=None, help=STORE_DSN_HELP)
    _add_source_schema(letter)
    _add_paypal_options(letter)
    actions = command("actions", "list what the cancel function canceled or refused, and when")
    actions.add_argument("--dsn", default=None, help=_production_dsn_help("used when no store DSN is given"))
    actions.add_argument("--store-dsn", default=None, help=STORE_DSN_HELP)
    actions.add_argument("--limit", type=int, default=50, help="how many actions to list (default 50)")
    doctor = command("doctor", "check a configuration before the first scan, changing nothing: the database roles,"
                               " PayPal, Slack and the approvals queue, one line each with ✓ or the fix")
    doctor.add_argument("--dsn", default=None, help=_production_dsn_help("the reader role's (monitor_reader)"))
    doctor.add_argument("--store-dsn", default=None, help=f"the writer role's DSN (monitor_writer; default: ${STORE_DSN_ENV})")
    _add_source_schema(doctor)
    doctor.add_argument("--paypal-id", default=None, metavar="I-…",
                        help="a PayPal subscription id to read (a current member's): proves the app may read subscriptions")
    doctor.add_argument("--post", action="store_true", help="post one test message to the Slack webhook")
    doctor.add_argument("--queue-url", default=None, help=f"approvals queue (default: ${QUEUE_ENV})")
    doctor.add_argument("--skip", action="append", default=[], choices=DOCTOR_SECTIONS, help="leave a part out (repeatable)")
    doctor.add_argument("--only", action="append", default=[], choices=DOCTOR_SECTIONS, help="check only this part (repeatable)")
    demo = command("demo", "scan a synthetic copy of the first clean-up in an embedded PostgreSQL: no database needed")
    demo.add_argument("--paypal", action="store_true",
                      help="a month after the first clean-up, reconciled with the project's PayPal stand-in on 127.0.0.1"
                           " (offline): the four rows marked canceled by hand, still ACTIVE and charging in PayPal")
    demo.add_argument("--walkthrough", action="store_true",
                      help="with --paypal: then approve, offline, the four cancellations and every refund owed through"
                           " the approvals function's own code, and report the scan after (nothing owed)")
    _add_output_options(demo)
    return parser


def emit_report(report: dict, fmt: str, fail_on: str | None) -> int:
    if fmt == "json":
        # indented for a person at a terminal; compact into a pipe (orjson: the report of a big
        # database is tens of MB, which the standard library's encoder takes a noticeable time over)
        import orjson

        indent = orjson.OPT_INDENT_2 if sys.stdout.isatty() else 0
        data = orjson.dumps(report, option=indent | orjson.OPT_APPEND_NEWLINE)
        binary = getattr(sys.stdout, "buffer", None)      # a text-only stdout (embedding) gets text
        sys.stdout.flush()
        if binary is None:
            sys.stdout.write(data.decode())
        else:
            binary.write(data)
            binary.flush()
    else:
        print(render_table(report))
    if fail_on and any(report["summary"]["by_severity"][s] for s in at_least(fail_on)):
        return EXIT_FAIL_ON
    return EXIT_OK


def _dsn(args) -> str:
    dsn = args.dsn or os.environ.get(DSN_ENV)
    if not dsn:
        raise MonitorError(f"no database configured: pass --dsn or set {DSN_ENV}")
    return dsn


def _store_dsn(args) -> str:
    return args.store_dsn or os.environ.get(STORE_DSN_ENV) or _dsn(args)


@contextmanager
def _without_cyclic_gc():
    """A big scan makes tens of thousands of small objects, none in a cycle; the cyclic collector
    would walk them again and again for nothing (measured: up to a quarter of the report's time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def cmd_scan(args) -> int:
    tolerance = parse_tolerance(args.tolerance)
    dsn = _dsn(args)
    paypal = paypal_options(args) if args.paypal else None
    with _without_cyclic_gc():
        result = run_scan(dsn, tolerance, statement_timeout_s=args.statement_timeout,
                          stale_after_days=args.stale_after_days, paypal=paypal, store_dsn=_store_dsn(args),
                          source_schema=_source_schema(args))
        report = build_report(result)
    if args.auto_cancel_preview:
        report["auto_cancel"] = _auto_cancel_preview(args, dsn, report, result.started_at)
    report_paypal_errors(report)
    from billing_monitor.store.acks import attach_acknowledgements

    if args.save:
        with open_store(_store_dsn(args)) as conn:
            diff = save_scan(conn, report, result.settled)
            attach_acknowledgements(conn, report, datetime.now(UTC), record_lapsed=True)
        print(f"Saved scan {report['scan_id']}: {len(diff.new)} new, {len(diff.still_open)} still open,"
              f" {len(diff.resolved)} resolved.", file=sys.stderr)
    else:
        try:        # the owner's acknowledgements, when the monitor's schema is there and readable
            with read_store(_store_dsn(args)) as conn:
                if conn is not None:
                    attach_acknowledgements(conn, report, datetime.now(UTC), record_lapsed=False)
        except MonitorError:
            pass
    return emit_report(report, args.format, args.fail_on)


def _auto_cancel_preview(args, dsn: str, report: dict, now) -> dict:
    from billing_monitor.actions.auto_cancel import preview
    from billing_monitor.settings import ScanSettings

    if not args.paypal:
        raise MonitorError("--auto-cancel-preview needs --paypal: auto-cancel acts only on what PayPal said in the scan")
    limits = {}
    for name, kind in (("max_per_run", int), ("grace_hours", float)):
        field = ScanSettings.model_fields[f"auto_cancel_{name}"]        # the scan function's variable and default
        variable, default = field.alias, field.default
        text = os.environ.get(variable) or str(default)
        try:
            limits[name] = kind(text)
        except ValueError:
            raise MonitorError(f"{variable} must be a number, got {text!r}") from None
        if limits[name] < 0:
            raise MonitorError(f"{variable} must not be negative, got {text!r}")
    return preview(report, dsn=dsn, store_dsn=_store_dsn(args), now=now, source_schema=_source_schema(args), **limits)


def _has_column(conn, table: str, column: str) -> bool:
    return conn.execute("select exists (select 1 from information_schema.columns where table_schema = %s and"
                        " table_name = %s and column_name = %s)", (SCHEMA, table, column)).fetchone()[0]


def cmd_history(args) -> int:
    from billing_monitor.report import prevented_words
    from billing_monitor.store.actions import prevented_by_month

    with read_store(_store_dsn(args)) as conn:     # read-only: the reader role does, when it may read the schema
        scans = list_scans(conn, args.limit) if conn and has_table(conn, "scan_runs") else []
        prevented = prevented_by_month(conn) if conn and _has_column(conn, "actions", "prevented_due") else []
    if not scans:
        print("No saved scan yet (billing-monitor scan --save records one).")
    for scan in scans:
        by = scan["summary"]["by_severity"]
        counts = ", ".join(f"{by[s]} {s}" for s in SEVERITIES)
        print(f"{scan['started_at']:%Y-%m-%d %H:%M} UTC  {scan['scan_id']}  {counts}  {scan['money_line']}")
    if prevented:
        print("\nPrevented (cancellations made before PayPal's next charge):")
    for month, by_currency in prevented:
        print(f"{month}  {prevented_words(by_currency)}")
    return EXIT_OK


def cmd_demo(args) -> int:
    from billing_monitor.demo import embedded_postgres, load_demo_data

    tolerance = parse_tolerance(args.tolerance)
    if args.format == "table":
        print("Starting an embedded PostgreSQL and loading the synthetic first clean-up...", file=sys.stderr)
    if args.walkthrough and not args.paypal:
        raise MonitorError("--walkthrough needs --paypal")
    if args.paypal:
        return emit_report(build_report(_demo_with_paypal(args, tolerance)), args.format, args.fail_on)
    with embedded_postgres() as dsn:
        load_demo_data(dsn)
        result = run_scan(dsn, tolerance, statement_timeout_s=args.statement_timeout,
                          stale_after_days=args.stale_after_days)
    return emit_report(build_report(result), args.format, args.fail_on)


def _demo_with_paypal(args, tolerance):
    from billing_monitor.demo import build_worked_example, embedded_postgres, load_demo_data, paypal_world
    from billing_monitor.paypal_standin import CLIENT_ID, CLIENT_SECRET, PayPalStandIn
    from billing_monitor.reconcile import PayPalOptions

    if args.format == "table":
        print("...a month after the first clean-up, with the project's PayPal stand-in on 127.0.0.1...", file=sys.stderr)
    with embedded_postgres() as dsn, PayPalStandIn() as standin:
        data = load_demo_data(dsn, build_worked_example(month_after_cleanup=True))
        paypal_world(data, standin)
        options = PayPalOptions(standin.url, CLIENT_ID, CLIENT_SECRET, environment="custom", backoff_s=0.05)
        result = run_scan(dsn, tolerance, statement_timeout_s=args.statement_timeout,
                          stale_after_days=args.stale_after_days, paypal=options)
        if getattr(args, "walkthrough", False):
            from billing_monitor.demo import walkthrough

            def rescan():
                return run_scan(dsn, tolerance, statement_timeout_s=args.statement_timeout,
                                stale_after_days=args.stale_after_days, paypal=options)

            walkthrough(dsn, standin, build_report(result), result.settled, tolerance, rescan)
            result = rescan()
        return result


def find_finding(args, *, refund: bool = False) -> dict:
    """The finding as the last saved scan has it, else as a fresh scan reports it (for a refund: a saved finding
    with a refund block, else a fresh scan with PayPal's side)."""
    with read_store(_store_dsn(args)) as conn:
        if conn and has_table(conn, "findings"):
            saved = load_finding(conn, args.finding_id)
            if saved and saved[1] and (not refund or saved[0].get("refund")):
                return saved[0]
    options = paypal_options(args) if refund else None
    report = build_report(run_scan(_dsn(args), DEFAULT_TOLERANCE, paypal=options, source_schema=_source_schema(args)))
    for finding in report["findings"]:
        if finding["finding_id"] == args.finding_id:
            return finding
    raise MonitorError(f"finding {args.finding_id} is not in the saved scans nor in a fresh scan")


def cmd_approve(args) -> int:
    # Imported here: the approval model (pydantic) is not needed by a scan, which starts faster without it.
    from billing_monitor.actions.approval import ApprovalRefused, build_approval, build_refund_approval

    if args.transactions and not args.refund:
        raise MonitorError("--transactions needs --refund")
    if args.refund and args.force:
        raise MonitorError("--force does not apply to refunds: a refund is always re-checked")
    finding = find_finding(args, refund=args.refund)
    charges = finding.get("charges")
    price = "" if finding.get("amount") is None else (
        f", {finding['amount']} {finding.get('currency') or ''}".rstrip()
        + (f"/{finding['billing_cycle']}" if finding.get("billing_cycle") else ""))
    if charges and charges.get("count"):         # only a finding about charges after canceling has them
        charged = f"; charged {charges['count']}x after canceling, {charges['total']} {finding.get('currency')}"
    elif charges is not None:
        charged = "; not charged after canceling (yet)"
    else:
        charged = ""
    paypal_id = finding.get("paypal_subscription_id")
    print(f"{finding['check']} {finding['finding_id']}: {customer_label(finding.get('contact'))}"
          f"{f', PayPal {paypal_id}' if paypal_id else ''}{price}{charged}", file=sys.stderr)
    try:
        if args.refund:
            chosen = [t.strip() for t in (args.transactions or "").split(",") if t.strip()] or None
            message = build_refund_approval(finding, args.by, chosen, args.reason)
        else:
            message = build_approval(finding, args.by, args.reason, args.force)
    except ApprovalRefused as exc:
        raise MonitorError(str(exc)) from None
    if args.refund:
        refund = finding["refund"]
        everything = message["transactions"] == refund["transactions"]
        print(f"Refund {len(message['transactions'])} PayPal charge(s) of {customer_label(finding.get('contact'))}"
              f" (PayPal {refund['paypal_subscription_id']}): {', '.join(message['transactions'])};"
              + (f" total {refund['total']} {finding.get('currency') or ''}".rstrip() if everything
                 else f" of {len(refund['transactions'])} owed, {refund['total']} {finding.get('currency') or ''}".rstrip()),
              file=sys.stderr)
    if args.dry_run:
        print(json.dumps(message, indent=2))
        return EXIT_OK
    queue_url = args.queue_url or os.environ.get(QUEUE_ENV)
    if not queue_url:
        raise MonitorError(f"no approvals queue: pass --queue-url or set {QUEUE_ENV} (the stack's ApprovalsQueueUrl)")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    sqs = boto3.client("sqs")
    check_approver_identity(sqs, boto3.client("sts"), queue_url)
    try:
        sent = sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
    except (BotoCoreError, ClientError) as exc:
        raise MonitorError(f"could not send the approval to {queue_url}: {exc}") from None
    print(f"Approval sent (message {sent['MessageId']}); `billing-monitor actions` shows the outcome.")
    return EXIT_OK


def check_approver_identity(sqs, sts, queue_url: str) -> None:
    """Tell the owner before sending when the queue would not take the message from who they are now.

    The approvals queue's policy names the approvers (the template's ApproverPrincipals); the cancel function
    checks the same list on every message's sender, so sending as anyone else could only be refused.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from billing_monitor.actions.approvers import allowed_senders, caller_as_principal_arn, same_principal

    try:
        caller = caller_as_principal_arn(sts.get_caller_identity()["Arn"])
        policy = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["Policy"]).get("Attributes", {}).get("Policy")
    except (BotoCoreError, ClientError) as exc:
        print(f"billing-monitor: warning: could not check that you may approve ({type(exc).__name__});"
              " sending anyway: the queue and the cancel function check it", file=sys.stderr)
        return
    allowed = allowed_senders(policy)
    if allowed is not None and not any(same_principal(caller, arn) for arn in allowed):
        raise MonitorError(f"you are {caller}, and the approvals queue accepts approvals only from"
                           f" {', '.join(allowed)}: use one of those identities (AWS_PROFILE), or have the stack's"
                           " ApproverPrincipals include yours")


def cmd_ack(args) -> int:
    import getpass

    from billing_monitor.store.acks import acknowledge

    by = args.by or f"cli:{getpass.getuser()}"
    with open_store(_store_dsn(args)) as conn:
        ack, finding = acknowledge(conn, args.finding_id, by, datetime.now(UTC), note=args.note, until=args.until)
    until = f"until {ack.until.date()} or until it changes" if ack.until else "until it changes"
    who = customer_label(finding.get("contact")) if finding.get("contact") else finding.get("paypal_subscription_id") or "-"
    print(f"Acknowledged {finding['check']} {ack.finding_id} ({who}) by {by}, {until}: left out of Slack's counts.")
    return EXIT_OK


def cmd_unack(args) -> int:
    from billing_monitor.store.acks import unacknowledge

    with open_store(_store_dsn(args)) as conn:
        forgotten = unacknowledge(conn, args.finding_id)
    print(f"Finding {args.finding_id}: acknowledgement forgotten; counted again from the next scan." if forgotten
          else f"Finding {args.finding_id} was not acknowledged: nothing to do.")
    return EXIT_OK


def cmd_letter(args) -> int:
    from billing_monitor.letters import letter_context, render_letter
    from billing_monitor.store.refunds import refunds_of_finding

    saved, refunds = None, []
    with read_store(_store_dsn(args)) as conn:
        if conn and has_table(conn, "findings"):
            saved = load_finding(conn, args.finding_id)
        if conn and has_table(conn, "refunds"):
            refunds = refunds_of_finding(conn, args.finding_id)
    finding = saved[0] if saved and saved[1] and saved[0].get("refund") else None
    if finding is None and os.environ.get("PAYPAL_CLIENT_ID"):
        report = build_report(run_scan(_dsn(args), DEFAULT_TOLERANCE, paypal=paypal_options(args),
                                       source_schema=_source_schema(args)))
        finding = next((f for f in report["findings"] if f["finding_id"] == args.finding_id), None)
    if finding is None and saved:
        finding = saved[0]
    if finding is None:
        finding = next((f for f in build_report(run_scan(_dsn(args), DEFAULT_TOLERANCE,
                                                         source_schema=_source_schema(args)))["findings"]
                        if f["finding_id"] == args.finding_id), None)
    if finding is None:
        raise MonitorError(f"finding {args.finding_id} is not in the saved scans nor in a fresh scan")
    subject, body = render_letter(letter_context(finding, refunds, args.sender), args.template)
    print(f"Subject: {subject}\n\n{body}", end="")
    return EXIT_OK


def cmd_actions(args) -> int:
    from billing_monitor.store.refunds import list_refunds

    with read_store(_store_dsn(args)) as conn:
        done = list_actions(conn, args.limit) if conn and has_table(conn, "actions") else []
        refunds = list_refunds(conn, args.limit) if conn and has_table(conn, "refunds") else []
    if not done and not refunds:
        print("No approval handled yet.")
    for a in done:
        print(f"{a['handled_at']:%Y-%m-%d %H:%M} UTC  {a['outcome']:<16} {a['finding_id'] or '-':<16}"
              f"  {a['paypal_subscription_id'] or '-':<16}  by {a['approved_by'] or '-'}  {a['detail']}")
    if refunds:
        print("Refunds:")
    for r in refunds:
        money = f"{r['amount']} {r['currency']}" if r["amount"] else "-"
        print(f"{r['handled_at']:%Y-%m-%d %H:%M} UTC  {r['state']:<16} {r['finding_id']:<16}"
              f"  {r['paypal_subscription_id'] or '-':<16}  {r['transaction_id']}  {money}"
              f"  PayPal refund {r['paypal_refund_id'] or '-'}  by {r['approved_by'] or '-'}")
    return EXIT_OK


def cmd_doctor(args) -> int:
    from billing_monitor.doctor import FAIL, config_from_env, run_doctor

    sections = [s for s in (args.only or DOCTOR_SECTIONS) if s not in args.skip]
    config = config_from_env(dsn=args.dsn, store_dsn=args.store_dsn, paypal_id=args.paypal_id, post=args.post,
                             queue_url=args.queue_url, sections=sections, source_schema=_source_schema(args))
    failed = 0
    for line in run_doctor(config):
        print(line, flush=True)
        failed += line.mark == FAIL
    print(f"{failed} check(s) failed." if failed else "Every check passed.")
    return EXIT_ERROR if failed else EXIT_OK


COMMANDS = {"scan": cmd_scan, "demo": cmd_demo, "history": cmd_history, "approve": cmd_approve, "ack": cmd_ack,
            "unack": cmd_unack,
            "actions": cmd_actions, "letter": cmd_letter, "doctor": cmd_doctor}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except MonitorError as exc:
        print(f"billing-monitor: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if os.environ.get("BILLING_MONITOR_DEBUG"):
            raise
        print(f"billing-monitor: error: unexpected {type(exc).__name__}: {redact(str(exc).splitlines()[0] if str(exc) else '', None)}",
              file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("billing-monitor: interrupted", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
