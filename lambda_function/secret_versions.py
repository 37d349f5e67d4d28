"""The versions of one secret and their staging labels: the only code that calls Secrets Manager."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from lambda_function.errors import InvalidSecretError, aws_error_code

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"


@dataclass(frozen=True)
class VersionListing:
    """A version as ListSecretVersionIds reports it (no value)."""

    version_id: str
    labels: tuple[str, ...]
    created: datetime


@dataclass(frozen=True)
class RotatedSecret:
    """A secret whose rotation function is a given Lambda function (ListSecrets)."""

    arn: str
    name: str


def secrets_rotated_by(client: SecretsManagerClient, function_arn: str) -> list[RotatedSecret]:
    """Every secret of the account and region whose rotation function is `function_arn`.

    ListSecrets cannot filter on the rotation function, so this lists every secret the caller may
    list and keeps those (their values are not read).
    """
    found: list[RotatedSecret] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = client.list_secrets(**kwargs)
        for entry in page.get("SecretList", []):
            if entry.get("RotationLambdaARN") == function_arn and "ARN" in entry and "Name" in entry:
                found.append(RotatedSecret(entry["ARN"], entry["Name"]))
        if not page.get("NextToken"):
            return found
        kwargs["NextToken"] = page["NextToken"]


@dataclass(frozen=True)
class SecretState:
    arn: str
    name: str
    rotation_enabled: bool
    stages: dict[str, list[str]]  # version ID -> staging labels
    kms_key_id: str | None = None  # None: the AWS managed key aws/secretsmanager
    rotation_function: str | None = None  # RotationLambdaARN
    scheduled_for_deletion: bool = False

    def version_with(self, label: str) -> str | None:
        return next((version for version, labels in self.stages.items() if label in labels), None)


class SecretVersions:
    """Read and label the versions of `secret_id`."""

    def __init__(self, client: SecretsManagerClient, secret_id: str) -> None:
        self._client = client
        self.secret_id = secret_id

    def describe(self) -> SecretState:
        try:
            response = self._client.describe_secret(SecretId=self.secret_id)
        except ClientError as error:
            if aws_error_code(error) == "ResourceNotFoundException":
                raise InvalidSecretError(f"Secret {self.secret_id} does not exist.") from None
            raise
        return SecretState(
            arn=response["ARN"],
            name=response["Name"],
            rotation_enabled=bool(response.get("RotationEnabled")),
            stages={k: list(v) for k, v in response.get("VersionIdsToStages", {}).items()},
            kms_key_id=response.get("KmsKeyId") or None,
            rotation_function=response.get("RotationLambdaARN") or None,
            scheduled_for_deletion=response.get("DeletedDate") is not None,
        )

    def value(self, label: str, version_id: str | None = None) -> str | None:
        """The SecretString of the version holding `label` (and `version_id`), None if it has none.

        The label is always passed: without it moto may answer with a stale version.
        """
        kwargs: dict[str, Any] = {"SecretId": self.secret_id, "VersionStage": label}
        if version_id is not None:
            kwargs["VersionId"] = version_id
        try:
            response = self._client.get_secret_value(**kwargs)
        except ClientError as error:
            if aws_error_code(error) == "ResourceNotFoundException":
                return None
            raise
        return response.get("SecretString")

    def created(self, version_id: str) -> datetime | None:
        """When Secrets Manager created a version (for the pending one: when this rotation began)."""
        kwargs: dict[str, Any] = {"SecretId": self.secret_id, "IncludeDeprecated": True}
        while True:
            page = self._client.list_secret_version_ids(**kwargs)
            for version in page["Versions"]:
                if version.get("VersionId") == version_id:
                    return version.get("CreatedDate")
            if not page.get("NextToken"):
                return None
            kwargs["NextToken"] = page["NextToken"]

    def listing(self) -> list[VersionListing]:
        """Every version, with its labels and CreatedDate, unlabelled (deprecated) ones included."""
        versions: list[VersionListing] = []
        kwargs: dict[str, Any] = {"SecretId": self.secret_id, "IncludeDeprecated": True}
        while True:
            page = self._client.list_secret_version_ids(**kwargs)
            versions += [
                VersionListing(v["VersionId"], tuple(v.get("VersionStages", [])), v["CreatedDate"])
                for v in page["Versions"]
                if "VersionId" in v and "CreatedDate" in v
            ]
            if not page.get("NextToken"):
                return versions
            kwargs["NextToken"] = page["NextToken"]

    def value_of_version(self, version_id: str) -> str | None:
        """The SecretString of a version by its ID alone (it may have no label); None if none."""
        try:
            response = self._client.get_secret_value(SecretId=self.secret_id, VersionId=version_id)
        except ClientError as error:
            if aws_error_code(error) == "ResourceNotFoundException":
                return None
            raise
        return response.get("SecretString")

    def supports_rotation_token(self) -> bool:
        """Whether this botocore knows PutSecretValue's RotationToken (1.34.125 and later)."""
        shape = self._client.meta.service_model.operation_model("PutSecretValue").input_shape
        return shape is not None and "RotationToken" in shape.members

    def put_pending(self, token: str, secret_string: str, rotation_token: str | None) -> None:
        kwargs: dict[str, Any] = {
            "SecretId": self.secret_id,
            "ClientRequestToken": token,
            "SecretString": secret_string,
            "VersionStages": [PENDING],
        }
        if rotation_token is not None:
            kwargs["RotationToken"] = rotation_token
        self._client.put_secret_value(**kwargs)

    def remove_label(self, label: str, version_id: str) -> None:
        self._client.update_secret_version_stage(
            SecretId=self.secret_id, VersionStage=label, RemoveFromVersionId=version_id
        )

    def promote(self, token: str, current_version: str) -> None:
        """Move AWSCURRENT to `token`; Secrets Manager moves AWSPREVIOUS by itself."""
        self._client.update_secret_version_stage(
            SecretId=self.secret_id,
            VersionStage=CURRENT,
            MoveToVersionId=token,
            RemoveFromVersionId=current_version,
        )
