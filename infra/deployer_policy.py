"""The IAM policy a deployer needs for `sam deploy` of template.yaml: derived, least privilege.

What each resource can need comes from CloudFormation's resource provider schemas (shipped with
cfn-lint): the permissions of each type's create, read, update and delete handlers. Those lists
cover every property a type supports, so a resource keeps only what the template can ask of it:

- a retained resource (DeletionPolicy and UpdateReplacePolicy Retain) is never deleted by
  CloudFormation: its delete handler's own permissions go;
- a permission that serves only properties the template never writes goes (``UNNEEDED``: a small
  table, each entry with its reason);
- an action that acts only on kinds of resource the deployment has none of goes (a Lambda layer,
  a code-signing configuration, a KMS key when none is given);
- a few are withheld on purpose (``WITHHELD``), whatever the handlers list.

What is left is granted on the ARNs of this deployment's own resources (infra/deployer_resources.py)
wherever the Service Authorization data (cfn-lint's ``data/AdditionalSpecs/Policies.json``) lists a
resource type for the action, on "*" only where it lists none. ``iam:PassRole`` names the stack's
roles and the service each is passed to; a KMS key is used only through the service that needs it;
when the deployment sets a permissions boundary, creating or widening a role or user requires it.
Around the resources: what `sam deploy` itself calls (change sets of this stack, the template's
transforms, SAM CLI's managed artifacts bucket), on those only.

It writes three files: deployer-policy.json (the deployer deploys with its own permissions), and
for the recommended route, `sam deploy --role-arn` with a CloudFormation service role,
deployer-caller-policy.json (the caller: `sam deploy`'s own calls, passing the role) and
deployer-service-role-policy.json (the role: what the resources need).

    .venv/bin/python -m infra.deployer_policy              # rewrite them for samconfig.toml's deployment
    .venv/bin/python -m infra.deployer_policy --check      # exit 1 when one is stale
    .venv/bin/python -m infra.deployer_policy --stack-name prod-mail --account 123456789012 \\
        --region eu-west-1 --parameter-overrides SmtpUserNames=app,billing --output-dir /tmp/prod-mail
"""

from __future__ import annotations

import argparse
import functools
import glob
import json
import logging
import os
import re
import shlex
import sys
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from unittest import mock

import cfnlint  # type: ignore[import-untyped]
from samcli.cli.global_config import GlobalConfig  # type: ignore[import-untyped]
from samcli.lib.bootstrap import bootstrap  # type: ignore[import-untyped]
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

from infra.deployer_resources import (
    NAMING,
    REPO,
    SAM_MANAGED_BUCKET,
    TEMPLATE,
    DeploymentError,
    Resource,
    Target,
    deployment,
)

