"""`billing-monitor doctor`: read-only checks of a configuration before the first scan.

Each check is one line: ✓ and what holds, ✗ and how to fix it (the command exits 1), ! a fix worth making
that stops nothing, – not checked and why. Nothing is written anywhere: database privileges are asked of
PostgreSQL (has_table_privilege, has_schema_privilege, ...), PayPal is asked for a token and one subscription,
Slack is posted to only with --post, the queue is only described.

The configuration is read as the functions read it (billing_monitor.settings.resolve): X, X_SECRET (Secrets
Manager) or X_PARAMETER (SSM), so the deployed secrets can be checked themselves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psycopg

from billing_monitor import db, row_security, source
from billing_monitor.errors import MonitorError
from billing_monitor.source import DEFAULT_SOURCE_SCHEMA, SOURCE_SCHEMA_ENV, quote_ident
from billing_monitor.store.migrations import SCHEMA, _migrations

SECTIONS = ("database", "store", "paypal", "slack", "queue")
API_ROLES = ("anon", "authenticated", "service_role")     # Supabase's API roles: never granted the views
PRODUCTION_TABLES = source.RELATIONS
WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
OK, FAIL, WARN, SKIP = "✓", "✗", "!", "–"
SQL_BLOCK = ""          # a Line that is SQL to run, printed as it is between two marker lines
SQL_BEGIN = "-- billing-monitor doctor: proposed SQL begins"
SQL_END = "-- billing-monitor doctor: proposed SQL ends"
SLACK_HOSTS = ("hooks.slack.com", "hooks.slack-gov.com")
SLACK_PATH = re.compile(r"/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "host.docker.internal")
TEST_MESSAGE = "billing-monitor doctor: this channel gets the monitor's messages (a test, nothing to do)."


@dataclass(frozen=True)
class Line:
    mark: str
    text: str

    def __str__(self) -> str:
        if self.mark == SQL_BLOCK:
            return f"{SQL_BEGIN}\n{self.text}\n{SQL_END}"
        return f"{self.mark} {self.text}"


@dataclass
class DoctorConfig:
    dsn: str | None = None
    store_dsn: str | None = None
    paypal_client_id: str | None = None
    paypal_client_secret: str | None = None
    paypal_environment: str | None = None
    paypal_base_url: str | None = None
    paypal_id: str | None = None
    slack_webhook: str | None = None
    post: bool = False
    queue_url: str | None = None
    source_schema: str = DEFAULT_SOURCE_SCHEMA
    sections: tuple[str, ...] = SECTIONS
    problems: dict[str, str] = field(default_factory=dict)   # section -> why its configuration could not be read


def config_from_env(*, dsn=None, store_dsn=None, paypal_id=None, post=False, queue_url=None,
                    sections=SECTIONS, env=None, source_schema=None) -> DoctorConfig:
    """What the functions would read (X, X_SECRET, X_PARAMETER), the command line's options first."""
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
    from botocore.exceptions import BotoCoreError, ClientError

    from billing_monitor.settings import resolve

    unreadable = (MonitorError, GetParameterError, BotoCoreError, ClientError)
    env = os.environ if env is None else env
    config = DoctorConfig(paypal_id=paypal_id, post=post, sections=tuple(sections),
                          source_schema=source_schema or env.get(SOURCE_SCHEMA_ENV) or DEFAULT_SOURCE_SCHEMA,
                          paypal_environment=env.get("PAYPAL_ENVIRONMENT") or None,
                          paypal_base_url=env.get("PAYPAL_BASE_URL") or None,
                          queue_url=queue_url or env.get("BILLING_MONITOR_APPROVALS_QUEUE_URL") or None)
    wanted = {"database": [("dsn", "BILLING_MONITOR_DSN", dsn)],
              "store": [("dsn", "BILLING_MONITOR_DSN", dsn), ("store_dsn", "BILLING_MONITOR_STORE_DSN", store_dsn)],
              "paypal": [("paypal_client_id", "PAYPAL_CLIENT_ID", None),
                         ("paypal_client_secret", "PAYPAL_CLIENT_SECRET", None)],
              "slack": [("slack_webhook", "SLACK_WEBHOOK_URL", None)]}
    for section, settings in wanted.items():
        if section not in config.sections:
            continue
        for attribute, variable, given in settings:
            if getattr(config, attribute):
                continue
            try:
                setattr(config, attribute, given or resolve(variable, env=env))
            except unreadable as exc:           # Secrets Manager / SSM: missing, denied, no credentials
                config.problems[section] = f"cannot read {variable}: {type(exc).__name__}: {db.redact(str(exc), None)}"
    if "paypal" in config.sections and not config.dsn:     # the sample of the members' PayPal ids (issue 21)
        try:
            config.dsn = dsn or resolve("BILLING_MONITOR_DSN", env=env)
        except unreadable:
            config.dsn = None                              # the database section says why; the sample is skipped
    return config


