"""IAM access keys of one SMTP user: the only code that calls IAM.

IAM allows at most two access keys per user, Inactive ones included; `create` turns IAM's
`LimitExceeded` into a KeyLimitError that says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from lambda_function.errors import InvalidSecretError, KeyLimitError, aws_error_code

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

MAX_KEYS_PER_USER = 2


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    status: str  # "Active" or "Inactive"
    created: datetime


@dataclass(frozen=True)
class NewAccessKey:
    access_key_id: str
    secret_access_key: str = field(repr=False)  # never stored, logged or returned


class AccessKeys:
    """The access keys of `user_name`."""

    def __init__(self, iam: IAMClient, user_name: str) -> None:
        self._iam = iam
        self.user_name = user_name

    def list(self) -> list[AccessKey]:
        """The user's keys; raise InvalidSecretError when the IAM user does not exist.

        ListAccessKeys' NoSuchEntity is the existence check: no separate GetUser call.
        """
        try:
            response = self._iam.list_access_keys(UserName=self.user_name)
        except ClientError as error:
            if aws_error_code(error) == "NoSuchEntity":
                raise InvalidSecretError(
                    f"IAM user {self.user_name} (the secret's iam_user_name) does not exist; "
                    "create it or fix iam_user_name."
                ) from None
            raise
        return [
            AccessKey(key["AccessKeyId"], key["Status"], key["CreateDate"]) for key in response["AccessKeyMetadata"]
        ]

    def get(self, access_key_id: str) -> AccessKey | None:
        return next((key for key in self.list() if key.access_key_id == access_key_id), None)

    def create(self) -> NewAccessKey:
        try:
            key = self._iam.create_access_key(UserName=self.user_name)["AccessKey"]
        except ClientError as error:
            if aws_error_code(error) == "LimitExceeded":
                raise KeyLimitError(
                    f"IAM user {self.user_name} already has {MAX_KEYS_PER_USER} access keys; "
                    "delete the one no application uses, then rotate again."
                ) from None
            raise
        return NewAccessKey(key["AccessKeyId"], key["SecretAccessKey"])

    def delete(self, access_key_id: str) -> bool:
        """Delete a key; return False when it was already gone (so retries are harmless)."""
        try:
            self._iam.delete_access_key(UserName=self.user_name, AccessKeyId=access_key_id)
        except ClientError as error:
            if aws_error_code(error) == "NoSuchEntity":
                return False
            raise
        return True

    def deactivate(self, access_key_id: str) -> bool:
        """Set a key Inactive; return False when it does not exist."""
        try:
            self._iam.update_access_key(UserName=self.user_name, AccessKeyId=access_key_id, Status="Inactive")
        except ClientError as error:
            if aws_error_code(error) == "NoSuchEntity":
                return False
            raise
        return True

    def activate(self, access_key_id: str) -> bool:
        """Set a key Active again (rollback); return False when it does not exist."""
        try:
            self._iam.update_access_key(UserName=self.user_name, AccessKeyId=access_key_id, Status="Active")
        except ClientError as error:
            if aws_error_code(error) == "NoSuchEntity":
                return False
            raise
        return True

    def last_used(self, access_key_id: str) -> datetime | None:
        """When IAM last saw the key used (GetAccessKeyLastUsed); None if never, or if it is gone.

        Evidence only: AWS does not document how SES SMTP use shows here.
        """
        try:
            response = self._iam.get_access_key_last_used(AccessKeyId=access_key_id)
        except ClientError as error:
            if aws_error_code(error) == "NoSuchEntity":
                return None
            raise
        return response.get("AccessKeyLastUsed", {}).get("LastUsedDate")