POLICY = REPO / "deployer-policy.json"
# The service-role route: the caller's policy, and the policy of the CloudFormation service role.
CALLER_POLICY = REPO / "deployer-caller-policy.json"
SERVICE_ROLE_POLICY = REPO / "deployer-service-role-policy.json"
CLOUDFORMATION = "cloudformation.amazonaws.com"
SAMCONFIG = REPO / "samconfig.toml"
HANDLERS = ("create", "read", "update", "delete")
# Types whose schema lists no handler permissions (CloudFormation's older, non-registry types).
LEGACY_PERMISSIONS = {
    "AWS::IAM::UserToGroupAddition": {"iam:AddUserToGroup", "iam:RemoveUserFromGroup", "iam:GetGroup"},
    "AWS::Lambda::Permission": {"lambda:AddPermission", "lambda:RemovePermission", "lambda:GetPolicy"},
    "AWS::SecretsManager::RotationSchedule": {
        "secretsmanager:RotateSecret",
        "secretsmanager:CancelRotateSecret",
        "secretsmanager:DescribeSecret",
        "lambda:InvokeFunction",
    },
}
# What `sam deploy` calls itself, around the resources (samcli/lib/deploy/deployer.py,
# samcli/lib/utils/managed_cloudformation_stack.py), always with a StackName: change sets for the
# stack and for the managed stack, their waiters (DescribeChangeSet, DescribeStacks), events, and
# with `--on-failure DELETE` RollbackStack then DeleteStack. (CreateStack and UpdateStack there
# serve `sam sync` and `sam pipeline bootstrap`.)
SAM_DEPLOY = {
    "cloudformation:CreateChangeSet",
    "cloudformation:DescribeChangeSet",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "cloudformation:GetTemplateSummary",
    "cloudformation:RollbackStack",
    "cloudformation:DeleteStack",
}
SAM_MANAGED_STACK = "aws-sam-cli-managed-default"
# Uploading the artifacts (samcli/lib/package/s3_uploader.py: HeadObject, then PutObject through
# boto3's transfer manager). HeadObject is authorized as s3:GetObject; ListBucket makes a missing
# object a 404 rather than a 403. The managed bucket encrypts with the AWS managed key aws/s3,
# whose key policy lets this account's principals use it through S3: no KMS permission needed.
# CloudFormation reads the nested stacks' templates from there with the deployer's permissions.
SAM_ARTIFACTS = {"s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}
# An IAM action: a service prefix, a colon, an action name (letters and digits, e.g. ec2:AssignIpv6Addresses).
IAM_ACTION = re.compile(r"[a-z0-9-]+:[A-Za-z][A-Za-z0-9]*")


@dataclass(frozen=True)
class Unneeded:
    """Handler permissions of `type` that serve only `properties`: unneeded while the template
    writes none of them (a property path, e.g. "Code/S3ObjectVersion"; "*" for a list's items)."""

    type: str
    properties: tuple[str, ...]
    actions: frozenset[str]
    why: str


UNNEEDED = [
    Unneeded(
        "AWS::IAM::User",
        ("LoginProfile",),
        frozenset({"iam:CreateLoginProfile", "iam:UpdateLoginProfile", "iam:DeleteLoginProfile"}),
        "the SMTP users never get a console password",
    ),
    Unneeded(
        "AWS::IAM::User",
        ("ManagedPolicyArns",),
        frozenset({"iam:AttachUserPolicy", "iam:DetachUserPolicy"}),
        "no managed policy is attached to a user (sending is granted by the group)",
    ),
    Unneeded(
        "AWS::IAM::User",
        ("Policies",),
        frozenset({"iam:PutUserPolicy", "iam:DeleteUserPolicy"}),
        "no inline policy on a user (sending is granted by the group)",
    ),
    Unneeded(
        "AWS::IAM::User",
        ("Groups",),
        frozenset({"iam:AddUserToGroup", "iam:RemoveUserFromGroup"}),
        "group membership is its own resource (AWS::IAM::UserToGroupAddition), which is granted it",
    ),
    Unneeded(
        "AWS::IAM::Role",
        ("ManagedPolicyArns",),
        frozenset({"iam:AttachRolePolicy"}),
        "the roles hold inline policies only (DetachRolePolicy stays: deleting a role detaches what it has)",
    ),
    Unneeded(
        "AWS::IAM::Group",
        ("ManagedPolicyArns",),
        frozenset({"iam:AttachGroupPolicy", "iam:DetachGroupPolicy"}),
        "the sending group holds an inline policy only",
    ),
    Unneeded(
        "AWS::Lambda::Function",
        ("KmsKeyArn", "Code/SourceKMSKeyArn"),
        frozenset({"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"}),
        "the functions' environment and code are not encrypted with a customer managed key",
    ),
    Unneeded(
        "AWS::Lambda::Function",
        ("CodeSigningConfigArn",),
        frozenset({"lambda:PutFunctionCodeSigningConfig", "lambda:DeleteFunctionCodeSigningConfig"}),
        "no code-signing configuration",
    ),
    Unneeded(
        "AWS::Lambda::Function",
        ("ReservedConcurrentExecutions",),
        frozenset({"lambda:PutFunctionConcurrency", "lambda:DeleteFunctionConcurrency"}),
        "no reserved concurrency",
    ),
    Unneeded(
        "AWS::Lambda::Function",
        ("RuntimeManagementConfig",),
        frozenset({"lambda:PutRuntimeManagementConfig"}),
        "runtime updates stay automatic (the default)",
    ),
    Unneeded(
        "AWS::Lambda::Function",
        ("RecursiveLoop",),
        frozenset({"lambda:PutFunctionRecursionConfig"}),
        "recursive-loop detection stays at its default",
    ),
    Unneeded(
        "AWS::Lambda::Function",
        ("FunctionScalingConfig",),
        frozenset({"lambda:PutFunctionScalingConfig"}),
        "no scaling configuration",
    ),
    Unneeded(
        "AWS::Lambda::Function",
        ("Code/S3ObjectVersion",),
        frozenset({"s3:GetObjectVersion"}),
        "the code is read by key, not by object version",
    ),
    Unneeded(
        "AWS::Lambda::Function",
        ("VpcConfig",),
        frozenset(
            {"ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeNetworkInterfaces"}
        ),
        "the functions run outside a VPC",
    ),
    Unneeded(
        "AWS::Logs::LogGroup",
        ("KmsKeyId",),
        frozenset({"logs:AssociateKmsKey", "logs:DisassociateKmsKey"}),
        "the log groups are not encrypted with a customer managed key",
    ),
    Unneeded(
        "AWS::Logs::LogGroup",
        ("ResourcePolicyDocument",),
        frozenset({"logs:PutResourcePolicy", "logs:DeleteResourcePolicy"}),
        "no log resource policy (these act on every log group of the account)",
    ),
    Unneeded(
        "AWS::Logs::LogGroup",
        ("FieldIndexPolicies",),
        frozenset({"logs:PutIndexPolicy", "logs:DeleteIndexPolicy"}),
        "no field index policy (these act on every log group of the account)",
    ),
    Unneeded(
        "AWS::Logs::LogGroup",
        ("DataProtectionPolicy",),
        frozenset({"logs:PutDataProtectionPolicy"}),
        "no data protection policy",
    ),
    Unneeded(
        "AWS::Logs::LogGroup",
        ("LogGroupClass",),
        frozenset({"logs:CreateLogDelivery"}),
        "vended-log delivery is for the DELIVERY log class; the log groups are STANDARD (the default)",
    ),
    Unneeded(
        "AWS::Logs::LogGroup",
        ("BearerTokenAuthenticationEnabled",),
        frozenset({"logs:PutBearerTokenAuthentication"}),
        "no bearer-token ingestion",
    ),
    Unneeded(
        "AWS::Logs::LogGroup",
        ("DeletionProtectionEnabled",),
        frozenset({"logs:PutLogGroupDeletionProtection"}),
        "no deletion protection",
    ),
    Unneeded(
        "AWS::SNS::Topic",
        ("DataProtectionPolicy",),
        frozenset({"sns:PutDataProtectionPolicy"}),
        "no data protection policy",
    ),
    Unneeded(
        "AWS::SNS::Topic",
        ("DeliveryStatusLogging",),
        frozenset({"iam:PassRole", "iam:GetRole"}),
        "no delivery-status logging role",
    ),
    Unneeded(
        "AWS::SNS::Subscription",
        ("SubscriptionRoleArn",),
        frozenset({"iam:PassRole", "iam:GetRole"}),
        "no Firehose subscription role",
    ),
    Unneeded(
        "AWS::Events::Rule",
        ("RoleArn", "Targets/*/RoleArn"),
        frozenset({"iam:PassRole"}),
        "the rule and its target (the SNS topic, through its topic policy) take no role",
    ),
    Unneeded(
        "AWS::SecretsManager::Secret",
        ("GenerateSecretString",),
        frozenset({"secretsmanager:GetRandomPassword"}),
        "the secret starts from the template's document, not a generated password",
    ),
    Unneeded(
        "AWS::SecretsManager::Secret",
        ("ReplicaRegions",),
        frozenset({"secretsmanager:ReplicateSecretToRegions", "secretsmanager:RemoveRegionsFromReplication"}),
        "the secret is not replicated",
    ),
    Unneeded(
        "AWS::SecretsManager::RotationSchedule",
        ("HostedRotationLambda", "ExternalSecretRotationRoleArn"),
        frozenset({"iam:PassRole"}),
        "rotation runs this deployment's own function, not a hosted one or an external role",
    ),
]
# Listed by a handler, withheld all the same.
WITHHELD = {
    ("AWS::SecretsManager::Secret", "secretsmanager:GetSecretValue"): (
        "reads the SMTP credentials; SecretString is write-only in the schema, so nothing CloudFormation "
        "reports comes from it, and no deployer needs the password"
    ),
}
# Permissions a resource needs that no handler lists: Secrets Manager encrypts a new secret's value
# with the customer managed key on behalf of whoever creates it (Secrets Manager User Guide,
# "Permissions for the KMS key": kms:GenerateDataKey and kms:Decrypt).
ADDED = {("AWS::SecretsManager::Secret", "KmsKeyId"): frozenset({"kms:GenerateDataKey", "kms:Decrypt"})}
# Actions whose request or target carries iam:PermissionsBoundary and could widen a role or user
# (Service Authorization Reference, IAM): with a boundary, only with that boundary.
BOUNDED = frozenset(
    {
        "iam:CreateRole",
        "iam:CreateUser",
        "iam:PutRolePolicy",
        "iam:PutUserPolicy",
        "iam:AttachRolePolicy",
        "iam:AttachUserPolicy",
        "iam:PutRolePermissionsBoundary",
        "iam:PutUserPermissionsBoundary",
        "iam:UpdateAssumeRolePolicy",
    }
)
UNBOUNDING = frozenset({"iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary"})


@dataclass(frozen=True)
class Grant:
    action: str
    resource_type: str  # Service Authorization resource type, "" for "*"
    arn: str
    condition: str  # JSON of the IAM condition, "" for none
    owner: str = ""  # logical ID of the deployment's resource the ARN names, "" for another resource


@dataclass(frozen=True)
class Pruned:
    type: str
    action: str
    why: str


# ----------------------------------------------------------------------------------------------
# The data: resource provider schemas and Service Authorization data, both shipped with cfn-lint
# ----------------------------------------------------------------------------------------------


@functools.cache
def handler_permissions() -> dict[str, dict[str, frozenset[str]]]:
    """Per resource type, per handler (create, read, update, delete): the permissions it lists."""
    found: dict[str, dict[str, frozenset[str]]] = {}
    schemas = os.path.join(os.path.dirname(cfnlint.__file__), "data", "schemas", "resources", "*.json")
    for path in glob.glob(schemas):
        with open(path) as file:
            schema = json.load(file)
        handlers = schema.get("handlers", {})
        listed = {h: frozenset(handlers.get(h, {}).get("permissions", [])) for h in HANDLERS}
        if any(listed.values()):
            found[schema["typeName"]] = listed
    for resource_type, permissions in LEGACY_PERMISSIONS.items():
        found.setdefault(resource_type, {h: frozenset(permissions) for h in HANDLERS})
    return found


@functools.cache
def service_authorization() -> dict[str, Any]:
    path = os.path.join(os.path.dirname(cfnlint.__file__), "data", "AdditionalSpecs", "Policies.json")
    with open(path) as file:
        data: dict[str, Any] = json.load(file)
    return data


def acts_on(action: str) -> tuple[str, ...] | None:
    """The resource types ("<service>:<type>") `action` can be scoped to; () = only "*"; None =
    not in the Service Authorization data."""
    service, name = action.split(":")
    entry = service_authorization().get(service, {}).get("Actions", {}).get(name.lower())
    if entry is None:
        return None
    return tuple(f"{service}:{resource.lower()}" for resource in entry.get("Resources", []))


# ----------------------------------------------------------------------------------------------
# Deciding: what each resource needs, on what
# ----------------------------------------------------------------------------------------------


def needed(resources: list[Resource], route_roles: Iterable[str] = ()) -> tuple[list[Grant], list[Pruned]]:
    """The grants `resources` need, and each handler permission left out with its reason."""
    present = {resource_type for resource in resources for resource_type in resource.arns}
    owners = {arn: re.sub(r"[^A-Za-z0-9]", "", resource.path) for resource in resources for arn in resource.own}
    grants: list[Grant] = []
    pruned: list[Pruned] = []
    for resource in resources:
        handlers = handler_permissions().get(resource.type)
        if handlers is None:
            raise DeploymentError(f"No permissions known for {resource.type}: add it to LEGACY_PERMISSIONS.")
        actions = set().union(*(handlers[h] for h in HANDLERS if h != "delete" or not resource.retained))
        if resource.retained:
            delete_only = handlers["delete"] - actions
            pruned += [Pruned(resource.type, a, "retained: CloudFormation never deletes it") for a in delete_only]
        for (of_type, prop), added in ADDED.items():
            if of_type == resource.type and _writes(resource, (prop,)):
                actions |= added
        for action in sorted(actions):
            why = _why_not(resource, action)
            if why:
                pruned.append(Pruned(resource.type, action, why))
                continue
            # An action newer than the Service Authorization data: on the resource itself only.
            scopes = acts_on(action)
            if scopes is None:
                scopes = (NAMING[resource.type].resource_type,)
            if not scopes:
                grants.append(Grant(action, "", "*", ""))
                continue
            targets = [(t, arn) for t in scopes for arn in resource.arns.get(t, ())]
            if not targets:
                if present.intersection(scopes):
                    raise DeploymentError(
                        f"{resource.path} ({resource.type}): its handlers call {action} on a "
                        f"{' or '.join(scopes)}, and none of its properties is known to name one: add the "
                        "property to REFERENCES (infra/deployer_resources.py) or the action to UNNEEDED"
                    )
                pruned.append(
                    Pruned(resource.type, action, f"acts on a {' or '.join(scopes)}: the deployment has none")
                )
                continue
            for resource_type, arn in targets:
                condition = resource.conditions.get(resource_type, {})
                written = json.dumps(condition, sort_keys=True) if condition else ""
                grants.append(Grant(action, resource_type, arn, written, owners.get(arn, "")))
    return _bounded(resources, grants, pruned)


def _why_not(resource: Resource, action: str) -> str:
    if not IAM_ACTION.fullmatch(action):
        return "not an IAM action (a log event name): IAM would refuse the policy"
    if acts_on(action) is None and not resource.own:
        return "unknown to the Service Authorization data, and the resource has no ARN of its own to scope it to"
    for entry in UNNEEDED:
        if entry.type == resource.type and action in entry.actions and not _writes(resource, entry.properties):
            return f"the template writes no {' or '.join(entry.properties)}: {entry.why}"
    if (resource.type, action) == ("AWS::CloudFormation::Stack", "iam:PassRole") and "iam:role" not in resource.arns:
        return "passes the parent stack's service role on to a nested stack; without a service role there is none"
    return WITHHELD.get((resource.type, action), "")


def _writes(resource: Resource, properties: Iterable[str]) -> bool:
    return any(path == p or path.startswith(f"{p}/") for p in properties for path in resource.written)


def _bounded(resources: list[Resource], grants: list[Grant], pruned: list[Pruned]) -> tuple[list[Grant], list[Pruned]]:
    """With a permissions boundary on the stack's roles and users: widening one needs the boundary,
    removing the boundary is not granted."""
    boundaries = {r.permissions_boundary for r in resources if r.type in ("AWS::IAM::Role", "AWS::IAM::User")}
    if boundaries in (set(), {None}):
        return grants, pruned
    if len(boundaries) != 1 or None in boundaries:
        raise DeploymentError(f"the stack's roles and users have different permissions boundaries: {boundaries}")
    (boundary,) = boundaries
    condition = json.dumps({"StringEquals": {"iam:PermissionsBoundary": boundary}}, sort_keys=True)
    kept: list[Grant] = []
    for grant in grants:
        if grant.action in UNBOUNDING:
            owner = "AWS::IAM::User" if "User" in grant.action else "AWS::IAM::Role"
            pruned.append(Pruned(owner, grant.action, "would remove the permissions boundary the stack sets"))
        elif grant.action in BOUNDED:
            kept.append(Grant(grant.action, grant.resource_type, grant.arn, condition, grant.owner))
        else:
            kept.append(grant)
    return kept, sorted(set(pruned), key=lambda p: (p.type, p.action))


# ----------------------------------------------------------------------------------------------
# The policy document
# ----------------------------------------------------------------------------------------------


def policy(target: Target | None = None, template_path: Path = TEMPLATE) -> dict[str, Any]:
    """The deployer's policy when it deploys with its own permissions."""
    target = target or samconfig_target()
    grants, _ = needed(deployment(target, template_path))
    return _document(sam_statements(target, template_path) + statements(grants))


def service_role_policies(
    target: Target | None = None, template_path: Path = TEMPLATE
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The service-role route (`sam deploy --role-arn`): the caller's policy (`sam deploy`'s own calls
    and passing the role to CloudFormation) and the service role's (what the resources need,
    and passing itself on to the nested stacks)."""
    target = target or samconfig_target()
    role = service_role_arn(target)
    resources = [
        replace(r, arns={**r.arns, "iam:role": (role,)}, conditions={"iam:role": _passed_to(CLOUDFORMATION)})
        if r.type == "AWS::CloudFormation::Stack"
        else r
        for r in deployment(target, template_path)
    ]
    grants, _ = needed(resources)
    pass_role = {
        "Sid": "PassTheServiceRoleToCloudFormation",
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": role,
        "Condition": _passed_to(CLOUDFORMATION),
    }
    caller = [*sam_statements(target, template_path), pass_role]
    return _document(caller), _document(statements(grants))


def service_role_arn(target: Target) -> str:
    return f"arn:{target.partition}:iam::{target.account}:role/{target.stack_name}-cloudformation"


def _passed_to(service: str) -> dict[str, Any]:
    return {"StringEquals": {"iam:PassedToService": service}}


def _document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def pruned(target: Target | None = None, template_path: Path = TEMPLATE) -> list[Pruned]:
    """The handler permissions left out for `target`, each with its reason."""
    _, left_out = needed(deployment(target or samconfig_target(), template_path))
    return sorted(set(left_out), key=lambda p: (p.type, p.action))


def statements(grants: Iterable[Grant]) -> list[dict[str, Any]]:
    """One statement per set of resources and condition, its actions together."""
    by_action: dict[tuple[str, str], set[tuple[str, str, str]]] = defaultdict(set)
    for grant in grants:
        by_action[(grant.action, grant.condition)].add((grant.resource_type, grant.arn, grant.owner))
    by_scope: dict[tuple[frozenset[tuple[str, str, str]], str], set[str]] = defaultdict(set)
    for (action, condition), targets in by_action.items():
        by_scope[(frozenset(targets), condition)].add(action)
    # A kind of resource in several statements: each says whose they are.
    plain = [_sid(sorted({t for t, _, _ in scope}), [], condition) for scope, condition in by_scope]
    found = []
    for (scope, condition), actions in by_scope.items():
        types = sorted({t for t, _, _ in scope})
        owners = sorted({o for _, _, o in scope}) if plain.count(_sid(types, [], condition)) > 1 else []
        arns = sorted({arn for _, arn, _ in scope})
        statement: dict[str, Any] = {
            "Sid": _sid(types, owners, condition),
            "Effect": "Allow",
            "Action": sorted(actions),
            "Resource": arns[0] if len(arns) == 1 else arns,
        }
        if condition:
            statement["Condition"] = json.loads(condition)
        found.append(statement)
    return sorted(found, key=lambda s: (s["Sid"], s["Action"]))


def _sid(resource_types: list[str], owners: list[str], condition: str) -> str:
    words = [w for t in resource_types for w in re.split(r"[:\- ]", t) if w] or ["NoResourceLevelPermissions"]
    name = "".join(w[:1].upper() + w[1:] for w in words + owners)
    if "PassedToService" in condition:
        name += "PassedTo" + json.loads(condition)["StringEquals"]["iam:PassedToService"].split(".")[0].title()
    elif "ViaService" in condition:
        name += "Via" + json.loads(condition)["StringLike"]["kms:ViaService"].split(".")[0].title()
    elif "PermissionsBoundary" in condition:
        name += "WithPermissionsBoundary"
    return name


def sam_statements(target: Target, template_path: Path = TEMPLATE) -> list[dict[str, Any]]:
    """What `sam deploy` calls itself: change sets of this stack and of SAM CLI's managed stack,
    the template's transforms, the artifacts bucket (and its creation, the first time)."""
    transforms = as_list(yaml_parse(template_path.read_text()).get("Transform", []))
    transforms += [t for t in as_list(managed_stack_template().get("Transform", [])) if t not in transforms]
    stack = f"arn:{target.partition}:cloudformation:{target.region}:{target.account}:stack"
    bucket = f"arn:{target.partition}:s3:::{SAM_MANAGED_BUCKET}"
    return [
        {
            "Sid": "SamDeploy",
            "Effect": "Allow",
            "Action": sorted(SAM_DEPLOY),
            "Resource": [f"{stack}/{target.stack_name}/*", f"{stack}/{SAM_MANAGED_STACK}/*"],
        },
        {
            "Sid": "UseTheTemplatesTransforms",
            "Effect": "Allow",
            "Action": "cloudformation:CreateChangeSet",
            "Resource": [
                f"arn:{target.partition}:cloudformation:*:aws:transform/{t.split('::')[1]}" for t in transforms
            ],
        },
        {
            "Sid": "SamArtifactsBucket",
            "Effect": "Allow",
            "Action": sorted(SAM_ARTIFACTS),
            "Resource": [bucket, f"{bucket}/*"],
        },
        {
            # The first deploy in an account and region (resolve_s3): SAM CLI's managed stack
            # creates the bucket (versioning, encryption, public access block, tags, policy).
            "Sid": "SamManagedArtifactsBucketStack",
            "Effect": "Allow",
            "Action": managed_bucket_actions(),
            "Resource": bucket,
        },
    ]