def run_doctor(config: DoctorConfig, *, aws_clients: Callable[[str], object] | None = None,
               paypal_client: Callable[..., object] | None = None) -> Iterator[Line]:
    """The checks of the chosen sections, one Line each, as they are made."""
    checks = {"database": check_reader, "store": check_writer, "slack": check_slack}
    for section in SECTIONS:
        if section not in config.sections:
            yield Line(SKIP, f"{section}: not checked (--skip/--only)")
            continue
        if section in config.problems:
            yield Line(FAIL, f"{section}: {config.problems[section]}")
            continue
        if section == "queue":
            yield from check_queue(config, aws_clients)
        elif section == "paypal":
            yield from check_paypal(config, paypal_client)
        else:
            yield from checks[section](config)


# ---------------------------------------------------------------- the database: the reader


def _connect(dsn: str, who: str) -> Iterator:
    return db.connect(dsn, read_only=True, statement_timeout_s=30, application_name=f"billing-monitor-doctor-{who}")


def _role_facts(conn: psycopg.Connection) -> dict:
    row = conn.execute(
        "select current_user, r.rolsuper, current_setting('default_transaction_read_only'),"
        " has_schema_privilege('public', 'CREATE'), has_database_privilege(current_database(), 'CREATE'),"
        " current_setting('server_version'), current_database()"
        " from pg_roles r where r.rolname = current_user").fetchone()
    keys = ("user", "superuser", "read_only_default", "create_in_public", "create_in_database", "version", "database")
    return dict(zip(keys, row, strict=True))


def _table_rights(conn: psycopg.Connection, tables, schema: str = "public") -> dict[str, dict]:
    """Per table: whether it exists, and the privileges of the current role on it."""
    rights = {}
    for table in tables:
        name = f"{quote_ident(schema)}.{quote_ident(table)}"
        exists = conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()[0]
        if not exists:
            rights[table] = None
            continue
        row = conn.execute("select " + ", ".join(f"has_table_privilege(%s, '{p}')" for p in ("SELECT", *WRITES)),
                           (name,) * (1 + len(WRITES))).fetchone()
        rights[table] = dict(zip(("SELECT", *WRITES), row, strict=True))
    return rights


