"""When a retirement run fails (SPEC §4a): one secret that fails, in any of its AWS calls and in
telling about it, never stops the others, and every failure is one structured line with `error`
(what kind) and `reason` (what to do), as in the rotation function.

Faults are injected into botocore, below our code, which runs unmodified.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from mypy_boto3_iam import IAMClient

from infra.local_aws import add_to_sending_group
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import InvalidSettingsError, RetirementError
from tests.retirement_support import Deployment, another_secret, deploy, rotated_twice
from tests.support import Crash, aws_answers, on_aws_event

pytestmark = pytest.mark.usefixtures("smtp_ca")

H = timedelta(hours=1)
ACCESS_DENIED_IAM = (
    "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: "
    "arn:aws:sts::123456789012:assumed-role/retirement/fn is not authorized to perform: iam:ListAccessKeys "
    "on resource: user ses-smtp-app</Message></Error><RequestId>1</RequestId></ErrorResponse>"
)
ACCESS_DENIED_REGISTRY = json.dumps(
    {
        "__type": "AccessDeniedException",
        "Message": "User: arn:aws:sts::123456789012:assumed-role/retirement/fn is not authorized to perform: "
        "ssm:GetParametersByPath because no identity-based policy allows it",
    }
)


@pytest.fixture
def deployment(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    yield deploy(iam_client, iam_user, ses_smtp, monkeypatch)


@pytest.fixture
def second(deployment: Deployment, iam_client: IAMClient, ses_smtp: SesSmtpStandIn) -> Deployment:
    """A second secret of the same deployment, for another user."""
    user = f"ses-smtp-test-{uuid.uuid4().hex[:12]}"
    iam_client.create_user(UserName=user)
    add_to_sending_group(iam_client, user)
    return another_secret(deployment, user, ses_smtp)


@contextmanager
def first_call_crashes(event_name: str) -> Iterator[list[str]]:
    """Raise Crash at the first `event_name` (e.g. ``before-call.sns.Publish``) of any client made
    inside the block; yields a list that grows by one per call seen."""
    seen: list[str] = []

    def crash(**_: Any) -> None:
        seen.append(event_name)
        if len(seen) == 1:
            raise Crash(event_name)

    with on_aws_event(event_name, crash):
        yield seen


def lines(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    return [r.__dict__ for r in caplog.records if r.getMessage() == message]


def test_a_failed_alarm_publish_for_one_secret_does_not_stop_the_others(
    deployment: Deployment, second: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    # Both secrets have an old key still in use: each run publishes one message per secret.
    held = {}
    for secret in (deployment, second):
        old, _ = rotated_twice(secret)
        secret.time_passes(25 * H)
        secret.key_used(old)
        held[secret.arn] = old

    with first_call_crashes("before-call.sns.Publish") as publishes, pytest.raises(RetirementError):
        deployment.retire()

    assert len(publishes) == 2, "the secret after the one whose publish failed was not reported"
    (message,) = deployment.messages()  # the other secret's message went out
    (failed,) = lines(caplog, "Retirement failed for this secret")
    delivered = next(arn for arn in held if held[arn] in message["Message"])
    assert failed["secret_id"] != delivered and failed["secret_id"] in held
    assert (failed["error"], failed["reason"]) == ("Crash", "Unexpected error: before-call.sns.Publish")

    deployment.retire()  # the next run announces both again
    assert len(deployment.messages()) == 2


def test_an_aws_error_for_one_secret_is_one_line_naming_the_api_and_what_to_do(
    deployment: Deployment, second: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    for secret in (deployment, second):
        rotated_twice(secret)
        secret.time_passes(25 * H)

    with aws_answers("before-send.iam.ListAccessKeys", 403, ACCESS_DENIED_IAM), pytest.raises(RetirementError):
        deployment.retire()

    failed = lines(caplog, "Retirement failed for this secret")
    assert sorted(line["secret_id"] for line in failed) == sorted([deployment.arn, second.arn])
    for line in failed:
        assert line["error"] == "AccessDenied"
        assert line["reason"].startswith("ListAccessKeys failed with AccessDenied: User: ")
        assert "What to do: the function's role" in line["reason"]


def test_bad_settings_fail_the_run_in_one_line_naming_the_variable(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PREVIOUS_KEY_IDLE_HOURS", "soon")
    with pytest.raises(InvalidSettingsError):
        deployment.retire()
    (line,) = lines(caplog, "Retirement run failed")
    assert line["error"] == "InvalidSettingsError"
    assert "PREVIOUS_KEY_IDLE_HOURS" in line["reason"]


def test_reading_the_registry_refused_fails_the_run_in_one_line_naming_the_api_and_what_to_do(
    deployment: Deployment, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_BINDING_PATH", f"/ses-smtp-rotation/{uuid.uuid4().hex[:8]}/")
    with (
        aws_answers("before-send.ssm.GetParametersByPath", 400, ACCESS_DENIED_REGISTRY),
        pytest.raises(ClientError),
    ):
        deployment.retire()
    (line,) = lines(caplog, "Retirement run failed")
    assert line["error"] == "AccessDeniedException"
    assert line["reason"].startswith("GetParametersByPath failed with AccessDeniedException: User: ")
    assert "What to do: the function's role" in line["reason"]
