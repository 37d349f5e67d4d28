"""Many SMTP users, one deployment (SPEC §6): one rotation function serves every listed user's
secret, and rotating one user's secret never touches another user's keys.

The function's registry path (SMTP_BINDING_PATH) and each user's binding parameter are the ones
template.yaml gives a deployment of two users (one created, one adopted), resolved as CloudFormation
would (tests/template/resolver.py); the secrets are named as the template names them. Rotations run
through the handler against moto and the SES stand-in.
"""

from __future__ import annotations

import json
import os
import uuid

import boto3
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from mypy_boto3_iam import IAMClient

from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import RotationError
from tests.account import backdate_key
from tests.support import STANDIN_HOST, current, keys_of, rotate, secrets_client, smtp_login_code
from tests.template.resolver import deploy
from tests.template.support import FUNCTION_ID


@pytest.fixture
def two_users(iam_client: IAMClient) -> tuple[str, str]:
    """A user the deployment creates and one it adopts (with the key the console made months ago)."""
    suffix = uuid.uuid4().hex[:8]
    # Not ses-smtp/ses-smtp-user...: tests/recipes finds its secret by that name (a prefix filter).
    created, adopted = f"app-mailer-{suffix}", f"console-user.{suffix}"
    for name in (created, adopted):
        iam_client.create_user(UserName=name)
    console_key = iam_client.create_access_key(UserName=adopted)["AccessKey"]["AccessKeyId"]
    backdate_key(os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID), adopted, console_key, days=100)
    return created, adopted


@pytest.fixture
def deployment(two_users: tuple[str, str], monkeypatch: pytest.MonkeyPatch, ses_smtp: SesSmtpStandIn) -> dict[str, str]:
    """{user: secret ARN}: the template's secrets ses-smtp/<user>, and the function's bindings as
    the template sets them for these two users."""
    created, adopted = two_users
    stack = deploy({"SmtpUserNames": created, "AdoptedSmtpUserNames": adopted})
    monkeypatch.setenv(
        "SMTP_BINDING_PATH", stack.properties(FUNCTION_ID)["Environment"]["Variables"]["SMTP_BINDING_PATH"]
    )
    arns = {}
    for user in two_users:
        document = {
            "iam_user_name": user,
            "region": ses_smtp.region,
            "host": STANDIN_HOST,
            "port": ses_smtp.starttls_port,
        }
        arns[user] = secrets_client().create_secret(Name=f"ses-smtp/{user}", SecretString=json.dumps(document))["ARN"]
        # The user's stack registers its secret's ARN (its Binding parameter), as CloudFormation would.
        (binding,) = [
            s.properties("Binding")
            for s in stack.nested.values()
            if s.properties("Binding")["Name"].endswith(f"/{user}")
        ]
        boto3.client("ssm").put_parameter(Name=binding["Name"], Value=arns[user], Type="String", Overwrite=True)
    return arns


@pytest.mark.usefixtures("smtp_ca")
def test_rotating_each_users_secret_leaves_the_other_users_keys_untouched(
    deployment: dict[str, str], iam_client: IAMClient, ses_smtp: SesSmtpStandIn
) -> None:
    first, second = deployment
    for rotated, other in ((first, second), (second, first), (first, second)):
        before_rotated, before_other = keys_of(iam_client, rotated), keys_of(iam_client, other)

        rotate(deployment[rotated])

        assert keys_of(iam_client, other) == before_other, f"rotating {rotated} touched {other}'s keys"
        after = keys_of(iam_client, rotated)
        new_key = current(deployment[rotated])["username"]
        assert new_key not in before_rotated and after[new_key] == "Active"
        assert {k: s for k, s in after.items() if k != new_key} == before_rotated  # the previous key overlaps
    for user, arn in deployment.items():
        secret = current(arn)
        assert secret["iam_user_name"] == user
        assert smtp_login_code(ses_smtp, secret["username"], secret["password"]) == 235


def test_a_secret_naming_another_listed_user_is_refused_before_anything_changes(
    deployment: dict[str, str], iam_client: IAMClient
) -> None:
    # Someone who may write ses-smtp/<first> points it at the second user, whose keys the
    # function's role may also touch: the binding, not the role, stops it.
    first, second = deployment
    client = secrets_client()
    tampered = {
        **json.loads(client.get_secret_value(SecretId=deployment[first])["SecretString"]),
        "iam_user_name": second,
    }
    client.put_secret_value(SecretId=deployment[first], SecretString=json.dumps(tampered))
    before = {user: keys_of(iam_client, user) for user in deployment}

    with pytest.raises(RotationError, match=first):
        rotate(deployment[first])

    assert {user: keys_of(iam_client, user) for user in deployment} == before
