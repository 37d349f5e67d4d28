"""template.yaml resolved as CloudFormation would, offline, for one set of parameter values.

The template's transforms run first (LanguageExtensions, then SAM → CloudFormation, done by
infra/language_extensions.py and `samtranslator`, as `sam deploy` has CloudFormation do). Then:
parameters checked against their constraints, `Rules` asserted, conditions evaluated, resources
whose condition is false dropped, intrinsic functions resolved, and each nested stack (one per
SMTP user, smtp-user.yaml) resolved with the parameters the parent passes. A reference to a
resource stays symbolic, qualified by its nested stack (``<Ref SmtpUserappa/Secret>``,
``<GetAtt SmtpUserappa/User.Arn>``): that is exactly what "scoped to the secret" means before the
secret exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform  # type: ignore[import-untyped]
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

from infra.language_extensions import expand

REPO = Path(__file__).resolve().parents[2]  # the repository (this file is in tests/template/)
TEMPLATE = REPO / "template.yaml"
USER_TEMPLATE = REPO / "smtp-user.yaml"  # the nested stack of each SMTP user

ACCOUNT = "123456789012"
REGION = "eu-west-1"
STACK = "ses-smtp-rotation"
PSEUDO_PARAMETERS = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::StackName": STACK,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0",
    "AWS::URLSuffix": "amazonaws.com",
}


class TemplateRejected(Exception):
    """CloudFormation would refuse these parameter values (a constraint or a Rule fails)."""


class _NoValue:
    """AWS::NoValue: the property or list item disappears."""


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Evaluates conditions and intrinsic functions for one set of parameter values."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str], scope: str = "") -> None:
        self._values: dict[str, Any] = {**PSEUDO_PARAMETERS, **typed_parameters(template, parameters)}
        self._mappings: Mapping[str, Any] = template.get("Mappings", {})
        self._resource_ids = set(template["Resources"])
        self._scope = scope  # "<nested stack's logical ID>/" inside a nested stack
        self._condition_definitions: Mapping[str, Any] = template.get("Conditions", {})
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self.truth(self._condition_definitions[name])
        return self._conditions[name]

    def truth(self, node: Any) -> bool:
        (function, argument), *_ = node.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (self.value(item) for item in argument)
            return bool(str(left) == str(right))
        if function == "Fn::Not":
            return not self.truth(argument[0])
        if function == "Fn::And":
            return all(self.truth(item) for item in argument)
        if function == "Fn::Or":
            return any(self.truth(item) for item in argument)
        if function == "Fn::EachMemberEquals":  # Rules only
            items, expected = (self.value(item) for item in argument)
            return all(str(item) == str(expected) for item in items)
        raise AssertionError(f"condition function {function} is not understood by this test")

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.value(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, argument), *_ = node.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._intrinsic(key, argument)
        resolved = {key: self.value(item) for key, item in node.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _intrinsic(self, function: str, argument: Any) -> Any:
        if function == "Ref":
            return self._ref(argument)
        if function == "Fn::GetAtt":
            resource, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
            assert resource in self._resource_ids, f"GetAtt of unknown resource {resource}"
            return f"<GetAtt {self._scope}{resource}.{attribute}>"
        if function == "Fn::If":
            name, if_true, if_false = argument
            return self.value(if_true if self.condition(name) else if_false)
        if function == "Fn::Sub":
            return self._sub(argument)
        if function == "Fn::Join":
            delimiter, items = argument
            return str(delimiter).join(str(item) for item in self.value(items))
        if function == "Fn::Select":
            index, items = argument
            return self.value(items)[int(self.value(index))]
        if function == "Fn::FindInMap":
            mapping, top, second = (self.value(item) for item in argument)
            return self._mappings[mapping][str(top)][str(second)]
        if function == "Fn::Split":
            delimiter, text = argument
            return str(self.value(text)).split(delimiter)
        if function == "Fn::ToJsonString":
            return json.dumps(self.value(argument), separators=(",", ":"))
        raise AssertionError(f"intrinsic function {function} is not understood by this test")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._values:
            return self._values[name]
        assert name in self._resource_ids, f"Ref to unknown name {name}"
        return f"<Ref {self._scope}{name}>"

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {name: self.value(item) for name, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name:
                return str(self._intrinsic("Fn::GetAtt", name))
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text)


@dataclass(frozen=True)
class Stack:
    """What CloudFormation would create: resolved resources (condition true), outputs, nested stacks."""

    parameters: Mapping[str, str]
    resources: Mapping[str, Mapping[str, Any]]
    outputs: Mapping[str, Any]
    nested: Mapping[str, Stack] = field(default_factory=dict)  # by the parent's logical ID

    def properties(self, logical_id: str) -> Mapping[str, Any]:
        props: Mapping[str, Any] = self.resources[logical_id].get("Properties", {})
        return props

    def of_type(self, resource_type: str) -> dict[str, Mapping[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r["Type"] == resource_type}

    def only(self, resource_type: str) -> tuple[str, Mapping[str, Any]]:
        found = self.of_type(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        ((logical_id, resource),) = found.items()
        return logical_id, resource.get("Properties", {})

    def everything(self) -> dict[str, Mapping[str, Any]]:
        """Every resource of this stack and its nested stacks, nested ones as "<stack ID>/<ID>"."""
        found = dict(self.resources)
        for stack_id, nested in self.nested.items():
            found.update({f"{stack_id}/{lid}": r for lid, r in nested.everything().items()})
        return found

    def user(self, name: str) -> Stack:
        """The nested stack of SMTP user `name`."""
        (found,) = [s for s in self.nested.values() if s.parameters["UserName"] == name]
        return found


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as CloudFormation JSON (short-form tags such as !Ref become Fn:: objects)."""
    template: dict[str, Any] = yaml_parse(path.read_text())
    return template


