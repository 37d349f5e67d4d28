"""Whose keys a rollback may touch and where a restored version may send: the deployment decides.

The operator names the deployment (``--function``, or ``--stack`` whose ``FunctionArn`` output
names it); the secret is never trusted to say which deployment it belongs to. The rotation
function's environment (GetFunctionConfiguration) carries the deployment's settings, read by
``Settings.from_env`` exactly as the function reads them, and the secret is bound through the same
registry the functions use (`lambda_function.binding`: its exact ARN). The command refuses a secret
whose ``RotationLambdaARN`` is not the named function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from lambda_function.binding import Bindings
from lambda_function.errors import InvalidSecretError, InvalidSettingsError, RollbackRefusedError, aws_error_code
from lambda_function.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_secretsmanager import SecretsManagerClient


@dataclass(frozen=True)
class Binding:
    """The deployment's word on one secret."""

    function_arn: str
    user: str  # the one IAM user whose keys the secret may touch
    settings: Settings  # the rotation function's settings (smtp_allowed_hosts ...)


def function_of_stack(cloudformation: CloudFormationClient, stack: str) -> str:
    """The rotation function of a deployed stack (its FunctionArn output)."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        if aws_error_code(error) == "ValidationError":
            raise RollbackRefusedError(f"Stack {stack} does not exist here; nothing was changed.") from None
        raise
    outputs = {o.get("OutputKey"): o.get("OutputValue") for s in stacks for o in s.get("Outputs", [])}
    function_arn = outputs.get("FunctionArn")
    if not function_arn:
        raise RollbackRefusedError(
            f"Stack {stack} has no FunctionArn output: it is not an SES SMTP rotation deployment; nothing was changed."
        )
    return function_arn


def deployment_binding(
    secretsmanager: SecretsManagerClient, functions: LambdaClient, ssm: Any, function_arn: str, secret_arn: str
) -> Binding:
    """The binding of `secret_arn` in the deployment whose rotation function is `function_arn` (the
    operator's word); raise RollbackRefusedError when there is none. Reads only: DescribeSecret,
    GetFunctionConfiguration, GetParameter."""
    described = secretsmanager.describe_secret(SecretId=secret_arn)
    rotated_by = described.get("RotationLambdaARN") or ""
    if rotated_by != function_arn:
        raise RollbackRefusedError(
            f"Secret {secret_arn} is rotated by {rotated_by or 'no function'}, not by the deployment you named "
            f"({function_arn}); nothing was changed. Someone who can write the secret may have re-pointed it: find who "
            "in CloudTrail (RotateSecret), or name the right deployment."
        )
    try:
        environment = functions.get_function_configuration(FunctionName=function_arn).get("Environment", {})
    except ClientError as error:
        code = aws_error_code(error)
        if code == "ResourceNotFoundException":
            raise RollbackRefusedError(
                f"The rotation function {function_arn} does not exist, so no deployment says which IAM user's keys "
                f"secret {secret_arn} may touch; nothing was changed. Name the right deployment, or redeploy it."
            ) from None
        if "AccessDenied" in code:
            raise RollbackRefusedError(
                f"Reading the configuration of {function_arn} was denied; rollback reads the deployment's binding "
                "there. Allow lambda:GetFunctionConfiguration on it (README: Roll back to the previous credentials); "
                "nothing was changed."
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
            f"The settings of {function_arn} are invalid: {error} Fix the stack's parameters; nothing was changed."
        ) from None
    try:
        user = Bindings(settings, ssm if settings.binding_path else None).user_of(secret_arn, described["Name"])
    except InvalidSecretError as error:
        raise RollbackRefusedError(f"{error} (deployment {function_arn})") from None
    return Binding(function_arn, user, settings)
