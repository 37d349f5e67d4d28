"""``audit`` against an account seeded with one case per finding, and a healthy rotated user.

The account is a separate one on the shared moto server (tests/account.py), so the inventory is
exactly what this module seeded. Rotations run through the real handler against an SES SMTP
stand-in that knows this account's keys.
"""

from __future__ import annotations

import base64
import collections
import functools
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

import boto3
import jsonschema
import pytest
from botocore.exceptions import ClientError

from infra.cli import main
from infra.cli.audit_report import SCHEMA_PATH
from infra.cli.sending_policy import SENDING_GROUP, SENDING_POLICY, SENDING_POLICY_DOCUMENT
from infra.local_aws import MotoServer, lookup_access_key
from infra.rotation_driver import begin_rotation, step_event
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.smtp_password import derive_password
from tests.account import backdate_key, backdate_version, separate_account
from tests.conftest import REGION
from tests.recipes.readme import recipe
from tests.support import create_secret, current, invoke, on_aws_event, rotate


def v2_password(secret_access_key: str) -> str:
    """The pre-2019 SMTP password: base64(0x02 || HMAC-SHA256(secret, "SendRawEmail"))."""
    signature = hmac.new(secret_access_key.encode(), b"SendRawEmail", hashlib.sha256).digest()
    return base64.b64encode(b"\x02" + signature).decode()


@dataclass(frozen=True)
class Seeded:
    account: str
    secrets: dict[str, str]  # user -> secret ARN


CONSOLE, TWO_KEYS, V2, ORPHAN, STUCK, HEALTHY = (
    "ses-smtp-console",
    "ses-smtp-two-keys",
    "ses-smtp-v2",
    "ses-smtp-orphan",
    "ses-smtp-stuck",
    "ses-smtp-healthy",
)
EXPECTED_FINDINGS = {
    (CONSOLE, "inline_sending_policy", "low"),
    (CONSOLE, "active_key_too_old", "medium"),
    (CONSOLE, "key_named_by_no_secret", "medium"),  # nothing rotates the console's key
    (TWO_KEYS, "two_active_keys", "low"),
    (V2, "v2_password", "high"),
    (ORPHAN, "key_named_by_no_secret", "medium"),
    (STUCK, "rotation_stuck", "high"),
}


def _grouped_user(name: str) -> None:
    iam = boto3.client("iam")
    iam.create_user(UserName=name)
    iam.add_user_to_group(GroupName=SENDING_GROUP, UserName=name)


def _sending_group() -> None:
    iam = boto3.client("iam")
    iam.create_group(GroupName=SENDING_GROUP)
    iam.put_group_policy(
        GroupName=SENDING_GROUP, PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(SENDING_POLICY_DOCUMENT)
    )


def _grouped_user_with_sending_group(name: str) -> None:
    _sending_group()
    _grouped_user(name)


@pytest.fixture(scope="module")
def seeded(moto_server: MotoServer) -> Iterator[Seeded]:
    with separate_account() as account:
        lookup = functools.partial(lookup_access_key, account_id=account)
        with SesSmtpStandIn(lookup, region=REGION) as ses, mock.patch.dict(os.environ, {"SSL_CERT_FILE": ses.ca_path}):
            yield _seed(account, ses)