def transformed(template: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, Any]:
    """The template's transforms, offline: LanguageExtensions (for these parameter values), then
    SAM. CodeUri becomes an S3 location first, as `sam package` does."""
    document: dict[str, Any] = json.loads(json.dumps(template))
    if "AWS::LanguageExtensions" in as_list(document.get("Transform", [])):
        document = expand(document, typed_parameters(document, parameters))
    if document.get("Transform") != "AWS::Serverless-2016-10-31":
        assert not document.get("Transform"), f"transform {document['Transform']} is not understood by this test"
        return document
    for resource in document["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifacts-bucket/rotation-function.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    result: dict[str, Any] = transform(document, dict(PSEUDO_PARAMETERS), NoManagedPolicies())
    return result


def typed_parameters(template: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """Parameter values as intrinsic functions see them: a CommaDelimitedList is a list (an empty
    one is one empty item, as in CloudFormation)."""
    declared: Mapping[str, Any] = template.get("Parameters", {})
    return {
        name: value.split(",") if declared.get(name, {}).get("Type") == "CommaDelimitedList" else value
        for name, value in values.items()
    }


def check_parameters(template: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """Parameter values as CloudFormation would accept them (defaults filled in, constraints met;
    a CommaDelimitedList's pattern applies to each item)."""
    declared: Mapping[str, Any] = template["Parameters"]
    unknown = set(overrides) - set(declared)
    assert not unknown, f"no such parameters: {sorted(unknown)}"
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name not in overrides and "Default" not in spec:
            raise TemplateRejected(f"{name} has no value")
        value = str(overrides.get(name, spec.get("Default")))
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in {str(item) for item in allowed}:
            raise TemplateRejected(f"{name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        items = value.split(",") if spec.get("Type") == "CommaDelimitedList" else [value]
        if pattern is not None and not all(re.fullmatch(pattern, item) for item in items):
            raise TemplateRejected(f"{name}={value!r} does not match {pattern}")
        if not int(spec.get("MinLength", 0)) <= len(value) <= int(spec.get("MaxLength", len(value))):
            limits = f"{spec.get('MinLength', 0)}..{spec.get('MaxLength')}"
            raise TemplateRejected(f"{name} is {len(value)} characters long, outside {limits}")
        if spec.get("Type") == "Number" and not spec.get("MinValue", float("-inf")) <= float(value) <= spec.get(
            "MaxValue", float("inf")
        ):
            raise TemplateRejected(f"{name}={value!r} is outside {spec.get('MinValue')}..{spec.get('MaxValue')}")
        values[name] = value
    return values


def check_rules(template: Mapping[str, Any], resolver: Resolver) -> None:
    failed = [
        assertion["AssertDescription"]
        for rule in template.get("Rules", {}).values()
        if "RuleCondition" not in rule or resolver.truth(rule["RuleCondition"])
        for assertion in rule["Assertions"]
        if not resolver.truth(assertion["Assert"])
    ]
    if failed:
        raise TemplateRejected(" / ".join(failed))


def deploy(parameters: Mapping[str, str] | None = None, path: Path = TEMPLATE, scope: str = "") -> Stack:
    """Resolve the transformed template for `parameters`, as CloudFormation would, and each nested
    stack (its TemplateURL a file next to `path`, as `sam package` uploads it) with the values the
    parent passes it."""
    source = load_template(path)
    values = check_parameters(source, parameters or {})
    # Rules read parameters only; checked before the transforms, so that no list of users makes
    # the loops produce anything when the Rules refuse it.
    check_rules(source, Resolver(source, values, scope))
    template = transformed(source, values)
    resolver = Resolver(template, values, scope)
    resources = {
        logical_id: resolver.value(resource)
        for logical_id, resource in template["Resources"].items()
        if "Condition" not in resource or resolver.condition(resource["Condition"])
    }
    outputs = {
        name: resolver.value(output["Value"])
        for name, output in template.get("Outputs", {}).items()
        if "Condition" not in output or resolver.condition(output["Condition"])
    }
    nested = {
        logical_id: deploy(
            {name: str(value) for name, value in resource["Properties"]["Parameters"].items()},
            path.parent / resource["Properties"]["TemplateURL"],
            f"{scope}{logical_id}/",
        )
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::CloudFormation::Stack"
    }
    return Stack(values, resources, outputs, nested)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for item in node.values():
            yield from walk(item)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)
