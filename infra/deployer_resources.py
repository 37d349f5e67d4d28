"""What one deployment of template.yaml creates, and the ARNs an IAM policy can name it by.

For a stack name and the deployment's parameter values (the template's defaults for the rest),
the template goes through its transforms offline (LanguageExtensions' loops, SAM), its conditions
are evaluated, and each nested stack (smtp-user.yaml, one per SMTP user) is read with the values
its parent passes. Each resource comes back with:

- ``written``: the property paths the template writes for it under any condition (``Code/S3Key``),
  which decide the handler permissions it can need;
- ``arns``: the ARN patterns of what its handlers act on, by Service Authorization resource type
  (``iam:role``): its own (its name, or the name CloudFormation generates,
  ``<stack>-<LogicalId>-<suffix>``, as a wildcard) and those its properties name (the role a
  function runs as, the KMS key of a secret, the group a user joins);
- ``conditions``: IAM conditions a grant through such a property carries (``iam:PassedToService``,
  ``kms:ViaService``).

An account or region not given is ``*``.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform  # type: ignore[import-untyped]
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

from infra.language_extensions import TRANSFORM as LANGUAGE_EXTENSIONS
from infra.language_extensions import expand

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
# Where `sam deploy` (resolve_s3, samconfig.toml) uploads the functions' code and nested templates.
SAM_MANAGED_BUCKET = "aws-sam-cli-managed-default-*"
# CloudFormation's generated names end in "-" and a random suffix of 12 or 13 characters.
GENERATED_SUFFIX = 13


@dataclass(frozen=True)
class Target:
    """The deployment a policy is for: the stack and the values of its parameters."""

    stack_name: str
    parameters: Mapping[str, str] = field(default_factory=dict)  # the rest take the template's defaults
    account: str = "*"
    region: str = "*"
    partition: str = "aws"


@dataclass(frozen=True)
class Naming:
    """How a resource type is named: its Service Authorization resource type, the property that
    names it, its ARN, and the longest name its service accepts (for CloudFormation's generated
    names, which it shortens unpredictably beyond that)."""

    resource_type: str  # "<service>:<resource type>" as in the Service Authorization data
    name_property: str | None
    arn: str  # format: partition, region, account, name, path
    max_length: int
    ref_is_arn: bool = False  # what Ref returns: the ARN (else the name)


NAMING = {
    "AWS::IAM::Role": Naming("iam:role", "RoleName", "arn:{partition}:iam::{account}:role{path}{name}", 64),
    "AWS::IAM::User": Naming("iam:user", "UserName", "arn:{partition}:iam::{account}:user{path}{name}", 64),
    "AWS::IAM::Group": Naming("iam:group", "GroupName", "arn:{partition}:iam::{account}:group{path}{name}", 128),
    "AWS::Lambda::Function": Naming(
        "lambda:function", "FunctionName", "arn:{partition}:lambda:{region}:{account}:function:{name}", 64
    ),
    # Log-group actions name the group, or its streams after a colon: both forms.
    "AWS::Logs::LogGroup": Naming(
        "logs:log-group", "LogGroupName", "arn:{partition}:logs:{region}:{account}:log-group:{name}", 512
    ),
    "AWS::SNS::Topic": Naming("sns:topic", "TopicName", "arn:{partition}:sns:{region}:{account}:{name}", 256, True),
    "AWS::Events::Rule": Naming(
        "events:rule-on-default-event-bus", "Name", "arn:{partition}:events:{region}:{account}:rule/{name}", 64
    ),
    "AWS::CloudWatch::Alarm": Naming(
        "cloudwatch:alarm", "AlarmName", "arn:{partition}:cloudwatch:{region}:{account}:alarm:{name}", 255
    ),
    "AWS::Scheduler::Schedule": Naming(
        "scheduler:schedule", "Name", "arn:{partition}:scheduler:{region}:{account}:schedule/default/{name}", 64
    ),
    "AWS::SecretsManager::Secret": Naming(
        "secretsmanager:secret",
        "Name",
        "arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-??????",  # the suffix Secrets Manager adds
        512,
        True,
    ),
    "AWS::SSM::Parameter": Naming(
        "ssm:parameter", "Name", "arn:{partition}:ssm:{region}:{account}:parameter{path}", 2048
    ),
    "AWS::CloudFormation::Stack": Naming(
        "cloudformation:stack", None, "arn:{partition}:cloudformation:{region}:{account}:stack/{name}/*", 128, True
    ),
}


@dataclass(frozen=True)
class Reference:
    """A property that names a resource the type's handlers act on (or pass to a service).

    The condition keys are action keys of the Service Authorization Reference (iam:PassedToService
    on iam:PassRole; kms:ViaService and kms:EncryptionContext:<key> on the KMS actions), which the
    copy cfn-lint ships does not carry (it lists each action's resource types and their keys)."""

    resource_type: str  # Service Authorization resource type of what it names
    arn: str = "{value}"  # format of its ARN from a value that is a name (or a dict: its fields)
    passed_to: str | None = None  # iam:PassedToService, for a role passed to the resource's service
    via_service: str | None = None  # kms:ViaService's service, for a key the resource's service uses


_FUNCTION = "arn:{partition}:lambda:{region}:{account}:function:{value}"
REFERENCES: dict[tuple[str, str], Reference] = {
    # A role given to a service: iam:PassRole, only to that service.
    ("AWS::Lambda::Function", "Role"): Reference("iam:role", passed_to="lambda.amazonaws.com"),
    ("AWS::Scheduler::Schedule", "Target/RoleArn"): Reference("iam:role", passed_to="scheduler.amazonaws.com"),
    # The function's code, where `sam deploy` uploaded it.
    ("AWS::Lambda::Function", "Code"): Reference("s3:object", "arn:{partition}:s3:::{S3Bucket}/{S3Key}"),
    # A customer managed key, used by the resource's service on the deployer's behalf (and only
    # through it): Lambda for the functions' environment, Secrets Manager for the secrets, CloudWatch
    # Logs for the log groups, SNS for the topic. (The handlers of the last two list no KMS action:
    # the key policy lets those services' principals use the key, and they grant nothing here.)
    ("AWS::Lambda::Function", "KmsKeyArn"): Reference("kms:key", via_service="lambda"),
    ("AWS::SecretsManager::Secret", "KmsKeyId"): Reference("kms:key", via_service="secretsmanager"),
    ("AWS::Logs::LogGroup", "KmsKeyId"): Reference("kms:key", via_service="logs"),
    ("AWS::SNS::Topic", "KmsMasterKeyId"): Reference("kms:key", via_service="sns"),
    # What an attachment attaches to.
    ("AWS::IAM::RolePolicy", "RoleName"): Reference("iam:role", "arn:{partition}:iam::{account}:role/{value}"),
    # An existing group (SendingGroupExists) is at the path "/", like the SES console's.
    ("AWS::IAM::UserToGroupAddition", "GroupName"): Reference(
        "iam:group", "arn:{partition}:iam::{account}:group/{value}"
    ),
    ("AWS::Lambda::Permission", "FunctionName"): Reference("lambda:function", _FUNCTION),
    ("AWS::Lambda::EventInvokeConfig", "FunctionName"): Reference("lambda:function", _FUNCTION),
    ("AWS::SecretsManager::ResourcePolicy", "SecretId"): Reference("secretsmanager:secret"),
    ("AWS::SecretsManager::RotationSchedule", "SecretId"): Reference("secretsmanager:secret"),
    ("AWS::SecretsManager::RotationSchedule", "RotationLambdaARN"): Reference("lambda:function", _FUNCTION),
    ("AWS::SNS::TopicPolicy", "Topics"): Reference("sns:topic"),
    ("AWS::SNS::Subscription", "TopicArn"): Reference("sns:topic"),
}


@dataclass(frozen=True)
class Resource:
    """A resource the deployment creates: what its handlers may need, and on what."""

    path: str  # its logical ID; "<nested stack's logical ID>/<logical ID>" inside a nested stack
    origin: str  # where the template defines it: "<file>:<logical ID>" ("<file>:<TemplateURL>" for a stack)
    type: str
    written: frozenset[str]  # property paths the template writes for it, under any condition
    retained: bool  # DeletionPolicy and UpdateReplacePolicy Retain: CloudFormation never deletes it
    own: tuple[str, ...]  # its own ARNs (none for an attachment, such as a role policy)
    arns: Mapping[str, tuple[str, ...]]  # its own and those its properties name, by Service Authorization type
    conditions: Mapping[str, Mapping[str, Any]]  # IAM conditions of the grants on those, by resource type
    permissions_boundary: str | None  # the boundary it sets (roles, users)


class DeploymentError(Exception):
    """The deployment cannot be described as a scoped policy (a message says what to change)."""


def deployment(target: Target, template_path: Path = TEMPLATE) -> list[Resource]:
    """Every resource `target` creates, in its nested stacks too.

    The copies of one resource the template makes per SMTP user (a secret, a nested stack) are
    named by one pattern of their ARNs (``secret:ses-smtp/*-??????``), so that the policy does not
    grow with the number of users. IAM users are named exactly at the root path, and by their path
    otherwise (``user/smtp/*``: a path other than "/" is the deployer's to give them)."""
    resources = list(_Stack(template_path, target.stack_name, "", dict(target.parameters), target).resources())
    return _one_pattern_per_origin(resources)


IDENTITIES = re.compile(r"arn:[^:]+:iam::[^:]+:(user|group)(/.*)")


def _one_pattern_per_origin(resources: list[Resource]) -> list[Resource]:
    copies: dict[str, list[tuple[str, ...]]] = {}
    for resource in resources:
        if resource.own:
            copies.setdefault(resource.origin, []).append(resource.own)
    pattern: dict[str, str] = {}
    for owns in copies.values():
        for arns in zip(*owns, strict=True):  # each of a resource's own ARNs with the same of its copies
            named_by = _pattern(list(arns)) if len(arns) > 1 or IDENTITIES.fullmatch(arns[0]) else None
            pattern.update(dict.fromkeys(arns, named_by) if named_by else {})
    if not pattern:
        return resources

    def named(node: Any) -> Any:
        if isinstance(node, str):
            return pattern.get(node, node)
        if isinstance(node, (list, tuple)):
            return sorted({named(item) for item in node})
        if isinstance(node, Mapping):
            return {key: named(value) for key, value in node.items()}
        return node

    return [
        replace(
            resource,
            own=tuple(named(resource.own)),
            arns={key: tuple(named(value)) for key, value in resource.arns.items()},
            conditions=named(resource.conditions),
        )
        for resource in resources
    ]


def _pattern(arns: list[str]) -> str | None:
    """The narrowest "<prefix>*<suffix>" that matches every ARN of `arns`; for IAM users or groups,
    their path when it is not the root ("user/smtp/*"), else None (never "user/*")."""
    prefix = _common_prefix(arns)
    if IDENTITIES.fullmatch(prefix + "*"):
        path = prefix[: prefix.rfind("/") + 1]
        return f"{path}*" if not path.endswith((":user/", ":group/")) else None
    suffix = _common_prefix([arn[::-1] for arn in arns])[::-1]
    overlap = len(prefix) + len(suffix) - min(len(arn) for arn in arns)
    return f"{prefix}*{suffix[max(0, overlap) :]}"


def _common_prefix(texts: list[str]) -> str:
    """The longest common prefix, character by character (an ARN is not a file path)."""
    differs = (i for i, chars in enumerate(zip(*texts, strict=False)) if len(set(chars)) > 1)
    return texts[0][: next(differs, min(len(text) for text in texts))]


# ----------------------------------------------------------------------------------------------
# Reading one (nested) stack
# ----------------------------------------------------------------------------------------------


class _NoValue:
    """AWS::NoValue: the property or list item disappears."""


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class _Stack:
    def __init__(self, path: Path, name: str, scope: str, parameters: dict[str, Any], target: Target) -> None:
        source = yaml_parse(path.read_text())
        values = _parameter_values(source, parameters)
        self.template = _transformed(source, values)
        self.path, self.name, self.scope, self.target = path, name, scope, target
        self.values: dict[str, Any] = {
            **values,
            "AWS::StackName": name,
            "AWS::AccountId": target.account,
            "AWS::Region": target.region,
            "AWS::Partition": target.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:{target.partition}:cloudformation:{target.region}:{target.account}:stack/{name}/*",
            "AWS::NoValue": NO_VALUE,
        }
        self.raw: dict[str, Any] = self.template["Resources"]
        self._conditions: dict[str, bool] = {}

    def resources(self) -> Iterator[Resource]:
        for logical_id, resource in self.raw.items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            yield self.resource(logical_id)
            if resource["Type"] == "AWS::CloudFormation::Stack":
                yield from self.nested(logical_id)

    def resource(self, logical_id: str) -> Resource:
        raw = self.raw[logical_id]
        resource_type = raw["Type"]
        own = self.arns(logical_id) if resource_type in NAMING else []
        arns: dict[str, set[str]] = {NAMING[resource_type].resource_type: set(own)} if own else {}
        conditions: dict[str, Mapping[str, Any]] = {}
        properties = raw.get("Properties", {})
        for (of_type, property_path), reference in REFERENCES.items():
            if of_type != resource_type:
                continue
            named = {self._reference_arn(reference, value) for value in self.property(properties, property_path)}
            if named:
                arns.setdefault(reference.resource_type, set()).update(named)
                conditions.update(self._reference_conditions(reference, arns))
        boundary = next(iter(self.property(properties, "PermissionsBoundary")), None)
        origin = properties["TemplateURL"] if resource_type == "AWS::CloudFormation::Stack" else logical_id
        return Resource(
            path=self.scope + logical_id,
            origin=f"{self.path.name}:{origin}",
            type=resource_type,
            written=frozenset(_written(properties)),
            retained=raw.get("DeletionPolicy") == "Retain" and raw.get("UpdateReplacePolicy") == "Retain",
            own=tuple(own),
            arns={key: tuple(sorted(value)) for key, value in arns.items()},
            conditions=conditions,
            permissions_boundary=boundary if isinstance(boundary, str) else None,
        )

    def nested(self, logical_id: str) -> Iterator[Resource]:
        properties = self.raw[logical_id]["Properties"]
        parameters = {key: self.value(value) for key, value in properties.get("Parameters", {}).items()}
        template = self.path.parent / self.value(properties["TemplateURL"])
        stack = _Stack(template, self.physical_name(logical_id), f"{self.scope}{logical_id}/", parameters, self.target)
        yield from stack.resources()

    def _reference_arn(self, reference: Reference, value: Any) -> str:
        if isinstance(value, str) and value.startswith("arn:"):
            return value
        fields = value if isinstance(value, dict) else {"value": value}
        target = self.target
        return reference.arn.format(partition=target.partition, region=target.region, account=target.account, **fields)

    def _reference_conditions(self, reference: Reference, arns: Mapping[str, set[str]]) -> dict[str, Any]:
        if reference.passed_to:
            return {reference.resource_type: {"StringEquals": {"iam:PassedToService": reference.passed_to}}}
        if reference.via_service:
            condition: dict[str, Any] = {
                "StringLike": {"kms:ViaService": f"{reference.via_service}.{self.target.region}.amazonaws.com"}
            }
            # Secrets Manager names the secret in the encryption context of every data key it asks for.
            secrets = arns.get("secretsmanager:secret")
            if reference.via_service == "secretsmanager" and secrets:
                condition["StringLike"]["kms:EncryptionContext:SecretARN"] = sorted(secrets)
            return {reference.resource_type: condition}
        return {}

    # -- names ---------------------------------------------------------------------------------

    def physical_name(self, logical_id: str) -> str:
        naming = NAMING[self.raw[logical_id]["Type"]]
        properties = self.raw[logical_id].get("Properties", {})
        if naming.name_property and naming.name_property in properties:
            name = self.value(properties[naming.name_property])
            if name is not NO_VALUE:
                return str(name)
        generated = f"{self.name}-{logical_id}-*"
        longest = len(generated.replace("*", "x" * GENERATED_SUFFIX))
        if longest > naming.max_length:
            raise DeploymentError(
                f"{self.scope}{logical_id}: CloudFormation shortens the generated name {generated} "
                f"(up to {longest} characters, at most {naming.max_length}) in a way a policy cannot "
                f"predict; shorten the stack name by {longest - naming.max_length} character(s)"
            )
        return generated

    def arns(self, logical_id: str) -> list[str]:
        naming = NAMING[self.raw[logical_id]["Type"]]
        name = self.physical_name(logical_id)
        properties = self.raw[logical_id].get("Properties", {})
        path = next(iter(self.property(properties, "Path")), "/")
        if self.raw[logical_id]["Type"] == "AWS::SSM::Parameter":
            path = name if name.startswith("/") else f"/{name}"
        elif self.raw[logical_id]["Type"] == "AWS::Events::Rule" and "EventBusName" in properties:
            raise DeploymentError(f"{self.scope}{logical_id}: a rule on another event bus is not described")
        elif self.raw[logical_id]["Type"] == "AWS::Scheduler::Schedule" and "GroupName" in properties:
            raise DeploymentError(f"{self.scope}{logical_id}: a schedule group other than default is not described")
        target = self.target
        arn = naming.arn.format(
            partition=target.partition, region=target.region, account=target.account, name=name, path=path
        )
        return [arn, f"{arn}:*"] if naming.resource_type == "logs:log-group" else [arn]

    def ref(self, logical_id: str) -> str:
        naming = NAMING.get(self.raw[logical_id]["Type"])
        if naming is None:
            raise DeploymentError(f"{self.scope}{logical_id}: Ref of a {self.raw[logical_id]['Type']} is not described")
        return self.arns(logical_id)[0] if naming.ref_is_arn else self.physical_name(logical_id)

    # -- conditions and intrinsic functions ---------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self.truth(self.template["Conditions"][name])
        return self._conditions[name]

    def truth(self, node: Mapping[str, Any]) -> bool:
        ((function, argument),) = node.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (self.value(item) for item in argument)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not self.truth(argument[0])
        if function == "Fn::And":
            return all(self.truth(item) for item in argument)
        if function == "Fn::Or":
            return any(self.truth(item) for item in argument)
        raise DeploymentError(f"condition function {function} is not described")

    def property(self, properties: Mapping[str, Any], path: str) -> list[Any]:
        """The values at `path` ("Target/RoleArn", "*" for each list item), resolved; none when absent."""
        head, *rest = path.split("/")
        if head not in properties:
            return []
        found = [self.value(properties[head])]
        for key in rest:
            found = [v for item in found for v in (item if key == "*" else [item.get(key, NO_VALUE)])]
        flat = [v for item in found for v in (item if isinstance(item, list) else [item])]
        return [item for item in flat if item is not NO_VALUE]

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [item for item in (self.value(item) for item in node) if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self.intrinsic(key, argument)
        resolved = {key: self.value(item) for key, item in node.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def intrinsic(self, function: str, argument: Any) -> Any:
        if function == "Ref":
            return self.values[argument] if argument in self.values else self.ref(argument)
        if function == "Fn::GetAtt":
            logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
            if attribute != "Arn":
                raise DeploymentError(f"GetAtt {logical_id}.{attribute} is not described")
            return self.arns(logical_id)[0]
        if function == "Fn::If":
            name, if_true, if_false = argument
            return self.value(if_true if self.condition(name) else if_false)
        if function == "Fn::Sub":
            return self.sub(argument)
        if function == "Fn::Join":
            delimiter, items = argument
            return str(delimiter).join(str(item) for item in self.value(items))
        if function == "Fn::Split":
            delimiter, text = argument
            return str(self.value(text)).split(delimiter)
        if function == "Fn::Select":
            index, items = argument
            return self.value(items)[int(self.value(index))]
        raise DeploymentError(f"intrinsic function {function} is not described")

    def sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {name: self.value(item) for name, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name:
                return str(self.intrinsic("Fn::GetAtt", name))
            return str(self.intrinsic("Ref", name))

        return _SUB_VARIABLE.sub(replace, text)


def _parameter_values(template: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Each parameter's value (given, else its default); a CommaDelimitedList as a list."""
    declared: Mapping[str, Any] = template.get("Parameters", {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise DeploymentError(f"the template has no parameters {unknown}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        value = given.get(name, spec.get("Default"))
        if value is None:
            raise DeploymentError(f"parameter {name} has no default: give it a value")
        is_list = spec.get("Type") == "CommaDelimitedList"
        values[name] = value.split(",") if is_list and isinstance(value, str) else value
    return values


def _transformed(source: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The template after its transforms, as CloudFormation runs them (LanguageExtensions with these
    values, then SAM); the functions' code where `sam deploy` uploads it."""
    document: dict[str, Any] = copy.deepcopy(dict(source))
    transforms = document.get("Transform", [])
    if LANGUAGE_EXTENSIONS in (transforms if isinstance(transforms, list) else [transforms]):
        document = expand(document, values)
    if not document.get("Transform"):
        return document
    for resource in document["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{SAM_MANAGED_BUCKET}/*"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # samtranslator wants one; nothing is called
    pseudo = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    result: dict[str, Any] = transform(json.loads(json.dumps(document)), pseudo, NoManagedPolicies())
    return result


def _written(node: Any, prefix: str = "") -> Iterator[str]:
    """The property paths a raw (unresolved) property tree writes: both branches of a Fn::If (a
    condition may pick either), nothing for AWS::NoValue, "*" for a list's items."""
    if isinstance(node, dict) and len(node) == 1 and "Fn::If" in node:
        for branch in node["Fn::If"][1:]:
            yield from _written(branch, prefix)
        return
    if node == {"Ref": "AWS::NoValue"}:
        return
    if prefix:
        yield prefix.rstrip("/")
    if isinstance(node, dict) and not any(key == "Ref" or key.startswith("Fn::") for key in node):
        for key, value in node.items():
            yield from _written(value, f"{prefix}{key}/")
    elif isinstance(node, list):
        for item in node:
            yield from _written(item, f"{prefix}*/")
