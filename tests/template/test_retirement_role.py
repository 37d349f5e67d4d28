"""The retirement function's role (SPEC §4a), for each configuration: exactly the calls it makes
(never CreateAccessKey, never a write to a secret), on the listed users, their secrets, the topic
and its log group (the KMS key: for the secrets through Secrets Manager, for the topic through SNS,
test_notifications.py); and the hourly schedule's role, which may invoke only that function."""

from __future__ import annotations

from tests.template.resolver import ACCOUNT, Stack
from tests.template.support import (
    DESCRIBE_SECRETS,
    FIND_BINDINGS,
    LOG_ACTIONS,
    REGISTRY,
    RETIRE_IAM_ACTIONS,
    RETIRE_SECRET_ACTIONS,
    RETIREMENT_ID,
    SECRETS_BY_PREFIX,
    VPC_ACTIONS,
    Configuration,
    identity_grants,
    in_order,
    listed_users,
    role_grants,
    via_secrets_manager_for_the_deployments_secrets,
    via_sns_for_the_alarm_topic,
)


def test_retirement_role_allows_exactly_the_calls_the_retirement_function_makes(
    stack: Stack, configuration: Configuration
) -> None:
    expected = (
        LOG_ACTIONS
        | RETIRE_IAM_ACTIONS
        | RETIRE_SECRET_ACTIONS
        | FIND_BINDINGS
        | DESCRIBE_SECRETS
        | {"sns:Publish"}
        # Decrypt: the secrets; GenerateDataKey and Decrypt: publishing to the encrypted topic.
        | ({"kms:Decrypt", "kms:GenerateDataKey"} if configuration.kms_key else frozenset())
        | (VPC_ACTIONS if configuration.in_vpc else frozenset())
    )
    granted = frozenset().union(*(grant.actions for grant in role_grants(stack, RETIREMENT_ID)))
    assert granted == expected
    assert not granted & {"iam:CreateAccessKey", "secretsmanager:PutSecretValue"}


def test_retirement_role_reaches_only_the_listed_users_their_secrets_the_topic_and_its_log_group(
    stack: Stack,
) -> None:
    grants = [
        (g.actions, g.resources)
        for g in role_grants(stack, RETIREMENT_ID)
        if not g.actions & ({"kms:Decrypt", "kms:GenerateDataKey"} | VPC_ACTIONS)  # KMS, EC2: tests of their own
    ]
    users = listed_users(stack)
    expected = [
        (LOG_ACTIONS, ("<GetAtt RetirementFunctionLogGroup.Arn>",)),
        *((RETIRE_IAM_ACTIONS, (user.arn,)) for user in users),
        *((RETIRE_SECRET_ACTIONS, (user.secret,)) for user in users),
        (FIND_BINDINGS, (REGISTRY, f"{REGISTRY}/*")),  # the deployment's bound secrets
        (DESCRIBE_SECRETS, (SECRETS_BY_PREFIX,)),  # metadata only: a deleted secret reads "not found"
        (frozenset({"sns:Publish"}), ("<Ref AlarmTopic>",)),
    ]
    assert in_order(grants) == in_order(expected)


def test_retirement_role_uses_the_key_only_for_the_deployments_secrets_and_the_alarm_topic(
    stack: Stack, configuration: Configuration
) -> None:
    kms = [
        (g.actions, g.resources, g.condition)
        for g in role_grants(stack, RETIREMENT_ID)
        if any(action.startswith("kms:") for action in g.actions)
    ]
    if configuration.kms_key is None:
        assert kms == []
    else:
        assert kms == [
            # Reading the secrets, through Secrets Manager.
            (frozenset({"kms:Decrypt"}), (configuration.kms_key,), via_secrets_manager_for_the_deployments_secrets()),
            # Publishing to the topic the key encrypts, through SNS (its alarms, the failure destination).
            (
                frozenset({"kms:GenerateDataKey", "kms:Decrypt"}),
                (configuration.kms_key,),
                via_sns_for_the_alarm_topic(),
            ),
        ]


def test_retirement_role_trusts_only_lambda(stack: Stack) -> None:
    trust = stack.properties("RetirementFunctionRole")["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]


def test_retirement_schedule_runs_hourly_with_a_role_that_may_invoke_only_the_retirement_function(
    stack: Stack,
) -> None:
    _, schedule = stack.only("AWS::Scheduler::Schedule")
    assert (schedule["ScheduleExpression"], schedule["State"]) == ("rate(1 hour)", "ENABLED")
    assert schedule["Target"]["Arn"] == f"<GetAtt {RETIREMENT_ID}.Arn>"
    assert schedule["Target"]["RoleArn"] == "<GetAtt RetirementScheduleRole.Arn>"
    trust = stack.properties("RetirementScheduleRole")["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "scheduler.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
        }
    ]
    grants = [g for g in identity_grants(stack) if g.source.startswith("RetirementScheduleRole/")]
    assert [(g.actions, g.resources) for g in grants] == [
        (frozenset({"lambda:InvokeFunction"}), (f"<GetAtt {RETIREMENT_ID}.Arn>",))
    ]