def check_reader(config: DoctorConfig) -> Iterator[Line]:
    if not config.dsn:
        yield Line(FAIL, "database: not configured: set BILLING_MONITOR_DSN (the monitor_reader role's DSN) or pass --dsn")
        return
    target = db.describe_target(config.dsn)
    schema = config.source_schema
    columns: dict[str, dict[str, str]] = {}
    try:
        with _connect(config.dsn, "reader") as conn:
            facts = _role_facts(conn)
            rights = _table_rights(conn, PRODUCTION_TABLES, schema)
            _, columns = source.columns_of(conn, schema)
            roles = {r for (r,) in conn.execute(
                "select rolname from pg_roles where rolname = any(%s)", (["monitor_writer", *API_ROLES],))}
            readable = all(rights.values()) and all(r["SELECT"] for r in rights.values())
            if readable and not source.missing_columns(columns):
                for table in PRODUCTION_TABLES:
                    conn.execute(f"select 1 from {quote_ident(schema)}.{quote_ident(table)} limit 1").fetchall()
            hidden = row_security.blind_spots(conn, schema, tuple(t for t, r in rights.items() if r))
            schema_readable = conn.execute(
                "select to_regnamespace(%s) is not null and has_schema_privilege(%s, 'USAGE')", (SCHEMA, SCHEMA)).fetchone()[0]
            history_readable = schema_readable and all(
                r is None or r["SELECT"] for r in _table_rights(conn, ("scan_runs", "findings", "actions"), SCHEMA).values())
    except MonitorError as exc:
        yield Line(FAIL, f"database: {exc}")
        return
    user = facts["user"]
    named = [f"{schema}.{t}" for t in PRODUCTION_TABLES]
    yield Line(OK, f"database: connected to {target} as {user} (PostgreSQL {facts['version']})")
    missing = [t for t, r in rights.items() if r is None]
    unreadable = [t for t, r in rights.items() if r is not None and not r["SELECT"]]
    if missing:
        yield Line(FAIL, f"reader: table {', '.join(f'{schema}.{t}' for t in missing)} missing, or invisible to {user}"
                         f" (grant usage on schema {schema} to it)")
    elif unreadable:
        yield Line(FAIL, f"reader: {user} may not read {', '.join(f'{schema}.{t}' for t in unreadable)}: grant select on"
                         f" {', '.join(f'{schema}.{t}' for t in unreadable)} to {user}")
    else:
        layout_lines = list(check_layout(schema, columns, user, "monitor_writer" if "monitor_writer" in roles else None,
                                         tuple(r for r in API_ROLES if r in roles)))
        yield from layout_lines
        if not any(line.mark == FAIL for line in layout_lines):
            yield Line(OK, f"reader: {user} reads {', '.join(named)} (every column the checks use)")
    yield from _row_security_lines("reader", user, hidden, "read every row of the four relations")
    writable = {t: [p for p in WRITES if r[p]] for t, r in rights.items() if r and any(r[p] for p in WRITES)}
    problems = []
    if facts["superuser"]:
        problems.append(f"{user} is a superuser: scan with a role of its own (docs/deploy.md, step 1)")
    for table, privileges in writable.items():
        problems.append(f"{user} may {'/'.join(privileges)} {schema}.{table}: revoke"
                        f" {', '.join(p.lower() for p in privileges)} on {schema}.{table} from {user}")
    if facts["create_in_public"]:
        problems.append(f"{user} may create tables in schema public: revoke create on schema public from {user}"
                        " (and from public)")
    if facts["create_in_database"]:
        problems.append(f"{user} may create schemas: revoke create on database {facts['database']} from {user}")
    if facts["read_only_default"] != "on":
        problems.append(f"{user} is not read-only by default: alter role {user} set default_transaction_read_only = on")
    for problem in problems:
        yield Line(FAIL, f"reader: {problem}")
    if not problems:
        yield Line(OK, f"reader: {user} can write nothing (no INSERT/UPDATE/DELETE/TRUNCATE on the four tables, no CREATE,"
                       " not a superuser, read-only by default)")
    if schema_readable and history_readable:
        yield Line(OK, f"reader: {user} reads the monitor's history ({SCHEMA}): history, actions and approve --dry-run"
                       " work with it alone")
    else:
        yield Line(WARN, f"reader: {user} may not read {SCHEMA} (or it does not exist yet): history, actions and approve"
                         " need the writer's DSN (--store-dsn), or grant it as docs/deploy.md step 1 does")


def _row_security_lines(section: str, user: str, hidden: list[row_security.BlindSpot], allowed: str) -> Iterator[Line]:
    """✗ for each table whose rows row level security may hide, with the SQL that fixes it (run as the table's
    owner: Supabase's postgres); ✓ when nothing is hidden."""
    for spot in hidden:
        harm = ("a scan would not see every customer" if section == "reader"
                else "a subscription canceled in PayPal would not be marked canceled")
        yield Line(FAIL, f"{section}: {spot.problem()}: {harm}; as the table's owner (Supabase: postgres, in the SQL"
                         f" Editor) run: {spot.fix_sql()}")
    if not hidden:
        yield Line(OK, f"{section}: row level security lets {user} {allowed} (or is off)")


#: Types a contract column may have (format_type's names, by prefix); a column not listed may have any type
#: (text, an enum, citext, varchar: the scan compares them as text).
USABLE_TYPES: dict[str, tuple[str, ...]] = {
    "id": ("uuid",), "contact_id": ("uuid",), "subscription_id": ("uuid",),
    "amount": ("numeric", "integer", "bigint", "smallint", "double precision", "real"),
    "canceled_at": ("timestamp", "date"), "ended_at": ("timestamp", "date"), "updated_at": ("timestamp", "date"),
    "transaction_date": ("timestamp", "date"), "created_at": ("timestamp", "date"),
}