def managed_stack_template() -> dict[str, Any]:
    """SAM CLI's template of its managed stack aws-sam-cli-managed-default (resolve_s3)."""
    # It carries SAM CLI's installation ID, which GlobalConfig would otherwise create and save in
    # ~/.aws-sam: not needed here.
    with mock.patch.object(GlobalConfig, "installation_id", None):
        template: dict[str, Any] = json.loads(bootstrap._get_stack_template())
    return template


def managed_stack_types() -> set[str]:
    """The resource types of SAM CLI's managed stack."""
    return {str(resource["Type"]) for resource in managed_stack_template()["Resources"].values()}


def managed_bucket_actions() -> list[str]:
    """What CloudFormation's handlers of the managed stack's types call on its bucket (S3 only: the
    grant names the bucket, which no other service's action applies to)."""
    return sorted(
        {
            p
            for t in managed_stack_types()
            for permissions in handler_permissions()[t].values()
            for p in permissions
            if p.startswith("s3:") and IAM_ACTION.fullmatch(p)
        }
    )


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def actions_of(document: Mapping[str, Any]) -> set[str]:
    """Every action a policy document grants."""
    return {a for s in document["Statement"] for a in as_list(s["Action"])}


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------


def samconfig_target(path: Path = SAMCONFIG) -> Target:
    """The deployment samconfig.toml describes: its stack name, region and parameter overrides
    (what `sam deploy --guided` saves), else the template's defaults."""
    config = tomllib.loads(path.read_text()).get("default", {})
    settings = {**config.get("global", {}).get("parameters", {}), **config.get("deploy", {}).get("parameters", {})}
    overrides = settings.get("parameter_overrides", [])
    return Target(
        stack_name=settings["stack_name"],
        parameters=parse_overrides(overrides if isinstance(overrides, list) else [overrides]),
        region=settings.get("region", "*"),
    )


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """`Key=Value` pairs as `sam deploy --parameter-overrides` takes them (quoted or not)."""
    pairs = [word for item in items for word in shlex.split(item)]
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise DeploymentError(f"not Key=Value: {bad}")
    return dict(pair.split("=", 1) for pair in pairs)


