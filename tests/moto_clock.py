"""Make time pass in moto's state instead of waiting for it (SPEC §4a is measured in hours and days).

moto runs in this process (``MotoServer``), so tests reach its backends directly:

- ``time_passes(secret_arn, user, delta)`` moves every date of one secret and one IAM user
  ``delta`` into the past (versions' CreatedDate, keys' CreateDate and last use): to the code
  under test, which reads the real clock, ``delta`` has passed.
- ``key_used(access_key_id, at)`` records a use of a key, as IAM would (GetAccessKeyLastUsed).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam.models import AccessKeyLastUsed, iam_backends
from moto.secretsmanager.models import secretsmanager_backends

REGION = "us-east-1"


def _account() -> str:
    return os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)


def _naive_utc(moment: datetime) -> datetime:
    """moto stores IAM dates as naive UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _iam_keys(user: str) -> list[Any]:
    keys: list[Any] = iam_backends[_account()]["aws"].users[user].access_keys
    return keys


def time_passes(secret_arn: str, user: str, delta: timedelta) -> None:
    """Every date of `secret_arn` and `user` moves `delta` into the past."""
    secret = secretsmanager_backends[_account()][REGION].secrets[secret_arn]
    for version in secret.versions.values():
        version["createdate"] = version["createdate"] - delta.total_seconds()
    for key in _iam_keys(user):
        key.create_date = key.create_date - delta
        if key.last_used is not None:
            key.last_used = AccessKeyLastUsed(
                timestamp=key.last_used.timestamp - delta, service=key.last_used.service, region=key.last_used.region
            )


def key_used(user: str, access_key_id: str, at: datetime | None = None) -> None:
    """Record that `access_key_id` was used at `at` (default: now), as SES SMTP use would."""
    when = _naive_utc(at or datetime.now(UTC))
    for key in _iam_keys(user):
        if key.access_key_id == access_key_id:
            key.last_used = AccessKeyLastUsed(timestamp=when, service="ses", region=REGION)
            return
    raise KeyError(f"IAM user {user} has no access key {access_key_id}")


def version_created(secret_arn: str, version_id: str, at: datetime) -> None:
    """Set a version's CreatedDate (to the millisecond, as AWS and the local AWS keep it)."""
    secret = secretsmanager_backends[_account()][REGION].secrets[secret_arn]
    secret.versions[version_id]["createdate"] = round(at.timestamp(), 3)
