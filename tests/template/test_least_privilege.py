"""Least privilege, for each configuration: no policy grants an action on every resource or a
wildcard action, and the rotation function's role allows exactly the calls it makes, on exactly
the listed users (the retirement role: test_retirement_role.py; the secrets' own resource
policies and KMS: test_secrets.py)."""

from __future__ import annotations

from tests.template.resolver import Stack
from tests.template.support import (
    DESCRIBE_NETWORK_INTERFACES,
    FUNCTION_ID,
    IAM_KEY_ACTIONS,
    KMS_ACTIONS,
    LOG_ACTIONS,
    READ_BINDING,
    REGISTRY,
    RETIRE_IAM_ACTIONS,
    RETIRE_SECRET_ACTIONS,
    RETIREMENT_ID,
    SECRET_ACTIONS,
    SECRETS_BY_PREFIX,
    VPC_ACTIONS,
    Configuration,
    Grant,
    identity_grants,
    in_order,
    listed_users,
    role_grants,
)


def test_no_policy_grants_an_action_on_every_resource_except_unscoped_ses_sending(stack: Stack) -> None:
    unscoped_sending = stack.parameters["SendingIdentityArn"] == stack.parameters["SendingConfigurationSetArn"] == ""
    wildcard_grants = [grant for grant in identity_grants(stack) if "*" in grant.resources]
    allowed = (
        [Grant("SendingGroup/AmazonSesSendingAccess", frozenset({"ses:SendRawEmail"}), ("*",), {})]
        if unscoped_sending and stack.parameters["SendingGroupExists"] == "false"
        else []
    )
    if stack.parameters["VpcSubnetIds"]:  # EC2 authorizes DescribeNetworkInterfaces on "*" only
        allowed += [
            Grant(f"{role}/UseVpcNetworkInterfaces", DESCRIBE_NETWORK_INTERFACES, ("*",), {})
            for role in ("RotationFunctionRole", "RetirementFunctionRole")
        ]
    assert sorted(wildcard_grants, key=lambda g: g.source) == sorted(allowed, key=lambda g: g.source)


def test_no_policy_uses_wildcard_actions(stack: Stack) -> None:
    assert [(g.source, a) for g in identity_grants(stack) for a in g.actions if "*" in a] == []


def test_function_role_allows_exactly_the_calls_the_function_makes(stack: Stack, configuration: Configuration) -> None:
    expected = (
        LOG_ACTIONS
        | IAM_KEY_ACTIONS
        | SECRET_ACTIONS
        | READ_BINDING
        | (KMS_ACTIONS if configuration.kms_key else frozenset())
        | (VPC_ACTIONS if configuration.in_vpc else frozenset())
    )
    granted = frozenset().union(*(grant.actions for grant in role_grants(stack)))
    assert granted == expected


def test_function_role_trusts_only_lambda(stack: Stack) -> None:
    trust = stack.properties("RotationFunctionRole")["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]


def test_roles_reach_exactly_the_listed_users_and_secrets(stack: Stack) -> None:
    """Runs at 1 user (three configurations) and at 3 users (two created, one adopted)."""
    users = listed_users(stack)
    assert users, "every configuration lists a user"

    def reach(function_id: str) -> list[tuple[frozenset[str], tuple[str, ...]]]:
        scoped = [
            g
            for g in role_grants(stack, function_id)
            if any(a.split(":")[0] in {"iam", "secretsmanager"} for a in g.actions)
        ]
        return in_order((g.actions, g.resources) for g in scoped if g.resources != (SECRETS_BY_PREFIX,))

    assert reach(FUNCTION_ID) == in_order(
        [(IAM_KEY_ACTIONS, (u.arn,)) for u in users] + [(SECRET_ACTIONS, (u.secret,)) for u in users]
    )
    assert reach(RETIREMENT_ID) == in_order(
        [(RETIRE_IAM_ACTIONS, (u.arn,)) for u in users] + [(RETIRE_SECRET_ACTIONS, (u.secret,)) for u in users]
    )
    # The registry: one parameter per call for the rotation function, the path for the retirement run.
    assert [(g.actions, g.resources) for g in role_grants(stack, FUNCTION_ID) if g.actions == READ_BINDING] == [
        (READ_BINDING, (f"{REGISTRY}/*",))
    ]


def test_access_key_actions_are_scoped_to_exactly_the_listed_users(stack: Stack) -> None:
    iam_grants = [grant for grant in role_grants(stack) if any(a.startswith("iam:") for a in grant.actions)]
    assert sorted((grant.actions, grant.resources) for grant in iam_grants) == sorted(
        (IAM_KEY_ACTIONS, (user.arn,)) for user in listed_users(stack)
    )


def test_logs_are_written_only_to_the_function_log_group(stack: Stack) -> None:
    grants = [grant for grant in role_grants(stack) if any(a.startswith("logs:") for a in grant.actions)]
    assert [(grant.actions, grant.resources) for grant in grants] == [
        (LOG_ACTIONS, ("<GetAtt RotationFunctionLogGroup.Arn>",))
    ]
    assert stack.properties(FUNCTION_ID)["LoggingConfig"]["LogGroup"] == "<Ref RotationFunctionLogGroup>"
