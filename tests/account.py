"""A separate AWS account on the shared moto server, for tests that look at a whole account.

The session's moto server is shared by every test, and other tests leave many users and secrets
in its default account. A test that inventories "the account" (audit) or creates account-wide
things (the sending group, adopt) works in an account of its own instead, reached the way an
operator reaches another account: credentials from ``sts:AssumeRole`` (moto attributes requests
signed with them to the role's account).

    with separate_account() as account:
        boto3.client("iam").list_users()   # only this account's users
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from unittest import mock

import boto3
from moto.iam.models import iam_backends
from moto.secretsmanager.models import secretsmanager_backends


@contextmanager
def separate_account() -> Iterator[str]:
    """Point boto3's default session (and new clients) at a fresh account; yields its ID.

    Needs ``AWS_ENDPOINT_URL`` to point at moto (the ``moto_server`` fixture).
    """
    if not os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://127.0.0.1:"):
        raise RuntimeError("separate_account() needs the moto_server fixture (AWS_ENDPOINT_URL on loopback)")
    account = f"{uuid.uuid4().int % 10**12:012d}"
    credentials = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/ses-smtp-tests", RoleSessionName="ses-smtp-tests"
    )["Credentials"]
    env = {
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
    }
    try:
        with mock.patch.dict(os.environ, env):
            boto3.setup_default_session()
            yield account
    finally:
        boto3.setup_default_session()  # back to the session's own credentials


def backdate_key(account: str, user: str, access_key_id: str, days: float) -> None:
    """Make an access key `days` old in moto's state (moto keeps naive UTC datetimes)."""
    keys = iam_backends[account]["aws"].users[user].access_keys
    key = next(k for k in keys if k.access_key_id == access_key_id)
    key.create_date = (datetime.now(UTC) - timedelta(days=days)).replace(tzinfo=None)


def backdate_version(account: str, region: str, secret_id: str, version_id: str, days: float) -> None:
    """Make a secret version `days` old in moto's state (epoch seconds)."""
    secret = secretsmanager_backends[account][region].secrets[secret_id]
    secret.versions[version_id]["createdate"] = int((datetime.now(UTC) - timedelta(days=days)).timestamp())
