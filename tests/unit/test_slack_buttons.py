"""A button's value: `<finding_id>.<mac>`, the mac bound to the action and the finding (slack-actions.md)."""

from __future__ import annotations

import pytest

from billing_monitor.slack.buttons import APPROVE_CANCEL, APPROVE_REFUND, ButtonMac

FINDING, OTHER = "6c3f746973e9a73c", "0123456789abcdef"


def test_a_genuine_value_names_its_finding_for_its_action_only():
    macs = ButtonMac("a-signing-secret")
    value = macs.value(APPROVE_CANCEL, FINDING)
    assert macs.finding_of(APPROVE_CANCEL, value) == FINDING
    assert macs.finding_of(APPROVE_REFUND, value) is None                # the action is in the mac
    assert ButtonMac("another-secret").finding_of(APPROVE_CANCEL, value) is None
    assert macs.finding_of(APPROVE_CANCEL, f"{OTHER}.{value.split('.')[1]}") is None   # one finding's mac, another id


@pytest.mark.parametrize("mac", ["é" * 32, "G" * 32, "0" * 31, "0" * 33, "", "０" * 32])
def test_a_malformed_mac_is_refused_not_a_crash(mac):
    assert ButtonMac("a-signing-secret").finding_of(APPROVE_CANCEL, f"{FINDING}.{mac}") is None
