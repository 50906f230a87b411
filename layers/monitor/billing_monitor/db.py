"""Connections to the production database: read-only, pooler-safe, errors a person can read."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote

import psycopg
from psycopg import conninfo
from psycopg import errors as pgerrors

from billing_monitor.errors import MonitorError

# ---------------------------------------------------------------- DSNs in messages
#
# A message about a database names its host and database, and never any part of its password. libpq's
# reading of a DSN is the one that counts for connecting, but a person's may differ: in a postgresql://
# URL, libpq ends the user info at the first '@' (or at a '/' before any '@'), so a password holding a
# raw '@' or '/' ends up, in pieces, in the host, the port or the database name, and libpq's errors and
# psycopg's quote those. So a DSN is checked before connecting (connect() refuses one whose host, port or
# database name holds such pieces), and every message is scrubbed of any 3 characters in a row of every
# string the DSN's author may have meant as the password, as written and as decoded.

_URL = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)
# A URL's user info, in any text: up to the last '@' before a space, so a password holding '@' goes too.
_URL_USERINFO = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)\S*@", re.IGNORECASE)
_PASSWORD_KEY = re.compile(r"(?:^|[\s?&])password\s*=\s*", re.IGNORECASE)
# where an unquoted value ends, as a person wrote it: at the next "key=" (libpq stops at the first space)
_NEXT_KEY = re.compile(r"(?:\s+|&)[A-Za-z_]+\s*=|\s*$")
_PLAUSIBLE_HOST = re.compile(r"[A-Za-z0-9._~\-\[\]:%,]*(?=[/?]|$)")
_MIN_SECRET_RUN = 3   # this many characters of a password in a row never reach a message
# libpq's and this module's own words, never hidden where they stand as whole words: a password holding
# "pass" or "word" still leaves "password authentication failed" readable. (Whole words only: a password
# piece run together with others, as libpq quotes a misread host, is hidden whole.)
_OWN_WORDS = re.compile(r"\b(?:" + "|".join(w.replace(" ", r"\s+") for w in (
    "password authentication failed for user", "connection to server at", "connection to server on socket",
    "connection failed", "connection refused", "is the server running on that host and accepting",
    "is the server running locally and accepting", "connections on that socket", "tcp/ip connections",
    "timeout expired", "could not translate host name", "to address", "name or service not known",
    "temporary failure in name resolution", "failed to resolve host", "no pg_hba.conf entry for host",
    "does not exist", "permission denied", "cannot connect to", "lost the connection to",
    "the configured database", "invalid dsn", "fatal", "error", "failed", "host", "port", "user", "role",
    "database", "socket", "server", "connection", "password", "ssl", "encryption", "authentication",
)) + r")\b", re.IGNORECASE)

_URL_HINT = ("percent-encode special characters in the password (@ as %40, : as %3A, / as %2F, ? as %3F,"
             " # as %23, % as %25, a space as %20) or write the DSN as key=value pairs with the password quoted")
_KEYWORD_HINT = ("quote a value that holds spaces, quotes or backslashes (password='...', with ' and \\"
                 " written as \\' and \\\\) or write the DSN as a postgresql:// URL with the password percent-encoded")
# libpq's words for what is wrong with a DSN, without the part of it that libpq quotes
_PARSE_PROBLEMS = (
    ('missing "=" after', "a word without '=' (an unquoted value holding a space?)"),
    ("unexpected spaces found", "a space in a URL"),
    ("invalid percent-encoded token", "a '%' not followed by two hexadecimal digits"),
    ("forbidden value %00", "a percent-encoded NUL (%00)"),
    ("unterminated quoted string", "an unterminated quoted value"),
    ("invalid connection option", "an unknown option"),
    ("invalid URI query parameter", "an unknown URL parameter"),
    ("missing key/value separator", "a URL parameter without '='"),
    ("extra key/value separator", "a URL parameter with more than one '='"),
    ("unexpected character", "an unexpected character in the URL's host part"),
    ("end of string reached when looking for matching", "an unterminated [IPv6 address]"),
    ("IPv6 host address may not be empty", "an empty [IPv6 address]"),
)


def _is_url(dsn: str) -> bool:
    return bool(_URL.match(dsn.lstrip()))


def _parse(dsn: str) -> tuple[dict | None, psycopg.ProgrammingError | None]:
    try:
        return conninfo.conninfo_to_dict(dsn), None
    except psycopg.ProgrammingError as exc:
        return None, exc


def _fold(text: str) -> str:
    """Lower case, one character for one (so positions in the folded text are positions in the text)."""
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _keyword_passwords(dsn: str) -> set[str]:
    """password=... values (key=value form or a URL's query), quoted or not, as written and unescaped."""
    found = set()
    for key in _PASSWORD_KEY.finditer(dsn):
        rest = dsn[key.end():]
        if rest.startswith("'"):
            match = re.match(r"'((?:\\.|[^'\\])*)'?", rest)
            raw = match.group(1)
        else:
            raw = rest[:_NEXT_KEY.search(rest).start()]
        found |= {raw, _unescape(raw), unquote(raw)}
    return found


def _url_passwords(dsn: str) -> set[str]:
    """The password of a postgresql:// URL as a person may have meant it: from the ':' after the user
    to the first '@' that a plausible host follows, and to the last '@' of all; as written and decoded."""
    rest = _URL.sub("", dsn.lstrip(), count=1)
    colon = rest.find(":")
    ats = [i for i, c in enumerate(rest) if c == "@" and i > colon >= 0]
    if not ats:
        return set()
    first_before_a_host = next((i for i in ats if _PLAUSIBLE_HOST.match(rest, i + 1)), ats[-1])
    spans = {rest[colon + 1:end] for end in (first_before_a_host, ats[-1])}
    return spans | {unquote(span) for span in spans}


def _secrets(dsn: str) -> set[str]:
    """Every string that may be the password: libpq's reading, a person's readings, PGPASSWORD."""
    params, _ = _parse(dsn)
    found = {str(params["password"])} if params and params.get("password") else set()
    found |= _keyword_passwords(dsn)
    if _is_url(dsn):
        found |= _url_passwords(dsn)
    if os.environ.get("PGPASSWORD"):
        found.add(os.environ["PGPASSWORD"])
    return {s for s in found if s}


def _scrub(text: str, secrets: set[str]) -> str:
    """Replace every run of text that is a piece (3 characters or more) of a secret; a secret shorter than
    that wherever it stands as a word of its own. Case-insensitive."""
    folded = _fold(text)
    hidden = [False] * len(text)
    own = [False] * len(text)
    for match in _OWN_WORDS.finditer(text):
        own[match.start():match.end()] = [True] * (match.end() - match.start())
    for secret in map(_fold, secrets):
        if len(secret) < _MIN_SECRET_RUN:
            for match in re.finditer(rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])", folded):
                hidden[match.start():match.end()] = [True] * len(secret)
            continue
        run = _MIN_SECRET_RUN
        for i in range(len(folded) - run + 1):
            if folded[i:i + run] in secret:
                j = i + run
                while j < len(folded) and folded[i:j + 1] in secret:
                    j += 1
                hidden[i:j] = [True] * (j - i)
    hidden = [h and not o for h, o in zip(hidden, own, strict=True)]
    out, i = [], 0
    while i < len(text):
        if hidden[i]:
            while i < len(text) and hidden[i]:
                i += 1
            out.append("***")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _parse_problem(exc: psycopg.ProgrammingError) -> str:
    """What libpq found wrong with a DSN, in words that quote none of it."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for words, problem in _PARSE_PROBLEMS:
        if words in first:
            return problem
    lead = re.split(r"[\":]", first, maxsplit=1)[0].strip()
    return re.sub(r"\s+(?:in|after|for|of)$", "", lead) or "cannot be parsed"


def dsn_problem(dsn: str) -> str | None:
    """'invalid DSN: <what>; <how to fix it>' when libpq cannot read the DSN, or reads a host, port or
    database name that holds pieces of the password; None when the DSN is fine. Quotes none of the DSN."""
    params, error = _parse(dsn)
    hint = _URL_HINT if _is_url(dsn) else _KEYWORD_HINT
    if error is not None:
        return f"invalid DSN: {redact(_parse_problem(error), dsn)}; {hint}"
    hosts = [h for h in str(params.get("host") or "").split(",") if not h.startswith("/")]
    ports = str(params.get("port") or "").split(",")
    if any("@" in h or "/" in h for h in hosts):
        what = "its host holds '@' or '/' (a password holding them unencoded?)"
    elif any(p.strip() and not p.strip().isdigit() for p in ports):
        what = "its port is not a number (a password holding '/' or ':' unencoded?)"
    elif _is_url(dsn) and "@" in str(params.get("dbname") or ""):
        what = "its database name holds '@' (a password holding '/' unencoded?)"
    else:
        return None
    return f"invalid DSN: {what}; {hint}"


def describe_target(dsn: str) -> str:
    """'host H:P, database D' for messages, or 'the configured database' when the DSN cannot be read
    safely; never any part of the password."""
    if dsn_problem(dsn):
        return "the configured database"
    params, _ = _parse(dsn)
    host = params.get("host") or "localhost"
    port = params.get("port")
    where = f"{host}:{port}" if port else str(host)
    target = f"host {where}" + (f", database {params['dbname']}" if params.get("dbname") else "")
    return redact(target, dsn)


def redact(text: str, dsn: str | None) -> str:
    """A message with no URL's password in it and, given the DSN, no piece (3 characters or more) of any
    password the DSN may hold, however libpq read it."""
    text = _URL_USERINFO.sub(r"\1***@", text)
    return _scrub(text, _secrets(dsn)) if dsn else text


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[:2]) if lines else type(exc).__name__


@contextmanager
def connect(dsn: str, *, read_only: bool, statement_timeout_s: float = 600,
            work_mem: str = "64MB", application_name: str = "billing-monitor",
            connect_timeout_s: int = 10) -> Iterator[psycopg.Connection]:
    """One transaction on the database, committed on success, rolled back on any error. `connect_timeout_s`:
    libpq's (whole seconds, at least 2).

    prepare_threshold=None: Supabase's transaction pooler (port 6543) cannot keep prepared statements.
    Settings are SET LOCAL (set_config(..., true)) so they never leak to a pooled session.
    """
    if not dsn:
        raise MonitorError("no database configured: pass --dsn or set BILLING_MONITOR_DSN")
    # Not even tried when libpq would read pieces of the password as a host name (and look it up) or a
    # database name (and send it to whatever server that host is).
    problem = dsn_problem(dsn)
    if problem:
        raise MonitorError(f"cannot connect to the configured database: {problem}")
    try:
        conn = psycopg.connect(dsn, prepare_threshold=None, connect_timeout=max(2, int(connect_timeout_s)),
                               application_name=application_name)
    except psycopg.ProgrammingError as exc:
        raise MonitorError(f"cannot connect to the configured database: invalid DSN: {redact(_parse_problem(exc), dsn)}") from None
    except psycopg.OperationalError as exc:
        raise MonitorError(f"cannot connect to {describe_target(dsn)}: {redact(_first_line(exc), dsn)}") from None
    try:
        # A scan reads one snapshot for every check; a writer works in READ COMMITTED so that what it
        # does after taking an advisory lock sees what the previous holder committed.
        conn.isolation_level = (psycopg.IsolationLevel.REPEATABLE_READ if read_only
                                else psycopg.IsolationLevel.READ_COMMITTED)
        conn.read_only = read_only
        with conn.transaction():
            conn.execute(
                # ISO dates whatever the server's default: times are read back in Python, and the scan
                # sends the ended subscriptions' end times back to the server as text.
                "select set_config('statement_timeout', %s, true), set_config('TimeZone', 'UTC', true),"
                " set_config('DateStyle', 'ISO, YMD', true),"
                " set_config('work_mem', %s, true),"
                # The checks are set work over whole tables with no indexes to use: plan hash joins
                # (CTE row estimates are poor, and a nested loop over them can run for minutes) and
                # let the big scans go parallel even though they return many rows to the leader.
                " set_config('enable_nestloop', 'off', true), set_config('parallel_tuple_cost', '0.01', true),"
                # JIT yes, LLVM's optimisation and inlining no: on a big database the checks' plans cost
                # enough to trigger them, and they took seconds longer than the query they were for
                # (measured on PostgreSQL 15 with LLVM: the transaction pass 6.3 s with them, 2.6 s without).
                " set_config('jit_optimize_above_cost', '-1', true), set_config('jit_inline_above_cost', '-1', true)",
                (f"{int(statement_timeout_s * 1000)}ms", work_mem),
            )
            yield conn
    except pgerrors.QueryCanceled:
        raise MonitorError(
            f"a query ran longer than the statement timeout ({statement_timeout_s:g} s) and was canceled"
        ) from None
    except pgerrors.InsufficientPrivilege as exc:
        raise MonitorError(f"permission denied on {describe_target(dsn)}: {redact(_first_line(exc), dsn)}") from None
    except psycopg.OperationalError as exc:
        raise MonitorError(f"lost the connection to {describe_target(dsn)}: {redact(_first_line(exc), dsn)}") from None
    except psycopg.Error as exc:
        raise MonitorError(f"database error on {describe_target(dsn)}: {redact(_first_line(exc), dsn)}") from None
    finally:
        conn.close()


def check_production_tables(conn: psycopg.Connection, schema: str = "public"):
    """Name the first missing relation or column of the source schema, before any check runs (source.py)."""
    from billing_monitor.source import check_source

    return check_source(conn, schema)
