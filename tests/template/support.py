"""What the template's checks share: the five configurations they run for, the calls each
function makes, the stack's grants, and the SMTP users a stack lists."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.template.resolver import ACCOUNT, REGION, STACK, Stack, as_list

FUNCTION_ID = "RotationFunction"
RETIREMENT_ID = "RetirementFunction"

KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
IDENTITY = f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/example.com"
CONSOLE_GROUP = "AWSSESSendingGroupDoNotRename"

# The AWS calls the function makes (SPEC §4), by the resource they act on.
IAM_KEY_ACTIONS = frozenset(
    {
        "iam:ListAccessKeys",
        "iam:CreateAccessKey",
        "iam:UpdateAccessKey",
        "iam:DeleteAccessKey",
    }
)
SECRET_ACTIONS = frozenset(
    {
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "secretsmanager:ListSecretVersionIds",
    }
)
KMS_ACTIONS = frozenset({"kms:Decrypt", "kms:GenerateDataKey"})
# The retirement function's calls (SPEC §4a): never CreateAccessKey, never a write to the secret.
RETIRE_IAM_ACTIONS = frozenset(
    {"iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "iam:UpdateAccessKey", "iam:DeleteAccessKey"}
)
RETIRE_SECRET_ACTIONS = frozenset({"secretsmanager:ListSecretVersionIds", "secretsmanager:GetSecretValue"})
# The binding registry (lambda_function/binding.py): one parameter per user under the stack's path.
READ_BINDING = frozenset({"ssm:GetParameter"})
FIND_BINDINGS = frozenset({"ssm:GetParametersByPath"})
REGISTRY = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/ses-smtp-rotation/{STACK}"
# The retirement run describes each bound secret, by the name prefix, so that a deleted one reads
# "not found" rather than "denied" (metadata only, never a value).
DESCRIBE_SECRETS = frozenset({"secretsmanager:DescribeSecret"})
SECRETS_BY_PREFIX = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ses-smtp/*"
LOG_ACTIONS = frozenset({"logs:CreateLogStream", "logs:PutLogEvents"})
# What Lambda needs to attach a function to its subnets, granted only when the functions are in a VPC.
DESCRIBE_NETWORK_INTERFACES = frozenset({"ec2:DescribeNetworkInterfaces"})
NETWORK_INTERFACE_ACTIONS = frozenset(
    {
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }
)
VPC_ACTIONS = DESCRIBE_NETWORK_INTERFACES | NETWORK_INTERFACE_ACTIONS


# --------------------------------------------------------------------------------------------
# The five configurations every per-configuration check runs for
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    """One way to deploy the template: parameter values that differ from the defaults."""

    name: str
    parameters: Mapping[str, str] = field(default_factory=dict)

    @property
    def kms_key(self) -> str | None:
        return self.parameters.get("KmsKeyArn") or None

    @property
    def in_vpc(self) -> bool:
        return bool(self.parameters.get("VpcSubnetIds"))


DEFAULTS = Configuration("defaults")
ADOPT_KMS_IDENTITY = Configuration(
    "adopt-user-kms-identity",
    {
        "SmtpUserNames": "",
        "AdoptedSmtpUserNames": "ses-smtp-user.20240101-120000",
        "KmsKeyArn": KMS_KEY,
        "SendingIdentityArn": IDENTITY,
        "SendingGroupName": "ses-sending-example-com",
        "NotificationEmail": "ops@example.com",
        "PreviousKeyAction": "deactivate",
        "SmtpAllowedHosts": "smtp-relay.corp.example",
        "SecretWriterArns": f"arn:aws:iam::{ACCOUNT}:role/mail-admin,arn:aws:iam::{ACCOUNT}:user/break-glass",
        "SendingFromAddresses": "*@example.com,alerts@ops.example.com",
    },
)
CONSOLE_GROUP_EXISTS = Configuration(
    "console-group-exists",
    {
        "SendingGroupExists": "true",
        "SmtpUserNames": "app-mailer",
        "SmtpUserPath": "/smtp/",
        "PreviousKeyActiveHours": "12",
        "PreviousKeyInactiveDays": "3.5",
        "MaxKeyAgeDays": "60",
    },
)
THREE_USERS = Configuration(
    "three-users-two-created-one-adopted",
    {
        "SmtpUserNames": "billing-mailer,app.alerts-prod",
        "SmtpUserPath": "/smtp/",
        "AdoptedSmtpUserNames": "ses-smtp-user.20190501-093000",
        "KmsKeyArn": KMS_KEY,
        "SecretWriterArns": f"arn:aws:iam::{ACCOUNT}:role/mail-admin",
    },
)
# What organisations require (issue 10): the functions in a VPC, a permissions boundary on every
# role and created user, more memory and a longer SMTP wait.
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
SECURITY_GROUPS = ["sg-0123456789abcdef0"]
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/org/DeveloperBoundary"
ORGANISATION = Configuration(
    "organisation-vpc-boundary-memory",
    {
        "SmtpUserNames": "billing-mailer,app-alerts",
        "AdoptedSmtpUserNames": "ses-smtp-user.20240101-120000",
        "VpcSubnetIds": ",".join(SUBNETS),
        "VpcSecurityGroupIds": ",".join(SECURITY_GROUPS),
        "PermissionsBoundaryArn": BOUNDARY,
        "FunctionMemorySize": "512",
        "SmtpAuthTimeoutSeconds": "300",
    },
)
CONFIGURATIONS = [DEFAULTS, ADOPT_KMS_IDENTITY, CONSOLE_GROUP_EXISTS, THREE_USERS, ORGANISATION]


# --------------------------------------------------------------------------------------------
# IAM policies of the stack, and the users it lists
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One Allow statement of an identity policy, where it comes from and what it allows."""

    source: str
    actions: frozenset[str]
    resources: tuple[str, ...]
    condition: Mapping[str, Any]


