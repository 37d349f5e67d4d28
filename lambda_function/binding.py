"""Which IAM user a secret may rotate: the deployment's registry decides, never the secret (SPEC §3).

A secret is bound to a user by its **exact ARN**. Secrets Manager gives every secret a random
six-character suffix, and a secret deleted and created again under the same name gets a new one,
so whoever can create, delete, tag or write secrets cannot reproduce a binding.

- Secrets the template makes: each user's stack writes the Parameter Store parameter
  ``<SMTP_BINDING_PATH><user>`` whose value is the ARN of the secret ``ses-smtp/<user>``. The
  registry costs the functions' 4 KB environment nothing per user.
- Secrets made by hand: ``SMTP_SECRET_BINDINGS``, a JSON map from exact ARN to user.

    user = Bindings(settings, ssm).user_of(secret_arn, secret_name)   # raises when unbound
    for bound in Bindings(settings, ssm).every():                     # the retirement run's list
        ...

The rotation function, the retirement function and the ``rollback`` command all bind through this
module, with the settings of the deployment (the operator names it to ``rollback``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from botocore.exceptions import ClientError

from lambda_function.errors import InvalidSecretError, aws_error_code
from lambda_function.settings import Settings

# The template names each user's secret NAME_PREFIX + <user>: the registry entry to look up.
NAME_PREFIX: Final = "ses-smtp/"


class ParameterStore(Protocol):
    """The two Parameter Store (SSM) calls the registry needs: a boto3 "ssm" client."""

    def get_parameter(self, *, Name: str) -> Mapping[str, Any]: ...

    def get_parameters_by_path(self, **kwargs: Any) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Bound:
    """A secret the deployment binds, and the one IAM user whose keys it may rotate."""

    secret_arn: str
    user: str


class Bindings:
    """The deployment's bindings: `settings` (SMTP_SECRET_BINDINGS, SMTP_BINDING_PATH) and, when a
    registry path is set, Parameter Store through `ssm`."""

    def __init__(self, settings: Settings, ssm: ParameterStore | None) -> None:
        self._settings = settings
        self._ssm = ssm

    def user_of(self, secret_arn: str, secret_name: str) -> str:
        """The IAM user bound to the secret `secret_arn`; raise InvalidSecretError (nothing changed)
        when the deployment binds no user to exactly this ARN, saying why."""
        explicit = self._settings.secret_bindings.get(secret_arn)
        path = self._settings.binding_path
        if explicit:
            registered = self._registered(path + explicit) if path else None
            if registered is not None and registered != secret_arn:
                raise InvalidSecretError(
                    f"IAM user {explicit} is bound to two secrets: {secret_arn} (SMTP_SECRET_BINDINGS) and "
                    f"{registered} (the registry); nothing changed. Bind each user to one secret."
                )
            return explicit
        user = secret_name.removeprefix(NAME_PREFIX)
        registered = self._registered(path + user) if path and secret_name.startswith(NAME_PREFIX) else None
        if registered == secret_arn:
            return user
        if registered is not None:
            raise InvalidSecretError(
                f"Secret {secret_arn} is not the secret this deployment binds to IAM user {user}: that is "
                f"{registered}. A secret of the same name was deleted and created again (its ARN's suffix "
                "changed), so it inherits no binding and may rotate no one's keys; nothing changed. Find who "
                "re-created it in CloudTrail (DeleteSecret, CreateSecret), and redeploy the user's stack if the "
                "new secret is legitimate."
            )
        raise InvalidSecretError(
            f"Secret {secret_arn} is not bound to an IAM user in this deployment, so it may rotate no one's keys; "
            "nothing changed. Secrets made by the template are bound by the parameter "
            f"{path or '<SMTP_BINDING_PATH>'}<user> (holding the secret's ARN); bind a secret made by hand by its "
            "exact ARN in SMTP_SECRET_BINDINGS."
        )

    def every(self) -> list[Bound]:
        """Every secret the deployment binds: SMTP_SECRET_BINDINGS', then the registry's entries.
        A user bound to two secrets (`bound_twice`) is listed with both."""
        found = [Bound(arn, user) for arn, user in self._settings.secret_bindings.items()]
        path = self._settings.binding_path
        if not path or self._ssm is None:
            return found
        kwargs: dict[str, Any] = {"Path": path, "Recursive": False}
        while True:
            page = self._ssm.get_parameters_by_path(**kwargs)
            found += [
                Bound(parameter["Value"], parameter["Name"].removeprefix(path))
                for parameter in page.get("Parameters", [])
                if "Name" in parameter and "Value" in parameter
            ]
            if not page.get("NextToken"):
                return found
            kwargs["NextToken"] = page["NextToken"]

    def _registered(self, name: str) -> str | None:
        if self._ssm is None:
            return None
        try:
            value = self._ssm.get_parameter(Name=name)["Parameter"].get("Value")
        except ClientError as error:
            if aws_error_code(error) == "ParameterNotFound":
                return None
            raise
        return value if isinstance(value, str) else None


# What DescribeSecret's KmsKeyId may say of the AWS managed key (absent, or named by its alias).
_AWS_MANAGED_KEY: Final = "alias/aws/secretsmanager"


def check_encryption_key(secret_arn: str, kms_key_id: str | None, expected: str | None) -> None:
    """Refuse a secret not encrypted with the deployment's key (`KMS_KEY_ARN`; None =
    aws/secretsmanager): whoever can call UpdateSecret can switch a secret to the account's default
    key without any right on the customer managed key, and every reader of the secret could then
    read the next credentials (SPEC §3)."""
    actual = kms_key_id or _AWS_MANAGED_KEY
    if expected is None:
        ok = actual == _AWS_MANAGED_KEY or actual.endswith(":" + _AWS_MANAGED_KEY)
    else:
        ok = actual in (expected, expected.rpartition("key/")[2])
    if not ok:
        raise InvalidSecretError(
            f"Secret {secret_arn} is encrypted with KMS key {actual}, not the deployment's "
            f"{expected or _AWS_MANAGED_KEY} (KMS_KEY_ARN); no key was created and no credentials were written. "
            f"Find who changed it in CloudTrail (UpdateSecret), then set it back: aws secretsmanager update-secret "
            f"--secret-id {secret_arn} --kms-key-id {expected or _AWS_MANAGED_KEY}"
        )


def bound_twice(bound: list[Bound]) -> set[str]:
    """The users (lower case: IAM names are case-insensitive) bound to more than one secret."""
    users = [b.user.lower() for b in bound]
    return {user for user in users if users.count(user) > 1}
