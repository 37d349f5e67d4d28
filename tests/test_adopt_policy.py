"""``adopt`` and the policy documents it gives the sending group: an ``AmazonSesSendingAccess`` that
grants more than SES sending is never attached, the plan shows every document the group will grant,
and values read from AWS reach the terminal escaped.

Each test works in an account of its own (tests/account.py): the sending group is account-wide.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from infra.cli import main
from infra.cli.sending_policy import SENDING_GROUP, SENDING_POLICY, SENDING_POLICY_DOCUMENT
from infra.local_aws import MotoServer
from tests.account import separate_account
from tests.adopt_support import USER, adopt, can_send, changes, console_user, snapshot
from tests.support import on_aws_events

pytestmark = pytest.mark.usefixtures("moto_server")

# What a terminal would obey rather than show: ESC, carriage return, C1 CSI, right-to-left override.
CONTROLS = {"\x1b", "\r", "\x9b", "\u202e"}
HOSTILE = "\x1b[2K\rOK: no findings \x9b2J \u202e"


@pytest.fixture
def account(moto_server: MotoServer) -> Iterator[str]:
    with separate_account() as account_id:
        yield account_id


def document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def sending_policy_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:policy/{SENDING_POLICY}"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["adopt", *args])
    out, err = capsys.readouterr()
    return status, out, err


BROADER: dict[str, dict[str, Any]] = {
    "everything": {"Effect": "Allow", "Action": "*", "Resource": "*"},
    "all-of-ses": {"Effect": "Allow", "Action": "ses:*", "Resource": "*"},
    "sending-and-iam": {"Effect": "Allow", "Action": ["ses:SendRawEmail", "iam:CreateAccessKey"], "Resource": "*"},
    "not-action": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
}


@pytest.mark.parametrize("statement", BROADER.values(), ids=BROADER.keys())
def test_an_existing_sending_policy_granting_more_than_sending_is_refused_and_nothing_changes(
    account: str, capsys: pytest.CaptureFixture[str], statement: dict[str, Any]
) -> None:
    boto3.client("iam").create_policy(PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(document(statement)))
    console_user()
    before = snapshot(account, USER)

    for args in ((USER,), (USER, "--json"), (USER, "--apply")):
        capsys.readouterr()
        status, calls = adopt(*args)
        out, err = capsys.readouterr()
        assert (status, changes(calls)) == (1, []), args
        assert out == ""  # a refusal prints no plan
        assert f"{sending_policy_arn(account)} exists but grants more than SES sending" in err
        assert json.dumps(statement, separators=(",", ":")) in err  # the document, to see why
        assert "delete it, or make its default version allow only ses:SendRawEmail" in err

    assert snapshot(account, USER) == before
    assert can_send(account, USER)  # still through its inline policy


def test_a_sending_policy_someone_makes_while_adopt_runs_is_checked_again_and_not_attached(
    account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    console_user()
    squatted = document(BROADER["everything"])
    calls: list[str] = []

    def squat(**_: Any) -> None:
        """Between adopt's plan (no policy yet) and its CreatePolicy, someone else creates it."""
        other = boto3.session.Session().client("iam")
        other.create_policy(PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(squatted))

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    with on_aws_events({"before-call.iam.CreatePolicy": squat, "after-call.iam": record}):
        status = main(["adopt", USER, "--apply"])

    assert status == 3  # stopped part-way: the steps before it stay done
    assert "AttachGroupPolicy" not in calls and "AddUserToGroup" not in calls
    assert "grants more than SES sending" in capsys.readouterr().err
    iam = boto3.client("iam")
    assert iam.list_attached_group_policies(GroupName=SENDING_GROUP)["AttachedPolicies"] == []
    assert iam.get_group(GroupName=SENDING_GROUP)["Users"] == []
    assert can_send(account, USER)

    status, calls = adopt(USER, "--apply")  # the next run refuses from its plan
    assert (status, changes(calls)) == (1, [])


def test_the_plan_shows_the_policy_it_would_create(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    console_user()
    status, out, _ = run(capsys, USER, "--json")
    assert status == 0
    assert json.loads(out)["group_policies"] == [
        {
            "name": SENDING_POLICY,
            "kind": "managed",
            "arn": sending_policy_arn(account),
            "change": "create_and_attach",
            "grants_only_sending": True,
            "document": SENDING_POLICY_DOCUMENT,
        }
    ]
    status, table, _ = run(capsys, USER)
    assert f"{SENDING_POLICY} (managed, {sending_policy_arn(account)}; to be created and attached)" in table
    assert '"Action": "ses:SendRawEmail"' in table


def test_the_plan_shows_the_existing_policy_it_would_attach(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    existing = document({"Effect": "Allow", "Action": ["ses:SendEmail", "ses:SendRawEmail"], "Resource": "*"})
    boto3.client("iam").create_policy(PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(existing))
    console_user()
    status, out, _ = run(capsys, USER, "--json")
    assert status == 0
    (policy,) = json.loads(out)["group_policies"]
    assert (policy["change"], policy["document"]) == ("attach", existing)
    _, table, _ = run(capsys, USER)
    assert "existing, to be attached" in table
    assert '"ses:SendEmail",' in table


def test_the_plan_shows_what_an_existing_group_grants_and_notes_more_than_sending(
    account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    iam = boto3.client("iam")
    iam.create_group(GroupName=SENDING_GROUP)
    sending = document({"Effect": "Allow", "Action": "ses:SendRawEmail", "Resource": "*"})
    buckets = document({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})
    iam.put_group_policy(GroupName=SENDING_GROUP, PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(sending))
    iam.put_group_policy(GroupName=SENDING_GROUP, PolicyName="read-buckets", PolicyDocument=json.dumps(buckets))
    console_user()

    status, out, _ = run(capsys, USER, "--json")
    assert status == 0
    report = json.loads(out)
    shown = {p["name"]: (p["change"], p["grants_only_sending"], p["document"]) for p in report["group_policies"]}
    assert shown == {SENDING_POLICY: ("none", True, sending), "read-buckets": ("none", False, buckets)}
    assert any("read-buckets grants more than SES sending" in note for note in report["notes"])
    _, table, _ = run(capsys, USER)
    assert '"Action": "s3:GetObject"' in table and "in the group already" in table


def test_the_plan_table_escapes_control_characters_read_from_aws(
    account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # IAM takes U+0080-U+00FF in a policy document, among them the C1 CSI (U+009B); moto takes any.
    identity = f"arn:aws:ses:us-east-1:{account}:identity/{HOSTILE}"
    existing = document({"Effect": "Allow", "Action": "ses:SendRawEmail", "Resource": ["*", identity]})
    boto3.client("iam").create_policy(PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(existing))
    console_user()

    status, table, err = run(capsys, USER)
    assert status == 0
    assert not CONTROLS & set(table + err)
    assert r"\x9b2J \u202e" in table  # shown, escaped

    status, out, _ = run(capsys, USER, "--json")  # json.dumps escapes; the value itself is exact
    assert not CONTROLS & set(out)
    assert json.loads(out)["group_policies"][0]["document"] == existing
