"""Nothing secret reaches a log line or output, even at DEBUG everywhere (SPEC §9, item 6).

The handler runs in a Lambda-like worker process at log level DEBUG: the root logger at
DEBUG (botocore would log request and response bodies) and Powertools at DEBUG. We capture all
it writes across whole rotations, one of them failing, and look for every secret we know of.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from infra.lambda_invoke import LambdaWorker
from infra.local_aws import lookup_access_key
from infra.rotation_driver import STEPS, begin_rotation, step_event
from infra.ses_smtp import SesSmtpStandIn
from tests.support import create_secret, secrets_client

HANDLER = "lambda_function.handler.lambda_handler"


def secrets_of(value: dict[str, Any]) -> set[str]:
    """A version's password(s), its key's secret, and the AUTH exchange's base64 forms."""
    found = {value["password"], *value.get("passwords", {}).values()}
    key = lookup_access_key(value["username"])
    assert key is not None
    found.add(key.secret_access_key)
    for password in list(found):
        found.add(base64.b64encode(f"\0{value['username']}\0{password}".encode()).decode())  # AUTH PLAIN
        found.add(base64.b64encode(password.encode()).decode())  # AUTH LOGIN
    return found


def test_no_password_key_token_or_auth_exchange_in_any_output_at_debug(
    iam_user: str, ses_smtp: SesSmtpStandIn, smtp_ca: str
) -> None:
    # Lambda at log level DEBUG: the runtime sets the root logger to DEBUG; Powertools follows.
    arn = create_secret({"iam_user_name": iam_user, "regions": ["eu-west-1"]}, ses_smtp)
    env = {**os.environ, "POWERTOOLS_LOG_LEVEL": "DEBUG", "AWS_LAMBDA_LOG_LEVEL": "DEBUG"}
    sm = secrets_client()
    output, secrets = "", set()
    for rotation in range(3):
        failing = rotation == 2  # the third rotation's key is never accepted in time
        token = begin_rotation(sm, arn)
        rotation_token = str(uuid.uuid4())
        step_env = {**env, "SMTP_AUTH_TIMEOUT_SECONDS": "1"} if failing else env
        with (
            ses_smtp.configured(propagation_delay=60 if failing else 0.5),
            LambdaWorker(HANDLER, env=step_env, timeout=60) as function,
        ):
            errors = []
            for step in STEPS:
                invocation = function.invoke(step_event(step, arn, token, rotation_token))
                output += invocation.log
                if invocation.failed:
                    errors.append(f"{step}: {invocation.error_type}")
                    break
        assert errors == (["testSecret: SmtpAuthenticationError"] if failing else []), output
        secrets.add(rotation_token)
        pending = sm.get_secret_value(SecretId=arn, VersionId=token)  # finishSecret took AWSPENDING off it
        secrets |= secrets_of(json.loads(pending["SecretString"]))

    assert '"message":"Rotation step failed"' in output
    assert '"level":"DEBUG"' in output  # DEBUG really was on
    leaked = sorted(s for s in secrets if s in output)
    assert leaked == [], "secret material in the function's output"
    assert len(secrets) >= 3 * 5


@pytest.mark.usefixtures("smtp_ca")
def test_botocore_would_log_bodies_at_debug_without_our_guard(iam_user: str) -> None:
    """The guard above is needed: without it, botocore at DEBUG writes request bodies out."""
    script = (
        "import logging, sys, boto3\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n"
        "boto3.client('secretsmanager').list_secrets()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ), timeout=60, check=False
    )
    assert "Making request for OperationModel(name=ListSecrets)" in result.stderr
