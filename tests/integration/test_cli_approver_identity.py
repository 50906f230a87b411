"""`billing-monitor approve` says, before sending, when the queue would not take the owner's identity."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from billing_monitor.actions.approvers import allowed_senders, caller_as_principal_arn, same_principal
from billing_monitor.cli import main

pytestmark = pytest.mark.integration

MOTO_CALLER = "arn:aws:iam::123456789012:user/moto"      # who moto says is calling


def queue_accepting(sqs, *arns: str) -> str:
    """An approvals queue whose policy is the template's: deny SendMessage to anyone but `arns`."""
    url = sqs.create_queue(QueueName="approvals")["QueueUrl"]
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "OnlyTheApproversSend", "Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage",
         "Resource": "arn:aws:sqs:us-east-1:123456789012:approvals",
         "Condition": {"ArnNotEquals": {"aws:PrincipalArn": list(arns)}}}]}
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    return url


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("sqs")


def approve(demo_db, url, capsys):
    code = main(["approve", "6c3f746973e9a73c", "--by", "owner@example.com", "--dsn", demo_db, "--queue-url", url])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_identity_the_queue_does_not_accept_is_told_before_sending(aws, demo_db, capsys):
    url = queue_accepting(aws, "arn:aws:iam::123456789012:user/owner")
    code, out, err = approve(demo_db, url, capsys)
    assert code == 1
    assert f"you are {MOTO_CALLER}, and the approvals queue accepts approvals only from" in err
    assert "arn:aws:iam::123456789012:user/owner" in err
    assert "Approval sent" not in out
    assert aws.receive_message(QueueUrl=url).get("Messages") is None


def test_an_approver_sends(aws, demo_db, capsys):
    url = queue_accepting(aws, "arn:aws:iam::123456789012:user/owner", MOTO_CALLER)
    code, out, err = approve(demo_db, url, capsys)
    assert code == 0, err
    assert out.startswith("Approval sent (message ")
    [sent] = aws.receive_message(QueueUrl=url)["Messages"]
    assert json.loads(sent["Body"])["finding_id"] == "6c3f746973e9a73c"


def test_an_assumed_role_session_is_its_role():
    assert caller_as_principal_arn("arn:aws:sts::123456789012:assumed-role/billing-approver/ada") == (
        "arn:aws:iam::123456789012:role/billing-approver")
    assert same_principal("arn:aws:iam::123456789012:role/billing-approver",
                          "arn:aws:iam::123456789012:role/team/billing-approver")
    assert not same_principal("arn:aws:iam::123456789012:role/billing-approver",
                              "arn:aws:iam::123456789012:user/billing-approver")
    assert not same_principal("arn:aws:iam::123456789012:user/owner", "arn:aws:iam::210987654321:user/owner")


def test_allowed_senders_read_from_the_templates_policy():
    import yaml

    from tests.unit.test_template import ROOT, CfnLoader

    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=CfnLoader)
    statements = template["Resources"]["ApprovalsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    policy = json.dumps({"Statement": [dict(s, Condition={"ArnNotEquals": {"aws:PrincipalArn": ["arn:x"]}})
                                       if s.get("Condition", {}).get("ArnNotEquals") else s for s in statements]})
    assert allowed_senders(policy) == ["arn:x"]
    assert allowed_senders(None) is None
