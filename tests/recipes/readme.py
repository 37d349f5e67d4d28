"""The README's consumer recipes, read out of README.md so that the tests run exactly what it shows."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mypy_boto3_iam import IAMClient

from infra.local_aws import add_to_sending_group
from infra.ses_smtp import ReceivedMessage, SesSmtpStandIn
from tests.support import create_secret, current, rotate, secrets_client

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
NODE_RECIPE = Path(__file__).resolve().parent / "node"
# The recipes name the template's defaults: user ses-smtp-user, secret ses-smtp/<user>.
APP_USER = "ses-smtp-user"
APP_SECRET = f"ses-smtp/{APP_USER}"
SENDER = "noreply@example.com"
RECIPIENT = "success@simulator.amazonses.com"


def recipe(name: str) -> str:
    """The code block that follows ``<!-- recipe: name -->`` in README.md."""
    found = re.search(rf"<!-- recipe: {re.escape(name)} -->\s*```\w*\n(.*?)^```", README.read_text(), re.M | re.S)
    assert found is not None, f"README.md has no recipe {name!r}"
    return found.group(1)


def need(*tools: str) -> None:
    """Skip when a tool is missing (`make test` installs them as root); in CI a missing tool fails."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (make system-packages / make node-deps)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def app_secret(iam: IAMClient, ses: SesSmtpStandIn) -> str:
    """The secret the recipes read, made once per session like the template makes it, and rotated."""
    existing = secrets_client().list_secrets(Filters=[{"Key": "name", "Values": [APP_SECRET]}])["SecretList"]
    if existing:
        return existing[0]["ARN"]
    iam.create_user(UserName=APP_USER)
    add_to_sending_group(iam, APP_USER)
    arn = create_secret({"iam_user_name": APP_USER, "region": ses.region}, ses, name=APP_SECRET)
    rotate(arn)
    return arn


def sent_by(ses: SesSmtpStandIn, key_id: str, since: int) -> list[ReceivedMessage]:
    return [m for m in ses.messages[since:] if m.username == key_id and m.mail_from == SENDER]


@contextmanager
def expect_one_message(ses: SesSmtpStandIn, arn: str) -> Iterator[None]:
    """The block sends exactly one message from the recipes' sender, signed in with AWSCURRENT's key."""
    since = len(ses.messages)
    yield
    [message] = sent_by(ses, current(arn)["username"], since)
    assert message.rcpt_tos == (RECIPIENT,)
