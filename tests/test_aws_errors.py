"""AWS errors an operator can act on: one structured line with `error` and `reason` naming the API,
and throttling retried until the invocation's time runs short (issue 7, SPEC §5)."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from infra.lambda_invoke import LocalContext
from infra.rotation_driver import begin_rotation, step_event
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import explain_aws_error
from lambda_function.handler import LAMBDA_MARGIN_SECONDS, lambda_handler
from tests.support import aws_answers, create_secret, on_aws_event, secrets_client

ACCESS_DENIED = json.dumps(
    {
        "__type": "AccessDeniedException",
        "Message": "User: arn:aws:sts::123456789012:assumed-role/rotation/fn is not authorized to perform: "
        "secretsmanager:GetSecretValue on resource: ses-smtp/app because no identity-based policy allows it",
    }
)
THROTTLING = (
    "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
    "<RequestId>3c4d0e4f-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
)


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    return [
        {"error": getattr(r, "error", ""), "reason": getattr(r, "reason", "")}
        for r in caplog.records
        if r.getMessage() == "Rotation step failed"
    ]


def test_access_denied_is_one_line_naming_the_code_the_api_and_what_to_do(
    iam_user: str, ses_smtp: SesSmtpStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    token = begin_rotation(secrets_client(), arn)
    with (
        aws_answers("before-send.secrets-manager.GetSecretValue", 400, ACCESS_DENIED),
        pytest.raises(ClientError),
    ):
        lambda_handler(step_event("createSecret", arn, token, None), LocalContext.with_timeout(60))

    (line,) = failure_lines(caplog)
    assert line["error"] == "AccessDeniedException"
    assert "GetSecretValue failed with AccessDeniedException" in line["reason"]
    assert "not authorized to perform: secretsmanager:GetSecretValue" in line["reason"]
    assert "What to do: the function's role" in line["reason"]


def test_throttling_is_retried_until_the_invocation_runs_short_then_named(
    iam_user: str, ses_smtp: SesSmtpStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    token = begin_rotation(secrets_client(), arn)
    timeout = LAMBDA_MARGIN_SECONDS + 3  # three seconds of the invocation left to retry in
    started = time.monotonic()
    with (
        aws_answers("before-send.iam.ListAccessKeys", 400, THROTTLING) as answered,
        pytest.raises(ClientError, match="Throttling"),
    ):
        lambda_handler(step_event("createSecret", arn, token, None), LocalContext.with_timeout(timeout))
    elapsed = time.monotonic() - started

    (line,) = failure_lines(caplog)
    assert line["error"] == "Throttling"
    assert "ListAccessKeys failed with Throttling" in line["reason"]
    assert "What to do: AWS kept throttling" in line["reason"]
    assert len(answered) > 5  # retried with backoff, not given up after botocore's default few
    assert 2.0 < elapsed < timeout  # kept trying while there was time, and stopped before Lambda would


DECRYPTION_FAILURE = json.dumps(
    {
        "__type": "DecryptionFailure",
        "Message": "Secrets Manager can't decrypt the protected secret text using the provided KMS key.",
    }
)


def test_a_kms_key_secrets_manager_cannot_use_is_named_with_what_to_do(
    iam_user: str, ses_smtp: SesSmtpStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    token = begin_rotation(secrets_client(), arn)
    with (
        aws_answers("before-send.secrets-manager.GetSecretValue", 400, DECRYPTION_FAILURE),
        pytest.raises(ClientError),
    ):
        lambda_handler(step_event("createSecret", arn, token, None), LocalContext.with_timeout(60))

    (line,) = failure_lines(caplog)
    assert line["error"] == "DecryptionFailure"
    assert "GetSecretValue failed with DecryptionFailure" in line["reason"]
    assert "What to do: the secret's KMS key cannot be used" in line["reason"]


def test_an_unreachable_aws_api_is_retried_then_named_as_a_network_error(
    iam_user: str, ses_smtp: SesSmtpStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    token = begin_rotation(secrets_client(), arn)
    attempts: list[int] = []

    def unreachable(request: Any, **_: Any) -> None:
        attempts.append(1)
        raise EndpointConnectionError(endpoint_url=request.url)

    with on_aws_event("before-send.iam.ListAccessKeys", unreachable), pytest.raises(EndpointConnectionError):
        lambda_handler(
            step_event("createSecret", arn, token, None), LocalContext.with_timeout(LAMBDA_MARGIN_SECONDS + 2)
        )

    (line,) = failure_lines(caplog)
    assert line["error"] == "EndpointConnectionError"
    assert "What to do: AWS could not be reached" in line["reason"]
    assert len(attempts) > 1  # a connection error is retried while the invocation has time
    assert iam_client_keys(iam_user) == []  # nothing was created


def iam_client_keys(user: str) -> list[str]:
    return [k["AccessKeyId"] for k in boto3.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]]


def test_sns_refusing_a_publish_is_explained_as_access_denied() -> None:
    error = ClientError(
        {"Error": {"Code": "AuthorizationError", "Message": "User is not authorized to perform: SNS:Publish"}},
        "Publish",
    )
    code, reason = explain_aws_error(error)
    assert code == "AuthorizationError"
    assert reason.startswith("Publish failed with AuthorizationError: User is not authorized")
    assert "What to do: the function's role" in reason
