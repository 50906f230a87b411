"""template.yaml and the code agree; `sam validate --lint` passes."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from billing_monitor.monitor import schedule_of
from billing_monitor.settings import (
    CancelSettings,
    PayPalWebhookSettings,
    ScanSettings,
    SlackActionsSettings,
    is_secret,
    variable_of,
)

ROOT = Path(__file__).resolve().parents[2]


class CfnLoader(yaml.SafeLoader):
    pass


CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node)))


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)


def functions(template) -> dict:
    return {name: r["Properties"] for name, r in template["Resources"].items()
            if r["Type"] == "AWS::Serverless::Function"}


def environment(template, props) -> set[str]:
    names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    return names | set(props.get("Environment", {}).get("Variables", {}))


def test_every_handler_path_exists(template):
    for name, props in functions(template).items():
        module, func = props["Handler"].rsplit(".", 1)
        source = ROOT / props["CodeUri"] / f"{module}.py"
        assert source.exists(), f"{name}: {source} missing"
        defined = {n.name for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef)}
        assert func in defined, f"{name}: {func} not defined in {source}"
    layer = template["Resources"]["MonitorLayer"]["Properties"]["ContentUri"]
    assert (ROOT / layer / "billing_monitor" / "__init__.py").exists()
    assert (ROOT / layer / "requirements.txt").exists()


SETTINGS_OF = {"ScanFunction": ScanSettings, "CancelFunction": CancelSettings, "SlackActionsFunction": SlackActionsSettings,
               "PayPalWebhookFunction": PayPalWebhookSettings}


def variables_read(settings) -> dict[str, set[str]]:
    """What a settings model reads, from the model itself: each variable and the names that can set it."""
    read = {}
    for name, field in settings.model_fields.items():
        variable = variable_of(name, field)
        read[variable] = ({variable, f"{variable}_SECRET", f"{variable}_SECRET_KEY", f"{variable}_PARAMETER"}
                          if is_secret(field) else {variable})
    return read


# Read by the libraries, not by the settings models: Powertools' own, and boto3's endpoint (a local moto server).
LIBRARY_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL", "AWS_ENDPOINT_URL"}


@pytest.mark.parametrize("function", list(SETTINGS_OF))
def test_each_function_declares_every_variable_its_settings_read(template, function):
    """SAM passes a function only what the template declares (sam local's --env-vars cannot add a variable):
    every name the model reads is declared, so that every way of setting it works locally and deployed."""
    settings = SETTINGS_OF[function]
    props = functions(template)[function]
    module = (ROOT / props["CodeUri"] / f"{props['Handler'].rsplit('.', 1)[0]}.py").read_text()
    assert f"{settings.__name__}.from_env" in module, f"{function} does not read {settings.__name__}"
    env = environment(template, props)
    for names in variables_read(settings).values():
        assert names <= env, f"{function}: {sorted(names - env)} not declared in the template"
    assert env >= LIBRARY_VARIABLES


@pytest.mark.parametrize("function", list(SETTINGS_OF))
def test_the_template_sets_nothing_the_function_does_not_read(template, function):
    """A misspelt variable in the template would be silently ignored and its default used."""
    env = environment(template, functions(template)[function]) - LIBRARY_VARIABLES
    readable = set().union(*variables_read(SETTINGS_OF[function]).values())
    assert env - readable == set()


def test_an_empty_aws_endpoint_url_means_aws():
    """The template declares AWS_ENDPOINT_URL empty for the deployed functions: boto3 must read that as unset."""
    import boto3

    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", "")
        assert session.client("sqs").meta.endpoint_url == "https://sqs.us-east-1.amazonaws.com"
        env.setenv("AWS_ENDPOINT_URL", "http://host.docker.internal:15000")
        assert session.client("iam").meta.endpoint_url == "http://host.docker.internal:15000"


class Intrinsic(str):
    """A value the template computes (!Ref, !If, ...): sam local cannot always resolve it."""


class TaggingLoader(yaml.SafeLoader):
    pass


TaggingLoader.add_multi_constructor("!", lambda loader, suffix, node: Intrinsic(suffix))


@pytest.fixture(scope="module")
def local_env() -> dict:
    return json.loads((ROOT / "events" / "env.json").read_text())


@pytest.mark.parametrize("function", list(SETTINGS_OF))
def test_events_env_json_is_a_working_local_configuration(template, local_env, function):
    """`sam local invoke F --env-vars events/env.json` as the README has it: every variable set there is declared
    (SAM drops the others silently), every computed one is given a local value, the settings validate, and
    nothing in it reaches AWS or a real service: the database, Slack, PayPal and the AWS endpoint are local."""
    assert set(local_env) == set(SETTINGS_OF)
    section = local_env[function]
    props = functions(template)[function]
    declared = environment(template, props)
    assert set(section) - declared == set(), "set in events/env.json but not declared in template.yaml"
    tagged = yaml.load((ROOT / "template.yaml").read_text(), Loader=TaggingLoader)
    parameters = tagged["Parameters"]
    variables = {**tagged["Globals"]["Function"]["Environment"]["Variables"],
                 **tagged["Resources"][function]["Properties"]["Environment"]["Variables"]}
    for name, value in variables.items():
        if isinstance(value, Intrinsic) and not (value == "Ref" and "Default" in parameters.get(
                template["Globals"]["Function"]["Environment"]["Variables"].get(name)
                or props["Environment"]["Variables"].get(name), {})):
            assert name in section, f"{name} is computed by the template ({value}): events/env.json must set it"
    settings = SETTINGS_OF[function].from_env(env=section)          # no AWS call: plain values only
    secret_ways = {f"{v}{way}" for v in variables_read(SETTINGS_OF[function]) for way in ("_SECRET", "_PARAMETER")}
    assert not [k for k, v in section.items() if v and k in secret_ways], "a local run reads no AWS secret"
    local = "host.docker.internal"
    assert local in settings.dsn_value
    assert local in settings.store_dsn_value
    assert settings.slack_webhook.startswith(f"http://{local}:")
    assert section["AWS_ENDPOINT_URL"].startswith(f"http://{local}:")
    if function in ("CancelFunction", "PayPalWebhookFunction"):
        assert settings.paypal_base_url.startswith(f"http://{local}:")


def test_the_settings_models_read_what_the_test_derives():
    """The derivation above is not vacuous: it finds the secrets and the plain settings of both models."""
    scan = variables_read(ScanSettings)
    assert scan["BILLING_MONITOR_DSN"] == {"BILLING_MONITOR_DSN", "BILLING_MONITOR_DSN_SECRET", "BILLING_MONITOR_DSN_SECRET_KEY",
                                           "BILLING_MONITOR_DSN_PARAMETER"}
    assert scan["FINDINGS_TOPIC_ARN"] == {"FINDINGS_TOPIC_ARN"}
    assert "PAYPAL_CLIENT_SECRET_SECRET" in set().union(*variables_read(CancelSettings).values())


def test_paypal_environment_must_be_chosen(template):
    """No default: a deployment against PayPal's sandbox is a choice, never an accident."""
    parameter = template["Parameters"]["PayPalEnvironment"]
    assert "Default" not in parameter
    assert sorted(parameter["AllowedValues"]) == ["live", "sandbox"]
    assert functions(template)["CancelFunction"]["Environment"]["Variables"]["PAYPAL_ENVIRONMENT"] == "PayPalEnvironment"


def test_schedules_monthly_and_daily_by_default(template):
    """prevention.md: daily scans are on by default (a daily scan posts only what changed); the monthly one stays."""
    events = functions(template)["ScanFunction"]["Events"]
    assert template["Parameters"]["ScanSchedule"]["Default"] == "cron(0 9 1 * ? *)"
    assert events["MonthlyScan"]["Properties"]["State"] == "ENABLED"
    assert template["Parameters"]["DailyScanEnabled"]["Default"] == "true"
    assert events["DailyScan"]["Properties"]["State"] == ["DailyScanOn", "ENABLED", "DISABLED"]


# ---------------------------------------------------------------- auto-cancel: who may send to the approvals queue


class IntrinsicLoader(yaml.SafeLoader):
    pass


def _intrinsic(loader, suffix, node):
    value = (loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
             else loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode)
             else loader.construct_mapping(node, deep=True))
    return {"Ref": value} if suffix == "Ref" else {f"Fn::{suffix}": value}


