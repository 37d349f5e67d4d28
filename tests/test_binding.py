"""The binding cannot be forged or re-created, and the secret's KMS key is the deployment's (SPEC §3).

Secrets the template makes are bound by the registry: the Parameter Store parameter
``<SMTP_BINDING_PATH><user>`` holds the exact ARN of ``ses-smtp/<user>``. Whoever can delete a
secret and create it again under its name (and point its rotation at the deployment's function)
gets a new ARN, which binds nothing.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from mypy_boto3_iam import IAMClient

from infra.rotation_driver import begin_rotation, step_event
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import InvalidSecretError
from tests.support import STANDIN_HOST, current, invoke, keys_of, rotate
from tests.support import secrets_client as sm


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> str:
    """A deployment's registry path of its own (SMTP_BINDING_PATH)."""
    path = f"/ses-smtp-rotation/test-{uuid.uuid4().hex[:8]}/"
    monkeypatch.setenv("SMTP_BINDING_PATH", path)
    return path


def template_secret(user: str, ses: SesSmtpStandIn, **extra: str) -> str:
    """The secret ses-smtp/<user>, as a user's stack makes it (not registered yet)."""
    document = {"iam_user_name": user, "host": STANDIN_HOST, "port": ses.starttls_port}
    return sm().create_secret(Name=f"ses-smtp/{user}", SecretString=json.dumps(document), **extra)["ARN"]  # type: ignore[arg-type]


def register(path: str, user: str, arn: str) -> None:
    boto3.client("ssm").put_parameter(Name=f"{path}{user}", Value=arn, Type="String", Overwrite=True)


@pytest.mark.usefixtures("smtp_ca")
def test_a_secret_registered_by_its_exact_arn_rotates_its_user(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, registry: str
) -> None:
    arn = template_secret(iam_user, ses_smtp)
    register(registry, iam_user, arn)
    rotate(arn)
    assert list(keys_of(iam_client, iam_user)) == [current(arn)["username"]]


@pytest.mark.usefixtures("smtp_ca")
def test_a_secret_deleted_and_created_again_under_its_name_is_refused_and_says_why(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, registry: str
) -> None:
    original = template_secret(iam_user, ses_smtp)
    register(registry, iam_user, original)
    rotate(original)
    live = current(original)["username"]

    # Someone with secretsmanager rights only: force-delete, create again, rotate with the function.
    sm().delete_secret(SecretId=original, ForceDeleteWithoutRecovery=True)
    forged = template_secret(iam_user, ses_smtp)
    assert forged != original
    token = begin_rotation(sm(), forged)
    with pytest.raises(InvalidSecretError, match="deleted and created again") as refused:
        invoke(step_event("createSecret", forged, token, None))
    assert original in str(refused.value)
    assert keys_of(iam_client, iam_user) == {live: "Active"}  # no key made for the forged secret


@pytest.mark.usefixtures("smtp_ca")
def test_a_secret_named_after_a_user_but_not_registered_binds_nothing(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, registry: str
) -> None:
    arn = template_secret(iam_user, ses_smtp)
    token = begin_rotation(sm(), arn)
    with pytest.raises(InvalidSecretError, match="not bound to an IAM user"):
        invoke(step_event("createSecret", arn, token, None))
    assert keys_of(iam_client, iam_user) == {}


@pytest.fixture
def kms_key() -> str:
    return str(boto3.client("kms").create_key(Description="the deployment's key")["KeyMetadata"]["Arn"])


@pytest.mark.usefixtures("smtp_ca")
def test_a_secret_switched_to_the_default_key_is_refused_before_a_key_is_made(
    iam_client: IAMClient,
    iam_user: str,
    ses_smtp: SesSmtpStandIn,
    registry: str,
    kms_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KMS_KEY_ARN", kms_key)
    arn = template_secret(iam_user, ses_smtp, KmsKeyId=kms_key)
    register(registry, iam_user, arn)
    rotate(arn)
    live = current(arn)["username"]

    sm().update_secret(SecretId=arn, KmsKeyId="alias/aws/secretsmanager")  # needs no right on the CMK
    token = begin_rotation(sm(), arn)
    with pytest.raises(InvalidSecretError, match="not the deployment's") as refused:
        invoke(step_event("createSecret", arn, token, None))
    assert kms_key in str(refused.value)
    assert keys_of(iam_client, iam_user) == {live: "Active"}


@pytest.mark.usefixtures("smtp_ca")
def test_a_secret_under_another_key_than_the_deployments_is_refused(
    iam_client: IAMClient,
    iam_user: str,
    ses_smtp: SesSmtpStandIn,
    registry: str,
    kms_key: str,
) -> None:
    # The deployment uses aws/secretsmanager; the secret was made with some other key.
    arn = template_secret(iam_user, ses_smtp, KmsKeyId=kms_key)
    register(registry, iam_user, arn)
    token = begin_rotation(sm(), arn)
    with pytest.raises(InvalidSecretError, match="aws/secretsmanager"):
        invoke(step_event("createSecret", arn, token, None))
    assert keys_of(iam_client, iam_user) == {}


@pytest.mark.usefixtures("smtp_ca")
def test_a_user_bound_by_the_registry_and_by_hand_to_another_secret_is_refused(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered = template_secret(iam_user, ses_smtp)
    register(registry, iam_user, registered)
    by_hand = sm().create_secret(
        Name=f"mail/{iam_user}", SecretString=json.dumps({"iam_user_name": iam_user, "host": STANDIN_HOST})
    )["ARN"]
    monkeypatch.setenv("SMTP_SECRET_BINDINGS", json.dumps({by_hand: iam_user}))
    token = begin_rotation(sm(), by_hand)
    with pytest.raises(InvalidSecretError, match="bound to two secrets"):
        invoke(step_event("createSecret", by_hand, token, None))
    assert keys_of(iam_client, iam_user) == {}
