"""The local AWS (moto, patched in infra/local_aws.py) is no kinder than AWS where consumers rely on it."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from mypy_boto3_iam import IAMClient

from infra.local_aws import MotoServer
from infra.local_lambda import register_rotation_function
from infra.rotation_driver import LOCAL_FUNCTION_ARN as FUNCTION
from infra.rotation_driver import begin_rotation
from infra.ses_smtp import SesSmtpStandIn
from tests.moto_clock import version_created
from tests.support import create_secret, rotate, secrets_client, stages


@pytest.mark.usefixtures("smtp_ca")
def test_reading_the_secret_without_a_stage_after_a_rotation_returns_awscurrent(
    iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    token = rotate(arn)

    value = secrets_client().get_secret_value(SecretId=arn)  # no VersionStage: what most SDK helpers send

    assert value["VersionId"] == token
    assert "AWSCURRENT" in value["VersionStages"]
    assert "username" in json.loads(value["SecretString"])


@pytest.mark.usefixtures("smtp_ca")
def test_a_put_without_stages_after_a_rotation_leaves_awscurrent_on_one_version(
    iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotated = rotate(arn)

    put = secrets_client().put_secret_value(SecretId=arn, SecretString=json.dumps({"iam_user_name": iam_user}))

    labelled = stages(arn)
    assert [version for version, labels in labelled.items() if "AWSCURRENT" in labels] == [put["VersionId"]]
    assert "AWSPREVIOUS" in labelled[rotated]


# --- Secrets Manager as the API reference describes it (issue 14, item 8) ---------------------------


def _plain_secret(value: str = "v0", **kwargs: Any) -> tuple[str, str]:
    """A secret with one version; returns (ARN, that version's ID)."""
    made = secrets_client().create_secret(Name=f"local-aws-{uuid.uuid4().hex[:12]}", SecretString=value, **kwargs)
    return made["ARN"], made["VersionId"]


def _holders(arn: str, label: str) -> list[str]:
    return [version for version, labels in stages(arn).items() if label in labels]


@pytest.fixture(scope="module")
def registered_function(moto_server: MotoServer) -> str:
    """A rotation function moto knows (so RotateSecret "invokes" it, as the demo's does)."""
    iam = boto3.client("iam")
    return register_rotation_function(iam, f"local-aws-{uuid.uuid4().hex[:12]}", os.environ)


@pytest.mark.usefixtures("moto_server")
def test_rotate_secret_is_refused_while_a_previous_rotation_is_incomplete() -> None:
    # AWS: AWSPENDING on a version other than AWSCURRENT's means a rotation is in progress.
    arn, _ = _plain_secret()
    first = begin_rotation(secrets_client(), arn)

    with pytest.raises(ClientError) as refused:
        secrets_client().rotate_secret(SecretId=arn, ClientRequestToken=str(uuid.uuid4()), RotationLambdaARN=FUNCTION)

    assert refused.value.response["Error"]["Code"] == "InvalidRequestException"
    assert "previous rotation isn't complete" in refused.value.response["Error"]["Message"]
    assert _holders(arn, "AWSPENDING") == [first]


@pytest.mark.usefixtures("moto_server")
def test_rotate_secret_starts_when_awspending_is_left_on_awscurrent(registered_function: str) -> None:
    # A finished rotation whose function only moved AWSCURRENT (as AWS's templates do).
    arn, _ = _plain_secret()
    client = secrets_client()
    token = client.rotate_secret(SecretId=arn, RotationLambdaARN=registered_function)["VersionId"]
    client.put_secret_value(SecretId=arn, ClientRequestToken=token, SecretString="v1", VersionStages=["AWSPENDING"])
    client.update_secret_version_stage(
        SecretId=arn,
        VersionStage="AWSCURRENT",
        MoveToVersionId=token,
        RemoveFromVersionId=_holders(arn, "AWSCURRENT")[0],
    )
    assert sorted(stages(arn)[token]) == ["AWSCURRENT", "AWSPENDING"]

    second = client.rotate_secret(SecretId=arn, RotationLambdaARN=registered_function)["VersionId"]

    assert second != token
    assert _holders(arn, "AWSPENDING") == [second]
    assert _holders(arn, "AWSCURRENT") == [token]


@pytest.mark.usefixtures("moto_server")
def test_a_second_put_with_the_same_token_and_another_value_is_refused() -> None:
    arn, _ = _plain_secret()
    token = begin_rotation(secrets_client(), arn)  # the empty AWSPENDING version takes its value once
    client = secrets_client()
    client.put_secret_value(SecretId=arn, ClientRequestToken=token, SecretString="first", VersionStages=["AWSPENDING"])

    again = client.put_secret_value(
        SecretId=arn, ClientRequestToken=token, SecretString="first", VersionStages=["AWSPENDING"]
    )
    with pytest.raises(ClientError) as refused:
        client.put_secret_value(
            SecretId=arn, ClientRequestToken=token, SecretString="second", VersionStages=["AWSPENDING"]
        )

    assert again["VersionId"] == token  # the same data: succeeds and does nothing
    assert refused.value.response["Error"]["Code"] == "ResourceExistsException"
    assert client.get_secret_value(SecretId=arn, VersionId=token)["SecretString"] == "first"


@pytest.mark.usefixtures("moto_server")
def test_after_a_rotation_names_a_function_awscurrent_stays_on_one_version(registered_function: str) -> None:
    arn, original = _plain_secret()
    client = secrets_client()

    token = client.rotate_secret(SecretId=arn, RotationLambdaARN=registered_function)["VersionId"]
    assert _holders(arn, "AWSPENDING") == [token]  # the response names the new version, as on AWS
    client.put_secret_value(
        SecretId=arn, ClientRequestToken=token, SecretString="pending", VersionStages=["AWSPENDING"]
    )
    assert client.get_secret_value(SecretId=arn)["VersionId"] == original  # no stage: AWSCURRENT
    put = client.put_secret_value(SecretId=arn, SecretString="by hand")

    assert _holders(arn, "AWSCURRENT") == [put["VersionId"]]
    assert _holders(arn, "AWSPREVIOUS") == [original]
    assert _holders(arn, "AWSPENDING") == [token]  # a put without stages moves only AWSCURRENT (and AWSPREVIOUS)
    assert client.get_secret_value(SecretId=arn)["SecretString"] == "by hand"


@pytest.mark.usefixtures("moto_server")
def test_a_put_moves_only_awscurrent_and_awsprevious_off_the_current_version() -> None:
    # "Secrets Manager also automatically moves the staging label AWSPREVIOUS to the version that
    # AWSCURRENT was removed from": the version's other labels stay.
    arn, original = _plain_secret()
    client = secrets_client()
    rotated = client.put_secret_value(SecretId=arn, SecretString="v1", VersionStages=["AWSPENDING", "mine"])[
        "VersionId"
    ]
    client.update_secret_version_stage(
        SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId=rotated, RemoveFromVersionId=original
    )

    put = client.put_secret_value(SecretId=arn, SecretString="v2")["VersionId"]

    labelled = stages(arn)
    assert labelled[put] == ["AWSCURRENT"]
    assert sorted(labelled[rotated]) == ["AWSPENDING", "AWSPREVIOUS", "mine"]
    assert labelled.get(original, []) == []


@pytest.mark.usefixtures("moto_server")
def test_list_secret_version_ids_reports_when_each_version_was_created() -> None:
    arn, version = _plain_secret()
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    version_created(arn, version, created)

    listed = secrets_client().list_secret_version_ids(SecretId=arn)["Versions"]

    assert [entry["CreatedDate"] for entry in listed if entry["VersionId"] == version] == [created]


def test_a_version_made_after_an_access_key_is_dated_after_it(iam_client: IAMClient, iam_user: str) -> None:
    # AWS dates versions to the millisecond; the retirement function and createSecret compare a
    # version's CreatedDate with keys' CreateDate.
    key = iam_client.create_access_key(UserName=iam_user)["AccessKey"]
    arn, version = _plain_secret()

    listed = secrets_client().list_secret_version_ids(SecretId=arn)["Versions"]
    (created,) = [entry["CreatedDate"] for entry in listed if entry["VersionId"] == version]

    assert created >= key["CreateDate"]
    assert secrets_client().get_secret_value(SecretId=arn)["CreatedDate"] == created


@pytest.mark.usefixtures("moto_server")
def test_update_secret_with_a_value_makes_a_new_awscurrent_version(registered_function: str) -> None:
    arn, original = _plain_secret()
    client = secrets_client()
    client.rotate_secret(SecretId=arn, RotationLambdaARN=registered_function)  # left pending

    updated = client.update_secret(SecretId=arn, SecretString="by hand")["VersionId"]

    assert _holders(arn, "AWSCURRENT") == [updated]
    assert _holders(arn, "AWSPREVIOUS") == [original]
    assert client.get_secret_value(SecretId=arn)["SecretString"] == "by hand"


@pytest.mark.usefixtures("moto_server")
def test_update_secret_kms_key_is_what_describe_secret_reports() -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000001"
    arn, _ = _plain_secret(KmsKeyId="arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000")
    client = secrets_client()

    client.update_secret(SecretId=arn, KmsKeyId=key)
    assert client.describe_secret(SecretId=arn)["KmsKeyId"] == key

    client.update_secret(SecretId=arn, KmsKeyId="")  # "Secrets Manager uses ... aws/secretsmanager"
    assert "KmsKeyId" not in client.describe_secret(SecretId=arn)  # "this field is omitted"
