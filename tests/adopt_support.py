"""What the ``adopt`` tests share: a console-made user, moto's view of what the user may do and
of everything adopt could change, and ``adopt`` run with its IAM calls recorded.

Whether the user may send is read straight from moto's IAM state, with a deliberately simple
evaluator of our own, not the code under test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from moto.iam.models import iam_backends

from infra.cli import main
from infra.cli.sending_policy import SENDING_POLICY, SENDING_POLICY_DOCUMENT
from tests.support import on_aws_event

USER = "ses-smtp-user.20190520-101010"  # the console's naming
READ_ONLY = ("Get", "List")


def console_user(name: str = USER, document: dict[str, Any] | None = None) -> str:
    """A user as the SES console made them before September 2024; returns its access key ID."""
    iam = boto3.client("iam")
    iam.create_user(UserName=name, Tags=[{"Key": "InvokedBy", "Value": "SESConsole"}, {"Key": "team", "Value": "mail"}])
    policy = json.dumps(document or SENDING_POLICY_DOCUMENT)
    iam.put_user_policy(UserName=name, PolicyName=SENDING_POLICY, PolicyDocument=policy)
    return iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]


def _allows_send(document: str) -> bool:
    statements = json.loads(document)["Statement"]
    for statement in [statements] if isinstance(statements, dict) else statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if statement["Effect"] == "Allow" and {"ses:SendRawEmail", "ses:*", "*"} & set(actions):
            return True
    return False


def can_send(account: str, user: str) -> bool:
    """Whether the user's inline policies or its groups' policies allow ses:SendRawEmail (moto's state)."""
    backend = iam_backends[account]["aws"]
    member = backend.users[user]
    documents = list(member.policies.values())
    for group in backend.groups.values():
        if member in group.users:
            documents += group.policies.values()
            for policy in group.managed_policies.values():
                documents += [v.document for v in policy.versions if v.is_default]
    return any(_allows_send(d) for d in documents)


def snapshot(account: str, user: str) -> Any:
    """Everything adopt could change, from moto's state."""
    backend = iam_backends[account]["aws"]
    member = backend.users.get(user)
    groups = {
        g.name: (sorted(u.name for u in g.users), dict(g.policies), sorted(g.managed_policies))
        for g in backend.groups.values()
    }
    policies = sorted(p.arn for p in backend.managed_policies.values() if p.account_id == account)
    if member is None:
        return groups, policies
    return groups, policies, dict(member.policies), backend.list_user_tags(user), len(member.access_keys)


@contextmanager
def watching_iam(on_call: Callable[[str], None]) -> Iterator[None]:
    """Call `on_call(operation)` after every IAM call of clients created in the block."""

    def after(model: Any, **_: Any) -> None:
        on_call(model.name)

    with on_aws_event("after-call.iam", after):
        yield


def adopt(*args: str) -> tuple[int, list[str]]:
    """Run ``adopt`` and return its status and the IAM operations it called, in order."""
    calls: list[str] = []
    with watching_iam(calls.append):
        status = main(["adopt", *args])
    return status, calls


def changes(calls: list[str]) -> list[str]:
    return [c for c in calls if not c.startswith(READ_ONLY)]
