"""What the rollback tests share: the state a rollback starts from (two rotations, the old key
retired), running the command, and what can happen around it: a writer's PutSecretValue, a
change to the rotation function's settings, an answer lost after the label moved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import boto3
import pytest

from infra.cli import main
from tests.retirement_support import Deployment
from tests.support import Crash, current, on_aws_events, secrets_client, stages

H = timedelta(hours=1)


def retired_after_rotation(deployment: Deployment) -> tuple[str, str, dict[str, Any]]:
    """Two rotations, then the grace period passes and the retirement function stops the old key."""
    deployment.rotate()
    old_secret = current(deployment.arn)
    deployment.rotate()
    new = deployment.current_key()
    deployment.time_passes(25 * H)
    deployment.retire()
    assert deployment.keys() == {old_secret["username"]: "Inactive", new: "Active"}
    return old_secret["username"], new, old_secret


def rollback_in_process(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], secret_id: str | None = None
) -> tuple[int, dict[str, Any]]:
    """The command as an operator runs it: naming the deployment (its function), confirmed."""
    capsys.readouterr()
    secret = secret_id or deployment.arn
    code = main(["rollback", "--secret-id", secret, "--function", deployment.function_arn, "--yes", "--json"])
    # The report is the last line: a function run in this process meanwhile logs before it.
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def snapshot(deployment: Deployment) -> tuple[dict[str, str], dict[str, list[str]], str]:
    return deployment.keys(), stages(deployment.arn), json.dumps(current(deployment.arn), sort_keys=True)


def write_version(secret_arn: str, document: dict[str, Any]) -> str:
    """PutSecretValue as a writer of the secret does it (AWSCURRENT moves; AWSPREVIOUS follows).

    A finished rotation leaves AWSPENDING on AWSCURRENT's version; this writer carries it along to
    its own version. A put without stages moves only AWSCURRENT and AWSPREVIOUS, so it would leave
    AWSPENDING on a version no longer current: rollback would see a rotation in progress and refuse
    before it reads the versions this writer planted (and Secrets Manager would refuse the next
    rotation).
    """
    labels = stages(secret_arn).values()
    carry = any("AWSCURRENT" in version and "AWSPENDING" in version for version in labels)
    put = secrets_client().put_secret_value(
        SecretId=secret_arn,
        SecretString=json.dumps(document),
        VersionStages=["AWSCURRENT", "AWSPENDING"] if carry else ["AWSCURRENT"],
    )
    return put["VersionId"]


def version_with(secret_arn: str, label: str) -> str:
    return next(v for v, labels in stages(secret_arn).items() if label in labels)


@contextmanager
def answer_lost_after_awscurrent_moves() -> Iterator[None]:
    """Like tests.support.failing_call, at the UpdateSecretVersionStage that moves AWSCURRENT only:
    AWS moves the label, then the caller "crashes" before it hears the answer."""
    update = "secrets-manager.UpdateSecretVersionStage"

    def note(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["moves_awscurrent"] = params.get("VersionStage") == "AWSCURRENT"

    def crash(context: dict[str, Any], **_: Any) -> None:
        if context.get("moves_awscurrent"):
            raise Crash(update)

    with on_aws_events({f"before-parameter-build.{update}": note, f"after-call.{update}": crash}):
        yield


def set_function_setting(deployment: Deployment, name: str, value: str | None) -> None:
    """Change (None: remove) one variable of the rotation function's environment, as a stack update would."""
    functions = boto3.client("lambda")
    variables = functions.get_function_configuration(FunctionName=deployment.function_arn)["Environment"]["Variables"]
    if value is None:
        variables.pop(name, None)
    else:
        variables[name] = value
    functions.update_function_configuration(FunctionName=deployment.function_arn, Environment={"Variables": variables})
