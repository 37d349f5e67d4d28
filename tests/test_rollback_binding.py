"""``rollback`` takes its orders from the deployment, not from the secret (README: "The secret
cannot steer the rotation"): each test's secret is rotated by a real (moto) Lambda function whose
environment is the one the template sets, and rollback reads the bound IAM user and the allowed
SMTP hosts there. A writer of the secret who names another user, that user's key or another host
gets a refusal and nothing else; so does a secret no deployment binds.
"""

from __future__ import annotations

import uuid

import boto3
import pytest
from mypy_boto3_iam import IAMClient

from infra.ses_smtp import SesSmtpStandIn
from tests.retirement_support import Deployment, deploy
from tests.rollback_support import (
    retired_after_rotation,
    rollback_in_process,
    set_function_setting,
    snapshot,
    version_with,
    write_version,
)
from tests.support import STANDIN_HOST, create_secret, current, keys_of, stages

pytestmark = pytest.mark.usefixtures("smtp_ca")


@pytest.fixture
def deployment(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    return deploy(iam_client, iam_user, ses_smtp, monkeypatch, rotation_function=True)


@pytest.fixture
def victim(iam_client: IAMClient) -> tuple[str, str]:
    """Another SMTP user, whose only key its owner deliberately made Inactive: (user, key)."""
    user = f"ses-smtp-victim-{uuid.uuid4().hex[:12]}"
    iam_client.create_user(UserName=user)
    key = iam_client.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    iam_client.update_access_key(UserName=user, AccessKeyId=key, Status="Inactive")
    return user, key


@pytest.mark.parametrize("awscurrent_names", ["the victim", "the bound user"])
def test_rollback_never_reactivates_another_users_key_whatever_the_secret_says(
    deployment: Deployment,
    victim: tuple[str, str],
    ses_smtp: SesSmtpStandIn,
    capsys: pytest.CaptureFixture[str],
    awscurrent_names: str,
) -> None:
    victim_user, victim_key = victim
    deployment.rotate()
    rotated = current(deployment.arn)
    # A writer of the secret (PutSecretValue only) plants a version naming the victim and its
    # Inactive key, then writes another on top, so that AWSPREVIOUS holds the planted one.
    endpoint = {"host": STANDIN_HOST, "port": ses_smtp.starttls_port}
    planted = write_version(deployment.arn, {"iam_user_name": victim_user, "username": victim_key, **endpoint})
    write_version(
        deployment.arn, {"iam_user_name": victim_user, **endpoint} if awscurrent_names == "the victim" else rotated
    )
    assert version_with(deployment.arn, "AWSPREVIOUS") == planted
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1 and report["status"] == "refused"
    assert f"bound to IAM user {deployment.user}" in report["reason"]
    assert f"names IAM user {victim_user}" in report["reason"]
    assert keys_of(deployment.iam, victim_user) == {victim_key: "Inactive"}
    assert snapshot(deployment) == before


def test_rollback_refuses_when_awscurrent_names_another_user(
    deployment: Deployment, victim: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    retired_after_rotation(deployment)
    write_version(deployment.arn, {"iam_user_name": victim[0]})  # the rotated version becomes AWSPREVIOUS
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1 and "AWSCURRENT" in report["reason"] and victim[0] in report["reason"]
    assert snapshot(deployment) == before


def test_rollback_refuses_a_version_that_sends_elsewhere_than_the_deployment_allows(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, old_secret = retired_after_rotation(deployment)
    # The writer copies the rotated version (a real, Inactive key of the bound user) with its own host.
    write_version(deployment.arn, {**old_secret, "host": "smtp.attacker.example", "port": 587})
    write_version(deployment.arn, current(deployment.arn) | {"username": new})
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1 and "smtp.attacker.example" in report["reason"]
    assert deployment.keys() == {old: "Inactive", new: "Active"}
    assert snapshot(deployment) == before


def test_rollback_checks_the_endpoint_against_the_rotation_functions_allowed_hosts(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    retired_after_rotation(deployment)
    # This process allows the stand-in's host; the deployment no longer does: the deployment wins.
    set_function_setting(deployment, "SMTP_ALLOWED_HOSTS", None)
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1 and STANDIN_HOST in report["reason"] and "SMTP_ALLOWED_HOSTS" in report["reason"]
    assert snapshot(deployment) == before


def test_rollback_refuses_a_secret_its_rotation_function_does_not_bind(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    retired_after_rotation(deployment)
    # This process still binds the secret (SMTP_SECRET_BINDINGS); its rotation function no longer does.
    set_function_setting(deployment, "SMTP_SECRET_BINDINGS", None)
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1 and "not bound" in report["reason"] and deployment.function_arn in report["reason"]
    assert snapshot(deployment) == before


def test_rollback_refuses_a_secret_without_a_rotation_function(
    deployment: Deployment,
    iam_client: IAMClient,
    iam_user: str,
    ses_smtp: SesSmtpStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    older, newer = (iam_client.create_access_key(UserName=iam_user)["AccessKey"]["AccessKeyId"] for _ in range(2))
    iam_client.update_access_key(UserName=iam_user, AccessKeyId=older, Status="Inactive")
    arn = create_secret({"iam_user_name": iam_user, "username": older}, ses_smtp)  # bound in this process
    write_version(arn, current(arn) | {"username": newer})
    before = keys_of(iam_client, iam_user), stages(arn)

    code, report = rollback_in_process(deployment, capsys, arn)

    assert code == 1 and "is rotated by no function, not by the deployment you named" in report["reason"]
    assert (keys_of(iam_client, iam_user), stages(arn)) == before


def test_rollback_refuses_when_the_rotation_function_is_gone(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    retired_after_rotation(deployment)
    boto3.client("lambda").delete_function(FunctionName=deployment.function_arn)
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1 and deployment.function_arn in report["reason"] and "does not exist" in report["reason"]
    assert snapshot(deployment) == before
