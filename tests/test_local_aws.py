"""The local AWS (moto, patched in infra/local_aws.py) is no kinder than AWS where consumers rely on it."""

from __future__ import annotations

import json

import pytest

from infra.ses_smtp import SesSmtpStandIn
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