def _symbol(value: str, kind: str) -> str:
    """The logical ID in "<Ref X>" / "<GetAtt X.Arn>" (a reference the parent passed down)."""
    match = re.fullmatch(rf"<{kind} ([\w/]+?)(\.Arn)?>", value)
    assert match is not None, f"{value!r} is not a {kind} of this template's resource"
    return match.group(1)


def _statements(source: str, document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = as_list(document["Statement"])
    for statement in statements:
        assert "NotAction" not in statement and "NotResource" not in statement, source
        assert "NotPrincipal" not in statement, source
    return statements


def identity_grants(stack: Stack) -> list[Grant]:
    """Every Allow statement of every identity policy (roles, groups, users, standalone policies,
    and the per-user role policies of the nested stacks, named after the parent's role)."""
    documents: list[tuple[str, Mapping[str, Any]]] = []
    for logical_id, resource in stack.everything().items():
        props = resource.get("Properties", {})
        if resource["Type"] in {"AWS::IAM::Role", "AWS::IAM::Group", "AWS::IAM::User"}:
            documents += [(f"{logical_id}/{p['PolicyName']}", p["PolicyDocument"]) for p in props.get("Policies", [])]
            assert not props.get("ManagedPolicyArns"), f"{logical_id} attaches managed policies"
        elif resource["Type"] == "AWS::IAM::RolePolicy":
            documents.append((f"{_symbol(props['RoleName'], 'Ref')}/{props['PolicyName']}", props["PolicyDocument"]))
        elif resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            documents.append((logical_id, props["PolicyDocument"]))
    return [
        Grant(source, frozenset(as_list(s["Action"])), tuple(as_list(s["Resource"])), s.get("Condition", {}))
        for source, document in documents
        for s in _statements(source, document)
        if s["Effect"] == "Allow"
    ]


def secret_grants(stack: Stack, role_id: str) -> list[Grant]:
    """What the secrets' resource policies allow the role `role_id`, as grants on each secret."""
    grants = []
    for logical_id, resource in stack.everything().items():
        if resource["Type"] != "AWS::SecretsManager::ResourcePolicy":
            continue
        props = resource["Properties"]
        for statement in _statements(logical_id, props["ResourcePolicy"]):
            if statement["Effect"] != "Allow":
                continue
            assert statement["Resource"] == "*", "in a secret's resource policy, '*' is that secret"
            if statement["Principal"] == {"AWS": f"<GetAtt {role_id}.Arn>"}:
                actions = frozenset(as_list(statement["Action"]))
                grants.append(Grant(logical_id, actions, (props["SecretId"],), statement.get("Condition", {})))
    return grants


def role_grants(stack: Stack, function_id: str = FUNCTION_ID) -> list[Grant]:
    """The function's role's identity grants, and the secrets' resource-policy grants to it."""
    role = stack.properties(function_id)["Role"]
    assert role == f"<GetAtt {function_id}Role.Arn>", "the function must use its own role of this template"
    identity = [grant for grant in identity_grants(stack) if grant.source.startswith(f"{function_id}Role/")]
    return identity + secret_grants(stack, f"{function_id}Role")


@dataclass(frozen=True)
class SmtpUser:
    """One listed user, and what the resolved stacks call its user ARN and its secret."""

    name: str
    created: bool
    arn: str
    secret: str
    stack_id: str


def listed_users(stack: Stack) -> list[SmtpUser]:
    """The users the parameters list, created ones first (empty items are no user)."""
    params = stack.parameters
    users = []
    for names, created in ((params["SmtpUserNames"], True), (params["AdoptedSmtpUserNames"], False)):
        for name in (n for n in names.split(",") if n):
            stack_id = "SmtpUser" + re.sub(r"[^A-Za-z0-9]", "", name)
            path = params["SmtpUserPath"] if created else params["AdoptedSmtpUserPath"]
            arn = f"<GetAtt {stack_id}/User.Arn>" if created else f"arn:aws:iam::{ACCOUNT}:user{path}{name}"
            users.append(SmtpUser(name, created, arn, f"<Ref {stack_id}/Secret>", stack_id))
    return users


SECRET_PREFIX_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ses-smtp/"


def in_order(grants: Iterable[tuple[frozenset[str], tuple[str, ...]]]) -> list[tuple[frozenset[str], tuple[str, ...]]]:
    """(actions, resources) pairs in an order that does not depend on how each set iterates: a
    frozenset's repr does (two equal sets may list their items differently, by the hash seed)."""
    return sorted(grants, key=lambda grant: (sorted(grant[0]), grant[1]))


def via_secrets_manager_for_the_deployments_secrets() -> dict[str, Any]:
    return {
        "StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"},
        # The data keys of secrets named ses-smtp/... only; see the template for why a prefix.
        "StringLike": {"kms:EncryptionContext:SecretARN": SECRET_PREFIX_ARN + "*"},
    }


def via_sns_for_the_alarm_topic() -> dict[str, Any]:
    """A key grant for publishing to the alarm topic only: SNS asks KMS for the publisher, with the
    topic's ARN in the encryption context."""
    return {
        "StringEquals": {
            "kms:ViaService": f"sns.{REGION}.amazonaws.com",
            "kms:EncryptionContext:aws:sns:topicArn": "<Ref AlarmTopic>",
        }
    }


# --------------------------------------------------------------------------------------------
# The project's command-line tools (cfn-lint, sam)
# --------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """A command-line tool of the project's environment (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make setup` (it comes with requirements-dev.txt)")
    return found
