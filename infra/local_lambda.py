"""The rotation function as moto's Lambda knows it: its configuration, not its code.

On AWS the secret's rotation function carries the deployment's settings in its environment, and
operator tools read them there (``rollback`` reads the bound IAM user and the allowed SMTP hosts).
Locally the steps run in-process or in a worker (``infra.rotation_driver``, ``infra.lambda_invoke``);
this registers a function of that name in moto with the environment template.yaml gives it, so
that the tools find the same configuration. moto never runs it (``infra.local_aws``).

    arn = register_rotation_function(iam, "ses-smtp-rotation-local", os.environ)
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

# The rotation function's settings in template.yaml (RotationFunction's Environment).
ROTATION_FUNCTION_SETTINGS = (
    "PREVIOUS_KEY_ACTION",
    "PREVIOUS_KEY_ACTIVE_HOURS",
    "PREVIOUS_KEY_INACTIVE_DAYS",
    "SMTP_ALLOWED_HOSTS",
    "SMTP_BINDING_PATH",
    "SMTP_SECRET_BINDINGS",
    "KMS_KEY_ARN",
    "SMTP_AUTH_TIMEOUT_SECONDS",
    "SMTP_CONNECT_TIMEOUT_SECONDS",
    "SMTP_TEST_SENDER",
)
_LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def register_rotation_function(iam: IAMClient, name: str, env: Mapping[str, str]) -> str:
    """Create function `name` (and its role) in moto with the rotation function's settings found in
    `env`, and a stub handler; return its ARN."""
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(_LAMBDA_TRUST))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("stub.py", "def handler(event, context):\n    return None\n")
    function = boto3.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler="stub.handler",
        Code={"ZipFile": code.getvalue()},
        Environment={"Variables": {k: env[k] for k in ROTATION_FUNCTION_SETTINGS if k in env}},
    )
    return function["FunctionArn"]
