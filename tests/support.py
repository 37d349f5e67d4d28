"""What the rotation tests share: a Lambda-like invoke of the handler and secret set-up."""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ClientError
from mypy_boto3_iam import IAMClient
from mypy_boto3_secretsmanager import SecretsManagerClient

from infra.lambda_invoke import LocalContext
from infra.rotation_driver import begin_rotation, run_steps
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.handler import lambda_handler

# The host tests give the SES stand-in in secrets: the only host the test deployment allows
# (SMTP_ALLOWED_HOSTS, set for the session in tests/conftest.py).
STANDIN_HOST = "localhost"


def invoke(event: dict[str, Any]) -> None:
    """Call the handler the way Lambda does (a fresh context per invocation)."""
    lambda_handler(event, LocalContext.with_timeout(300))


def smtp_login_code(ses: SesSmtpStandIn, username: str, password: str) -> int:
    """What the stand-in answers an application's AUTH PLAIN over STARTTLS (235 = accepted)."""
    with smtplib.SMTP(ses.host, ses.starttls_port, timeout=10) as smtp:
        smtp.starttls(context=ssl.create_default_context(cafile=ses.ca_path))
        smtp.ehlo()  # STARTTLS resets the session: without it the server answers 503
        smtp.user, smtp.password = username, password
        try:
            return smtp.auth("PLAIN", smtp.auth_plain)[0]
        except smtplib.SMTPAuthenticationError as error:
            return error.smtp_code


def secrets_client() -> SecretsManagerClient:
    return boto3.client("secretsmanager")


def bind(secret_arn: str, user: str) -> None:
    """State, as the deployment does (SMTP_SECRET_BINDINGS), that `secret_arn` may rotate `user`'s keys.

    The session's environment is restored when the session ends (tests/conftest.py).
    """
    bindings = json.loads(os.environ.get("SMTP_SECRET_BINDINGS") or "{}")
    bindings[secret_arn] = user
    os.environ["SMTP_SECRET_BINDINGS"] = json.dumps(bindings)


def create_secret(
    document: dict[str, Any],
    ses: SesSmtpStandIn | None = None,
    *,
    port: int | None = None,
    bound_to: str | None = None,
    name: str | None = None,
) -> str:
    """A secret holding `document`, pointed at the stand-in (when given) and bound to `bound_to`
    (default: the document's iam_user_name); returns its ARN."""
    if ses is not None:
        document = {"host": STANDIN_HOST, "port": port or ses.starttls_port, **document}
    name = name or f"ses-smtp-test-{uuid.uuid4().hex[:12]}"
    arn = secrets_client().create_secret(Name=name, SecretString=json.dumps(document))["ARN"]
    user = bound_to or document.get("iam_user_name")
    if isinstance(user, str):
        bind(arn, user)
    return arn


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


class _Body:
    """The raw body botocore reads from an HTTP response."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@contextmanager
def aws_answers(event_name: str, status: int, body: str, headers: dict[str, str] | None = None) -> Iterator[list[int]]:
    """Make AWS answer every request of `event_name` (``before-send.iam.ListAccessKeys``) with
    `status` and `body`, as AWS would for an error: botocore parses and retries it as usual.
    Yields a list that grows by one per HTTP attempt answered."""
    answered: list[int] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        answered.append(1)
        fields = HTTPHeaders()
        for name, value in {"Content-Type": "text/xml", **(headers or {})}.items():
            fields[name] = value
        return AWSResponse(request.url, status, fields, _Body(body.encode()))

    with on_aws_event(event_name, answer):
        yield answered


@contextmanager
def on_aws_event(event_name: str, handler: Callable[..., Any]) -> Iterator[None]:
    """Call `handler` on botocore's `event_name` (``before-call.iam``, ``after-call.sns.Publish``...)
    in every client made inside the block (from a fresh default session)."""
    with on_aws_events({event_name: handler}):
        yield


@contextmanager
def on_aws_events(handlers: Mapping[str, Callable[..., Any]]) -> Iterator[None]:
    """`on_aws_event` for several events at once (one fresh default session for all of them)."""
    boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION._session.get_component("event_emitter")  # type: ignore[union-attr]
    for event_name, handler in handlers.items():
        events.register(event_name, handler)
    try:
        yield
    finally:
        for event_name, handler in handlers.items():
            events.unregister(event_name, handler)
