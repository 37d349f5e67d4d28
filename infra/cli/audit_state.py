"""Collect what the audit decides from: read-only IAM and Secrets Manager calls, nothing else.

    secrets, skipped = collect_secrets(secretsmanager)
    users, missing = collect_users(iam, bound_users={s.iam_user_name for s in secrets})

Every call here is a List/Get/Describe; the README lists them as the audit's IAM policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from infra.cli.inventory import KeyFacts, SecretFacts, UserFacts, VersionFacts
from infra.cli.sending_policy import CONSOLE_TAG, SENDING_GROUP, grants_sending
from lambda_function.access_keys import AccessKeys
from lambda_function.errors import aws_error_code
from lambda_function.secret_versions import CURRENT, SecretVersions
from lambda_function.smtp_password import password_version

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

# A secret we may not read (resource policy, KMS key policy) is reported, not fatal.
_UNREADABLE = frozenset({"AccessDeniedException", "DecryptionFailure", "KMSAccessDeniedException"})


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


# -- IAM ------------------------------------------------------------------------------------------


def sending_group_members(iam: IAMClient, group: str = SENDING_GROUP) -> set[str]:
    """User names in `group`; empty when the group does not exist."""
    members: set[str] = set()
    try:
        for page in iam.get_paginator("get_group").paginate(GroupName=group):
            members.update(user["UserName"] for user in page["Users"])
    except ClientError as error:
        if aws_error_code(error) != "NoSuchEntity":
            raise
    return members


def inline_sending_policies(iam: IAMClient, user: str) -> tuple[str, ...]:
    names = [n for page in iam.get_paginator("list_user_policies").paginate(UserName=user) for n in page["PolicyNames"]]
    return tuple(
        name for name in names if grants_sending(iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"])
    )


def has_console_tag(iam: IAMClient, user: str) -> bool:
    key, value = CONSOLE_TAG
    tags = [t for page in iam.get_paginator("list_user_tags").paginate(UserName=user) for t in page["Tags"]]
    return any(t["Key"] == key and t["Value"] == value for t in tags)


def key_facts(iam: IAMClient, user: str) -> tuple[KeyFacts, ...]:
    """The user's keys, each with its last use."""
    facts = []
    for key in AccessKeys(iam, user).list():
        used = iam.get_access_key_last_used(AccessKeyId=key.access_key_id).get("AccessKeyLastUsed", {})
        service = used.get("ServiceName")
        facts.append(
            KeyFacts(
                access_key_id=key.access_key_id,
                status=key.status,
                created=key.created.astimezone(UTC),
                last_used=_utc(used.get("LastUsedDate")),
                last_used_service=service if service and service != "N/A" else None,
            )
        )
    return tuple(facts)


def collect_users(
    iam: IAMClient, bound_users: Iterable[str] = (), sending_group: str = SENDING_GROUP
) -> tuple[list[UserFacts], set[str]]:
    """The account's SES SMTP users (SPEC §8), and the bound users IAM does not have.

    A user counts when it is in the sending group, has an inline policy granting
    ses:SendRawEmail, is tagged InvokedBy=SESConsole, or is named by one of our secrets.
    """
    members = sending_group_members(iam, sending_group)
    bound = set(bound_users)
    users: list[UserFacts] = []
    seen: set[str] = set()
    for page in iam.get_paginator("list_users").paginate():
        for entry in page["Users"]:
            name = entry["UserName"]
            seen.add(name)
            inline = inline_sending_policies(iam, name)
            tagged = has_console_tag(iam, name)
            if name in members or inline or tagged or name in bound:
                users.append(UserFacts(name, name in members, inline, tagged, key_facts(iam, name)))
    return users, bound - seen


# -- Secrets Manager ------------------------------------------------------------------------------


def _document(text: str | None) -> dict[str, Any] | None:
    """A version's value when it is a JSON object, else None (binary, empty, or not ours)."""
    if text is None:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _password_versions(document: dict[str, Any]) -> tuple[int | None, ...]:
    passwords = [document.get("password")]
    regional = document.get("passwords")
    if isinstance(regional, dict):
        passwords += list(regional.values())
    return tuple(password_version(p) for p in passwords if isinstance(p, str) and p)


def _version_dates(client: SecretsManagerClient, arn: str) -> dict[str, datetime]:
    dates: dict[str, datetime] = {}
    kwargs: dict[str, Any] = {"SecretId": arn}
    while True:
        page = client.list_secret_version_ids(**kwargs)
        for version in page["Versions"]:
            if "VersionId" in version and "CreatedDate" in version:
                dates[version["VersionId"]] = version["CreatedDate"].astimezone(UTC)
        if not page.get("NextToken"):
            return dates
        kwargs["NextToken"] = page["NextToken"]


def secret_facts(client: SecretsManagerClient, entry: Any) -> SecretFacts | None:
    """The facts of one ListSecrets entry, or None when it does not look like ours."""
    arn = entry["ARN"]
    versions = SecretVersions(client, arn)
    current = _document(versions.value(CURRENT))
    user = None if current is None else current.get("iam_user_name")
    if not isinstance(user, str) or not user.strip():
        return None
    dates = _version_dates(client, arn)
    facts = []
    for version_id, labels in sorted(entry.get("SecretVersionsToStages", {}).items()):
        if not labels:
            continue
        document = _document(versions.value(labels[0], version_id)) or {}
        username = document.get("username")
        facts.append(
            VersionFacts(
                version_id=version_id,
                labels=tuple(sorted(labels)),
                created=dates.get(version_id),
                username=username if isinstance(username, str) and username else None,
                password_versions=_password_versions(document),
            )
        )
    return SecretFacts(
        arn=arn,
        name=entry["Name"],
        iam_user_name=user.strip(),
        rotation_enabled=bool(entry.get("RotationEnabled")),
        rotation_lambda_arn=entry.get("RotationLambdaARN"),
        last_rotated=_utc(entry.get("LastRotatedDate")),
        versions=tuple(facts),
    )


def collect_secrets(client: SecretsManagerClient) -> tuple[list[SecretFacts], list[tuple[str, str]]]:
    """Our secrets, and (name, error code) of those the caller may not read."""
    secrets: list[SecretFacts] = []
    skipped: list[tuple[str, str]] = []
    for page in client.get_paginator("list_secrets").paginate():
        for entry in page["SecretList"]:
            try:
                facts = secret_facts(client, entry)
            except ClientError as error:
                if aws_error_code(error) not in _UNREADABLE:
                    raise
                skipped.append((entry["Name"], aws_error_code(error)))
                continue
            if facts is not None:
                secrets.append(facts)
    return secrets, skipped
