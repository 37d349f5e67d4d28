"""Whose keys a rollback may touch and where a restored version may send: the deployment decides.

The secret's rotation function (DescribeSecret's ``RotationLambdaARN``) carries the deployment's
settings in its environment (GetFunctionConfiguration), and ``Settings.from_env`` reads them there
exactly as the function does: the IAM user the secret is bound to and the allowed SMTP hosts. No
version of the secret is trusted for either (README: "The secret cannot steer the rotation"), and
neither is the environment of the operator running the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from lambda_function.errors import InvalidSettingsError, RollbackRefusedError, aws_error_code
from lambda_function.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_secretsmanager import SecretsManagerClient


@dataclass(frozen=True)
class Binding:
    """The deployment's word on one secret."""

    function_arn: str
    user: str  # the one IAM user whose keys the secret may touch
    settings: Settings  # the rotation function's settings (smtp_allowed_hosts ...)


def deployment_binding(
    secretsmanager: SecretsManagerClient, functions: LambdaClient, secret_arn: str, secret_name: str
) -> Binding:
    """Read the binding of `secret_arn` from its rotation function; raise RollbackRefusedError when
    there is none. Reads only: DescribeSecret, GetFunctionConfiguration."""
    function_arn = secretsmanager.describe_secret(SecretId=secret_arn).get("RotationLambdaARN") or ""
    if not function_arn:
        raise RollbackRefusedError(
            f"Secret {secret_arn} has no rotation function, so no deployment says which IAM user's keys it may "
            "touch; nothing was changed. Roll back by hand (README: Runbook), or deploy its rotation first."
        )
    try:
        environment = functions.get_function_configuration(FunctionName=function_arn).get("Environment", {})
    except ClientError as error:
        code = aws_error_code(error)
        if code == "ResourceNotFoundException":
            raise RollbackRefusedError(
                f"The rotation function of secret {secret_arn}, {function_arn}, no longer exists, so no deployment "
                "says which IAM user's keys the secret may touch; nothing was changed. Redeploy the stack, or roll "
                "back by hand."
            ) from None
        if "AccessDenied" in code:
            raise RollbackRefusedError(
                f"Reading the configuration of {function_arn}, the rotation function of secret {secret_arn}, was "
                "denied; rollback reads the deployment's binding there. Allow lambda:GetFunctionConfiguration on "
                "it (README: Roll back to the previous credentials); nothing was changed."
            ) from None
        raise
    if "Error" in environment:  # Lambda could not decrypt the variables with the function's KMS key
        raise RollbackRefusedError(
            f"The environment of {function_arn} cannot be read ({environment['Error'].get('ErrorCode', 'error')}); "
            "allow kms:Decrypt on its KMS key to read the deployment's binding. Nothing was changed."
        )
    try:
        settings = Settings.from_env(environment.get("Variables", {}))
    except InvalidSettingsError as error:
        raise RollbackRefusedError(
            f"The settings of {function_arn}, the rotation function of secret {secret_arn}, are invalid: {error} "
            "Fix the stack's parameters; nothing was changed."
        ) from None
    user = settings.bound_user(secret_arn, secret_name)
    if user is None:
        raise RollbackRefusedError(
            f"Secret {secret_arn} is not bound to an IAM user by its rotation function {function_arn} "
            "(SMTP_BOUND_USERS, SMTP_SECRET_BINDINGS), so it may touch no one's keys; nothing was changed. Add the "
            "secret to the deployment (the template binds the secrets it makes)."
        )
    return Binding(function_arn, user, settings)
