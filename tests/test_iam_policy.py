"""The IAM evaluation the SES stand-in uses: Deny wins, one Allow is needed, wildcards, no kindness."""

from __future__ import annotations

from typing import Any

import pytest

from infra.iam_policy import allowed, statements_of

SEND = "ses:SendRawEmail"
IDENTITY = "arn:aws:ses:us-east-1:123456789012:identity/example.com"


def allow(action: Any = SEND, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any = SEND, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        pytest.param([], False, id="no-policy-is-implicit-deny"),
        pytest.param([allow()], True, id="allow-exact"),
        pytest.param([allow("ses:*")], True, id="allow-service-wildcard"),
        pytest.param([allow("*")], True, id="allow-everything"),
        pytest.param([allow("SES:sendrawemail")], True, id="actions-ignore-case"),
        pytest.param([allow("ses:Send*Email")], True, id="wildcard-inside"),
        pytest.param([allow(["ses:SendEmail", "ses:SendRawEmail"])], True, id="action-list"),
        pytest.param([allow("ses:SendEmail")], False, id="other-action"),
        pytest.param([allow("ses:SendRawEmai?")], True, id="question-mark"),
        pytest.param([allow("sesx:SendRawEmail")], False, id="other-service"),
        pytest.param([allow(), deny()], False, id="explicit-deny-wins"),
        pytest.param([deny("ses:*"), allow()], False, id="explicit-deny-wildcard-wins-in-any-order"),
        pytest.param([allow(resource=IDENTITY)], True, id="scoped-to-the-identity"),
        pytest.param([allow(resource="arn:aws:ses:*:123456789012:identity/*")], True, id="scoped-with-wildcards"),
        pytest.param([allow(resource=IDENTITY.replace("example.com", "other.com"))], False, id="other-identity"),
        pytest.param([allow(resource=IDENTITY.upper())], False, id="resources-are-case-sensitive"),
        pytest.param([{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}], True, id="not-action-allows"),
        pytest.param([{"Effect": "Allow", "NotAction": "ses:*", "Resource": "*"}], False, id="not-action-excludes"),
        pytest.param([allow(), {"Effect": "Deny", "Action": "*", "NotResource": IDENTITY}], True, id="not-resource"),
        pytest.param([allow(Condition={"StringEquals": {"ses:FromAddress": "a@example.com"}})], False, id="cond-allow"),
        pytest.param([allow(), deny(Condition={"Bool": {"aws:SecureTransport": "false"}})], False, id="cond-deny"),
        pytest.param([{"Effect": "Allow", "Action": SEND}], False, id="no-resource-element"),
    ],
)
def test_allowed(statements: list[dict[str, Any]], expected: bool) -> None:
    assert allowed(statements, SEND, IDENTITY) is expected


def test_statements_of_reads_json_text_and_a_lone_statement() -> None:
    document = '{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ses:*", "Resource": "*"}}'
    assert statements_of(document) == [{"Effect": "Allow", "Action": "ses:*", "Resource": "*"}]
    assert statements_of({"Statement": [allow(), "junk"]}) == [allow()]
