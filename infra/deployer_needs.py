"""What each resource of a deployment needs, from CloudFormation's handler lists, and on what.

The permissions of a resource type's create, read, update and delete handlers (CloudFormation's
resource provider schemas, shipped with cfn-lint) cover every property the type supports. A
resource keeps only what the template can ask of it:

- a retained resource (DeletionPolicy and UpdateReplacePolicy Retain) is never deleted by
  CloudFormation: its delete handler's own permissions go;
- a permission that serves only properties the template never writes goes (``UNNEEDED``: a small
  table, each entry with its reason);
- an action that acts only on kinds of resource the deployment has none of goes (a Lambda layer,
  a code-signing configuration, a KMS key when none is given);
- a few are withheld on purpose (``WITHHELD``), whatever the handlers list.

What is left is granted on the ARNs of the resource (infra/deployer_resources.py) wherever the
Service Authorization data (cfn-lint's ``data/AdditionalSpecs/Policies.json``) lists a resource
type for the action, on "*" only where it lists none.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cfnlint  # type: ignore[import-untyped]

from infra.deployer_resources import NAMING, DeploymentError, Resource

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


# Not in it: the functions' KmsKeyArn, the log groups' KmsKeyId and the topic's KmsMasterKeyId, which
# the template writes when KmsKeyArn is given. Without a key, the KMS actions go (no kms:key in the
# deployment); logs:AssociateKmsKey and logs:DisassociateKmsKey stay (a key given or taken away later).
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


def needed(resources: list[Resource]) -> tuple[list[Grant], list[Pruned]]:
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
