"""template.yaml: it lints clean, and what it would deploy is least-privilege and complete.

The policy checks read the *transformed* template (LanguageExtensions, then SAM → CloudFormation,
done offline by tests/language_extensions.py and `samtranslator`, as `sam deploy` has
CloudFormation do), then resolve it for one set of parameter values the way CloudFormation would:
parameters checked against their constraints, `Rules` asserted, conditions evaluated, resources
whose condition is false dropped, intrinsic functions resolved, and each nested stack (one per
SMTP user, smtp-user.yaml) resolved with the parameters the parent passes. A reference to a
resource stays symbolic, qualified by its nested stack (``<Ref SmtpUserappa/Secret>``,
``<GetAtt SmtpUserappa/User.Arn>``): that is exactly what "scoped to the secret" means before the
secret exists.

Every check runs for five configurations: the defaults (create one user and the sending group),
adopting an existing user with a KMS key and an identity scope, joining the SES console's existing
sending group, three users (two created, one adopted) with a KMS key, and an organisation's
(functions in a VPC, a permissions boundary, more memory).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

from infra.language_extensions import expand
from infra.local_aws import set_fake_aws_env
from lambda_function.retire_handler import CURRENT_KEY_AGE_METRIC
from lambda_function.settings import Settings

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
USER_TEMPLATE = REPO / "smtp-user.yaml"  # the nested stack of each SMTP user
FUNCTION_ID = "RotationFunction"
RETIREMENT_ID = "RetirementFunction"

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
LIST_SECRETS = frozenset({"secretsmanager:ListSecrets"})
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
FUNCTION_ENVIRONMENT = {
    "PREVIOUS_KEY_ACTION",
    "PREVIOUS_KEY_ACTIVE_HOURS",
    "PREVIOUS_KEY_INACTIVE_DAYS",
    "SMTP_ALLOWED_HOSTS",
    "SMTP_BOUND_USERS",
    "SMTP_AUTH_TIMEOUT_SECONDS",
    "SMTP_CONNECT_TIMEOUT_SECONDS",
    "SMTP_TEST_SENDER",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}


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
        "SmtpUserNames": "billing-mailer,app.alerts@prod",
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
# Resolving the template like CloudFormation
# --------------------------------------------------------------------------------------------


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


@pytest.fixture(scope="module", params=CONFIGURATIONS, ids=lambda c: c.name)
def configuration(request: pytest.FixtureRequest) -> Configuration:
    config: Configuration = request.param
    return config


@pytest.fixture(scope="module")
def stack(configuration: Configuration) -> Stack:
    return deploy(configuration.parameters)


# --------------------------------------------------------------------------------------------
# IAM policies of the stack
# --------------------------------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


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


# --------------------------------------------------------------------------------------------
# Lint and validation (check 1), for each configuration
# --------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """A command-line tool of the project's environment (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make setup` (it comes with requirements-dev.txt)")
    return found


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    set_fake_aws_env(env, region=REGION)
    env.pop("AWS_ENDPOINT_URL", None)
    env["SAM_CLI_TELEMETRY"] = "0"
    return env


