"""The stack's outputs, for each configuration: each secret and the function, never a secret value."""

from __future__ import annotations

import json

from tests.template.resolver import Stack
from tests.template.support import FUNCTION_ID, listed_users


def test_outputs_name_each_secret_and_the_function_and_reveal_no_secret(stack: Stack) -> None:
    secret_outputs = {name: value for name, value in stack.outputs.items() if name.startswith("SecretArn")}
    assert secret_outputs == {
        f"SecretArn{user.stack_id.removeprefix('SmtpUser')}": f"<GetAtt {user.stack_id}.Outputs.SecretArn>"
        for user in listed_users(stack)
    }
    for user in listed_users(stack):
        assert stack.nested[user.stack_id].outputs["SecretArn"] == user.secret
    assert stack.outputs["FunctionArn"] == f"<GetAtt {FUNCTION_ID}.Arn>"
    text = json.dumps([stack.outputs, *(nested.outputs for nested in stack.nested.values())])
    assert "resolve:secretsmanager" not in text
    assert "SecretString" not in text and "SecretAccessKey" not in text
