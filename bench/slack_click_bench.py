#!/usr/bin/env python3
"""How fast a Slack click is answered, from a cold function (Slack wants the answer within 3 seconds).

    .venv/bin/python bench/slack_click_bench.py --runs 5

Sets up, once: the embedded PostgreSQL with the demo's data and a saved scan, a moto server on 127.0.0.1 (SQS
approvals queue, DynamoDB idempotency table, the signing secret in Secrets Manager, read the deployed way through
SLACK_SIGNING_SECRET_SECRET), and a loopback HTTP server as the click's response_url. Then, per run, a fresh
Python process (a cold Lambda container: nothing imported, no client, no connection) imports
functions/slack_actions/app.py and handles one signed click on a Cancel button (each run another finding, so
each queues), then a second click in the same process (warm). Prints per run: the import (the Lambda's init),
the cold click, the warm click, and their best / median / worst. Not a timed test: figures to read.
Lambda's real cold start adds the runtime's own start and the layer's unzip (~0.2-0.5 s, not measured here);
a 1024 MB function has about 0.6 of a vCPU, roughly this machine's one core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-signing-secret"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import importlib.util
spec = importlib.util.spec_from_file_location("app", sys.argv[1] + "/app.py")
app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)
t1 = time.perf_counter()
from billing_monitor.slack import simulate

class Context:
    function_name = "bench"; memory_limit_in_mb = 1024; aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    @staticmethod
    def get_remaining_time_in_millis(): return 10_000

out = {"init_s": t1 - t0}
for name, finding_id in (("cold_s", sys.argv[2]), ("warm_s", sys.argv[3])):
    event = simulate.click(sys.argv[4], user_id="U012AB3CDE", action_id="approve_cancel", finding_id=finding_id,
                           response_url=sys.argv[5], message_ts=sys.argv[6])
    start = time.perf_counter()
    answer = app.lambda_handler(event, Context())
    out[name] = time.perf_counter() - start
    out[name.replace("_s", "_status")] = answer["statusCode"]
    out[name.replace("_s", "_text")] = json.loads(answer["body"]).get("text", "")[:60]
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    from billing_monitor.demo import embedded_postgres, load_demo_data
    from billing_monitor.paypal_standin import LoopbackServer
    from billing_monitor.report import build_report
    from billing_monitor.rules.registry import AT_RISK_CHECKS
    from billing_monitor.scan import run_scan
    from billing_monitor.store import open_store, save_scan

    class FakeSlack(LoopbackServer):          # the click's response_url: takes every POST, answers "ok"
        def on_request(self, http, method):
            http.rfile.read(int(http.headers.get("Content-Length", 0)))
            http.send_response(200)
            http.send_header("Content-Length", "2")
            http.end_headers()
            http.wfile.write(b"ok")

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)          # moto's server: one line per request otherwise
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "POWERTOOLS_SERVICE_NAME": "billing-monitor",
           "POWERTOOLS_METRICS_NAMESPACE": "BillingMonitorBench", "POWERTOOLS_TRACE_DISABLED": "true",
           "POWERTOOLS_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT / "layers" / "monitor")}
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                                           "AWS_SECRET_ACCESS_KEY")})
    queue = boto3.client("sqs").create_queue(QueueName="approvals")["QueueUrl"]
    boto3.client("dynamodb").create_table(
        TableName="idempotency", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    secret_arn = boto3.client("secretsmanager").create_secret(Name="slack-signing", SecretString=SECRET)["ARN"]

    rows = []
    with embedded_postgres() as dsn, FakeSlack() as response, tempfile.TemporaryDirectory():
        load_demo_data(dsn)
        report = build_report(run_scan(dsn))
        with open_store(dsn) as conn:
            save_scan(conn, report)
        at_risk = [f["finding_id"] for f in report["findings"] if f["check"] in AT_RISK_CHECKS]
        env.update({"BILLING_MONITOR_DSN": dsn, "SLACK_SIGNING_SECRET_SECRET": secret_arn,
                    "SLACK_APPROVER_IDS": "U012AB3CDE", "BILLING_MONITOR_APPROVALS_QUEUE_URL": queue,
                    "IDEMPOTENCY_TABLE": "idempotency"})
        env.pop("SLACK_SIGNING_SECRET", None)
        for run in range(args.runs):
            cold, warm = at_risk[run % len(at_risk)], at_risk[(run + 1) % len(at_risk)]
            done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "functions" / "slack_actions"), cold, warm,
                                   SECRET, response.url, f"{1764579600 + run}.000100"],
                                  env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"run {run + 1}: init {row['init_s']:.3f} s, cold click {row['cold_s']:.3f} s"
                  f" (HTTP {row['cold_status']}: {row['cold_text']}), warm click {row['warm_s']:.3f} s,"
                  f" init + cold {row['init_s'] + row['cold_s']:.3f} s")
    moto.stop()
    for key, label in (("init_s", "init (imports, clients)"), ("cold_s", "cold click"), ("warm_s", "warm click")):
        values = [r[key] for r in rows]
        print(f"{label:<24} best {min(values):.3f} s  median {statistics.median(values):.3f} s  worst {max(values):.3f} s")
    total = [r["init_s"] + r["cold_s"] for r in rows]
    print(f"{'init + cold click':<24} best {min(total):.3f} s  median {statistics.median(total):.3f} s"
          f"  worst {max(total):.3f} s  (Slack's limit: 3 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
