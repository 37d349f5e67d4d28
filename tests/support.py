"""What the rotation tests share: a Lambda-like invoke of the handler and secret set-up."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError
from mypy_boto3_iam import IAMClient
from mypy_boto3_secretsmanager import SecretsManagerClient

from infra.rotation_driver import begin_rotation, run_steps
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.handler import lambda_handler


@dataclass
class LambdaContext:
    """The parts of Lambda's context object that the handler and Powertools read."""

    timeout_seconds: float = 300.0
    function_name: str = "ses-smtp-rotation-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ses-smtp-rotation-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    def __post_init__(self) -> None:
        self._ends = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


def invoke(event: dict[str, Any]) -> None:
    """Call the handler the way Lambda does (a fresh context per invocation)."""
    lambda_handler(event, LambdaContext())


def secrets_client() -> SecretsManagerClient:
    return boto3.client("secretsmanager")


def create_secret(document: dict[str, Any], ses: SesSmtpStandIn | None = None, *, port: int | None = None) -> str:
    """A secret holding `document`, pointed at the stand-in (when given); returns its ARN."""
    if ses is not None:
        document = {"host": "localhost", "port": port or ses.starttls_port, **document}
    name = f"ses-smtp-test-{uuid.uuid4().hex[:12]}"
    return secrets_client().create_secret(Name=name, SecretString=json.dumps(document))["ARN"]


def rotate(secret_arn: str) -> str:
    """One whole rotation through the handler, like Secrets Manager; returns the token."""
    token = begin_rotation(secrets_client(), secret_arn)
    run_steps(invoke, secret_arn, token)
    return token


def current(secret_arn: str) -> dict[str, Any]:
    value = secrets_client().get_secret_value(SecretId=secret_arn, VersionStage="AWSCURRENT")
    return json.loads(value["SecretString"])  # type: ignore[no-any-return]


def stages(secret_arn: str) -> dict[str, list[str]]:
    return secrets_client().describe_secret(SecretId=secret_arn)["VersionIdsToStages"]


def keys_of(iam: IAMClient, user: str) -> dict[str, str]:
    """{access key ID: status} of an IAM user."""
    return {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}


def pending_value(secret_arn: str, token: str) -> str | None:
    try:
        return secrets_client().get_secret_value(SecretId=secret_arn, VersionId=token, VersionStage="AWSPENDING")[
            "SecretString"
        ]
    except ClientError:
        return None


class Crash(Exception):
    """Stands for the Lambda dying or the network failing at a chosen AWS call."""


@contextmanager
def failing_call(event_name: str) -> Iterator[None]:
    """Make every client created inside the block raise Crash at `event_name`.

    E.g. ``after-call.iam.CreateAccessKey`` (the key exists, then we "crash") or
    ``before-call.secrets-manager.PutSecretValue`` (the write never happens). This injects the
    failure into botocore, below our code, which runs unmodified.
    """

    def crash(**_: Any) -> None:
        raise Crash(event_name)

    boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION._session.get_component("event_emitter")  # type: ignore[union-attr]
    events.register(event_name, crash)
    try:
        yield
    finally:
        events.unregister(event_name, crash)
