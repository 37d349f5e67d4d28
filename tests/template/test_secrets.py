"""Each listed user's secret, for each configuration: bootstrapped with its user, bound to it, written
only by the rotation (its resource policy), encrypted with the KMS key when given, rotated on its
schedule by a function only Secrets Manager of this account may invoke for it."""

from __future__ import annotations

import json
from pathlib import Path

from lambda_function.settings import Settings
from tests.template.resolver import ACCOUNT, REGION, Stack, as_list
from tests.template.support import (
    DESCRIBE_SECRETS,
    FUNCTION_ID,
    KMS_ACTIONS,
    RETIREMENT_ID,
    SECRET_ACTIONS,
    SECRET_PREFIX_ARN,
    SECRETS_BY_PREFIX,
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


def test_each_secret_is_bound_to_its_user_by_its_exact_arn_in_the_registry(stack: Stack) -> None:
    users = listed_users(stack)
    paths = {stack.properties(f)["Environment"]["Variables"]["SMTP_BINDING_PATH"] for f in (FUNCTION_ID, RETIREMENT_ID)}
    (path,) = paths  # both functions read the same registry
    for user in users:
        nested = stack.nested[user.stack_id]
        binding = nested.properties("Binding")
        # Read by the functions' own code: the parameter <path><user> holds the secret's ARN (!Ref).
        assert binding["Name"] == f"{path}{user.name}"
        assert binding["Value"] == user.secret  # the secret's ARN (its Ref), exactly
        assert nested.properties("Secret")["Name"] == f"ses-smtp/{user.name}"
        assert "Binding" in nested.resources["RotationSchedule"]["DependsOn"]  # bound before the first rotation
    assert Settings.from_env({"SMTP_BINDING_PATH": path}).binding_path == path


def test_secrets_manager_actions_reach_exactly_the_listed_secrets_through_their_resource_policies(
    stack: Stack,
) -> None:
    # No identity grant but the retirement run's DescribeSecret (metadata, by name prefix): each
    # secret's own resource policy allows the roles (same account).
    identity = [g for g in identity_grants(stack) if any(a.startswith("secretsmanager:") for a in g.actions)]
    assert [(g.source, g.actions, g.resources) for g in identity] == [
        ("RetirementFunctionRole/FindOwnSecrets", DESCRIBE_SECRETS, (SECRETS_BY_PREFIX,))
    ]
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
        deny, deny_rotation, *allows = policy["ResourcePolicy"]["Statement"]
        # Every action that makes a version, moves a label, changes the key, the policy or the
        # rotation, or deletes the secret: denied but to the rotation role, the named principals
        # and CloudFormation acting for a stack.
        assert deny == {
            "Sid": "OnlyTheDeploymentChangesTheSecret",
            "Effect": "Deny",
            "Principal": "*",
            "Action": [
                "secretsmanager:PutSecretValue",
                "secretsmanager:UpdateSecret",
                "secretsmanager:UpdateSecretVersionStage",
                "secretsmanager:PutResourcePolicy",
                "secretsmanager:DeleteResourcePolicy",
                "secretsmanager:DeleteSecret",
                "secretsmanager:CancelRotateSecret",
                "secretsmanager:RotateSecret",
            ],
            "Resource": "*",
            "Condition": {
                "StringNotEquals": {"aws:PrincipalArn": ["<GetAtt RotationFunctionRole.Arn>", *listed]},
                "ForAllValues:StringNotEquals": {"aws:CalledVia": "cloudformation.amazonaws.com"},
            },
        }
        assert deny_rotation == {
            "Sid": "OnlyTheDeploymentsFunctionRotatesIt",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "secretsmanager:RotateSecret",
            "Resource": "*",
            # Denied only when the call names a function (Null false) and it is another one: with
            # "...IfExists" IAM takes a missing key as a match, denying every "rotate now".
            "Condition": {
                "Null": {"secretsmanager:RotationLambdaARN": "false"},
                "StringNotEquals": {"secretsmanager:RotationLambdaARN": f"<GetAtt {FUNCTION_ID}.Arn>"},
            },
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
            "Binding",
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


# Global condition keys the secret's policy uses (IAM User Guide, "AWS global condition context keys").
GLOBAL_KEYS = {"aws:PrincipalArn", "aws:CalledVia"}
# Action-level keys: cfn-lint's copy of the Service Authorization data lists actions and their
# resource-level keys only. secretsmanager:RotationLambdaARN is the Service Authorization
# Reference's key for RotateSecret ("Filters access by the ARN of the rotation Lambda function").
ACTION_KEYS = {"secretsmanager:RotationLambdaARN": {"rotatesecret"}}


def test_every_action_and_condition_key_of_each_secret_policy_exists_for_secrets_manager(stack: Stack) -> None:
    import cfnlint  # type: ignore[import-untyped]

    data = json.loads((Path(cfnlint.__file__).parent / "data/AdditionalSpecs/Policies.json").read_text())
    service = data["secretsmanager"]
    resource_keys = set(service["Resources"]["secret"]["ConditionKeys"])
    for user in listed_users(stack):
        _, policy = stack.nested[user.stack_id].only("AWS::SecretsManager::ResourcePolicy")
        for statement in policy["ResourcePolicy"]["Statement"]:
            actions = as_list(statement["Action"])
            for action in actions:
                prefix, name = action.split(":")
                assert prefix == "secretsmanager" and name.lower() in service["Actions"], action
                assert service["Actions"][name.lower()]["Resources"] == ["Secret"], action
            for operator in statement.get("Condition", {}).values():
                for key in operator:
                    if key in ACTION_KEYS:
                        assert {a.split(":")[1].lower() for a in actions} <= ACTION_KEYS[key], (key, actions)
                    else:
                        assert key in GLOBAL_KEYS or key in resource_keys, key


def test_the_write_boundary_by_iams_rules_rotate_now_stays_open_to_writers_only(stack: Stack) -> None:
    from tests.template.policy_eval import denied

    rotation_role = "<GetAtt RotationFunctionRole.Arn>"
    writers = [arn for arn in stack.parameters["SecretWriterArns"].split(",") if arn] or [rotation_role]
    stranger = f"arn:aws:iam::{ACCOUNT}:role/developer"
    ours = f"<GetAtt {FUNCTION_ID}.Arn>"
    other = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:elsewhere"
    for user in listed_users(stack):
        _, policy = stack.nested[user.stack_id].only("AWS::SecretsManager::ResourcePolicy")
        statements = policy["ResourcePolicy"]["Statement"]
        for writer in writers:
            # "Rotate now" (no function named) and naming the deployment's function: allowed.
            assert not denied(statements, "secretsmanager:RotateSecret", {"aws:PrincipalArn": [writer]})
            context = {"aws:PrincipalArn": [writer], "secretsmanager:RotationLambdaARN": [ours]}
            assert not denied(statements, "secretsmanager:RotateSecret", context)
            # Naming another function: denied to everyone.
            context = {"aws:PrincipalArn": [writer], "secretsmanager:RotationLambdaARN": [other]}
            assert denied(statements, "secretsmanager:RotateSecret", context)
        for action in ("RotateSecret", "PutSecretValue", "UpdateSecret", "PutResourcePolicy", "DeleteSecret"):
            assert denied(statements, f"secretsmanager:{action}", {"aws:PrincipalArn": [stranger]}), action
            via_stack = {"aws:PrincipalArn": [stranger], "aws:CalledVia": ["cloudformation.amazonaws.com"]}
            assert not denied(statements, f"secretsmanager:{action}", via_stack), action  # stack updates work
