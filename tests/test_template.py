"""template.yaml: it lints clean, and what it would deploy is least-privilege and complete.

The policy checks read the *transformed* template (SAM → CloudFormation, done offline by
`samtranslator`, as `sam deploy` has CloudFormation do), then resolve it for one set of parameter
values the way CloudFormation would: parameters checked against their constraints, `Rules`
asserted, conditions evaluated, resources whose condition is false dropped, intrinsic functions
resolved. A reference to a resource stays symbolic (``<Ref SmtpSecret>``, ``<GetAtt SmtpUser.Arn>``):
that is exactly what "scoped to the secret" means before the secret exists.

Every check runs for three configurations: the defaults (create the user and the sending group),
adopting an existing user with a KMS key and an identity scope, and joining the SES console's
existing sending group.
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

from infra.local_aws import set_fake_aws_env
from lambda_function.retire_handler import CURRENT_KEY_AGE_METRIC

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
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
FUNCTION_ENVIRONMENT = {
    "PREVIOUS_KEY_ACTION",
    "PREVIOUS_KEY_ACTIVE_HOURS",
    "PREVIOUS_KEY_INACTIVE_DAYS",
    "SMTP_ALLOWED_HOSTS",
    "SMTP_SECRET_BINDINGS",
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
    def adopts_user(self) -> bool:
        return self.parameters.get("CreateSmtpUser") == "false"

    @property
    def kms_key(self) -> str | None:
        return self.parameters.get("KmsKeyArn") or None


DEFAULTS = Configuration("defaults")
ADOPT_KMS_IDENTITY = Configuration(
    "adopt-user-kms-identity",
    {
        "CreateSmtpUser": "false",
        "SmtpUserName": "ses-smtp-user.20240101-120000",
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
        "SmtpUserName": "app-mailer",
        "SmtpUserPath": "/smtp/",
        "PreviousKeyActiveHours": "12",
        "PreviousKeyInactiveDays": "3.5",
        "MaxKeyAgeDays": "60",
    },
)
CONFIGURATIONS = [DEFAULTS, ADOPT_KMS_IDENTITY, CONSOLE_GROUP_EXISTS]


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

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
        self._values: dict[str, Any] = {**PSEUDO_PARAMETERS, **parameters}
        for name, spec in template.get("Parameters", {}).items():
            if spec.get("Type") == "CommaDelimitedList" and name in self._values:
                self._values[name] = str(self._values[name]).split(",")
        self._mappings: Mapping[str, Any] = template.get("Mappings", {})
        self._resource_ids = set(template["Resources"])
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
            return f"<GetAtt {resource}.{attribute}>"
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
        raise AssertionError(f"intrinsic function {function} is not understood by this test")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self._values:
            return self._values[name]
        assert name in self._resource_ids, f"Ref to unknown name {name}"
        return f"<Ref {name}>"

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
    """What CloudFormation would create: resolved resources (condition true) and outputs."""

    parameters: Mapping[str, str]
    resources: Mapping[str, Mapping[str, Any]]
    outputs: Mapping[str, Any]

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


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as CloudFormation JSON (short-form tags such as !Ref become Fn:: objects)."""
    template: dict[str, Any] = yaml_parse(path.read_text())
    return template


def transformed(template: Mapping[str, Any]) -> dict[str, Any]:
    """The SAM transform, offline. CodeUri becomes an S3 location first, as `sam package` does."""
    document = json.loads(json.dumps(template))
    for resource in document["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifacts-bucket/rotation-function.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    result: dict[str, Any] = transform(document, dict(PSEUDO_PARAMETERS), NoManagedPolicies())
    return result


def check_parameters(template: Mapping[str, Any], overrides: Mapping[str, str]) -> dict[str, str]:
    """Parameter values as CloudFormation would accept them (defaults filled in, constraints met)."""
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


def deploy(parameters: Mapping[str, str] | None = None, path: Path = TEMPLATE) -> Stack:
    """Resolve the transformed template for `parameters`, as CloudFormation would."""
    template = transformed(load_template(path))
    values = check_parameters(template, parameters or {})
    resolver = Resolver(template, values)
    check_rules(template, resolver)
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
    return Stack(values, resources, outputs)


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


def identity_grants(stack: Stack) -> list[Grant]:
    """Every Allow statement of every identity policy (roles, groups, users, standalone policies)."""
    documents: list[tuple[str, Mapping[str, Any]]] = []
    for logical_id, resource in stack.resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] in {"AWS::IAM::Role", "AWS::IAM::Group", "AWS::IAM::User"}:
            documents += [(f"{logical_id}/{p['PolicyName']}", p["PolicyDocument"]) for p in props.get("Policies", [])]
            assert not props.get("ManagedPolicyArns"), f"{logical_id} attaches managed policies"
        elif resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            documents.append((logical_id, props["PolicyDocument"]))
    grants = []
    for source, document in documents:
        for statement in as_list(document["Statement"]):
            assert "NotAction" not in statement and "NotResource" not in statement, source
            if statement["Effect"] == "Allow":
                grants.append(
                    Grant(
                        source,
                        frozenset(as_list(statement["Action"])),
                        tuple(as_list(statement["Resource"])),
                        statement.get("Condition", {}),
                    )
                )
    return grants