def _seed(account: str, ses: SesSmtpStandIn) -> Seeded:
    iam = boto3.client("iam")
    _sending_group()
    # Not an SMTP user: it must not be listed.
    iam.create_user(UserName="app-deployer")
    s3_only = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="app-deployer", PolicyName="deploy", PolicyDocument=json.dumps(s3_only))
    iam.create_access_key(UserName="app-deployer")

    # The SES console before September 2024: inline policy, tag, a key made 100 days ago.
    iam.create_user(UserName=CONSOLE, Tags=[{"Key": "InvokedBy", "Value": "SESConsole"}])
    iam.put_user_policy(UserName=CONSOLE, PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(SENDING_POLICY_DOCUMENT))
    key = iam.create_access_key(UserName=CONSOLE)["AccessKey"]["AccessKeyId"]
    backdate_key(account, CONSOLE, key, days=100)

    secrets: dict[str, str] = {}
    for user in (TWO_KEYS, ORPHAN, STUCK, HEALTHY):
        _grouped_user(user)
        secrets[user] = create_secret({"iam_user_name": user}, ses)

    # Two rotations keep the previous key Active (keep); both keys well past the grace window.
    rotate(secrets[TWO_KEYS])
    rotate(secrets[TWO_KEYS])
    for key_id, days in zip(_key_ids(TWO_KEYS), (10, 5), strict=True):
        backdate_key(account, TWO_KEYS, key_id, days=days)

    # A v2 password stored by hand, for a key of the user.
    _grouped_user(V2)
    made = iam.create_access_key(UserName=V2)["AccessKey"]
    document = {"iam_user_name": V2, "username": made["AccessKeyId"], "password": v2_password(made["SecretAccessKey"])}
    secrets[V2] = create_secret(document)

    # A rotated user with a key made by hand besides.
    rotate(secrets[ORPHAN])
    iam.create_access_key(UserName=ORPHAN)

    # A rotation that stopped after createSecret a day ago.
    rotate(secrets[STUCK])
    token = begin_rotation(boto3.client("secretsmanager"), secrets[STUCK])
    invoke(step_event("createSecret", secrets[STUCK], token, None))
    backdate_version(account, REGION, secrets[STUCK], token, days=1)

    # Healthy: rotated twice just now (two Active keys, inside the grace window).
    rotate(secrets[HEALTHY])
    rotate(secrets[HEALTHY])
    return Seeded(account, secrets)


def _key_ids(user: str) -> list[str]:
    keys = boto3.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    return [k["AccessKeyId"] for k in sorted(keys, key=lambda k: k["CreateDate"])]


def run_audit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["audit", *args])
    return status, capsys.readouterr().out


def audit_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    status, out = run_audit(capsys, "--json", *args)
    assert status == 0
    return json.loads(out)  # type: ignore[no-any-return]


