"""Is one action on one resource allowed by a user's identity policies? (for the local stand-ins)

    allowed(statements, "ses:SendRawEmail", "arn:aws:ses:us-east-1:123456789012:identity/example.com")

IAM's rules for identity policies, as far as the stand-ins need them: an explicit ``Deny`` wins,
else one ``Allow`` is needed, else the answer is no (implicit deny). ``Action``/``NotAction`` match
case-insensitively with ``*`` and ``?`` wildcards (``ses:*``, ``*``); ``Resource``/``NotResource``
match with the same wildcards, case-sensitively. Conditions are not evaluated: a statement with a
``Condition`` never allows, and always denies, so the stand-in is never kinder than AWS.
Permissions boundaries, SCPs and resource policies are out of scope (moto keeps none for users).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

Statement = Mapping[str, Any]


def statements_of(document: str | Mapping[str, Any]) -> list[Statement]:
    """The statements of a policy document (JSON text or parsed); one statement may stand alone."""
    parsed = json.loads(document) if isinstance(document, str) else document
    statement = parsed.get("Statement", []) if isinstance(parsed, Mapping) else []
    items = [statement] if isinstance(statement, Mapping) else list(statement)
    return [item for item in items if isinstance(item, Mapping)]


def allowed(statements: Iterable[Statement], action: str, resource: str) -> bool:
    """True when some statement allows `action` on `resource` and none denies it."""
    allow = False
    for statement in statements:
        effect = statement.get("Effect")
        if not _applies(statement, action, resource):
            continue
        if effect == "Deny":
            return False
        if effect == "Allow" and "Condition" not in statement:
            allow = True
    return allow


def _applies(statement: Statement, action: str, resource: str) -> bool:
    action_ok = _element_matches(statement, "Action", action, ignore_case=True)
    return action_ok and _element_matches(statement, "Resource", resource, ignore_case=False)


def _element_matches(statement: Statement, element: str, value: str, *, ignore_case: bool) -> bool:
    """`Action` (or `Resource`) names the value, or `NotAction` (`NotResource`) does not."""
    if element in statement:
        return _matches_any(statement[element], value, ignore_case=ignore_case)
    negated = f"Not{element}"
    return negated in statement and not _matches_any(statement[negated], value, ignore_case=ignore_case)


def _matches_any(patterns: str | Iterable[str], value: str, *, ignore_case: bool) -> bool:
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    flags = re.IGNORECASE if ignore_case else 0
    return any(re.fullmatch(_glob(pattern), value, flags) for pattern in items if isinstance(pattern, str))


def _glob(pattern: str) -> str:
    """IAM wildcards (``*``, ``?``) as a regular expression; every other character is literal."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