def role_grants(stack: Stack, function_id: str = FUNCTION_ID) -> list[Grant]:
    role = stack.properties(function_id)["Role"]
    assert role == f"<GetAtt {function_id}Role.Arn>", "the function must use its own role of this template"
    return [grant for grant in identity_grants(stack) if grant.source.startswith(f"{function_id}Role/")]


def smtp_user_arn(stack: Stack) -> str:
    if stack.parameters["CreateSmtpUser"] == "true":
        return "<GetAtt SmtpUser.Arn>"
    return f"arn:aws:iam::{ACCOUNT}:user{stack.parameters['SmtpUserPath']}{stack.parameters['SmtpUserName']}"


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
    return path


def test_cfn_lint_reports_no_error_and_no_warning(template_file: Path) -> None:
    # No rule is disabled; there is no .cfnlintrc.
    result = subprocess.run(
        [tool("cfn-lint"), "--format", "parseable", "--", str(template_file)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=tool_env(),
        timeout=300,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stdout + result.stderr


def test_sam_validate_lint_passes_offline(template_file: Path) -> None:
    result = subprocess.run(
        [tool("sam"), "validate", "--lint", "--template-file", str(template_file)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=tool_env(),
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout


def test_configuration_values_are_accepted_by_the_template(configuration: Configuration) -> None:
    deploy(configuration.parameters)  # raises TemplateRejected otherwise


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
    assert sorted(wildcard_grants, key=lambda g: g.source) == sorted(allowed, key=lambda g: g.source)


def test_no_policy_uses_wildcard_actions(stack: Stack) -> None:
    assert [(g.source, a) for g in identity_grants(stack) for a in g.actions if "*" in a] == []


def test_function_role_allows_exactly_the_calls_the_function_makes(stack: Stack, configuration: Configuration) -> None:
    expected = LOG_ACTIONS | IAM_KEY_ACTIONS | SECRET_ACTIONS | (KMS_ACTIONS if configuration.kms_key else frozenset())
    granted = frozenset().union(*(grant.actions for grant in role_grants(stack)))
    assert granted == expected


def test_function_role_trusts_only_lambda(stack: Stack) -> None:
    trust = stack.properties("RotationFunctionRole")["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]


def test_access_key_actions_are_scoped_to_the_smtp_user(stack: Stack) -> None:
    iam_grants = [grant for grant in role_grants(stack) if any(a.startswith("iam:") for a in grant.actions)]
    assert [(grant.actions, grant.resources) for grant in iam_grants] == [(IAM_KEY_ACTIONS, (smtp_user_arn(stack),))]


def test_secrets_manager_actions_are_scoped_to_the_rotated_secret(stack: Stack) -> None:
    grants = [grant for grant in role_grants(stack) if any(a.startswith("secretsmanager:") for a in grant.actions)]
    assert [(grant.actions, grant.resources) for grant in grants] == [(SECRET_ACTIONS, ("<Ref SmtpSecret>",))]


def test_kms_is_allowed_only_with_a_key_and_only_through_secrets_manager(
    stack: Stack, configuration: Configuration
) -> None:
    kms_grants = [grant for grant in role_grants(stack) if any(a.startswith("kms:") for a in grant.actions)]
    assert not [g for g in identity_grants(stack) if "kms:GenerateDataKey" in g.actions and g not in kms_grants]
    if configuration.kms_key is None:
        assert kms_grants == []
        assert "KmsKeyId" not in stack.properties("SmtpSecret")
    else:
        via_secrets_manager = {
            "StringEquals": {
                "kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com",
                "kms:EncryptionContext:SecretARN": "<Ref SmtpSecret>",  # this secret's data keys only
            }
        }
        assert [(g.actions, g.resources, g.condition) for g in kms_grants] == [
            (KMS_ACTIONS, (configuration.kms_key,), via_secrets_manager)
        ]
        assert stack.properties("SmtpSecret")["KmsKeyId"] == configuration.kms_key


def test_logs_are_written_only_to_the_function_log_group(stack: Stack) -> None:
    grants = [grant for grant in role_grants(stack) if any(a.startswith("logs:") for a in grant.actions)]
    assert [(grant.actions, grant.resources) for grant in grants] == [
        (LOG_ACTIONS, ("<GetAtt RotationFunctionLogGroup.Arn>",))
    ]
    assert stack.properties(FUNCTION_ID)["LoggingConfig"]["LogGroup"] == "<Ref RotationFunctionLogGroup>"


def test_invoke_permission_is_for_secrets_manager_of_this_account_only(stack: Stack) -> None:
    permissions = stack.of_type("AWS::Lambda::Permission")
    assert [p["Properties"] for p in permissions.values()] == [
        {
            "FunctionName": f"<GetAtt {FUNCTION_ID}.Arn>",
            "Action": "lambda:InvokeFunction",
            "Principal": "secretsmanager.amazonaws.com",
            "SourceAccount": ACCOUNT,
            "SourceArn": "<Ref SmtpSecret>",
        }
    ]


def test_only_the_rotation_role_and_listed_principals_may_write_the_secret(stack: Stack) -> None:
    _, policy = stack.only("AWS::SecretsManager::ResourcePolicy")
    assert policy["SecretId"] == "<Ref SmtpSecret>"
    assert policy["BlockPublicPolicy"] is True
    listed = [arn for arn in stack.parameters["SecretWriterArns"].split(",") if arn]
    assert policy["ResourcePolicy"]["Statement"] == [
        {
            "Sid": "OnlyTheRotationWritesTheSecret",
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"],
            "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:PrincipalArn": ["<GetAtt RotationFunctionRole.Arn>", *listed]}},
        }
    ]


def test_the_function_is_told_its_allowed_hosts_and_the_one_user_its_secret_may_rotate(stack: Stack) -> None:
    env = stack.properties(FUNCTION_ID)["Environment"]["Variables"]
    assert env["SMTP_ALLOWED_HOSTS"] == stack.parameters["SmtpAllowedHosts"]
    user = stack.parameters["SmtpUserName"] if stack.parameters["CreateSmtpUser"] == "false" else "<Ref SmtpUser>"
    assert json.loads(env["SMTP_SECRET_BINDINGS"]) == {"<Ref SmtpSecret>": user}


def test_rotation_schedule_waits_for_the_invoke_permission(stack: Stack) -> None:
    schedule_id, schedule = stack.only("AWS::SecretsManager::RotationSchedule")
    (permission_id,) = stack.of_type("AWS::Lambda::Permission")
    assert permission_id in as_list(stack.resources[schedule_id]["DependsOn"])
    assert schedule["SecretId"] == "<Ref SmtpSecret>"
    assert schedule["RotationLambdaARN"] == f"<GetAtt {FUNCTION_ID}.Arn>"
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


def test_smtp_user_is_created_or_adopted_and_joins_the_sending_group(
    stack: Stack, configuration: Configuration
) -> None:
    user_name = stack.parameters["SmtpUserName"]
    if configuration.adopts_user:
        assert stack.of_type("AWS::IAM::User") == {}
        expected_user = user_name
    else:
        _, user = stack.only("AWS::IAM::User")
        assert (user["UserName"], user["Path"]) == (user_name, stack.parameters["SmtpUserPath"])
        expected_user = "<Ref SmtpUser>"
    _, membership = stack.only("AWS::IAM::UserToGroupAddition")
    assert membership["Users"] == [expected_user]
    if stack.parameters["SendingGroupExists"] == "true":
        assert membership["GroupName"] == stack.parameters["SendingGroupName"]
    else:
        assert membership["GroupName"] == "<Ref SendingGroup>"
    assert stack.outputs["SmtpUserName"] == expected_user


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
    kept = {lid for lid, r in stack.resources.items() if r.get("DeletionPolicy") == "Retain"}
    assert kept == {"SmtpSecret", "SmtpUserSendingGroupMembership"} | (
        {"SmtpUser"} if "SmtpUser" in stack.resources else set()
    ) | ({"SendingGroup"} if "SendingGroup" in stack.resources else set())
    assert all(stack.resources[lid].get("UpdateReplacePolicy") == "Retain" for lid in kept)


def test_secret_is_bootstrapped_with_the_user_name_and_region(stack: Stack, configuration: Configuration) -> None:
    secret = stack.properties("SmtpSecret")
    user = stack.parameters["SmtpUserName"] if configuration.adopts_user else "<Ref SmtpUser>"
    assert json.loads(secret["SecretString"]) == {"iam_user_name": user, "region": REGION}
    assert secret["Name"] == f"ses-smtp/{stack.parameters['SmtpUserName']}"


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
    """EventBridge matching for patterns made of exact values (all this template uses)."""
    for key, expected in pattern.items():
        if key not in event:
            return False
        if isinstance(expected, dict):
            if not isinstance(event[key], dict) or not event_matches(expected, event[key]):
                return False
        elif event[key] not in expected:
            return False
    return True


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


def test_rotation_failed_event_of_this_secret_notifies_the_topic(stack: Stack) -> None:
    _, rule = stack.only("AWS::Events::Rule")
    pattern = rule["EventPattern"]
    assert event_matches(pattern, rotation_failed_event("<Ref SmtpSecret>"))
    assert not event_matches(pattern, rotation_failed_event(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:x"))
    succeeded = rotation_failed_event("<Ref SmtpSecret>")
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


def test_outputs_name_the_secret_function_and_user_and_reveal_no_secret(stack: Stack) -> None:
    assert stack.outputs["SecretArn"] == "<Ref SmtpSecret>"
    assert stack.outputs["FunctionArn"] == f"<GetAtt {FUNCTION_ID}.Arn>"
    assert "SmtpUserName" in stack.outputs
    text = json.dumps(stack.outputs)
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
    )
    granted = frozenset().union(*(grant.actions for grant in role_grants(stack, RETIREMENT_ID)))
    assert granted == expected
    assert not granted & {"iam:CreateAccessKey", "secretsmanager:PutSecretValue"}


def test_retirement_role_reaches_only_the_smtp_user_the_secret_the_topic_and_its_log_group(stack: Stack) -> None:
    grants = {(g.actions, g.resources) for g in role_grants(stack, RETIREMENT_ID) if "kms:Decrypt" not in g.actions}
    assert grants == {
        (LOG_ACTIONS, ("<GetAtt RetirementFunctionLogGroup.Arn>",)),
        (RETIRE_IAM_ACTIONS, (smtp_user_arn(stack),)),
        (RETIRE_SECRET_ACTIONS, ("<Ref SmtpSecret>",)),
        (LIST_SECRETS, ("*",)),  # unscopable, and returns no value (see the template's comment)
        (frozenset({"sns:Publish"}), ("<Ref AlarmTopic>",)),
    }


def test_retirement_role_decrypts_only_this_secret_through_secrets_manager(
    stack: Stack, configuration: Configuration
) -> None:
    kms = [
        (g.actions, g.resources, g.condition) for g in role_grants(stack, RETIREMENT_ID) if "kms:Decrypt" in g.actions
    ]
    if configuration.kms_key is None:
        assert kms == []
    else:
        condition = {
            "StringEquals": {
                "kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com",
                "kms:EncryptionContext:SecretARN": "<Ref SmtpSecret>",
            }
        }
        assert kms == [(frozenset({"kms:Decrypt"}), (configuration.kms_key,), condition)]


def test_retirement_role_trusts_only_lambda(stack: Stack) -> None:
    trust = stack.properties("RetirementFunctionRole")["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]


def test_retirement_function_looks_after_this_rotation_functions_secrets_with_their_bound_user(stack: Stack) -> None:
    rotation, retirement = stack.properties(FUNCTION_ID), stack.properties(RETIREMENT_ID)
    env = retirement["Environment"]["Variables"]
    assert env["ROTATION_FUNCTION_ARN"] == f"<GetAtt {FUNCTION_ID}.Arn>"
    assert env["SMTP_SECRET_BINDINGS"] == rotation["Environment"]["Variables"]["SMTP_SECRET_BINDINGS"]
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
        ("SmtpUserName", "a*"),
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
    ],
)
def test_parameter_values_that_would_widen_or_break_the_stack_are_refused(name: str, value: str) -> None:
    with pytest.raises(TemplateRejected, match=name):
        deploy({name: value})


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

    assert [node for node in walk([stack.resources, stack.outputs]) if is_intrinsic(node)] == []


def test_conditional_resources_follow_their_conditions() -> None:
    defaults = deploy()
    adopted = deploy(ADOPT_KMS_IDENTITY.parameters)
    assert {"SmtpUser", "SendingGroup"} <= set(defaults.resources)
    assert "NotificationEmailSubscription" not in defaults.resources
    assert "SmtpUser" not in adopted.resources
    assert "NotificationEmailSubscription" in adopted.resources