@pytest.fixture(scope="module")
def template_file(configuration: Configuration, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """template.yaml itself for the defaults; else a copy whose defaults are the configuration's."""
    if not configuration.parameters:
        return TEMPLATE
    template = load_template()
    for name, value in configuration.parameters.items():
        template["Parameters"][name]["Default"] = value
    path = tmp_path_factory.mktemp(configuration.name) / "template.json"
    path.write_text(json.dumps(template, indent=1))
    shutil.copy(USER_TEMPLATE, path.parent / USER_TEMPLATE.name)  # its TemplateURL, beside it
    return path


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    """One of the linters, offline, from the repository root."""
    return subprocess.run(
        [tool(command[0]), *command[1:]],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=tool_env(),
        timeout=300,
        check=False,
    )


def cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    # No rule is disabled; there is no .cfnlintrc.
    return run_tool("cfn-lint", "--format", "parseable", "--", str(template))


def sam_validate(template: Path) -> subprocess.CompletedProcess[str]:
    return run_tool("sam", "validate", "--lint", "--template-file", str(template))


def test_cfn_lint_reports_no_error_and_no_warning(template_file: Path) -> None:
    result = cfn_lint(template_file)
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stdout + result.stderr


def test_sam_validate_lint_passes_offline(template_file: Path) -> None:
    result = sam_validate(template_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout


def test_user_template_lints_clean_on_its_own() -> None:
    lint = cfn_lint(USER_TEMPLATE)
    assert (lint.returncode, lint.stdout.strip()) == (0, ""), lint.stdout + lint.stderr
    validate = sam_validate(USER_TEMPLATE)
    assert validate.returncode == 0, validate.stdout + validate.stderr


def test_configuration_values_are_accepted_by_the_template(configuration: Configuration) -> None:
    stack = deploy(configuration.parameters)  # raises TemplateRejected otherwise
    assert sorted(stack.nested) == sorted(user.stack_id for user in listed_users(stack))


# --------------------------------------------------------------------------------------------
# Least privilege (check 2), for each configuration
# --------------------------------------------------------------------------------------------


def test_no_policy_grants_an_action_on_every_resource_except_unscoped_ses_sending(stack: Stack) -> None:
    unscoped_sending = stack.parameters["SendingIdentityArn"] == stack.parameters["SendingConfigurationSetArn"] == ""
    wildcard_grants = [grant for grant in identity_grants(stack) if "*" in grant.resources]
    allowed = (
        [Grant("SendingGroup/AmazonSesSendingAccess", frozenset({"ses:SendRawEmail"}), ("*",), {})]
        if unscoped_sending and stack.parameters["SendingGroupExists"] == "false"
        else []
    )
    # ListSecrets cannot be scoped (IAM authorizes it on "*" only); it returns no secret value.
    allowed.append(Grant("RetirementFunctionRole/FindOwnSecrets", LIST_SECRETS, ("*",), {}))
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
        return sorted(((g.actions, g.resources) for g in scoped if g.actions != LIST_SECRETS), key=repr)

    assert reach(FUNCTION_ID) == sorted(
        [(IAM_KEY_ACTIONS, (u.arn,)) for u in users] + [(SECRET_ACTIONS, (u.secret,)) for u in users], key=repr
    )
    assert reach(RETIREMENT_ID) == sorted(
        [(RETIRE_IAM_ACTIONS, (u.arn,)) for u in users] + [(RETIRE_SECRET_ACTIONS, (u.secret,)) for u in users],
        key=repr,
    )


def test_access_key_actions_are_scoped_to_exactly_the_listed_users(stack: Stack) -> None:
    iam_grants = [grant for grant in role_grants(stack) if any(a.startswith("iam:") for a in grant.actions)]
    assert sorted((grant.actions, grant.resources) for grant in iam_grants) == sorted(
        (IAM_KEY_ACTIONS, (user.arn,)) for user in listed_users(stack)
    )


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


def test_kms_is_allowed_only_with_a_key_and_only_through_secrets_manager(
    stack: Stack, configuration: Configuration
) -> None:
    kms_grants = [grant for grant in role_grants(stack) if any(a.startswith("kms:") for a in grant.actions)]
    assert not [g for g in identity_grants(stack) if "kms:GenerateDataKey" in g.actions and g not in kms_grants]
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


def via_secrets_manager_for_the_deployments_secrets() -> dict[str, Any]:
    return {
        "StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"},
        # The data keys of secrets named ses-smtp/... only; see the template for why a prefix.
        "StringLike": {"kms:EncryptionContext:SecretARN": SECRET_PREFIX_ARN + "*"},
    }


def test_logs_are_written_only_to_the_function_log_group(stack: Stack) -> None:
    grants = [grant for grant in role_grants(stack) if any(a.startswith("logs:") for a in grant.actions)]
    assert [(grant.actions, grant.resources) for grant in grants] == [
        (LOG_ACTIONS, ("<GetAtt RotationFunctionLogGroup.Arn>",))
    ]
    assert stack.properties(FUNCTION_ID)["LoggingConfig"]["LogGroup"] == "<Ref RotationFunctionLogGroup>"


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


def test_the_function_is_told_its_allowed_hosts(stack: Stack) -> None:
    env = stack.properties(FUNCTION_ID)["Environment"]["Variables"]
    assert env["SMTP_ALLOWED_HOSTS"] == stack.parameters["SmtpAllowedHosts"]


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


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def test_topic_accepts_messages_only_from_this_rule_and_these_alarms(stack: Stack) -> None:
    _, policy = stack.only("AWS::SNS::TopicPolicy")
    publishers = {
        (s["Principal"]["Service"], _hashable(s["Condition"]["ArnEquals"]["aws:SourceArn"]))
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    }
    assert publishers == {
        ("events.amazonaws.com", "<GetAtt RotationFailedRule.Arn>"),
        ("cloudwatch.amazonaws.com", "<GetAtt RotationFunctionErrorsAlarm.Arn>"),
        (
            "cloudwatch.amazonaws.com",
            ("<GetAtt RetirementFunctionErrorsAlarm.Arn>", "<GetAtt CurrentKeyTooOldAlarm.Arn>"),
        ),
    }
    assert {s["Action"] for s in policy["PolicyDocument"]["Statement"]} == {"sns:Publish"}


# --------------------------------------------------------------------------------------------
# What gets deployed
# --------------------------------------------------------------------------------------------


def test_each_smtp_user_is_created_or_adopted_and_joins_the_sending_group(stack: Stack) -> None:
    group = (
        stack.parameters["SendingGroupName"]
        if stack.parameters["SendingGroupExists"] == "true"
        else "<Ref SendingGroup>"
    )
    for user in listed_users(stack):
        nested = stack.nested[user.stack_id]
        assert nested.parameters["CreateUser"] == str(user.created).lower()
        if user.created:
            _, iam_user = nested.only("AWS::IAM::User")
            assert (iam_user["UserName"], iam_user["Path"]) == (user.name, stack.parameters["SmtpUserPath"])
            assert iam_user["Tags"] == [{"Key": "ses-smtp-rotation:stack", "Value": STACK}]
        else:
            assert nested.of_type("AWS::IAM::User") == {}
        _, membership = nested.only("AWS::IAM::UserToGroupAddition")
        assert membership["GroupName"] == group
        assert nested.outputs["UserName"] == (f"<Ref {user.stack_id}/User>" if user.created else user.name)


def test_sending_group_holds_only_ses_send_raw_email_in_the_requested_scope(stack: Stack) -> None:
    params = stack.parameters
    if params["SendingGroupExists"] == "true":
        assert stack.of_type("AWS::IAM::Group") == {}, "an existing group must be used as it is"
        return
    _, group = stack.only("AWS::IAM::Group")
    assert group["GroupName"] == params["SendingGroupName"]
    ((policy_name, actions, resources),) = [
        (p["PolicyName"], as_list(s["Action"]), as_list(s["Resource"]))
        for p in group["Policies"]
        for s in p["PolicyDocument"]["Statement"]
    ]
    assert (policy_name, actions) == ("AmazonSesSendingAccess", ["ses:SendRawEmail"])
    (statement,) = group["Policies"][0]["PolicyDocument"]["Statement"]
    if params["SendingFromAddresses"]:
        assert statement["Condition"] == {"StringLike": {"ses:FromAddress": params["SendingFromAddresses"].split(",")}}
    else:
        assert "Condition" not in statement
    if params["SendingIdentityArn"] == params["SendingConfigurationSetArn"] == "":
        assert resources == ["*"]
    else:
        assert resources == [
            params["SendingIdentityArn"] or f"arn:aws:ses:*:{ACCOUNT}:identity/*",
            params["SendingConfigurationSetArn"] or f"arn:aws:ses:*:{ACCOUNT}:configuration-set/*",
        ]


def test_credentials_outlive_the_stack_and_the_rotation_does_not(stack: Stack) -> None:
    everything = stack.everything()
    kept = {lid for lid, r in everything.items() if r.get("DeletionPolicy") == "Retain"}
    expected = {"SendingGroup"} if "SendingGroup" in stack.resources else set()
    for user in listed_users(stack):
        expected |= {f"{user.stack_id}/Secret", f"{user.stack_id}/SendingGroupMembership"}
        expected |= {f"{user.stack_id}/User"} if user.created else set()
    assert kept == expected
    assert all(everything[lid].get("UpdateReplacePolicy") == "Retain" for lid in kept)


def test_each_secret_is_bootstrapped_with_its_user_name_and_region(stack: Stack) -> None:
    for user in listed_users(stack):
        secret = stack.nested[user.stack_id].properties("Secret")
        assert json.loads(secret["SecretString"]) == {"iam_user_name": user.name, "region": REGION}
        assert secret["Name"] == f"ses-smtp/{user.name}"


def test_function_runs_python313_on_arm64_with_structured_json_logs(stack: Stack) -> None:
    function = stack.properties(FUNCTION_ID)
    assert (function["Runtime"], function["Architectures"]) == ("python3.13", ["arm64"])
    assert function["Handler"] == "lambda_function.handler.lambda_handler"
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    assert function["LoggingConfig"]["ApplicationLogLevel"] == stack.parameters["LogLevel"]
    log_groups = stack.of_type("AWS::Logs::LogGroup")
    assert set(log_groups) == {"RotationFunctionLogGroup", "RetirementFunctionLogGroup"}
    for log_group in log_groups.values():
        assert log_group["Properties"]["RetentionInDays"] == stack.parameters["LogRetentionDays"]


def test_function_timeout_covers_the_wait_for_a_new_key(stack: Stack) -> None:
    function = stack.properties(FUNCTION_ID)
    env = function["Environment"]["Variables"]
    assert set(env) == FUNCTION_ENVIRONMENT
    # The longest step: the auth wait, a connection or two, and the AWS calls around them.
    needed = int(env["SMTP_AUTH_TIMEOUT_SECONDS"]) + 2 * int(env["SMTP_CONNECT_TIMEOUT_SECONDS"]) + 60
    assert int(function["Timeout"]) >= needed
    assert int(function["Timeout"]) <= 900


@pytest.mark.parametrize("auth_timeout", ["30", "60", "120", "300", "600"])
def test_every_allowed_smtp_auth_timeout_gets_a_function_timeout_that_covers_it(auth_timeout: str) -> None:
    function = deploy({"SmtpAuthTimeoutSeconds": auth_timeout}).properties(FUNCTION_ID)
    env = function["Environment"]["Variables"]
    assert env["SMTP_AUTH_TIMEOUT_SECONDS"] == auth_timeout
    needed = int(auth_timeout) + 2 * int(env["SMTP_CONNECT_TIMEOUT_SECONDS"]) + 60
    assert needed <= int(function["Timeout"]) <= 900


def test_function_environment_carries_the_parameters(stack: Stack) -> None:
    env = stack.properties(FUNCTION_ID)["Environment"]["Variables"]
    assert env["PREVIOUS_KEY_ACTION"] == stack.parameters["PreviousKeyAction"]
    assert env["SMTP_TEST_SENDER"] == stack.parameters["SmtpTestSender"]
    assert env["POWERTOOLS_LOG_LEVEL"] == stack.parameters["LogLevel"]


def event_matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """EventBridge matching for patterns of exact values and prefixes (all this template uses)."""
    for key, expected in pattern.items():
        if key not in event:
            return False
        if isinstance(expected, dict):
            if not isinstance(event[key], dict) or not event_matches(expected, event[key]):
                return False
        elif not any(_value_matches(item, event[key]) for item in expected):
            return False
    return True


def _value_matches(expected: Any, value: Any) -> bool:
    if isinstance(expected, dict):
        assert set(expected) == {"prefix"}, f"EventBridge {expected} is not understood by this test"
        return isinstance(value, str) and value.startswith(expected["prefix"])
    return bool(expected == value)


def rotation_failed_event(secret_id: str) -> dict[str, Any]:
    """What EventBridge receives from CloudTrail when Secrets Manager records RotationFailed."""
    return {
        "source": "aws.secretsmanager",
        "detail-type": "AWS Service Event via CloudTrail",
        "time": "2024-05-01T03:00:00Z",
        "detail": {
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "RotationFailed",
            "eventType": "AwsServiceEvent",
            "additionalEventData": {"SecretId": secret_id},
        },
    }


def test_rotation_failed_event_of_the_deployments_secrets_notifies_the_topic(stack: Stack) -> None:
    _, rule = stack.only("AWS::Events::Rule")
    pattern = rule["EventPattern"]
    for user in listed_users(stack):
        assert event_matches(pattern, rotation_failed_event(f"{SECRET_PREFIX_ARN}{user.name}-AbCdEf"))
    assert not event_matches(pattern, rotation_failed_event(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:x"))
    other_account = f"arn:aws:secretsmanager:{REGION}:210987654321:secret:ses-smtp/a-AbCdEf"
    assert not event_matches(pattern, rotation_failed_event(other_account))
    succeeded = rotation_failed_event(f"{SECRET_PREFIX_ARN}a-AbCdEf")
    succeeded["detail"]["eventName"] = "RotationSucceeded"
    assert not event_matches(pattern, succeeded)
    assert [target["Arn"] for target in rule["Targets"]] == ["<Ref AlarmTopic>"]


def test_function_errors_raise_an_alarm_on_the_topic(stack: Stack) -> None:
    alarm = stack.properties("RotationFunctionErrorsAlarm")
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": f"<Ref {FUNCTION_ID}>"}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["AlarmActions"] == ["<Ref AlarmTopic>"]


def test_failure_email_is_subscribed_only_when_given(stack: Stack) -> None:
    email = stack.parameters["NotificationEmail"]
    subscriptions = [r["Properties"] for r in stack.of_type("AWS::SNS::Subscription").values()]
    expected = [{"TopicArn": "<Ref AlarmTopic>", "Protocol": "email", "Endpoint": email}] if email else []
    assert subscriptions == expected


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


# --------------------------------------------------------------------------------------------
# The retirement function (SPEC §4a)
# --------------------------------------------------------------------------------------------


def test_retirement_role_allows_exactly_the_calls_the_retirement_function_makes(
    stack: Stack, configuration: Configuration
) -> None:
    expected = (
        LOG_ACTIONS
        | RETIRE_IAM_ACTIONS
        | RETIRE_SECRET_ACTIONS
        | LIST_SECRETS
        | {"sns:Publish"}
        | ({"kms:Decrypt"} if configuration.kms_key else frozenset())
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
        if not g.actions & ({"kms:Decrypt"} | VPC_ACTIONS)  # KMS and EC2: tests of their own
    ]
    users = listed_users(stack)
    expected = [
        (LOG_ACTIONS, ("<GetAtt RetirementFunctionLogGroup.Arn>",)),
        *((RETIRE_IAM_ACTIONS, (user.arn,)) for user in users),
        *((RETIRE_SECRET_ACTIONS, (user.secret,)) for user in users),
        (LIST_SECRETS, ("*",)),  # unscopable, and returns no value (see the template's comment)
        (frozenset({"sns:Publish"}), ("<Ref AlarmTopic>",)),
    ]
    assert sorted(grants, key=repr) == sorted(expected, key=repr)


def test_retirement_role_decrypts_only_the_deployments_secrets_through_secrets_manager(
    stack: Stack, configuration: Configuration
) -> None:
    kms = [
        (g.actions, g.resources, g.condition) for g in role_grants(stack, RETIREMENT_ID) if "kms:Decrypt" in g.actions
    ]
    if configuration.kms_key is None:
        assert kms == []
    else:
        condition = via_secrets_manager_for_the_deployments_secrets()
        assert kms == [(frozenset({"kms:Decrypt"}), (configuration.kms_key,), condition)]


def test_retirement_role_trusts_only_lambda(stack: Stack) -> None:
    trust = stack.properties("RetirementFunctionRole")["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]


def test_retirement_function_looks_after_this_rotation_functions_secrets_with_their_bound_user(stack: Stack) -> None:
    rotation, retirement = stack.properties(FUNCTION_ID), stack.properties(RETIREMENT_ID)
    env = retirement["Environment"]["Variables"]
    assert env["ROTATION_FUNCTION_ARN"] == f"<GetAtt {FUNCTION_ID}.Arn>"
    assert env["SMTP_BOUND_USERS"] == rotation["Environment"]["Variables"]["SMTP_BOUND_USERS"]
    assert env["ALARM_TOPIC_ARN"] == "<Ref AlarmTopic>"
    assert retirement["Handler"] == "lambda_function.retire_handler.lambda_handler"
    for name in ("Code", "Runtime", "Architectures"):
        assert retirement[name] == rotation[name], name
    source = load_template()["Resources"]  # what sam build reads: the same package, built the same way
    assert source[RETIREMENT_ID]["Properties"]["CodeUri"] == source[FUNCTION_ID]["Properties"]["CodeUri"]
    assert source[RETIREMENT_ID]["Metadata"] == source[FUNCTION_ID]["Metadata"]
    assert retirement["LoggingConfig"] == {
        "LogFormat": "JSON",
        "LogGroup": "<Ref RetirementFunctionLogGroup>",
        "ApplicationLogLevel": stack.parameters["LogLevel"],
    }
    (invoke_config,) = stack.of_type("AWS::Lambda::EventInvokeConfig").values()
    assert invoke_config["Properties"]["MaximumRetryAttempts"] == 0  # the next hourly run is the retry


def test_both_functions_get_the_retirement_durations(stack: Stack) -> None:
    parameters = stack.parameters
    durations = {
        "PREVIOUS_KEY_ACTION": parameters["PreviousKeyAction"],
        "PREVIOUS_KEY_ACTIVE_HOURS": parameters["PreviousKeyActiveHours"],
        "PREVIOUS_KEY_INACTIVE_DAYS": parameters["PreviousKeyInactiveDays"],
    }
    rotation = stack.properties(FUNCTION_ID)["Environment"]["Variables"]
    retirement = stack.properties(RETIREMENT_ID)["Environment"]["Variables"]
    assert {name: rotation[name] for name in durations} == durations  # the immediate policies
    assert {name: retirement[name] for name in durations} == durations
    assert retirement["PREVIOUS_KEY_IDLE_HOURS"] == parameters["PreviousKeyIdleHours"]
    assert retirement["PREVIOUS_KEY_MAX_ACTIVE_HOURS"] == parameters["PreviousKeyMaxActiveHours"]
    assert retirement["MAX_KEY_AGE_DAYS"] == parameters["MaxKeyAgeDays"]


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


def test_current_key_age_alarm_watches_the_metric_the_retirement_function_emits(stack: Stack) -> None:
    alarm = stack.properties("CurrentKeyTooOldAlarm")
    env = stack.properties(RETIREMENT_ID)["Environment"]["Variables"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (env["POWERTOOLS_METRICS_NAMESPACE"], CURRENT_KEY_AGE_METRIC)
    assert alarm["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]
    assert (alarm["Statistic"], alarm["ComparisonOperator"]) == ("Maximum", "GreaterThanThreshold")
    assert str(alarm["Threshold"]) == stack.parameters["MaxKeyAgeDays"] == env["MAX_KEY_AGE_DAYS"]
    assert alarm["AlarmActions"] == ["<Ref AlarmTopic>"]


def test_default_maximum_key_age_is_below_security_hub_iam3() -> None:
    assert int(load_template()["Parameters"]["MaxKeyAgeDays"]["Default"]) < 90


def test_retirement_function_errors_raise_an_alarm_on_the_topic(stack: Stack) -> None:
    alarm = stack.properties("RetirementFunctionErrorsAlarm")
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": f"<Ref {RETIREMENT_ID}>"}]
    assert alarm["AlarmActions"] == ["<Ref AlarmTopic>"]


# --------------------------------------------------------------------------------------------
# What organisations require: a VPC, a permissions boundary, memory (for each configuration)
# --------------------------------------------------------------------------------------------


def _items(value: str) -> list[str]:
    return [item for item in value.split(",") if item]


def test_both_functions_run_in_the_vpc_only_when_given_one(stack: Stack) -> None:
    subnets, groups = _items(stack.parameters["VpcSubnetIds"]), _items(stack.parameters["VpcSecurityGroupIds"])
    expected = {"SubnetIds": subnets, "SecurityGroupIds": groups} if subnets else None
    for function_id in (FUNCTION_ID, RETIREMENT_ID):
        assert stack.properties(function_id).get("VpcConfig") == expected, function_id


def test_roles_manage_network_interfaces_only_in_a_vpc_and_only_in_this_account(stack: Stack) -> None:
    in_vpc = bool(stack.parameters["VpcSubnetIds"])
    scoped = tuple(
        f"arn:aws:ec2:{REGION}:{ACCOUNT}:{kind}/*" for kind in ("network-interface", "subnet", "security-group")
    )
    for function_id in (FUNCTION_ID, RETIREMENT_ID):
        grants = [
            (g.actions, g.resources)
            for g in role_grants(stack, function_id)
            if any(a.startswith("ec2:") for a in g.actions)
        ]
        expected = [(DESCRIBE_NETWORK_INTERFACES, ("*",)), (NETWORK_INTERFACE_ACTIONS, scoped)] if in_vpc else []
        assert sorted(grants, key=repr) == sorted(expected, key=repr), function_id


@pytest.mark.parametrize(
    "parameters",
    [{"VpcSubnetIds": ",".join(SUBNETS)}, {"VpcSecurityGroupIds": ",".join(SECURITY_GROUPS)}],
    ids=["subnets-only", "security-groups-only"],
)
def test_a_vpc_needs_both_subnets_and_security_groups(parameters: dict[str, str]) -> None:
    with pytest.raises(TemplateRejected, match="Set both VpcSubnetIds and VpcSecurityGroupIds, or neither"):
        deploy(parameters)


def test_every_role_and_created_user_gets_the_permissions_boundary_when_given(stack: Stack) -> None:
    boundary = stack.parameters["PermissionsBoundaryArn"] or None
    principals = {
        logical_id: resource["Properties"]
        for logical_id, resource in stack.everything().items()
        if resource["Type"] in {"AWS::IAM::Role", "AWS::IAM::User"}
    }
    created_users = {f"{user.stack_id}/User" for user in listed_users(stack) if user.created}
    assert {"RotationFunctionRole", "RetirementFunctionRole", "RetirementScheduleRole"} | created_users <= set(
        principals
    )
    assert {lid: p.get("PermissionsBoundary") for lid, p in principals.items()} == dict.fromkeys(principals, boundary)


def test_both_functions_get_the_memory_size(stack: Stack) -> None:
    for function_id in (FUNCTION_ID, RETIREMENT_ID):
        assert str(stack.properties(function_id)["MemorySize"]) == stack.parameters["FunctionMemorySize"], function_id


# --------------------------------------------------------------------------------------------
# What CloudFormation refuses (Rules and parameter constraints)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parameters",
    [
        pytest.param(
            {"SendingIdentityArn": IDENTITY, "SendingGroupName": CONSOLE_GROUP}, id="scope-on-the-console-group"
        ),
        pytest.param(
            {"SendingIdentityArn": IDENTITY, "SendingGroupName": "mine", "SendingGroupExists": "true"},
            id="scope-on-an-existing-group",
        ),
        pytest.param(
            {"SendingConfigurationSetArn": f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/tx"},
            id="configuration-set-on-the-console-group",
        ),
    ],
)
def test_sending_scope_is_refused_on_a_group_this_stack_does_not_own(parameters: dict[str, str]) -> None:
    with pytest.raises(TemplateRejected, match="SendingGroup"):
        deploy(parameters)


def test_configuration_set_scope_leaves_identities_of_this_account_open() -> None:
    config_set = f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/transactional"
    stack = deploy({"SendingConfigurationSetArn": config_set, "SendingGroupName": "ses-transactional"})
    _, group = stack.only("AWS::IAM::Group")
    assert group["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"] == [
        f"arn:aws:ses:*:{ACCOUNT}:identity/*",
        config_set,
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KmsKeyArn", f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/aws/secretsmanager"),  # an alias grants nothing
        ("SendingIdentityArn", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/*"),
        ("SmtpUserPath", "/*/"),
        ("AdoptedSmtpUserPath", "/*/"),
        ("SmtpUserNames", "a*"),
        ("SmtpUserNames", "app-a,b/c"),  # each name is checked
        ("AdoptedSmtpUserNames", "x" * 65),
        ("PreviousKeyAction", "Delete"),
        ("RotationWindow", "25h"),
        ("LogRetentionDays", "10"),
        ("SmtpAllowedHosts", "smtp.example:2525"),  # hosts only: no ports, schemes or wildcards
        ("SmtpAllowedHosts", "*.example.com"),
        ("SecretWriterArns", "*"),
        ("SendingFromAddresses", "anyone"),
        ("PreviousKeyActiveHours", "-1"),
        ("PreviousKeyInactiveDays", "7d"),
        ("PreviousKeyIdleHours", "1h"),
        ("PreviousKeyMaxActiveHours", "inf"),
        ("PreviousKeyActiveHours", "1" * 13),
        ("SmtpAllowedHosts", "relay.example," * 73 + "relay"),  # 1,027 characters: the most is 1,024
        ("SmtpTestSender", "a" * 243 + "@example.com"),
    ],
)
def test_parameter_values_that_would_widen_or_break_the_stack_are_refused(name: str, value: str) -> None:
    with pytest.raises(TemplateRejected, match=name):
        deploy({name: value})


def test_a_deployment_of_no_user_is_refused() -> None:
    with pytest.raises(TemplateRejected, match="at least one user"):
        deploy({"SmtpUserNames": ""})
    with pytest.raises(TemplateRejected, match="at least one user"):
        deploy({"SmtpUserNames": ",", "AdoptedSmtpUserNames": ""})
    assert [u.name for u in listed_users(deploy({"SmtpUserNames": "", "AdoptedSmtpUserNames": "x"}))] == ["x"]


# --------------------------------------------------------------------------------------------
# The resolver itself (so that a bug in it cannot make the checks above pass vacuously)
# --------------------------------------------------------------------------------------------


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for item in node.values():
            yield from walk(item)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def test_resolved_stack_has_no_intrinsic_function_left(stack: Stack) -> None:
    def is_intrinsic(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        return set(node) in ({"Ref"}, {"Condition"}) or any(str(key).startswith("Fn::") for key in node)

    resolved = [stack.everything(), stack.outputs, *(nested.outputs for nested in stack.nested.values())]
    assert [node for node in walk(resolved) if is_intrinsic(node)] == []


def test_conditional_resources_follow_their_conditions() -> None:
    defaults = deploy()
    adopted = deploy(ADOPT_KMS_IDENTITY.parameters)
    assert {"SmtpUsersessmtpuser", "SendingGroup"} <= set(defaults.resources)
    assert "SmtpUser" not in defaults.resources  # the empty adopted list's single empty item
    assert "User" in defaults.nested["SmtpUsersessmtpuser"].resources
    assert "NotificationEmailSubscription" not in defaults.resources
    assert set(adopted.nested) == {"SmtpUsersessmtpuser20240101120000"}  # no stack for the empty created list
    assert "User" not in adopted.nested["SmtpUsersessmtpuser20240101120000"].resources
    assert "NotificationEmailSubscription" in adopted.resources


# --------------------------------------------------------------------------------------------
# How many users one stack holds: IAM limits a role's inline policies to 10,240 characters in
# total (whitespace not counted), and each user adds one policy to each role.
# --------------------------------------------------------------------------------------------

ROLE_INLINE_POLICY_LIMIT = 10_240
USERS_PER_STACK = 25  # README: with 64-character names at path "/", a KMS key and a VPC (the most)
# Every optional grant of the roles on: the KMS key and the VPC network interfaces.
LARGEST_ROLES = {
    "KmsKeyArn": KMS_KEY,
    "VpcSubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "VpcSecurityGroupIds": "sg-0123456789abcdef0",
}


def _inline_policy_characters(stack: Stack, role_id: str) -> int:
    """The role's inline policies as IAM counts them, with realistic ARNs in place of references
    (policy names counted too, to be safe)."""
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{STACK}-ses-smtp-retirement:*"
    real = {f"<GetAtt {u.stack_id}/User.Arn>": f"arn:aws:iam::{ACCOUNT}:user/{u.name}" for u in listed_users(stack)}
    real |= {
        "<GetAtt RotationFunctionLogGroup.Arn>": log_group,
        "<GetAtt RetirementFunctionLogGroup.Arn>": log_group,
        "<Ref AlarmTopic>": f"arn:aws:sns:{REGION}:{ACCOUNT}:{STACK}-AlarmTopic-ABCDEFGHIJKL",
    }
    policies = [(p["PolicyName"], p["PolicyDocument"]) for p in stack.properties(role_id).get("Policies", [])]
    policies += [
        (r["Properties"]["PolicyName"], r["Properties"]["PolicyDocument"])
        for r in stack.everything().values()
        if r["Type"] == "AWS::IAM::RolePolicy" and r["Properties"]["RoleName"] == f"<Ref {role_id}>"
    ]
    total = 0
    for name, document in policies:
        text = json.dumps(document, separators=(",", ":"))
        for symbol, arn in real.items():
            text = text.replace(symbol, arn)
        assert "<" not in text, text
        total += len(name) + len(re.sub(r"\s", "", text))
    return total


def _longest_names(count: int) -> str:
    return ",".join(f"{index:02d}".ljust(64, "u") for index in range(count))  # IAM's longest: 64


def test_roles_inline_policies_fit_iams_limit_at_the_documented_number_of_users() -> None:
    stack = deploy({"SmtpUserNames": _longest_names(USERS_PER_STACK), **LARGEST_ROLES})
    assert len(listed_users(stack)) == USERS_PER_STACK
    sizes = {
        role: _inline_policy_characters(stack, role) for role in ("RotationFunctionRole", "RetirementFunctionRole")
    }
    assert max(sizes.values()) <= ROLE_INLINE_POLICY_LIMIT, sizes
    # ... and it is the largest number that does (the README's figure is exact).
    one_more = deploy({"SmtpUserNames": _longest_names(USERS_PER_STACK + 1), **LARGEST_ROLES})
    assert _inline_policy_characters(one_more, "RetirementFunctionRole") > ROLE_INLINE_POLICY_LIMIT


# Lambda allows 4 KB for a function's environment variables together, measured as one JSON object
# (its error "exceeded the 4KB limit. String measured: {"NAME":"value",...}"), so names, values and
# the JSON punctuation count. Each user adds its name and a space to SMTP_BOUND_USERS in both.
LAMBDA_ENVIRONMENT_LIMIT = 4096
ENVIRONMENT_USERS = 37  # README: what the environment alone would hold (64-character names)
# The longest partition and region names there are (botocore's endpoints.json), for the ARNs.
LONGEST_PARTITION, LONGEST_REGION = "aws-us-gov", "us-isof-south-1"


def _longest_environment_parameters() -> dict[str, str]:
    """The parameters the functions' environment carries, each at the longest value the template
    accepts: free text at its MaxLength, a choice at its longest choice."""
    declared = load_template()["Parameters"]

    def most(name: str) -> int:
        return int(declared[name]["MaxLength"])

    def longest_choice(name: str) -> str:
        return max((str(value) for value in declared[name]["AllowedValues"]), key=len)

    durations = (
        "PreviousKeyActiveHours",
        "PreviousKeyInactiveDays",
        "PreviousKeyIdleHours",
        "PreviousKeyMaxActiveHours",
    )
    domain = "@example.com"
    return {
        **{name: "9" * most(name) for name in durations},
        # DNS's longest names (253 characters), comma-separated, up to the most the template accepts.
        "SmtpAllowedHosts": "".join("," if i % 254 == 253 else "a" for i in range(most("SmtpAllowedHosts"))),
        "SmtpTestSender": "a" * (most("SmtpTestSender") - len(domain)) + domain,
        "PreviousKeyAction": longest_choice("PreviousKeyAction"),
        "SmtpAuthTimeoutSeconds": longest_choice("SmtpAuthTimeoutSeconds"),
        "LogLevel": longest_choice("LogLevel"),
        "MaxKeyAgeDays": str(declared["MaxKeyAgeDays"]["MaxValue"]),
    }


def _environment_bytes(stack: Stack, function_id: str) -> int:
    """The function's environment as Lambda measures it, with the longest ARNs in place of
    references: a 64-character function name (CloudFormation's generated names are cut there) and
    a topic named after a stack name of 128 characters (CloudFormation's longest)."""
    arn = f"arn:{LONGEST_PARTITION}:{{}}:{LONGEST_REGION}:{ACCOUNT}:{{}}".format
    real = {
        f"<GetAtt {FUNCTION_ID}.Arn>": arn("lambda", "function:" + "f" * 64),
        "<Ref AlarmTopic>": arn("sns", "s" * 128 + "-AlarmTopic-ABCDEFGHIJKL"),
    }
    variables = {
        name: real.get(str(value), str(value))
        for name, value in stack.properties(function_id)["Environment"]["Variables"].items()
    }
    assert not [value for value in variables.values() if value.startswith("<")], variables
    return len(json.dumps(variables, separators=(",", ":"), ensure_ascii=False).encode())


def _environment_sizes(users: int) -> dict[str, int]:
    stack = deploy({"SmtpUserNames": _longest_names(users), **LARGEST_ROLES, **_longest_environment_parameters()})
    assert len(listed_users(stack)) == users
    return {function_id: _environment_bytes(stack, function_id) for function_id in (FUNCTION_ID, RETIREMENT_ID)}


def test_every_parameter_in_a_functions_environment_has_a_longest_value() -> None:
    # Otherwise a long value could push the environment past Lambda's 4 KB whatever the users.
    template = load_template()
    declared = template["Parameters"]
    for function_id in (FUNCTION_ID, RETIREMENT_ID):
        variables = template["Resources"][function_id]["Properties"]["Environment"]["Variables"]
        for node in walk(variables):
            if isinstance(node, dict) and set(node) == {"Ref"} and node["Ref"] in declared:
                spec = declared[node["Ref"]]
                bounded = "AllowedValues" in spec or "MaxLength" in spec or "MaxValue" in spec
                assert bounded or node["Ref"] in {"SmtpUserNames", "AdoptedSmtpUserNames"}, node["Ref"]


def test_functions_environment_fits_lambdas_limit_at_the_documented_number_of_users() -> None:
    sizes = _environment_sizes(USERS_PER_STACK)
    assert max(sizes.values()) <= LAMBDA_ENVIRONMENT_LIMIT, sizes
    # The environment alone would hold ENVIRONMENT_USERS, and not one more (the README's figure).
    assert max(_environment_sizes(ENVIRONMENT_USERS).values()) <= LAMBDA_ENVIRONMENT_LIMIT
    assert max(_environment_sizes(ENVIRONMENT_USERS + 1).values()) > LAMBDA_ENVIRONMENT_LIMIT
