"""``adopt``: seed 000's migration of a console-made SMTP user, planned and applied.

Each test works in an account of its own (tests/account.py): the sending group is account-wide.
Whether the user may send is read straight from moto's IAM state after every IAM call
(tests/adopt_support.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError

from infra.cli import main
from infra.cli.sending_policy import SENDING_GROUP, SENDING_POLICY, SENDING_POLICY_DOCUMENT
from infra.local_aws import MotoServer
from tests.account import separate_account
from tests.adopt_support import USER, adopt, can_send, changes, console_user, snapshot, watching_iam

SEED_ORDER = ["CreatePolicy", "CreateGroup", "AttachGroupPolicy", "AddUserToGroup", "DeleteUserPolicy", "UntagUser"]
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("moto_server")


@pytest.fixture
def account(moto_server: MotoServer) -> Iterator[str]:
    with separate_account() as account_id:
        yield account_id


def assert_adopted(account: str, user: str = USER) -> None:
    iam = boto3.client("iam")
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName=user)["Groups"]] == [SENDING_GROUP]
    assert iam.list_user_policies(UserName=user)["PolicyNames"] == []
    assert iam.list_user_tags(UserName=user)["Tags"] == [{"Key": "team", "Value": "mail"}]
    assert can_send(account, user)


def test_the_plan_changes_nothing_and_reports_the_keys(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    key_id = console_user()
    before = snapshot(account, USER)
    status, calls = adopt(USER)
    assert status == 0
    assert changes(calls) == []
    assert snapshot(account, USER) == before
    out = capsys.readouterr().out
    assert key_id in out and "last used never" in out
    assert "plan only: nothing changed" in out and f"delete inline policy {SENDING_POLICY}" in out


def test_apply_reaches_the_end_state_in_seed_000s_order(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    console_user()
    status, calls = adopt(USER, "--apply")
    assert status == 0
    assert changes(calls) == SEED_ORDER
    # Step 13: the group is read again after the user joined it, and before the inline policy goes.
    joined, deleted = calls.index("AddUserToGroup"), calls.index("DeleteUserPolicy")
    assert "GetGroup" in calls[joined:deleted]
    assert_adopted(account)
    managed = boto3.client("iam").list_attached_group_policies(GroupName=SENDING_GROUP)["AttachedPolicies"]
    assert [p["PolicyName"] for p in managed] == [SENDING_POLICY]

    status, calls = adopt(USER, "--apply")  # idempotent
    assert (status, changes(calls)) == (0, [])
    assert "Nothing to do" in capsys.readouterr().out


def test_an_existing_sending_group_is_used_as_it_is(account: str) -> None:
    iam = boto3.client("iam")
    iam.create_group(GroupName=SENDING_GROUP)  # as the template or the console made it
    iam.put_group_policy(
        GroupName=SENDING_GROUP, PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(SENDING_POLICY_DOCUMENT)
    )
    console_user()
    status, calls = adopt(USER, "--apply")
    assert (status, changes(calls)) == (0, ["AddUserToGroup", "DeleteUserPolicy", "UntagUser"])
    assert_adopted(account)


@pytest.mark.parametrize("group_exists", [False, True], ids=["no-group-yet", "group-exists"])
def test_a_fault_after_any_iam_call_then_a_rerun_converges_and_the_user_can_always_send(
    moto_server: MotoServer, group_exists: bool
) -> None:
    def prepare() -> None:
        if group_exists:
            iam = boto3.client("iam")
            iam.create_group(GroupName=SENDING_GROUP)
            iam.put_group_policy(
                GroupName=SENDING_GROUP, PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(SENDING_POLICY_DOCUMENT)
            )
        console_user()

    with separate_account():
        prepare()
        total = len(adopt(USER, "--apply")[1])  # how many IAM calls a clean run makes
    assert total > len(SEED_ORDER)

    for fault_at in range(1, total + 1):
        with separate_account() as account:
            prepare()
            sending = adopt_with_fault_then_rerun(account, fault_at)
            assert_adopted(account)
            assert [op for op, ok in sending if not ok] == [], f"fault after call {fault_at}: {sending}"


def adopt_with_fault_then_rerun(account: str, fault_at: int) -> list[tuple[str, bool]]:
    """`adopt --apply` losing the answer of its `fault_at`-th IAM call, then again without fault.

    Returns (operation, whether the user could send right after it) for every IAM call.
    """
    sending: list[tuple[str, bool]] = []
    count = [0]

    def record(operation: str) -> None:
        sending.append((operation, can_send(account, USER)))

    def fault(operation: str) -> None:
        record(operation)
        count[0] += 1
        if count[0] == fault_at:  # the call went through; its answer is lost
            raise ReadTimeoutError(endpoint_url="https://iam.amazonaws.com")

    with watching_iam(fault):
        assert main(["adopt", USER, "--apply"]) == 3, fault_at
    with watching_iam(record):
        assert main(["adopt", USER, "--apply"]) == 0, fault_at
    return sending


def test_an_unknown_user_is_refused_and_nothing_changes(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(account, "nobody")
    status, calls = adopt("nobody", "--apply")
    assert (status, changes(calls)) == (1, [])
    assert snapshot(account, "nobody") == before
    assert "IAM user nobody does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("user_in_group", [False, True], ids=["user-outside", "user-inside"])
def test_a_group_that_does_not_grant_sending_is_refused_and_nothing_changes(
    account: str, capsys: pytest.CaptureFixture[str], user_in_group: bool
) -> None:
    iam = boto3.client("iam")
    iam.create_group(GroupName=SENDING_GROUP)
    s3_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    iam.put_group_policy(GroupName=SENDING_GROUP, PolicyName="read-buckets", PolicyDocument=json.dumps(s3_only))
    iam.create_user(UserName="someone-else")
    iam.add_user_to_group(GroupName=SENDING_GROUP, UserName="someone-else")
    console_user()
    if user_in_group:
        iam.add_user_to_group(GroupName=SENDING_GROUP, UserName=USER)
    before = snapshot(account, USER)

    status, calls = adopt(USER, "--apply")

    assert (status, changes(calls)) == (1, [])
    assert snapshot(account, USER) == before
    err = capsys.readouterr().err
    assert f"Group {SENDING_GROUP} exists but grants no ses:SendRawEmail" in err and "read-buckets" in err


def test_an_inline_policy_granting_more_than_sending_is_kept(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    broader = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ses:SendRawEmail", "s3:PutObject"], "Resource": "*"}],
    }
    console_user(document=broader)
    status, calls = adopt(USER, "--apply")
    assert status == 0
    assert "DeleteUserPolicy" not in calls
    assert boto3.client("iam").list_user_policies(UserName=USER)["PolicyNames"] == [SENDING_POLICY]
    assert "also grants more than SES actions: kept" in capsys.readouterr().out


def test_json_output(account: str, capsys: pytest.CaptureFixture[str]) -> None:
    key_id = console_user()
    assert main(["adopt", USER, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["applied"] is False
    assert [k["access_key_id"] for k in report["keys"]] == [key_id]
    assert [s["action"] for s in report["steps"]] == [
        "create_policy",
        "create_group",
        "attach_policy",
        "add_user_to_group",
        "check_group_grants_sending",
        "delete_inline_policy",
        "remove_console_tag",
    ]
    assert f"AdoptedSmtpUserNames=<names already listed>,{USER}" in report["next"]
    assert "SendingGroupExists included, as the deployment has it" in report["next"]


def test_a_managed_sending_policy_that_does_not_allow_sending_is_refused(
    account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    s3_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    boto3.client("iam").create_policy(PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(s3_only))
    console_user()
    before = snapshot(account, USER)
    status, calls = adopt(USER, "--apply")
    assert (status, changes(calls)) == (1, [])
    assert snapshot(account, USER) == before
    assert f"policy/{SENDING_POLICY} exists but does not allow ses:SendRawEmail" in capsys.readouterr().err


def test_a_group_that_grants_sending_only_from_one_address_is_refused_unless_allowed(
    account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    iam = boto3.client("iam")
    scoped = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ses:SendRawEmail",
                "Resource": "*",
                "Condition": {"StringEquals": {"ses:FromAddress": "billing@example.com"}},
            }
        ],
    }
    iam.create_group(GroupName="billing-senders")
    iam.put_group_policy(GroupName="billing-senders", PolicyName="from-billing", PolicyDocument=json.dumps(scoped))
    console_user()
    before = snapshot(account, USER)

    status, calls = adopt(USER, "--group", "billing-senders", "--apply")

    assert (status, changes(calls)) == (1, [])
    assert snapshot(account, USER) == before
    err = capsys.readouterr().err
    assert "would narrow what" in err and "--allow-narrower" in err

    status, calls = adopt(USER, "--group", "billing-senders", "--apply", "--allow-narrower")
    assert (status, changes(calls)) == (0, ["AddUserToGroup", "DeleteUserPolicy", "UntagUser"])
    assert iam.list_user_policies(UserName=USER)["PolicyNames"] == []


def readme_adopt_permissions() -> tuple[set[str], set[str]]:
    """The IAM actions the README lists for adopt: (to plan, to apply as well)."""
    text = (REPO / "README.md").read_text()
    found = re.search(r"^- IAM permissions: to plan, (.*?); to apply, also (.*?)\.\n", text, re.M | re.S)
    assert found is not None, "README.md lists no IAM permissions for adopt"
    plan, apply = (set(re.findall(r"`(iam:\w+)`", part)) for part in found.groups())
    return plan, apply


def test_the_readme_lists_every_iam_call_adopt_makes(account: str) -> None:
    console_user()
    plan, apply = readme_adopt_permissions()
    _, planning = adopt(USER)
    _, applying = adopt(USER, "--apply")
    assert {f"iam:{c}" for c in planning} <= plan
    assert {f"iam:{c}" for c in applying} <= plan | apply
    assert {f"iam:{c}" for c in changes(applying)} == apply  # this path makes every change the README lists
