"""The resolver itself (so that a bug in it cannot make the template's checks pass vacuously)."""

from __future__ import annotations

from typing import Any

from tests.template.resolver import Stack, deploy, walk
from tests.template.support import ADOPT_KMS_IDENTITY


def test_resolved_stack_has_no_intrinsic_function_left(stack: Stack) -> None:
    def is_intrinsic(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        return set(node) in ({"Ref"}, {"Condition"}) or any(str(key).startswith("Fn::") for key in node)

    resolved = [stack.everything(), stack.outputs, *(nested.outputs for nested in stack.nested.values())]
    assert [node for node in walk(resolved) if is_intrinsic(node)] == []


def test_conditional_resources_follow_their_conditions() -> None:
    defaults = deploy()
    adopted = deploy(ADOPT_KMS_IDENTITY.parameters)
    assert {"SmtpUsersessmtpuser", "SendingGroup"} <= set(defaults.resources)
    assert "SmtpUser" not in defaults.resources  # the empty adopted list's single empty item
    assert "User" in defaults.nested["SmtpUsersessmtpuser"].resources
    assert "NotificationEmailSubscription" not in defaults.resources
    assert set(adopted.nested) == {"SmtpUsersessmtpuser20240101120000"}  # no stack for the empty created list
    assert "User" not in adopted.nested["SmtpUsersessmtpuser20240101120000"].resources
    assert "NotificationEmailSubscription" in adopted.resources
