"""A button's value, `<finding_id>.<mac>` (slack-actions.md, "Buttons"), made and checked.

`mac` is the first 32 hex characters of HMAC-SHA256(key, "<action_id>:<finding_id>"), the key derived from
the Slack app's signing secret: only who holds the secret (the scan function that posts the message, the
Slack function that takes the click) can make one. A message someone else posted through the webhook URL
carries buttons whose mac does not match: refused. The value names a finding and nothing else; what is
done is always read from the saved scan.
"""

from __future__ import annotations

import hashlib
import hmac
import re

APPROVE_CANCEL, APPROVE_REFUND, ACKNOWLEDGE = "approve_cancel", "approve_refund", "acknowledge"
#: The actions a click may ask for (a value's mac is made for one of them).
ACTIONS = (APPROVE_CANCEL, APPROVE_REFUND, ACKNOWLEDGE)
#: The element beside each Acknowledge menu: how long (its value is read from the click's `state`, no mac: it
#: only chooses among these, for a click whose finding the mac proved).
ACKNOWLEDGE_FOR = "acknowledge_for"
ACKNOWLEDGE_CHOICES = {"changes": None, "30d": 30, "90d": 90}        # value -> days (None: until it changes)
ACKNOWLEDGE_LABELS = {"changes": "until it changes", "30d": "for 30 days", "90d": "for 90 days"}
MAC_HEX = 32
_MAC = re.compile(rf"[0-9a-f]{{{MAC_HEX}}}")
FINDING_ID = re.compile(r"^[0-9a-f]{16}$")
_KEY_LABEL = b"billing-monitor slack button mac v1"


class ButtonMac:
    """Makes and checks button values with a key derived from the signing secret (never kept, never shown)."""

    def __init__(self, signing_secret: str):
        if not signing_secret:
            raise ValueError("no signing secret: no buttons")
        self._key = hmac.new(signing_secret.encode(), _KEY_LABEL, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "ButtonMac(<key hidden>)"

    def mac(self, action_id: str, finding_id: str) -> str:
        return hmac.new(self._key, f"{action_id}:{finding_id}".encode(), hashlib.sha256).hexdigest()[:MAC_HEX]

    def value(self, action_id: str, finding_id: str) -> str:
        return f"{finding_id}.{self.mac(action_id, finding_id)}"

    def finding_of(self, action_id: str, value: object) -> str | None:
        """The finding id a value names, when its mac is this key's for this action; None for a forged value."""
        if action_id not in ACTIONS or not isinstance(value, str) or value.count(".") != 1:
            return None
        finding_id, mac = value.split(".")
        if not FINDING_ID.match(finding_id) or not _MAC.fullmatch(mac):      # hex only: compare_digest takes ASCII
            return None
        return finding_id if hmac.compare_digest(mac, self.mac(action_id, finding_id)) else None
