"""No piece of a database password reaches a person, whatever characters it holds.

Each character class that a postgresql:// URL reserves or that libpq treats specially (@ : / % ? #, a
space, non-ASCII) is tried in four ways of writing the DSN: a URL with the password as typed, a URL with
it percent-encoded, key=value with it quoted, key=value unquoted. The database is 127.0.0.1 port 1, so the
connection fails at once; the CLI's error line and everything the scan function logs are then searched for
every 3 characters in a row of the password, as typed and as encoded.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from urllib.parse import quote

import boto3
import pytest
from moto import mock_aws

from billing_monitor.cli import main
from billing_monitor.db import describe_target, redact
from billing_monitor.errors import MonitorError
from tests.support.aws import LambdaContext, load_event, load_handler_module

pytestmark = pytest.mark.integration

CLASSES = {"at": "@", "colon": ":", "slash": "/", "percent": "%", "question": "?", "hash": "#", "space": " ",
           "non_ascii": "ü€"}
HOST = "host 127.0.0.1:1"
INVALID = "the configured database: invalid DSN"
# What the message can still say, per way of writing: the host when libpq reads the DSN as meant,
# else that the DSN is invalid. (As typed in a URL, libpq splits '@' and '/' passwords at the wrong
# place and refuses '%' and spaces; ':' '?' '#' and non-ASCII it reads as meant.)
URL_AS_TYPED = {"at": INVALID, "colon": HOST, "slash": INVALID, "percent": INVALID, "question": HOST,
                "hash": HOST, "space": INVALID, "non_ascii": HOST}


def password_for(cls: str) -> str:
    c = CLASSES[cls]
    return f"Xq7{c}Jv9{c}Wk2"


def dsns(cls: str) -> dict[str, tuple[str, str]]:
    """way of writing -> (DSN, what the message must still name)."""
    pw = password_for(cls)
    escaped = pw.replace("\\", "\\\\").replace("'", "\\'")
    return {
        "url_as_typed": (f"postgresql://monitor:{pw}@127.0.0.1:1/prod", URL_AS_TYPED[cls]),
        "url_encoded": (f"postgresql://monitor:{quote(pw, safe='')}@127.0.0.1:1/prod", HOST),
        "keywords_quoted": (f"host=127.0.0.1 port=1 dbname=prod user=monitor password='{escaped}'", HOST),
        "keywords_unquoted": (f"host=127.0.0.1 port=1 dbname=prod user=monitor password={pw}",
                              INVALID if cls == "space" else HOST),
    }


CASES = [pytest.param(cls, way, id=f"{cls}-{way}") for cls in CLASSES for way in dsns(cls)]


def pieces(password: str) -> set[str]:
    """Every 3 characters in a row of the password as typed and as percent-encoded (but not a bare
    escape such as %40, which says only which character was there)."""
    encoded = quote(password, safe="")
    found = {s[i:i + 3] for s in (password, encoded) for i in range(len(s) - 2)}
    return {p for p in found if not re.fullmatch(r"%[0-9A-F]{2}", p)}


def assert_no_piece(text: str, password: str) -> None:
    shown = sorted(p for p in pieces(password) if p in text)
    assert not shown, f"pieces of the password {shown} in: {text}"


@pytest.mark.parametrize(("cls", "way"), CASES)
def test_cli_error_line_hides_the_password(capsys, cls, way):
    dsn, named = dsns(cls)[way]
    code = main(["scan", "--dsn", dsn])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert_no_piece(err, password_for(cls))
    assert f"cannot connect to {named}" in err, err


@pytest.fixture
def scan_function(aws_env, monkeypatch):
    """Invoke the scan function with a DSN held in Secrets Manager (moto); no topic, no Slack."""
    for name in ("BILLING_MONITOR_DSN", "BILLING_MONITOR_STORE_DSN", "SLACK_WEBHOOK_URL", "FINDINGS_TOPIC_ARN"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():

        def invoke(dsn: str):
            arn = boto3.client("secretsmanager").create_secret(Name="billing-monitor/dsn", SecretString=dsn)["ARN"]
            monkeypatch.setenv("BILLING_MONITOR_DSN_SECRET", arn)
            handler = load_handler_module("scan")
            # Powertools configures its logger once per process, writing to the sys.stdout of that
            # moment (an earlier test's capsys): make it write where this test's capsys reads.
            for name in [n for n in logging.root.manager.loggerDict if n.startswith("billing")]:
                for log_handler in logging.getLogger(name).handlers:
                    if isinstance(log_handler, logging.StreamHandler):
                        monkeypatch.setattr(log_handler, "stream", sys.stdout)
            return handler.lambda_handler(load_event("scheduled_monthly.json"), LambdaContext())

        yield invoke


@pytest.mark.parametrize(("cls", "way"), CASES)
def test_scan_function_logs_hide_the_password(scan_function, capsys, caplog, cls, way):
    dsn, named = dsns(cls)[way]
    caplog.set_level(logging.DEBUG, logger="psycopg")   # psycopg's own debug lines (connection attempts)
    with pytest.raises(MonitorError) as raised:
        scan_function(dsn)
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    [failure] = [line for line in lines if re.match(r"the scan of \d{4}-\d\d-\d\d failed", str(line.get("message")))]
    assert f"cannot connect to {named}" in failure["exception"]
    assert f"cannot connect to {named}" in str(raised.value)
    for text in (str(raised.value), out, caplog.text):
        assert_no_piece(text, password_for(cls))


# ---------------------------------------------------------------- the functions themselves


@pytest.mark.parametrize("dsn", [
    "postgresql://monitor:pa@ss@wd@127.0.0.1:1/prod",    # libpq: password pa, host ss@wd@127.0.0.1
    "postgresql://monitor:pa/ss/wd@127.0.0.1:1/prod",    # libpq: host monitor, port pa
    "postgresql://monitor:1234/ss/wd@127.0.0.1:1/prod",  # libpq: host monitor, port 1234, database ss/wd@...
    "postgresql://monitor:pa%zzss@127.0.0.1:1/prod",     # libpq: invalid percent-encoded token
    "host=127.0.0.1 password=pa ss wd dbname=prod",      # libpq: missing "=" after "ss"
    "host=127.0.0.1 password='pa ss wd",                 # libpq: unterminated quoted string
])
def test_describe_target_says_the_configured_database_when_the_dsn_is_unsafe(dsn):
    assert describe_target(dsn) == "the configured database"


def test_redact_hides_every_piece_of_every_reading_of_the_password():
    dsn = "postgresql://monitor:Xq7@Jv9/Wk2@db.example.com:5432/prod"
    # libpq's reading (password 'Xq7', host 'Jv9/Wk2@db.example.com') and the intended one
    text = 'failed to resolve host "jv9/wk2@db.example.com"; password "Xq7"; Jv9 and Wk2'
    redacted = redact(text, dsn)
    assert_no_piece(redacted, "Xq7@Jv9/Wk2")
    assert "db.example.com" in redacted


def test_redact_hides_a_url_password_holding_at_signs_in_any_text():
    assert redact("see postgresql://monitor:pa@ss@wd@host/db for details", None) == (
        "see postgresql://monitor:***@host/db for details")


def test_redact_leaves_libpqs_own_words_readable():
    dsn = "postgresql://monitor:MyPassword2024@db.example.com/prod"
    text = 'FATAL:  password authentication failed for user "monitor"'
    assert redact(text, dsn) == text
    assert redact("echoed: MyPassword2024", dsn) == "echoed: ***"
