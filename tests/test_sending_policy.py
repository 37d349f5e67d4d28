"""Which IAM policy documents grant SES sending (audit's discovery, adopt's checks), and nothing more."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.cli.sending_policy import SENDING_POLICY_DOCUMENT, grants_only_sending, grants_sending, only_ses


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": "*", **extra}


@pytest.mark.parametrize(
    ("document", "grants"),
    [
        (SENDING_POLICY_DOCUMENT, True),
        (json.dumps(SENDING_POLICY_DOCUMENT), True),  # as JSON text
        (policy(allow(["ses:SendEmail", "ses:SendRawEmail"])), True),
        (policy(allow("SES:sendrawemail")), True),  # actions are case-insensitive
        (policy(allow("ses:*")), True),
        (policy(allow("ses:Send*")), True),
        (policy(allow("*")), True),
        (policy(allow("ses:SendEmail")), False),
        (policy(allow("ses:SendRaw?mail")), True),
        (policy(allow("s3:*")), False),
        (policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}), True),
        (policy({"Effect": "Allow", "NotAction": "ses:*", "Resource": "*"}), False),
        (policy(allow("ses:SendRawEmail"), {"Effect": "Deny", "Action": "ses:*", "Resource": "*"}), False),
        ({"Statement": allow("ses:SendRawEmail")}, True),  # a single statement object
        ({}, False),
    ],
)
def test_grants_sending(document: Any, grants: bool) -> None:
    assert grants_sending(document) is grants


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (SENDING_POLICY_DOCUMENT, True),
        (policy(allow(["ses:SendRawEmail", "ses:SendEmail"])), True),
        (policy(allow("ses:SendRawEmail"), allow("s3:GetObject")), False),
        (policy(allow("*")), False),
        (policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}), False),
        (policy(), False),
    ],
)
def test_only_ses_tells_whether_deleting_a_policy_takes_away_anything_else(document: Any, expected: bool) -> None:
    assert only_ses(document) is expected


def deny(action: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": "*"}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (SENDING_POLICY_DOCUMENT, True),
        (json.dumps(SENDING_POLICY_DOCUMENT), True),  # as JSON text
        (policy(allow(["ses:SendRawEmail", "ses:SendEmail"])), True),
        (policy(allow("SES:sendrawemail")), True),  # actions are case-insensitive
        (policy(allow("ses:SendRawEmail", Resource="arn:aws:ses:eu-west-1:111122223333:identity/example.com")), True),
        (policy(allow("ses:SendRawEmail", Condition={"StringLike": {"ses:FromAddress": "*@example.com"}})), True),
        (policy(allow("ses:SendRawEmail"), deny("*")), True),  # a Deny only takes away
        (policy(allow("ses:SendRawEmail"), {"Effect": "Deny", "NotAction": "ses:SendRawEmail", "Resource": "*"}), True),
        ({"Statement": allow("ses:SendRawEmail")}, True),  # a single statement object
        (policy(), True),  # grants nothing at all (grants_sending says so)
        # More than sending:
        (policy(allow("*")), False),
        (policy(allow("ses:*")), False),
        (policy(allow("ses:Send*")), False),  # also SendBounce, SendTemplatedEmail, ...
        (policy(allow("ses:SendRaw?mail")), False),  # any wildcard counts as more
        (policy(allow(["ses:SendRawEmail", "s3:GetObject"])), False),
        (policy(allow("ses:SendRawEmail"), allow("iam:PassRole")), False),
        (policy(allow("ses:SendBounce")), False),
        (policy(allow("ses:SendRawEmail", NotResource="arn:aws:ses:*:*:identity/x")), False),
        (policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}), False),
        (policy({"Effect": "Allow", "Resource": "*"}), False),  # no Action at all
        (policy(allow([])), False),
        (policy(allow(["ses:SendRawEmail", 7])), False),
        (policy({"Effect": "allow", "Action": "*", "Resource": "*"}), False),  # not "Deny": judged as an Allow
        ({"Statement": ["not a statement"]}, False),
        ({"Statement": "*"}, False),
    ],
)
def test_grants_only_sending_accepts_send_raw_email_and_send_email_and_nothing_more(
    document: Any, expected: bool
) -> None:
    assert grants_only_sending(document) is expected
