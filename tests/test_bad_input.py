"""Bad input gives a clear error and changes nothing: no key created, versions unchanged (item 5)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mypy_boto3_iam import IAMClient

from infra.rotation_driver import begin_rotation, step_event
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import (
    InvalidEventError,
    InvalidSecretError,
    InvalidSettingsError,
    KeyLimitError,
    RotationError,
)
from tests.support import bind, create_secret, invoke, keys_of, pending_value, rotate, stages
from tests.support import secrets_client as sm


@pytest.fixture
def unchanged(iam_client: IAMClient) -> Iterator[Callable[[str, str], None]]:
    """Record a user's keys and a secret's versions; assert at teardown that neither changed."""
    recorded: list[tuple[str, str, Any]] = []

    def record(user: str, arn: str) -> None:
        recorded.append((user, arn, (keys_of(iam_client, user), stages(arn))))

    yield record
    for user, arn, before in recorded:
        assert (keys_of(iam_client, user), stages(arn)) == before


def create_step(arn: str, token: str, **event: Any) -> None:
    invoke({**step_event("createSecret", arn, token, None), **event})


@pytest.mark.parametrize(
    ("secret_string", "error", "message"),
    [
        ("ses-smtp-user", InvalidSecretError, "The AWSCURRENT secret is not JSON"),
        ('["ses-smtp-user"]', InvalidSecretError, "is JSON list, not an object"),
        ('{"user": "ses-smtp-user"}', InvalidSecretError, "has no iam_user_name"),
        ('{"iam_user_name": "{user}", "region": "af-south-1"}', InvalidSecretError, "af-south-1 without an SES SMTP"),
    ],
    ids=["not-json", "not-object", "no-user", "unknown-region"],
)
def test_bad_secret_document_is_refused_before_any_key_is_made(
    secret_string: str,
    error: type[RotationError],
    message: str,
    iam_user: str,
    unchanged: Callable[[str, str], None],
) -> None:
    document = secret_string.replace("{user}", iam_user)
    arn = sm().create_secret(Name=f"bad-{uuid.uuid4().hex[:12]}", SecretString=document)["ARN"]
    bind(arn, iam_user)
    token = begin_rotation(sm(), arn)
    unchanged(iam_user, arn)
    with pytest.raises(error, match=message):
        create_step(arn, token)
    assert pending_value(arn, token) is None


def test_iam_user_that_does_not_exist_is_named(unchanged: Callable[[str, str], None], iam_user: str) -> None:
    arn = create_secret({"iam_user_name": "no-such-user"})
    token = begin_rotation(sm(), arn)
    unchanged(iam_user, arn)
    with pytest.raises(InvalidSecretError, match=r"IAM user no-such-user .* does not exist"):
        create_step(arn, token)


def test_user_with_two_keys_on_its_first_rotation_is_refused_with_the_keys_listed(
    iam_client: IAMClient, iam_user: str, unchanged: Callable[[str, str], None]
) -> None:
    made = [iam_client.create_access_key(UserName=iam_user)["AccessKey"]["AccessKeyId"] for _ in range(2)]
    time.sleep(1.1)  # Secrets Manager dates versions to the second; these keys must pre-date the rotation
    arn = create_secret({"iam_user_name": iam_user})
    token = begin_rotation(sm(), arn)
    unchanged(iam_user, arn)
    with pytest.raises(KeyLimitError, match=f"has 2 access keys .*{made[0]}.*{made[1]}|{made[1]}.*{made[0]}"):
        create_step(arn, token)


def test_first_rotation_keeps_a_console_made_key_that_applications_may_use(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, smtp_ca: str
) -> None:
    console_key = iam_client.create_access_key(UserName=iam_user)["AccessKey"]["AccessKeyId"]
    time.sleep(1.1)
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotate(arn)
    assert console_key in keys_of(iam_client, iam_user)
    assert len(keys_of(iam_client, iam_user)) == 2


def test_secret_without_rotation_enabled_is_refused(iam_user: str, unchanged: Callable[[str, str], None]) -> None:
    arn = create_secret({"iam_user_name": iam_user})
    unchanged(iam_user, arn)
    with pytest.raises(InvalidSecretError, match="does not have rotation enabled"):
        create_step(arn, str(uuid.uuid4()))


def test_token_that_is_no_version_of_the_secret_is_refused(
    iam_user: str, unchanged: Callable[[str, str], None]
) -> None:
    arn = create_secret({"iam_user_name": iam_user})
    begin_rotation(sm(), arn)
    unchanged(iam_user, arn)
    with pytest.raises(InvalidSecretError, match="is not a version of secret"):
        create_step(arn, str(uuid.uuid4()))


def test_token_that_is_not_awspending_is_refused(
    iam_user: str, ses_smtp: SesSmtpStandIn, smtp_ca: str, unchanged: Callable[[str, str], None]
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotate(arn)
    rotate(arn)
    previous = next(v for v, labels in stages(arn).items() if "AWSPREVIOUS" in labels)
    unchanged(iam_user, arn)
    with pytest.raises(InvalidSecretError, match="is not AWSPENDING"):
        create_step(arn, previous)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"Step": "rotateSecret"}, "Unknown Step 'rotateSecret'"),
        ({"Step": None}, "lacks Step"),
        ({"SecretId": ""}, "lacks SecretId"),
        ({"ClientRequestToken": 42}, "lacks ClientRequestToken"),
    ],
)
def test_malformed_event_is_refused(
    event: dict[str, Any], message: str, iam_user: str, unchanged: Callable[[str, str], None]
) -> None:
    arn = create_secret({"iam_user_name": iam_user})
    token = begin_rotation(sm(), arn)
    unchanged(iam_user, arn)
    with pytest.raises(InvalidEventError, match=message):
        create_step(arn, token, **event)


def test_event_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidEventError, match="not a JSON object"):
        invoke(json.loads('["createSecret"]'))


@pytest.mark.parametrize(("name", "value"), [("PREVIOUS_KEY_ACTION", "purge"), ("SMTP_AUTH_TIMEOUT_SECONDS", "soon")])
def test_bad_setting_is_refused_before_anything_changes(
    name: str, value: str, iam_user: str, monkeypatch: pytest.MonkeyPatch, unchanged: Callable[[str, str], None]
) -> None:
    monkeypatch.setenv(name, value)
    arn = create_secret({"iam_user_name": iam_user})
    token = begin_rotation(sm(), arn)
    unchanged(iam_user, arn)
    with pytest.raises(InvalidSettingsError, match=f"{name} is '{value}'"):
        create_step(arn, token)
