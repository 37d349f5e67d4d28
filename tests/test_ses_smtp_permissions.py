"""The SES stand-in is no kinder than SES (SPEC §7): only a user allowed ses:SendRawEmail may send,
and each accepted AUTH shows as the key's last use in IAM."""

from __future__ import annotations

import json
import smtplib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from mypy_boto3_iam import IAMClient

from infra.local_aws import SENDING_POLICY_DOCUMENT, add_to_sending_group
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.smtp_password import smtp_password
from tests.test_ses_smtp_standin import auth_plain, connect_tls, message

ACCOUNT = "123456789012"  # moto's default account
SEND_ONLY = json.dumps(SENDING_POLICY_DOCUMENT)


def policy(effect: str, action: str, resource: str) -> str:
    statement = {"Effect": effect, "Action": action, "Resource": resource}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture
def new_user(iam_client: IAMClient) -> Callable[[], tuple[str, str, str]]:
    """A user in no group, with one key: (user name, access key ID, SMTP password)."""

    def create() -> tuple[str, str, str]:
        name = f"ses-smtp-outsider-{uuid.uuid4().hex[:12]}"
        iam_client.create_user(UserName=name)
        key = iam_client.create_access_key(UserName=name)["AccessKey"]
        return name, key["AccessKeyId"], smtp_password(key["SecretAccessKey"], "us-east-1")

    return create


def send(ses: SesSmtpStandIn, key_id: str, password: str, sender: str = "app@example.com") -> tuple[int, bytes]:
    """Sign in and send one message; SES's reply to DATA (250 = accepted)."""
    with connect_tls(ses) as smtp:
        assert auth_plain(smtp, key_id, password)[0] == 235
        try:
            smtp.send_message(message(sender, f"from {key_id}"))
        except smtplib.SMTPDataError as refused:
            error = refused.smtp_error
            return refused.smtp_code, error if isinstance(error, bytes) else error.encode()
    return 250, b""


def test_a_user_outside_the_sending_group_signs_in_but_is_refused_after_data(
    ses_smtp: SesSmtpStandIn, new_user: Callable[[], tuple[str, str, str]]
) -> None:
    user, key_id, password = new_user()

    code, reply = send(ses_smtp, key_id, password)

    assert code == 554
    assert (
        reply
        == (
            f"Access denied: User `arn:aws:iam::{ACCOUNT}:user/{user}' is not authorized to perform "
            f"`ses:SendRawEmail' on resource `arn:aws:ses:us-east-1:{ACCOUNT}:identity/example.com'"
        ).encode()
    )
    assert not [mail for mail in ses_smtp.messages if mail.username == key_id]


@pytest.mark.parametrize(
    "grant", ["sending-group", "inline-user-policy", "managed-user-policy", "managed-group-policy"]
)
def test_a_user_allowed_to_send_by_any_identity_policy_may_send(
    ses_smtp: SesSmtpStandIn, iam_client: IAMClient, new_user: Callable[[], tuple[str, str, str]], grant: str
) -> None:
    user, key_id, password = new_user()
    suffix = uuid.uuid4().hex[:12]
    if grant == "sending-group":
        add_to_sending_group(iam_client, user)
    elif grant == "inline-user-policy":  # what the SES console did before September 2024
        iam_client.put_user_policy(UserName=user, PolicyName="AmazonSesSendingAccess", PolicyDocument=SEND_ONLY)
    else:
        ses_all = policy("Allow", "ses:*", "*")
        arn = iam_client.create_policy(PolicyName=f"ses-all-{suffix}", PolicyDocument=ses_all)["Policy"]["Arn"]
        if grant == "user-managed-policy":
            iam_client.attach_user_policy(UserName=user, PolicyArn=arn)
        else:
            iam_client.create_group(GroupName=f"senders-{suffix}")
            iam_client.attach_group_policy(GroupName=f"senders-{suffix}", PolicyArn=arn)
            iam_client.add_user_to_group(GroupName=f"senders-{suffix}", UserName=user)

    assert send(ses_smtp, key_id, password)[0] == 250


def test_an_explicit_deny_wins_over_the_sending_group(
    ses_smtp: SesSmtpStandIn, iam_client: IAMClient, new_user: Callable[[], tuple[str, str, str]]
) -> None:
    user, key_id, password = new_user()
    add_to_sending_group(iam_client, user)
    assert send(ses_smtp, key_id, password)[0] == 250

    iam_client.put_user_policy(UserName=user, PolicyName="no-mail", PolicyDocument=policy("Deny", "ses:*", "*"))

    assert send(ses_smtp, key_id, password)[0] == 554


def test_a_policy_scoped_to_another_identity_does_not_allow_this_sender(
    ses_smtp: SesSmtpStandIn, iam_client: IAMClient, new_user: Callable[[], tuple[str, str, str]]
) -> None:
    user, key_id, password = new_user()
    scoped = policy("Allow", "ses:SendRawEmail", f"arn:aws:ses:*:{ACCOUNT}:identity/example.com")
    iam_client.put_user_policy(UserName=user, PolicyName="scoped", PolicyDocument=scoped)

    assert send(ses_smtp, key_id, password, sender="app@example.com")[0] == 250
    assert send(ses_smtp, key_id, password, sender="app@example.org")[0] == 554


def test_an_accepted_auth_is_the_keys_last_use(
    ses_smtp: SesSmtpStandIn, iam_client: IAMClient, new_user: Callable[[], tuple[str, str, str]]
) -> None:
    _, key_id, password = new_user()
    never = iam_client.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert "LastUsedDate" not in never or never["LastUsedDate"] is None

    before = datetime.now(UTC)
    with connect_tls(ses_smtp) as smtp:
        assert auth_plain(smtp, key_id, password)[0] == 235
    with connect_tls(ses_smtp) as smtp:
        assert auth_plain(smtp, key_id, "B" + "x" * 43)[0] == 535  # a refused AUTH is no use

    used = iam_client.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert (used["ServiceName"], used["Region"]) == ("ses", "us-east-1")
    assert before - timedelta(seconds=1) <= used["LastUsedDate"] <= datetime.now(UTC)
