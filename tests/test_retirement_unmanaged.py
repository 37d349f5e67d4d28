"""A writer cannot silence the retirement run's signals (SPEC §4a): every bound secret it cannot
find, read or resolve is reported by metric and on the alarm topic, and the bound user's key age
is still reported."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from mypy_boto3_iam import IAMClient

from infra.rotation_driver import begin_rotation
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.retire_handler import UNMANAGED_METRIC
from tests.retirement_support import Deployment, deploy, rotated_twice, secret_metrics
from tests.support import current, secrets_client

pytestmark = pytest.mark.usefixtures("smtp_ca")
D = timedelta(days=1)


@pytest.fixture
def deployment(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    return deploy(iam_client, iam_user, ses_smtp, monkeypatch)


def reported(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, list[str]], dict[str, float]]:
    capsys.readouterr()
    result = deployment.retire(check=False)
    return result, secret_metrics(capsys.readouterr().out, deployment.name())


def deleted(deployment: Deployment) -> str:
    name = deployment.name()
    secrets_client().delete_secret(SecretId=deployment.arn, ForceDeleteWithoutRecovery=True)
    return name


def repointed(deployment: Deployment) -> None:
    # RotateSecret naming another function (the template's resource policy denies this; a writer
    # of a hand-made secret, or an account without the policy, can still do it).
    begin_rotation(secrets_client(), deployment.arn, "arn:aws:lambda:us-east-1:123456789012:function:elsewhere")


def current_names_no_key(deployment: Deployment) -> None:
    document = {**current(deployment.arn), "username": "AKIAIOSFODNN7EXAMPLE"}
    secrets_client().put_secret_value(SecretId=deployment.arn, SecretString=json.dumps(document))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (repointed, "its rotation function is"),
        (current_names_no_key, "names an access key its user no longer has"),
    ],
    ids=["re-pointed", "awscurrent-names-no-key"],
)
def test_a_bound_secret_a_writer_took_away_is_reported_with_its_key_age(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], change: object, problem: str
) -> None:
    rotated_twice(deployment)
    deployment.time_passes(100 * D)
    deployment.messages()
    change(deployment)  # type: ignore[operator]

    result, metrics = reported(deployment, capsys)

    assert result["unmanaged"] == [deployment.name()]
    assert metrics[UNMANAGED_METRIC] == 1
    assert metrics["CurrentKeyAgeDays"] >= 100  # the newest Active key's age still reaches the alarm
    (message,) = [m for m in deployment.messages() if "not looked after" in m["Subject"]]
    assert problem in message["Message"] and deployment.arn in message["Message"]


def test_a_bound_secret_that_was_deleted_is_reported_with_its_users_key_age(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    rotated_twice(deployment)
    deployment.time_passes(100 * D)
    deployment.messages()
    name = deleted(deployment)

    capsys.readouterr()
    result = deployment.retire(check=False)
    metrics = secret_metrics(capsys.readouterr().out, name)

    assert result["unmanaged"] == [name]
    assert metrics[UNMANAGED_METRIC] == 1 and metrics["CurrentKeyAgeDays"] >= 100
    (message,) = [m for m in deployment.messages() if "not looked after" in m["Subject"]]
    assert "no longer exists" in message["Message"]


def test_a_secret_switched_to_another_kms_key_is_reported_and_its_keys_still_retire(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = rotated_twice(deployment)
    deployment.time_passes(30 * D)
    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    secrets_client().update_secret(SecretId=deployment.arn, KmsKeyId=key)

    result, metrics = reported(deployment, capsys)

    assert result["unmanaged"] == [deployment.name()] and metrics[UNMANAGED_METRIC] == 1
    assert result["deactivated"] == [old]
    assert deployment.keys() == {old: "Inactive", new: "Active"}


def test_a_secret_the_deployment_looks_after_reports_zero(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    rotated_twice(deployment)
    result, metrics = reported(deployment, capsys)
    assert result["unmanaged"] == [] and metrics[UNMANAGED_METRIC] == 0
