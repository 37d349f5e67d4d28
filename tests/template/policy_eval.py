"""The few IAM condition operators the secrets' Deny statements use, evaluated as the IAM User
Guide defines them ("Condition operators"): moto evaluates no resource policy.

- a negated operator (StringNotEquals) whose key is absent from the request is true;
- ForAllValues with an absent (or empty) key is true, else true when every value satisfies it;
- Null "false" is true when the key is present.
Conditions in one statement are ANDed; an applicable Deny wins.
"""

from __future__ import annotations

from typing import Any

from tests.template.resolver import as_list

Context = dict[str, list[str]]


def _holds(operator: str, expected: list[str], present: list[str] | None) -> bool:
    if operator == "StringNotEquals":
        return present is None or all(value not in expected for value in present[:1])
    if operator == "ForAllValues:StringNotEquals":
        return not present or all(value not in expected for value in present)
    if operator == "Null":
        return (present is None) == (expected == ["true"])
    raise AssertionError(f"operator {operator} not modelled")


def denied(statements: list[dict[str, Any]], action: str, context: Context) -> bool:
    """Whether one of the Deny statements applies to `action` in the request `context`."""
    for statement in statements:
        if statement["Effect"] != "Deny" or action not in as_list(statement["Action"]):
            continue
        conditions = statement.get("Condition", {})
        if all(
            _holds(operator, [str(v) for v in as_list(expected)], context.get(key))
            for operator, keys in conditions.items()
            for key, expected in keys.items()
        ):
            return True
    return False
