"""Drive a rotation the way AWS Secrets Manager does, against moto (tests and the local demo).

Secrets Manager first creates the token's version labelled ``AWSPENDING`` with no value, then
invokes the function once per step with ``{"Step", "SecretId", "ClientRequestToken",
"RotationToken"}``. moto's ``RotateSecret`` cannot run a Lambda without Docker, but it still
creates that empty pending version (and then reports the missing function), which is exactly the
starting state we need.

    token = begin_rotation(secrets, secret_arn)
    run_steps(invoke, secret_arn, token)   # invoke(event) runs the handler (in-process or not)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import ClientError

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
# moto accepts any function ARN here: it only records it (and cannot invoke it without Docker).
LOCAL_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ses-smtp-rotation-local"

Invoke = Callable[[dict[str, Any]], object]


def begin_rotation(client: Any, secret_id: str, function_arn: str = LOCAL_FUNCTION_ARN) -> str:
    """Enable rotation (if needed) and create the empty ``AWSPENDING`` version of a new token.

    Returns the token (``ClientRequestToken``). Like Secrets Manager at the end of a rotation, a
    stale ``AWSPENDING`` label left on the ``AWSCURRENT`` version is removed first.
    """
    stages = client.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {})
    for version_id, labels in stages.items():
        if "AWSPENDING" in labels and "AWSCURRENT" in labels:
            client.update_secret_version_stage(
                SecretId=secret_id, VersionStage="AWSPENDING", RemoveFromVersionId=version_id
            )
    token = str(uuid.uuid4())
    try:
        client.rotate_secret(
            SecretId=secret_id,
            ClientRequestToken=token,
            RotationLambdaARN=function_arn,
            RotationRules={"AutomaticallyAfterDays": 30},
        )
    except ClientError as error:
        # moto stores the pending version, then fails to find/invoke the function.
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    return token


def step_event(step: str, secret_id: str, token: str, rotation_token: str | None) -> dict[str, Any]:
    """The event Secrets Manager sends for one step."""
    event: dict[str, Any] = {"Step": step, "SecretId": secret_id, "ClientRequestToken": token}
    if rotation_token is not None:
        event["RotationToken"] = rotation_token
    return event


def run_steps(
    invoke: Invoke,
    secret_id: str,
    token: str,
    steps: Iterable[str] = STEPS,
    rotation_token: str | None = None,
) -> dict[str, float]:
    """Invoke each step in order; return the seconds each took. Exceptions propagate."""
    rotation_token = rotation_token or str(uuid.uuid4())  # a UUID, like Secrets Manager's
    timings: dict[str, float] = {}
    for step in steps:
        started = time.monotonic()
        invoke(step_event(step, secret_id, token, rotation_token))
        timings[step] = time.monotonic() - started
    return timings