def rendered(target: Target | None = None) -> dict[Path, str]:
    """The three files: the direct route's policy, and the service-role route's two."""
    caller, service_role = service_role_policies(target)
    documents = {POLICY: policy(target), CALLER_POLICY: caller, SERVICE_ROLE_POLICY: service_role}
    return {path: json.dumps(document, indent=2) + "\n" for path, document in documents.items()}


def main(argv: list[str] | None = None) -> int:
    defaults = samconfig_target()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stack-name", default=defaults.stack_name, help="default: samconfig.toml's")
    parser.add_argument("--account", default="*", help="the account ID (default: any)")
    parser.add_argument("--region", default=defaults.region, help="default: samconfig.toml's, else any")
    parser.add_argument("--partition", default="aws")
    parser.add_argument(
        "--parameter-overrides", nargs="*", help="Key=Value ... as for sam deploy (default: samconfig.toml's)"
    )
    parser.add_argument("--output-dir", type=Path, default=REPO, help="where the three files go (default: here)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    parser.add_argument("--explain", action="store_true", help="list each handler permission left out, and why")
    args = parser.parse_args(argv)
    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # its metrics' warning at exit
    try:
        parameters = parse_overrides(args.parameter_overrides) if args.parameter_overrides is not None else None
        target = Target(
            stack_name=args.stack_name,
            parameters=defaults.parameters if parameters is None else parameters,
            account=args.account,
            region=args.region,
            partition=args.partition,
        )
        files = {args.output_dir / path.name: text for path, text in rendered(target).items()}
        left_out = pruned(target)
    except DeploymentError as error:
        print(f"deployer policy: {error}", file=sys.stderr)
        return 2
    if args.check:
        stale = [path.name for path, text in files.items() if not path.exists() or path.read_text() != text]
        if stale:
            print(f"stale: {', '.join(stale)}: run make deployer-policy", file=sys.stderr)
            return 1
        return 0
    for path, text in files.items():
        path.write_text(text)
        print(f"wrote {path.name} for stack {target.stack_name}: {len(actions_of(json.loads(text)))} actions")
    if args.explain:
        for item in left_out:
            print(f"  left out {item.action} ({item.type}): {item.why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