def check_layout(schema: str, columns: dict[str, dict[str, str]], reader: str, writer: str | None,
                 api_roles: tuple[str, ...] = ()) -> Iterator[Line]:
    """The source relations column by column: what is missing or of a type the checks cannot use; when something
    is missing, the views that map it (source.propose_views) and the layout's name when it is a known one."""
    missing = source.missing_columns(columns, PRODUCTION_TABLES)
    for relation, cols in missing.items():
        yield Line(FAIL, f"reader: {schema}.{relation} lacks {', '.join(cols)} (the columns the monitor reads:"
                         f" {source.PAGE})")
    for relation in PRODUCTION_TABLES:
        for column, type_name in columns.get(relation, {}).items():
            usable = USABLE_TYPES.get(column)
            if column in source.REQUIRED_COLUMNS[relation] and usable and not type_name.startswith(usable):
                yield Line(FAIL, f"reader: {schema}.{relation}.{column} is {type_name}: the monitor needs"
                                 f" {' or '.join(usable)} ({source.PAGE})")
    if not missing:
        return
    layout = source.recognize_layout(columns)
    if layout:
        yield Line(WARN, f"reader: {schema} holds the {layout} layout: {source.PAGE} has its ready SQL block"
                         f" (<!-- layout: {layout} -->); the same, for this database, below")
    proposal = source.propose_views(schema, columns, reader=reader, writer=writer, api_roles=api_roles)
    how = "; ".join(proposal.mapped) or "the columns as they are"
    if proposal.unresolved:
        yield Line(WARN, f"reader: views mapping {schema}'s tables below ({how}); no other name found for"
                         f" {', '.join(proposal.unresolved)}: write it in place of /* FILL IN */ before running it")
    else:
        yield Line(WARN, f"reader: views mapping {schema}'s tables ({how}): run this as the tables' owner, then set"
                         f" the source schema to {source.PROPOSED_SCHEMA} (--source-schema, SourceSchema)")
    yield Line(SQL_BLOCK, proposal.sql)


# ---------------------------------------------------------------- the database: the writer


def _mark_problems(conn: psycopg.Connection, schema: str) -> list[str]:
    """What stops the cancel's mark writing the source's subscriptions (through a view: a column that is an
    expression; a status enum without the label 'canceled'), in words; empty when it can."""
    rows = conn.execute(
        "select a.attname, pg_column_is_updatable(c.oid, a.attnum, false), format_type(a.atttypid, a.atttypmod),"
        " t.typtype = 'e' and not exists (select 1 from pg_enum e where e.enumtypid = t.oid and e.enumlabel = 'canceled')"
        " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attname = any(%s)"
        " join pg_type t on t.oid = a.atttypid"
        " where n.nspname = %s and c.relname = 'subscriptions' order by a.attnum",
        (list(source.MARK_WRITES), schema)).fetchall()
    problems = [f"{schema}.subscriptions.{column} cannot be written (a view's column that is not a plain column)"
                for column, updatable, _, _ in rows if not updatable]
    problems += [f"{schema}.subscriptions.status is the enum {type_name}, which has no label 'canceled': alter type"
                 f" {type_name} add value 'canceled'" for column, _, type_name, lacks in rows if column == "status" and lacks]
    return problems