def test_each_seeded_finding_appears_once_with_its_severity(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    report = audit_json(capsys)
    found = collections.Counter((f["user"], f["code"], f["severity"]) for f in report["findings"])
    assert found == collections.Counter(EXPECTED_FINDINGS)
    too_old = next(f for f in report["findings"] if f["code"] == "active_key_too_old")
    assert too_old["control"] == "IAM.3" and too_old["access_key_id"] == _key_ids(CONSOLE)[0]


def test_the_healthy_rotated_user_has_no_finding_and_every_key_is_named(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    report = audit_json(capsys)
    assert not [f for f in report["findings"] if f["user"] == HEALTHY]
    user = next(u for u in report["users"] if u["name"] == HEALTHY)
    assert user["found_by"] == ["sending_group", "secret"]
    labels = {k["access_key_id"]: {label for r in k["named_by"] for label in r["labels"]} for k in user["keys"]}
    previous_key, current_key = _key_ids(HEALTHY)
    assert current(seeded.secrets[HEALTHY])["username"] == current_key
    assert "AWSCURRENT" in labels[current_key] and labels[previous_key] == {"AWSPREVIOUS"}
    secret = next(s for s in report["secrets"] if s["arn"] == seeded.secrets[HEALTHY])
    assert secret["rotation_state"] == "rotated"
    assert {v for version in secret["versions"] for v in version["password_versions"]} == {4}


def test_the_inventory_lists_the_smtp_users_and_why(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    report = audit_json(capsys)
    found_by = {u["name"]: u["found_by"] for u in report["users"]}
    assert found_by == {
        CONSOLE: ["inline_policy", "console_tag"],
        TWO_KEYS: ["sending_group", "secret"],
        V2: ["sending_group", "secret"],
        ORPHAN: ["sending_group", "secret"],
        STUCK: ["sending_group", "secret"],
        HEALTHY: ["sending_group", "secret"],
    }
    stuck = next(s for s in report["secrets"] if s["arn"] == seeded.secrets[STUCK])
    assert stuck["rotation_state"] == "stuck"
    pending = next(v for v in stuck["versions"] if "AWSPENDING" in v["labels"])
    assert pending["access_key_id"] in _key_ids(STUCK)  # the pending key is named: no orphan finding


def test_the_json_validates_against_the_documented_schema(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    report = audit_json(capsys)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(
        report
    )
    # Every field the audit prints is documented in the schema (the schema lets later versions add fields).
    assert _keys(report) <= _keys(schema, documented=True)


def _keys(node: Any, *, documented: bool = False) -> set[str]:
    """The object keys anywhere in a JSON value; of a schema, the property names it documents."""
    found: set[str] = set()
    if isinstance(node, dict):
        if not documented:
            found |= set(node)
        else:
            found |= set(node.get("properties", {})) | set(node.get("required", []))
        for value in node.values():
            found |= _keys(value, documented=documented)
    elif isinstance(node, list):
        for value in node:
            found |= _keys(value, documented=documented)
    return found


def test_no_password_is_printed(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    secret_ids = [seeded.secrets[user] for user in (HEALTHY, V2, ORPHAN)]
    passwords = [current(arn)["password"] for arn in secret_ids]
    for args in ((), ("--json",)):
        _, out = run_audit(capsys, *args)
        assert not [p for p in passwords if p in out]


@pytest.mark.parametrize(
    ("fail_on", "status"),
    [(None, 0), ("critical", 0), ("high", 1), ("medium", 1), ("info", 1)],
)
def test_fail_on_sets_the_exit_status(
    seeded: Seeded, capsys: pytest.CaptureFixture[str], fail_on: str | None, status: int
) -> None:
    args = () if fail_on is None else ("--fail-on", fail_on)
    assert run_audit(capsys, *args)[0] == status


def test_fail_on_passes_for_an_account_without_findings(
    moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with separate_account():
        _grouped_user_with_sending_group(HEALTHY)
        made = boto3.client("iam").create_access_key(UserName=HEALTHY)["AccessKey"]
        password = derive_password(made["SecretAccessKey"], REGION)
        create_secret({"iam_user_name": HEALTHY, "username": made["AccessKeyId"], "password": password})
        status, out = run_audit(capsys, "--fail-on", "info")
    assert status == 0
    assert "SES SMTP users (1)" in out and "Findings (0)" in out


def test_an_aws_error_exits_3_and_says_what_failed(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    def deny(**_: Any) -> None:
        error = {"Error": {"Code": "AccessDenied", "Message": "not authorized to perform iam:ListUsers"}}
        raise ClientError(error, "ListUsers")  # type: ignore[arg-type]

    with on_aws_event("before-call.iam.ListUsers", deny):
        status = main(["audit"])
    assert status == 3
    assert "iam:ListUsers" in capsys.readouterr().err


def test_table_names_every_user_and_finding(seeded: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    status, table = run_audit(capsys)
    assert status == 0
    for user in (CONSOLE, TWO_KEYS, V2, ORPHAN, STUCK, HEALTHY):
        assert user in table
    for _, code, _ in EXPECTED_FINDINGS:
        assert code in table
    assert "app-deployer" not in table


def test_the_readme_policy_allows_exactly_the_calls_audit_makes(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    called: set[str] = set()

    def record(model: Any, **_: Any) -> None:
        called.add(f"{model.service_model.signing_name}:{model.name}")

    with on_aws_event("before-call", record):
        run_audit(capsys)

    policy = json.loads(recipe("audit-policy"))
    granted = {
        action
        for statement in policy["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert called == granted  # nothing it calls is missing, nothing granted goes unused


def test_the_table_escapes_control_characters_read_from_a_secret(
    moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Whoever may write a secret chooses its value: here to erase the line and fake a clean audit,
    # with ESC and CR, the C1 CSI (U+009B) and a right-to-left override (U+202E).
    hostile_user = "\x1b[2K\rOK: no findings"
    hostile_key = "AKIA\x9b2J\u202eEXAMPLE"
    with separate_account():
        value = {"iam_user_name": hostile_user, "username": hostile_key, "password": "not-a-password"}
        boto3.client("secretsmanager").create_secret(Name="ses-smtp/hostile", SecretString=json.dumps(value))
        status, table = run_audit(capsys)
        report = audit_json(capsys)

    assert status == 0
    assert not {"\x1b", "\r", "\x9b", "\u202e"} & set(table)
    # Shown, escaped: in the secrets table and in the finding that the user does not exist.
    assert table.count(r"\x1b[2K\rOK: no findings") >= 2 and r"AKIA\x9b2J\u202eEXAMPLE" in table
    assert "secret_user_missing" in table
    # The JSON carries the exact values (json.dumps escapes them).
    assert [(s["iam_user_name"], s["versions"][0]["access_key_id"]) for s in report["secrets"]] == [
        (hostile_user, hostile_key)
    ]
