"""Who may approve: IAM principals named at deploy time, proven by the SQS message's SenderId.

`approved_by` in an approval is a label a person reads; the proof is the sender. SQS records, for every
message, the unique id of the IAM identity that sent it: an IAM user's UserId (AIDA...), or for a role
session the RoleId and the session name (AROA...:session). The allowed principals are given as ARNs
(the template's ApproverPrincipals); IAM's GetUser / GetRole turn each into its unique id once per
container. Nothing here trusts the message body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(?P<account>\d{12}):(?P<kind>user|role)/(?:[^/]+/)*(?P<name>[^/]+)$")
ASSUMED_ROLE_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/.+$")


class ApproverConfigError(ValueError):
    """An approver ARN that is not an IAM user or role, or that IAM does not know."""


@dataclass(frozen=True)
class Principal:
    arn: str
    kind: str          # "user" or "role"
    unique_id: str     # UserId / RoleId

    def sent(self, sender_id: str) -> bool:
        if self.kind == "user":
            return sender_id == self.unique_id
        return sender_id.startswith(self.unique_id + ":")      # a session of the role


def parse_principal_arn(arn: str) -> tuple[str, str]:
    """(kind, name) of an IAM user or role ARN; ApproverConfigError otherwise."""
    match = PRINCIPAL_ARN.match(arn.strip())
    if not match:
        raise ApproverConfigError(f"not an IAM user or role ARN: {arn!r}")
    return match["kind"], match["name"]


def resolve_principals(arns: Iterable[str], iam) -> tuple[Principal, ...]:
    """The unique id of each approver ARN, from IAM (GetUser / GetRole)."""
    principals = []
    for arn in arns:
        kind, name = parse_principal_arn(arn)
        try:
            if kind == "user":
                unique_id = iam.get_user(UserName=name)["User"]["UserId"]
            else:
                unique_id = iam.get_role(RoleName=name)["Role"]["RoleId"]
        except iam.exceptions.NoSuchEntityException:
            raise ApproverConfigError(f"IAM has no {kind} {arn}") from None
        principals.append(Principal(arn.strip(), kind, unique_id))
    return tuple(principals)


def verified_sender(sender_id: str | None, principals: Iterable[Principal]) -> Principal | None:
    """The approver who sent a message, or None when its SenderId is none of them."""
    if not sender_id:
        return None
    return next((p for p in principals if p.sent(sender_id)), None)


def caller_as_principal_arn(caller_arn: str) -> str:
    """STS's caller ARN as the IAM ARN an approver list names (an assumed role's session -> the role).

    A role with a path (role/team/name) is named by sts without its path; the list must use the same
    role name, which IAM keeps unique in an account whatever the path.
    """
    match = ASSUMED_ROLE_ARN.match(caller_arn)
    if match:
        return f"arn:{match['partition']}:iam::{match['account']}:role/{match['role']}"
    return re.sub(r"^arn:(aws[a-z-]*):sts::(\d{12}):user/", r"arn:\1:iam::\2:user/", caller_arn)


def same_principal(a: str, b: str) -> bool:
    """Two user/role ARNs name the same principal (paths ignored: names are unique per account and kind)."""
    try:
        return parse_principal_arn(a) == parse_principal_arn(b) and a.split(":")[4] == b.split(":")[4]
    except ApproverConfigError:
        return a == b


def allowed_senders(queue_policy: str | None) -> list[str] | None:
    """The ARNs a queue policy lets send (its ArnNotEquals aws:PrincipalArn deny), or None if it names none."""
    if not queue_policy:
        return None
    for statement in json.loads(queue_policy).get("Statement", []):
        condition = statement.get("Condition", {}).get("ArnNotEquals", {})
        arns = condition.get("aws:PrincipalArn")
        if statement.get("Effect") == "Deny" and arns:
            return [arns] if isinstance(arns, str) else list(arns)
    return None