def check_writer(config: DoctorConfig) -> Iterator[Line]:
    if not config.store_dsn or config.store_dsn == config.dsn:
        yield Line(FAIL, "store: no writer configured: the scheduled scan would save its history with the reader's role,"
                         " which must stay read-only: set BILLING_MONITOR_STORE_DSN (StoreSecretArn) to the monitor_writer"
                         " role's DSN (docs/deploy.md, step 1)")
        return
    try:
        with _connect(config.store_dsn, "writer") as conn:
            facts = _role_facts(conn)
            user = facts["user"]
            schema = conn.execute(
                "select pg_get_userbyid(nspowner), has_schema_privilege(oid, 'USAGE'), has_schema_privilege(oid, 'CREATE')"
                " from pg_namespace where nspname = %s", (SCHEMA,)).fetchone()
            schema_exists = schema is not None
            owner, usage, create = schema or (None, False, False)
            foreign = conn.execute(
                "select c.relname, pg_get_userbyid(c.relowner) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = %s and c.relkind in ('r', 'p') and not pg_has_role(c.relowner, 'USAGE')"
                " order by c.relname", (SCHEMA,)).fetchall()
            applied = set()
            if schema_exists and usage and conn.execute(
                    "select to_regclass(%s) is not null", (f"{SCHEMA}.schema_migrations",)).fetchone()[0]:
                applied = {v for (v,) in conn.execute(f"select version from {SCHEMA}.schema_migrations")}
            rights = _table_rights(conn, PRODUCTION_TABLES, config.source_schema)
            hidden = row_security.blind_spots(conn, config.source_schema, ("subscriptions",),
                                              (row_security.SELECT, row_security.UPDATE)) if rights["subscriptions"] else []
            unwritable = _mark_problems(conn, config.source_schema) if rights["subscriptions"] else []
    except MonitorError as exc:
        yield Line(FAIL, f"store: {exc}")
        return
    yield Line(OK, f"store: connected to {db.describe_target(config.store_dsn)} as {user}")
    pending = [name for version, name, _ in _migrations() if version not in applied]
    if not schema_exists:
        if facts["create_in_database"]:
            yield Line(OK, f"store: {user} will create schema {SCHEMA} on the first save")
        else:
            yield Line(FAIL, f"store: schema {SCHEMA} missing and {user} may not create it: create schema {SCHEMA}"
                             f" authorization {user} (docs/deploy.md, step 1)")
    elif not (usage and create):
        yield Line(FAIL, f"store: {user} may not create tables in {SCHEMA} (owner {owner}): alter schema {SCHEMA} owner to"
                         f" {user}, or grant usage, create on schema {SCHEMA} to {user}")
    elif foreign:
        yield Line(FAIL, f"store: {', '.join(f'{SCHEMA}.{t} (owner {o})' for t, o in foreign)} not {user}'s: its migrations"
                         f" alter them: alter table ... owner to {user}")
    else:
        state = f"{len(pending)} migration(s) to apply on the first save" if pending else "its migrations are applied"
        yield Line(OK, f"store: {user} may create and migrate {SCHEMA} ({state})")
    subscriptions = rights.get("subscriptions")
    marked = f"{config.source_schema}.subscriptions"
    if subscriptions is None:
        yield Line(FAIL, f"store: {marked} missing or invisible to {user} (grant usage on schema"
                         f" {config.source_schema})")
    elif not (subscriptions["UPDATE"] and subscriptions["SELECT"]):
        yield Line(FAIL, f"store: {user} may not mark a canceled subscription: grant select, update on {marked}"
                         f" to {user}")
    else:
        yield Line(OK, f"store: {user} may mark a canceled subscription (UPDATE on {marked})")
        yield from _row_security_lines("store", user, hidden, f"read and mark every row of {marked}")
        for problem in unwritable:
            yield Line(FAIL, f"store: {problem}: the cancel function's mark would fail (PayPal canceled, the row"
                             f" not marked); {source.PAGE} shows the columns the mark writes")
    extra = {t: [p for p in WRITES if r[p] and not (t == "subscriptions" and p == "UPDATE")]
             for t, r in rights.items() if r}
    extra = {t: p for t, p in extra.items() if p}
    if facts["superuser"] or extra:
        what = "is a superuser" if facts["superuser"] else "may also " + "; ".join(
            f"{'/'.join(p)} {config.source_schema}.{t}" for t, p in extra.items())
        yield Line(WARN, f"store: {user} {what}: it needs only UPDATE on {marked} (a role of its own:"
                         " docs/deploy.md, step 1)")


# ---------------------------------------------------------------- PayPal


