"""The actors of the interleaving test, each one small adapter over the project's real code.

Every signature the product may change is met here and nowhere else: how a deployment binds a
secret to its IAM user (`deploy`), how the operator names the deployment to `rollback`, how the
retirement run is entered, and what a refusal because of a hand edit looks like
(`refused_because_of_edit`, `after_refused_edit`).

An actor is a function of no arguments that runs once to its end (or raises). Calling it again is
the retry of a killed run: Secrets Manager retrying the rotation, the next hourly retirement run,
the operator typing the command again.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime

import boto3
import pytest
from aws_lambda_powertools import Logger
from mypy_boto3_iam import IAMClient

from infra.cli.rollback import rollback as rollback_command
from infra.local_lambda import register_rotation_function
from infra.rotation_driver import begin_rotation, run_steps
from lambda_function.access_keys import AccessKeys
from lambda_function.binding import Bindings
from lambda_function.errors import RotationError
from lambda_function.retirement_executor import retire
from lambda_function.secret_versions import CURRENT, PENDING, SecretVersions
from lambda_function.settings import Settings
from tests.interleaving.scheduler import Actor, unscheduled
from tests.support import invoke

HAND_EDIT = "hand edit"  # the hand edit's role name (`invariants` looks for its outcome)
_retirement_logger = Logger(service="ses-smtp-retirement")


@dataclass(frozen=True)
class Deployment:
    """One deployment serving one secret: its bound IAM user and its rotation function (moto's
    Lambda holds the function's configuration, where `rollback` reads the deployment's binding)."""

    secret_arn: str
    secret_name: str
    user: str
    function_arn: str


def deploy(iam: IAMClient, monkeypatch: pytest.MonkeyPatch, user: str, document: dict[str, object]) -> Deployment:
    """The secret of `user` holding `document`, bound to `user`, and a rotation function of its own
    configured with the current settings (os.environ), as the template deploys them."""
    name = f"ses-smtp-interleave-{uuid.uuid4().hex[:12]}"
    arn = boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(document))["ARN"]
    # The binding: only this secret, so that the deployment's configuration stays small.
    monkeypatch.setenv("SMTP_SECRET_BINDINGS", json.dumps({arn: user}))
    function_arn = register_rotation_function(iam, f"ses-smtp-rotation-{uuid.uuid4().hex[:12]}", os.environ)
    return Deployment(arn, name, user, function_arn)


def rotation(deployment: Deployment) -> Actor:
    """Secrets Manager rotating the secret: RotateSecret, then the four steps through the handler.

    Run again after a kill, it goes on with the rotation it began (Secrets Manager retries with the
    token of the AWSPENDING version), or begins one if it had not. Which rotation is in progress is
    Secrets Manager's own knowledge: looking it up is not one of the actor's calls.
    """

    def run() -> None:
        token = _rotation_in_progress(deployment)
        if token is None:
            token = begin_rotation(boto3.client("secretsmanager"), deployment.secret_arn, deployment.function_arn)
        run_steps(invoke, deployment.secret_arn, token)
        _rotation_completed(deployment, token)

    return run


def delivery(deployment: Deployment, token: str) -> Actor:
    """One delivery of the four steps of a rotation already begun (`token`): a manual invoke or a
    redrive delivers the same token again."""

    def run() -> None:
        run_steps(invoke, deployment.secret_arn, token)
        _rotation_completed(deployment, token)

    return run


def retirement_run(deployment: Deployment, now: datetime) -> Actor:
    """One run of the retirement function for this deployment's secret, at `now`.

    What `retire_handler.run` does for each secret it finds, entered below its ListSecrets: that
    call pages over every secret moto holds (the whole test session's), which would add pause
    points that read nothing of this secret and make the call count vary from run to run.
    """

    def run() -> None:
        settings = Settings.from_env()
        user = Bindings(settings, None).user_of(deployment.secret_arn, deployment.secret_name)
        secrets = SecretVersions(boto3.client("secretsmanager"), deployment.secret_arn)
        retire(AccessKeys(boto3.client("iam"), user), secrets, settings.retirement, now, _retirement_logger)

    return run


def rollback(deployment: Deployment, now: datetime) -> Actor:
    """An operator's ``ses-smtp-rotation rollback --function ... --yes`` at `now` (the command's
    function; a refusal raises). The operator names the deployment."""

    def run() -> None:
        secretsmanager = boto3.client("secretsmanager")
        rollback_command(
            SecretVersions(secretsmanager, deployment.secret_arn),
            boto3.client("iam"),
            boto3.client("lambda"),
            secretsmanager,
            boto3.client("ssm"),
            deployment.function_arn,
            now,
        )

    return run


def hand_edit(deployment: Deployment, field: str, value: str) -> Actor:
    """An operator editing the secret in the console: read AWSCURRENT, keep the credentials, set
    `field`, save (PutSecretValue without stages: a new AWSCURRENT version)."""

    def run() -> None:
        client = boto3.client("secretsmanager")
        text = client.get_secret_value(SecretId=deployment.secret_arn, VersionStage=CURRENT)["SecretString"]
        document = json.loads(text)
        document[field] = value
        client.put_secret_value(SecretId=deployment.secret_arn, SecretString=json.dumps(document))

    return run


def refused_because_of_edit(error: BaseException | None) -> bool:
    """Whether an actor's error is the product refusing, openly, because of a hand edit (so the
    edit was not lost silently): one of its own errors that says so. Adapt to its wording."""
    return isinstance(error, RotationError) and "edit" in str(error).lower()


def after_refused_edit(deployment: Deployment) -> None:
    """HOOK: the documented operator step after the product refused because of a hand edit, before
    rotating again. Today: the runbook's "Cancel a stuck rotation" (remove AWSPENDING from the
    version that is not AWSCURRENT). Replace it with what the README tells the operator to do."""
    secrets = SecretVersions(boto3.client("secretsmanager"), deployment.secret_arn)
    state = secrets.describe()
    for version, labels in state.stages.items():
        if PENDING in labels and CURRENT not in labels:
            secrets.remove_label(PENDING, version)


def _rotation_completed(deployment: Deployment, token: str) -> None:
    """Secrets Manager, once the four steps succeeded, removes AWSPENDING from the rotation's version
    ("our backend cleans up the pending label on rotation completion, outside the rotation lambda":
    aws-samples/aws-secrets-manager-rotation-lambdas#145). `infra.rotation_driver` leaves it there
    until the next rotation begins; a hand edit meanwhile would then leave AWSPENDING on a version
    that is no longer current, and the next rotation would resume that one, which AWS does not."""
    client = boto3.client("secretsmanager")
    # When it does so is a scheduling point (the look); what it does is atomic, its own bookkeeping.
    labels = client.describe_secret(SecretId=deployment.secret_arn)["VersionIdsToStages"].get(token, [])
    if PENDING in labels:
        with unscheduled():
            SecretVersions(client, deployment.secret_arn).remove_label(PENDING, token)


def _rotation_in_progress(deployment: Deployment) -> str | None:
    """The token of the AWSPENDING version that is not AWSCURRENT, as Secrets Manager knows it."""
    with unscheduled():
        stages = boto3.client("secretsmanager").describe_secret(SecretId=deployment.secret_arn)["VersionIdsToStages"]
    return next((v for v, labels in stages.items() if PENDING in labels and CURRENT not in labels), None)
