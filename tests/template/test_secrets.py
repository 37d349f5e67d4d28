"""Each listed user's secret, for each configuration: bootstrapped with its user, bound to it, written
only by the rotation (its resource policy), encrypted with the KMS key when given, rotated on its
schedule by a function only Secrets Manager of this account may invoke for it."""

from __future__ import annotations

import json

from lambda_function.settings import Settings
from tests.template.resolver import ACCOUNT, REGION, Stack, as_list
from tests.template.support import (
    FUNCTION_ID,
    KMS_ACTIONS,
    LIST_SECRETS,
    RETIREMENT_ID,
    SECRET_ACTIONS,
    SECRET_PREFIX_ARN,
    Configuration,
    identity_grants,
    listed_users,
    role_grants,
    secret_grants,
    via_secrets_manager_for_the_deployments_secrets,
    via_sns_for_the_alarm_topic,
)


def test_each_secret_is_bootstrapped_with_its_user_name_and_region(stack: Stack) -> None:
    for user in listed_users(stack):
        secret = stack.nested[user.stack_id].properties("Secret")
        assert json.loads(secret["SecretString"]) == {"iam_user_name": user.name, "region": REGION}
        assert secret["Name"] == f"ses-smtp/{user.name}"


def test_each_secret_is_bound_to_its_user(stack: Stack) -> None:
    users = listed_users(stack)
    for function_id in (FUNCTION_ID, RETIREMENT_ID):
        env = stack.properties(function_id)["Environment"]["Variables"]
        # Read by the functions' own settings code, as Lambda would hand it the variable.
        settings = Settings.from_env({"SMTP_BOUND_USERS": env["SMTP_BOUND_USERS"]})
        assert settings.bound_users == {u.name for u in users}
        for user in users:
            secret = stack.nested[user.stack_id].properties("Secret")
            arn = f"{SECRET_PREFIX_ARN}{user.name}-AbCdEf"  # what Secrets Manager hands the function
            assert settings.bound_user(arn, secret["Name"]) == user.name
            assert json.loads(secret["SecretString"])["iam_user_name"] == user.name
        assert settings.bound_user(f"{SECRET_PREFIX_ARN}unlisted-AbCdEf", "ses-smtp/unlisted") is None


def test_secrets_manager_actions_reach_exactly_the_listed_secrets_through_their_resource_policies(
    stack: Stack,
) -> None:
    # No identity grant: each secret's own resource policy allows the role (same account).
    identity = [g for g in identity_grants(stack) if any(a.startswith("secretsmanager:") for a in g.actions)]
    assert [(g.source, g.actions) for g in identity] == [("RetirementFunctionRole/FindOwnSecrets", LIST_SECRETS)]
    grants = secret_grants(stack, "RotationFunctionRole")
    assert sorted((g.actions, g.resources) for g in grants) == sorted(
        (SECRET_ACTIONS, (user.secret,)) for user in listed_users(stack)
    )


def test_only_the_rotation_role_and_listed_principals_may_write_each_secret(stack: Stack) -> None:
    listed = [arn for arn in stack.parameters["SecretWriterArns"].split(",") if arn]
    for user in listed_users(stack):
        _, policy = stack.nested[user.stack_id].only("AWS::SecretsManager::ResourcePolicy")
        assert policy["SecretId"] == user.secret
        assert policy["BlockPublicPolicy"] is True
        deny, *allows = policy["ResourcePolicy"]["Statement"]
        assert deny == {
            "Sid": "OnlyTheRotationWritesTheSecret",
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"],
            "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:PrincipalArn": ["<GetAtt RotationFunctionRole.Arn>", *listed]}},
        }
        # The Allows name the deployment's two roles only (their actions: the role tests above).
        assert sorted(a["Principal"]["AWS"] for a in allows) == [
            "<GetAtt RetirementFunctionRole.Arn>",
            "<GetAtt RotationFunctionRole.Arn>",
        ]
        assert all(a["Effect"] == "Allow" and "Condition" not in a for a in allows)


def test_kms_is_allowed_only_with_a_key_and_only_through_secrets_manager(
    stack: Stack, configuration: Configuration
) -> None:
    kms_grants = [grant for grant in role_grants(stack) if any(a.startswith("kms:") for a in grant.actions)]
    # Only the rotation role may encrypt a secret: any other data key is the alarm topic's, through SNS.
    others = [g for g in identity_grants(stack) if "kms:GenerateDataKey" in g.actions and g not in kms_grants]
    assert [(g.source, g.condition) for g in others] == (
        [("RetirementFunctionRole/PublishToEncryptedTopic", via_sns_for_the_alarm_topic())]
        if configuration.kms_key
        else []
    )
    secrets = [stack.nested[user.stack_id].properties("Secret") for user in listed_users(stack)]
    if configuration.kms_key is None:
        assert kms_grants == []
        assert all("KmsKeyId" not in secret for secret in secrets)
    else:
        assert [(g.actions, g.resources, g.condition) for g in kms_grants] == [
            (KMS_ACTIONS, (configuration.kms_key,), via_secrets_manager_for_the_deployments_secrets())
        ]
        assert all(secret["KmsKeyId"] == configuration.kms_key for secret in secrets)
    # The encryption-context prefix covers every secret of the deployment (their names).
    assert all(secret["Name"].startswith("ses-smtp/") for secret in secrets)


def test_invoke_permission_is_for_secrets_manager_of_this_account_and_the_deployments_secret_names(
    stack: Stack,
) -> None:
    permissions = [r["Properties"] for r in stack.everything().values() if r["Type"] == "AWS::Lambda::Permission"]
    assert permissions == [
        {
            "FunctionName": f"<GetAtt {FUNCTION_ID}.Arn>",
            "Action": "lambda:InvokeFunction",
            "Principal": "secretsmanager.amazonaws.com",
            "SourceAccount": ACCOUNT,
            "SourceArn": SECRET_PREFIX_ARN + "*",
        }
    ]


def test_each_rotation_schedule_waits_for_the_invoke_permission_and_its_grants(stack: Stack) -> None:
    (permission_id,) = stack.of_type("AWS::Lambda::Permission")
    for user in listed_users(stack):
        assert permission_id in as_list(stack.resources[user.stack_id]["DependsOn"])
        nested = stack.nested[user.stack_id]
        schedule_id, schedule = nested.only("AWS::SecretsManager::RotationSchedule")
        assert set(as_list(nested.resources[schedule_id]["DependsOn"])) == {
            "RotationAccessKeysPolicy",
            "SecretPolicy",
            "SendingGroupMembership",
        }
        assert nested.properties("SendingGroupMembership")["Users"] == [
            f"<Ref {user.stack_id}/User>" if user.created else user.name
        ]
        assert schedule["SecretId"] == user.secret
        assert schedule["RotationLambdaARN"] == f"<GetAtt {FUNCTION_ID}.Arn>"
        assert schedule["RotateImmediatelyOnUpdate"] is True
        assert schedule["RotationRules"] == {
            "ScheduleExpression": stack.parameters["RotationScheduleExpression"],
            "Duration": stack.parameters["RotationWindow"],
        }