def check_paypal(config: DoctorConfig, paypal_client=None) -> Iterator[Line]:
    from billing_monitor.paypal import LIVE_URL, SANDBOX_URL, PayPalClient, PayPalCredentialsRejected, PayPalError

    if not (config.paypal_client_id and config.paypal_client_secret):
        yield Line(FAIL, "paypal: credentials not configured: set PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET (or their"
                         " _SECRET / _PARAMETER), the REST app's Client ID and Secret (docs/deploy.md, step 4)")
        return
    if config.paypal_base_url:
        base, where = config.paypal_base_url, f"PayPal at {config.paypal_base_url}"
    elif config.paypal_environment in ("live", "sandbox"):
        base = LIVE_URL if config.paypal_environment == "live" else SANDBOX_URL
        where = f"PayPal {config.paypal_environment}"
    else:
        yield Line(FAIL, "paypal: PAYPAL_ENVIRONMENT is not configured (set it to live, or to sandbox for PayPal's test"
                         " environment)" if not config.paypal_environment else
                   f"paypal: PAYPAL_ENVIRONMENT must be live or sandbox, got {config.paypal_environment!r}")
        return
    client = (paypal_client or PayPalClient)(base, config.paypal_client_id, config.paypal_client_secret)
    try:
        client.access_token()
    except PayPalCredentialsRejected:
        other = "sandbox" if config.paypal_environment == "live" else "live"
        yield Line(FAIL, f"paypal: {where} refused the credentials: check the Client ID and Secret, and that they are"
                         f" {config.paypal_environment or 'this PayPal'}'s (an app's {other} credentials are refused here)")
        return
    except PayPalError as exc:
        yield Line(FAIL, f"paypal: {where}: {exc}")
        return
    yield Line(OK, f"paypal: {where} accepts the credentials (a token was issued)")
    yield from check_paypal_sees_members(config, client, where)
    if not config.paypal_id:
        yield Line(SKIP, "paypal: no subscription read: pass --paypal-id I-… (a current member's) to check the app may"
                         " read subscriptions")
        return
    try:
        subscription = client.get_subscription(config.paypal_id)
    except PayPalError as exc:
        yield Line(FAIL, f"paypal: {exc} (is it a subscription of this account, in {where}?)")
        return
    yield Line(OK, f"paypal: {where} reads {config.paypal_id}: {subscription.get('status')}")


PAYPAL_SAMPLE = 20


def check_paypal_sees_members(config: DoctorConfig, client, where: str) -> Iterator[Line]:
    """How many of a sample of the live PayPal ids in the database this REST app can read (paypal-webhooks.md): a
    404 for an id the database holds means the subscription was created through another app (Kajabi's PayPal
    connection): its webhooks never reach this app (the hourly net still sees its charges), and canceling it may
    have to be done in PayPal's dashboard."""
    from billing_monitor.paypal import PayPalError, PayPalNotFound
    from billing_monitor.rules.checks import _stream
    from billing_monitor.source import Source

    if not config.dsn:
        yield Line(SKIP, "paypal: the members' subscriptions not sampled: no database configured")
        return
    try:
        with db.connect(config.dsn, read_only=True, statement_timeout_s=60, application_name="billing-monitor-doctor") as conn:
            ids = [r.paypal_id for r in _stream(conn, "paypal_live_sample", {"n": PAYPAL_SAMPLE},
                                                Source(config.source_schema))]
    except (MonitorError, psycopg.Error) as exc:
        yield Line(SKIP, f"paypal: the members' subscriptions not sampled: {str(exc).splitlines()[0][:200]}")
        return
    if not ids:
        yield Line(SKIP, "paypal: no live PayPal subscription in the database to sample")
        return
    seen, missing, errors = [], [], []
    for pid in ids:
        try:
            client.get_subscription(pid)
            seen.append(pid)
        except PayPalNotFound:
            missing.append(pid)
        except PayPalError as exc:
            errors.append(f"{pid}: {exc}")
    if errors:
        yield Line(WARN, f"paypal: {len(errors)} of {len(ids)} sampled subscriptions could not be read: {errors[0]}")
    if missing:
        yield Line(WARN, f"paypal: {where} sees {len(seen)} of {len(ids)} live PayPal subscriptions sampled from the"
                         f" database; {len(missing)} answer 404 ({', '.join(missing[:5])}{', …' if len(missing) > 5 else ''}):"
                         " created through another PayPal app (Kajabi's connection?). Their webhooks never reach this"
                         " app: the hourly Transaction Search still sees their charges; canceling them may have to be"
                         " done in PayPal's dashboard (or with that app's credentials).")
    elif not errors:
        yield Line(OK, f"paypal: {where} sees all {len(ids)} live PayPal subscriptions sampled from the database")


