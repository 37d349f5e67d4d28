"""SES sending permission in IAM policy documents: pure functions, no AWS calls.

The SES console's pattern (seed 000) is a group ``AWSSESSendingGroupDoNotRename`` holding a
policy ``AmazonSesSendingAccess`` that allows ``ses:SendRawEmail``; before September 2024 the
console put that policy inline on each SMTP user instead, and tagged the user
``InvokedBy=SESConsole``.

    >>> grants_sending(SENDING_POLICY_DOCUMENT)
    True
    >>> grants_sending({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    False
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

SENDING_GROUP = "AWSSESSendingGroupDoNotRename"
SENDING_POLICY = "AmazonSesSendingAccess"
SEND_ACTION = "ses:SendRawEmail"
# What a policy of the sending group may allow, and nothing else (`grants_only_sending`).
SENDING_ACTIONS = frozenset({"ses:sendrawemail", "ses:sendemail"})
CONSOLE_TAG = ("InvokedBy", "SESConsole")
SENDING_POLICY_DOCUMENT: Mapping[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": SEND_ACTION, "Resource": "*"}],
}


def as_document(document: str | Mapping[str, Any]) -> Mapping[str, Any]:
    """A policy document as boto3 returns it (decoded), or as JSON text (IAM's wire form is URL-encoded)."""
    if isinstance(document, str):
        parsed = json.loads(unquote(document) if document.startswith("%") else document)
        return parsed if isinstance(parsed, dict) else {}
    return document


def _statements(document: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    statements = document.get("Statement", [])
    for statement in [statements] if isinstance(statements, dict) else statements:
        if isinstance(statement, dict):
            yield statement


def _patterns(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]


def _matches(pattern: str, action: str) -> bool:
    """IAM action matching: case-insensitive, ``*`` any run of characters, ``?`` one character."""
    regex = re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, action.lower()) is not None


def _covers(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(_matches(p, action) for p in _patterns(statement["NotAction"]))
    return any(_matches(p, action) for p in _patterns(statement.get("Action")))


def grants_sending(document: str | Mapping[str, Any]) -> bool:
    """Whether the document allows ``ses:SendRawEmail`` (on some resource) and does not deny it.

    Resources and conditions are not evaluated: a policy scoped to one identity still grants
    sending, from that identity. A Deny of the action anywhere in the document wins.
    """
    statements = list(_statements(as_document(document)))
    allowed = any(s.get("Effect") == "Allow" and _covers(s, SEND_ACTION) for s in statements)
    denied = any(s.get("Effect") == "Deny" and _covers(s, SEND_ACTION) for s in statements)
    return allowed and not denied


def grants_sending_everywhere(document: str | Mapping[str, Any]) -> bool:
    """Whether the document allows ``ses:SendRawEmail`` on every resource (``"*"``) with no condition,
    as the console's inline policy and ``AmazonSesSendingAccess`` do, and does not deny it.

    >>> grants_sending_everywhere(SENDING_POLICY_DOCUMENT)
    True
    >>> grants_sending_everywhere({"Statement": [{"Effect": "Allow", "Action": "ses:SendRawEmail",
    ...     "Resource": "*", "Condition": {"StringEquals": {"ses:FromAddress": "app@example.com"}}}]})
    False
    """
    statements = list(_statements(as_document(document)))
    everywhere = any(
        s.get("Effect") == "Allow"
        and _covers(s, SEND_ACTION)
        and "*" in _patterns(s.get("Resource"))
        and "NotResource" not in s
        and not s.get("Condition")
        for s in statements
    )
    return everywhere and grants_sending(document)


def only_ses(document: str | Mapping[str, Any]) -> bool:
    """Whether every statement only allows SES actions: deleting it takes away nothing else."""
    statements = list(_statements(as_document(document)))
    return bool(statements) and all(
        s.get("Effect") == "Allow"
        and "NotAction" not in s
        and _patterns(s.get("Action"))
        and all(p.lower().startswith("ses:") for p in _patterns(s.get("Action")))
        for s in statements
    )


def grants_only_sending(document: str | Mapping[str, Any]) -> bool:
    """Whether the document allows nothing beyond SES sending: safe to give a sending group.

    Every statement whose ``Effect`` is not ``"Deny"`` must name its actions with ``Action`` (no
    ``NotAction``), have no ``NotResource``, and list only ``ses:SendRawEmail`` or
    ``ses:SendEmail`` (case-insensitive). A wildcard counts as more, even ``ses:Send*``, since
    it matches other actions too. Deny statements, ``Resource`` and ``Condition`` can only narrow
    what is allowed, so they are not evaluated. A document that is not a list of statement
    objects is not accepted. Whether the document allows sending at all is `grants_sending`.

    >>> grants_only_sending(SENDING_POLICY_DOCUMENT)
    True
    >>> grants_only_sending({"Statement": [{"Effect": "Allow", "Action": "ses:*", "Resource": "*"}]})
    False
    """
    statements = as_document(document).get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    return isinstance(statements, list) and all(_allows_only_sending(s) for s in statements)


def _allows_only_sending(statement: object) -> bool:
    if not isinstance(statement, dict):
        return False
    if statement.get("Effect") == "Deny":
        return True
    if "NotAction" in statement or "NotResource" in statement:
        return False
    actions = statement.get("Action")
    actions = [actions] if isinstance(actions, str) else actions
    return (
        isinstance(actions, list)
        and bool(actions)
        and all(isinstance(a, str) and a.lower() in SENDING_ACTIONS for a in actions)
    )