IntrinsicLoader.add_multi_constructor("!", _intrinsic)
SCAN_ROLE_ARN = "arn:aws:iam::123456789012:role/stack-ScanFunctionRole-ABC"
APPROVERS = ["arn:aws:iam::123456789012:user/owner", "arn:aws:iam::123456789012:role/approver"]


def resolve(value, template: dict, parameters: dict):
    """The value CloudFormation would compute, for the intrinsics the template uses around the approvers."""
    r = lambda v: resolve(v, template, parameters)  # noqa: E731
    if isinstance(value, list):
        return [r(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        if name in parameters:
            return parameters[name]
        if name in template["Parameters"]:
            return template["Parameters"][name].get("Default")
        return "AWS::NoValue" if name == "AWS::NoValue" else f"ref:{name}"
    if "Fn::If" in value:
        condition, yes, no = value["Fn::If"]
        return r(yes) if r(template["Conditions"][condition]) else r(no)
    if "Fn::Equals" in value:
        a, b = r(value["Fn::Equals"])
        return str(a) == str(b)
    if "Fn::Join" in value:
        sep, items = value["Fn::Join"]
        return sep.join(r(items))
    if "Fn::Split" in value:
        sep, text = value["Fn::Split"]
        return r(text).split(sep)
    if "Fn::Sub" in value:
        text, names = value["Fn::Sub"]
        names = {k: r(v) for k, v in names.items()}
        return re.sub(r"\$\{([^}]+)\}", lambda m: names.get(m[1]) or (SCAN_ROLE_ARN if m[1] == "ScanFunctionRole.Arn"
                                                                       else f"ref:{m[1]}"), text)
    if "Fn::GetAtt" in value:
        return f"getatt:{value['Fn::GetAtt']}"
    return {k: r(v) for k, v in value.items()}


def who_may_send(auto_cancel: str) -> dict:
    """The queue policy's Deny exception and Allow principals, the cancel function's allow-list and its IAM lookups,
    and the scan function's own SQS permission, with AutoCancel set as given."""
    tagged = yaml.load((ROOT / "template.yaml").read_text(), Loader=IntrinsicLoader)
    params = {"AutoCancel": auto_cancel, "ApproverPrincipals": APPROVERS}
    resources = tagged["Resources"]
    statements = {s["Sid"]: s for s in resources["ApprovalsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]}
    cancel = resources["CancelFunction"]["Properties"]
    lookups = [s for p in cancel["Policies"] if "Statement" in p for s in p["Statement"]
               if "iam:GetRole" in s["Action"]]
    scan_policies = [resolve(p, tagged, params) for p in resources["ScanFunction"]["Properties"]["Policies"]]
    webhook_policies = [resolve(p, tagged, params) for p in resources["PayPalWebhookFunction"]["Properties"]["Policies"]]
    return {
        "deny_unless": resolve(statements["OnlyTheApproversSend"]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"],
                               tagged, params),
        "allow": resolve(statements["TheApproversMaySend"]["Principal"]["AWS"], tagged, params),
        "allow_list": resolve(cancel["Environment"]["Variables"]["BILLING_MONITOR_APPROVER_ARNS"], tagged, params).split(","),
        "iam_lookups": resolve(lookups[0]["Resource"], tagged, params),
        "scan_sends": [p for p in scan_policies if isinstance(p, dict) and "SQSSendMessagePolicy" in p],
        "webhook_sends": [p for p in webhook_policies if isinstance(p, dict) and "SQSSendMessagePolicy" in p],
    }


def test_auto_cancel_is_off_by_default_and_its_settings_match_the_code(template):
    from billing_monitor.actions.policy import DEFAULT_GRACE_HOURS, DEFAULT_MAX_PER_RUN, MODES, OFF

    parameters = template["Parameters"]
    assert parameters["AutoCancel"]["Default"] == OFF
    assert tuple(parameters["AutoCancel"]["AllowedValues"]) == MODES
    assert parameters["AutoCancelMaxPerRun"]["Default"] == DEFAULT_MAX_PER_RUN
    assert parameters["AutoCancelGraceHours"]["Default"] == DEFAULT_GRACE_HOURS
    env = functions(template)["ScanFunction"]["Environment"]["Variables"]
    assert env["BILLING_MONITOR_AUTO_CANCEL"] == "AutoCancel"
    assert env["BILLING_MONITOR_APPROVALS_QUEUE_URL"] == "ApprovalsQueue"


SLACK_ROLE_ARN = "ref:SlackActionsFunctionRole.Arn"       # a click's approvals (slack-actions.md)
WEBHOOK_ROLE_ARN = "ref:PayPalWebhookFunctionRole.Arn"    # a webhook charge's auto-cancel (paypal-webhooks.md)


def test_with_auto_cancel_off_only_the_approvers_and_the_slack_function_may_send():
    off = who_may_send("off")
    assert off["deny_unless"] == off["allow"] == off["allow_list"] == off["iam_lookups"] == [*APPROVERS, SLACK_ROLE_ARN]
    assert off["scan_sends"] == off["webhook_sends"] == []


def test_with_auto_cancel_on_the_scan_functions_role_may_send_too():
    on = who_may_send("unambiguous")
    assert on["deny_unless"] == on["allow"] == on["allow_list"] == on["iam_lookups"] == [
        *APPROVERS, SLACK_ROLE_ARN, SCAN_ROLE_ARN, WEBHOOK_ROLE_ARN]       # the scan's and a webhook charge's
    assert on["scan_sends"] == on["webhook_sends"] == [
        {"SQSSendMessagePolicy": {"QueueName": "getatt:ApprovalsQueue.QueueName"}}]


def test_sam_validate_lint():
    sam = shutil.which("sam")
    if sam is None:
        if os.environ.get("CI"):
            pytest.fail("sam is not installed: `make test` installs it into .venv-sam")
        pytest.skip("sam not on PATH (run through `make test`)")
    done = subprocess.run([sam, "validate", "--lint", "--template", str(ROOT / "template.yaml")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "SAM_CLI_TELEMETRY": "0"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


def test_approvals_queue_is_built_for_retries(template):
    resources = template["Resources"]
    queue = resources["ApprovalsQueue"]["Properties"]
    timeout = functions(template)["CancelFunction"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == "ApprovalsDeadLetterQueue.Arn"
    event = functions(template)["CancelFunction"]["Events"]["Approvals"]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    table = resources["IdempotencyTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    alarm = resources["ApprovalsDeadLetterAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == "ApprovalsDeadLetterQueue.QueueName"


def test_sam_build_without_docker(tmp_path):
    """The layer carries the package with its SQL and migrations, and its dependencies for the runtime."""
    sam = shutil.which("sam")
    pyenv_312 = subprocess.run(["pyenv", "prefix", "3.12.1"], capture_output=True, text=True) \
        if shutil.which("pyenv") else None
    if sam is None or (shutil.which("python3.12") is None and not (pyenv_312 and pyenv_312.returncode == 0)):
        if os.environ.get("CI"):
            pytest.fail("sam build needs sam and a python3.12 (pyenv 3.12.1)")
        pytest.skip("sam or python3.12 missing")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PYENV_VERSION": "3.11.7:3.12.1"}
    done = subprocess.run([sam, "build", "--template", str(ROOT / "template.yaml"), "--build-dir",
                           str(tmp_path / "build"), "--base-dir", str(ROOT)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    layer = tmp_path / "build" / "MonitorLayer" / "python"
    assert (layer / "billing_monitor" / "rules" / "sql" / "transaction_findings.sql").exists()
    assert (layer / "billing_monitor" / "store" / "001_scan_history.sql").exists()
    assert any(p.name.startswith("psycopg_binary") for p in layer.iterdir())
    assert any(p.name.startswith("aws_lambda_powertools") for p in layer.iterdir())
    assert (tmp_path / "build" / "ScanFunction" / "app.py").exists()
    assert (tmp_path / "build" / "CancelFunction" / "app.py").exists()
    assert_botocore_belongs_to_boto3(layer)
    # The handlers import with nothing but the built layer and a bare Python 3.12 (the runtime's version):
    # a dependency missing from layers/monitor/requirements.txt fails here, not in Lambda.
    python = (str(Path(pyenv_312.stdout.strip()) / "bin" / "python3.12") if pyenv_312 and pyenv_312.returncode == 0
              else shutil.which("python3.12"))
    for function in ("ScanFunction", "CancelFunction", "SlackActionsFunction", "PayPalWebhookFunction"):
        code = tmp_path / "build" / function
        done = subprocess.run([python, "-I", "-S", "-c", f"import sys; sys.path[:0] = [{str(code)!r}, {str(layer)!r}];"
                               " import app, boto3, botocore; print(boto3.__file__, botocore.__file__)"],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": os.environ["PATH"]})
        assert done.returncode == 0, f"{function}: {done.stderr[-2000:]}"
        assert done.stdout.split() == [str(layer / "boto3" / "__init__.py"), str(layer / "botocore" / "__init__.py")]


def assert_botocore_belongs_to_boto3(layer: Path) -> None:
    """A layer's botocore shadows the runtime's: it must ship with a boto3 that accepts it (never alone)."""
    dists = {d.name.split("-")[0].lower(): d for d in layer.glob("*.dist-info")}
    assert "boto3" in dists, "botocore in the layer without boto3: the runtime's boto3 would run on it"
    assert "botocore" in dists
    requires = [line.split(":", 1)[1].strip() for line in (dists["boto3"] / "METADATA").read_text().splitlines()
                if line.startswith("Requires-Dist:") and Requirement(line.split(":", 1)[1]).name == "botocore"
                and Requirement(line.split(":", 1)[1]).marker is None]
    version = dists["botocore"].name.removesuffix(".dist-info").split("-")[1]
    assert len(requires) == 1
    assert Requirement(requires[0]).specifier.contains(version), f"botocore {version} is not {requires[0]}"


def test_each_schedule_sends_the_input_the_events_files_hold(template):
    """The handler tells the monthly scan from the daily one by this input (events/ are what EventBridge sends)."""
    events = functions(template)["ScanFunction"]["Events"]
    for event, file, schedule in (("MonthlyScan", "scheduled_monthly.json", "monthly"),
                                  ("DailyScan", "scheduled_daily.json", "daily")):
        sent = json.loads(events[event]["Properties"]["Input"])
        assert sent == json.loads((ROOT / "events" / file).read_text())
        assert schedule_of(sent) == schedule


def test_alarms_reach_someone_the_alarm_email_is_required(template):
    parameter = template["Parameters"]["AlarmEmail"]
    assert "Default" not in parameter                        # sam deploy cannot go on without one
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("owner@example.com")
    for wrong in ("", "owner", "owner@", "@example.com", "a b@example.com"):
        assert not pattern.fullmatch(wrong)
    subscription = template["Resources"]["AlarmEmailSubscription"]
    assert "Condition" not in subscription
    assert subscription["Properties"] == {"TopicArn": "AlarmTopic", "Protocol": "email", "Endpoint": "AlarmEmail"}


def test_the_slack_failures_alarm_watches_the_metric_powertools_emits(template):
    """Powertools EMF: namespace POWERTOOLS_METRICS_NAMESPACE, the one dimension `service` = POWERTOOLS_SERVICE_NAME."""
    source = (ROOT / "layers/monitor/billing_monitor/monitor.py").read_text()
    assert '"SlackFailures"' in source
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    alarm = template["Resources"]["SlackFailuresAlarm"]["Properties"]
    assert alarm["Namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["MetricName"] == "SlackFailures"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]
    assert alarm["AlarmActions"] == ["AlarmTopic"]
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_the_slack_function_is_an_approver_of_the_queue_and_of_the_cancel_function(template):
    """slack-actions.md: the queue accepts the Slack function's role as a sender (queue policy and the approver
    allow-list the cancel function checks each SenderId against), besides ApproverPrincipals, whatever AutoCancel."""
    for mode in ("off", "unambiguous"):
        may = who_may_send(mode)
        for where in ("deny_unless", "allow", "allow_list", "iam_lookups"):
            assert may[where][:3] == [*APPROVERS, SLACK_ROLE_ARN], (mode, where)
    slack = functions(template)["SlackActionsFunction"]
    assert {"SQSSendMessagePolicy": {"QueueName": "ApprovalsQueue.QueueName"}} in slack["Policies"]


def test_slack_clicks_reach_the_function_through_an_http_api(template):
    resources = template["Resources"]
    assert resources["SlackActionsApi"]["Type"] == "AWS::Serverless::HttpApi"
    slack = functions(template)["SlackActionsFunction"]
    event = slack["Events"]["Click"]
    assert event["Type"] == "HttpApi"
    assert event["Properties"] == {"ApiId": "SlackActionsApi", "Method": "POST", "Path": "/slack/actions",
                                   "PayloadFormatVersion": "2.0"}
    assert slack["Timeout"] <= 30
    assert slack["Environment"]["Variables"]["IDEMPOTENCY_TABLE"] == "IdempotencyTable"
    assert "/slack/actions" in template["Outputs"]["SlackActionsUrl"]["Value"]
    assert "Default" not in template["Parameters"]["SlackSigningSecretArn"]
    pattern = re.compile(template["Parameters"]["SlackApproverIds"]["AllowedPattern"])
    assert pattern.fullmatch("U012AB3CDE")
    assert pattern.fullmatch("U012AB3CDE, W0456")
    assert not pattern.fullmatch("")
    assert not pattern.fullmatch("owner@example.com")
    # the scan function signs its buttons with a key derived from the same secret
    assert functions(template)["ScanFunction"]["Environment"]["Variables"]["SLACK_SIGNING_SECRET_SECRET"] \
        == "SlackSigningSecretArn"


def test_the_slack_app_manifest_asks_for_the_webhook_alone_and_sends_clicks_to_the_endpoint(template):
    manifest = yaml.safe_load((ROOT / "slack" / "manifest.yaml").read_text())
    assert manifest["oauth_config"]["scopes"] == {"bot": ["incoming-webhook"]}          # no other scope
    assert "user" not in manifest["oauth_config"]["scopes"]
    assert "features" not in manifest                                                     # no bot user, no commands
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    path = functions(template)["SlackActionsFunction"]["Events"]["Click"]["Properties"]["Path"]
    assert interactivity["request_url"].startswith("https://")
    assert interactivity["request_url"].endswith(path)
    assert template["Outputs"]["SlackActionsUrl"]["Value"].endswith(path)


def test_paypal_webhooks_reach_their_function_on_the_same_http_api_and_the_net_runs_hourly(template):
    """paypal-webhooks.md: POST /paypal/webhook on Slack's HTTP API, PayPalWebhookId, the URL as an output, and an
    hourly schedule whose constant input is events/scheduled_hourly.json (the handler's is_hourly)."""
    from billing_monitor.webhooks import is_hourly

    props = functions(template)["PayPalWebhookFunction"]
    delivery = props["Events"]["Delivery"]
    assert delivery["Type"] == "HttpApi"
    assert delivery["Properties"] == {"ApiId": "SlackActionsApi", "Method": "POST", "Path": "/paypal/webhook",
                                      "PayloadFormatVersion": "2.0"}
    assert functions(template)["SlackActionsFunction"]["Events"]["Click"]["Properties"]["ApiId"] == "SlackActionsApi"
    assert props["Environment"]["Variables"]["PAYPAL_WEBHOOK_ID"] == "PayPalWebhookId"
    assert template["Outputs"]["PayPalWebhookUrl"]["Value"].endswith("/paypal/webhook")
    hourly = props["Events"]["HourlyNet"]["Properties"]
    assert hourly["Schedule"] == "rate(1 hour)"
    assert hourly["State"] == "ENABLED"
    sent = json.loads(hourly["Input"])
    assert sent == json.loads((ROOT / "events" / "scheduled_hourly.json").read_text())
    assert is_hourly(sent)