# ---------------------------------------------------------------- Slack


def slack_url_problem(url: str) -> str | None:
    """None when the URL is a Slack incoming webhook (or a local stand-in); else what is wrong. Quotes none of it."""
    parts = urlsplit(url.strip())
    if parts.hostname in LOCAL_HOSTS or (parts.hostname or "").startswith("172."):
        return None if parts.scheme in ("http", "https") else "not an http(s) URL"
    if parts.scheme != "https":
        return "not an https URL"
    if parts.hostname not in SLACK_HOSTS:
        return "not on hooks.slack.com"
    if not SLACK_PATH.fullmatch(parts.path) or parts.query:
        return "not an incoming-webhook path (/services/T…/B…/…)"
    return None


def check_slack(config: DoctorConfig) -> Iterator[Line]:
    from billing_monitor.http import retrying_session
    from billing_monitor.notify import SlackError, post_to_slack

    if not config.slack_webhook:
        yield Line(FAIL, "slack: not configured: set SLACK_WEBHOOK_URL (or _SECRET / _PARAMETER), the app's incoming"
                         " webhook (docs/deploy.md, step 3)")
        return
    problem = slack_url_problem(config.slack_webhook)
    if problem:
        yield Line(FAIL, f"slack: the webhook URL is {problem}: copy it from the Slack app's Incoming Webhooks page"
                         " (https://hooks.slack.com/services/T…/B…/…)")
        return
    host = urlsplit(config.slack_webhook).hostname
    local = host not in SLACK_HOSTS
    yield Line(OK, f"slack: the webhook URL is well-formed ({'a local stand-in at ' + host if local else host})")
    if not config.post:
        yield Line(SKIP, "slack: nothing posted: --post sends one test message")
        return
    try:
        post_to_slack(config.slack_webhook, {"text": TEST_MESSAGE}, retrying_session(methods=("POST",), total=1))
    except SlackError as exc:
        yield Line(FAIL, f"slack: the test message failed: {exc} (a revoked webhook answers 403/404: make a new one)")
        return
    yield Line(OK, "slack: posted a test message: check the channel")


# ---------------------------------------------------------------- the approvals queue


def check_queue(config: DoctorConfig, aws_clients=None) -> Iterator[Line]:
    if not config.queue_url:
        yield Line(FAIL, "queue: not configured: set BILLING_MONITOR_APPROVALS_QUEUE_URL (the stack's ApprovalsQueueUrl"
                         " output) or pass --queue-url")
        return
    from botocore.exceptions import BotoCoreError, ClientError

    from billing_monitor.actions.approvers import allowed_senders, caller_as_principal_arn, same_principal

    if aws_clients is None:
        import boto3

        aws_clients = boto3.client
    try:
        attributes = aws_clients("sqs").get_queue_attributes(
            QueueUrl=config.queue_url, AttributeNames=["QueueArn", "Policy"])["Attributes"]
    except (BotoCoreError, ClientError) as exc:
        yield Line(FAIL, f"queue: {config.queue_url} does not answer: {type(exc).__name__}: {str(exc)[:200]}"
                         " (the region, the credentials, the URL from the stack's outputs?)")
        return
    yield Line(OK, f"queue: the approvals queue answers ({attributes.get('QueueArn')})")
    allowed = allowed_senders(attributes.get("Policy"))
    try:
        caller = caller_as_principal_arn(aws_clients("sts").get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError) as exc:
        yield Line(WARN, f"queue: who you are is unknown ({type(exc).__name__}): approvals are accepted only from"
                         f" {', '.join(allowed or ['the stack’s ApproverPrincipals'])}")
        return
    if allowed is None:
        yield Line(WARN, "queue: its policy names no approvers: deploy the stack's template (ApproverPrincipals)")
    elif any(same_principal(caller, arn) for arn in allowed):
        yield Line(OK, f"queue: you ({caller}) may send approvals")
    else:
        yield Line(WARN, f"queue: you are {caller}; approvals are accepted only from {', '.join(allowed)}: approve as one"
                         " of those (AWS_PROFILE), or add yours to ApproverPrincipals")
