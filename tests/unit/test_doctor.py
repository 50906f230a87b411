"""The doctor's judgement of a Slack webhook URL: never posted to, never quoted."""

from __future__ import annotations

import pytest

from billing_monitor.doctor import slack_url_problem


@pytest.mark.parametrize("url", ["https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcDEF123ghiJKL456mnoPQR7",
                                 "http://127.0.0.1:8099/services/T000/B000/XXXX",
                                 "http://host.docker.internal:15001/services/T000/B000/XXXX"])
def test_well_formed(url):
    assert slack_url_problem(url) is None


@pytest.mark.parametrize(("url", "problem"), [
    ("http://hooks.slack.com/services/T0/B0/x", "not an https URL"),
    ("https://example.com/services/T0/B0/x", "not on hooks.slack.com"),
    ("https://hooks.slack.com/services/T0/B0", "not an incoming-webhook path (/services/T…/B…/…)"),
    ("https://hooks.slack.com/workflows/T0/A0/1/x", "not an incoming-webhook path (/services/T…/B…/…)"),
    ("hooks.slack.com/services/T0/B0/x", "not an https URL"),
])
def test_malformed(url, problem):
    assert slack_url_problem(url) == problem
