"""deployer-policy.json: what `sam deploy` of template.yaml needs and nothing more, derived from
CloudFormation's resource schemas (infra/deployer_policy.py), and never stale.

The checks read the policy as IAM would (a small evaluator below: Allow statements, wildcards,
StringEquals/StringLike conditions) against the resources the stack creates, as the template
tests' resolver (tests/template/resolver.py) sees them: the deployer reaches each of those with
what its handlers call, and nothing of anybody else's.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import cfnlint  # type: ignore[import-untyped]
import pytest
import samcli  # type: ignore[import-untyped]

from infra import deployer_needs, deployer_policy
from infra.deployer_resources import NAMING, REPO, DeploymentError, Target, deployment
from infra.language_extensions import expand
from tests.template.resolver import ACCOUNT, REGION, STACK, Stack, deploy, load_template, transformed
from tests.template.support import BOUNDARY, CONFIGURATIONS, KMS_KEY

POLICY = json.loads(deployer_policy.POLICY.read_text())  # the committed file
# Actions the issue names: a deployer holding any of them could make itself administrator, or read
# the SMTP credentials.
FORBIDDEN = {
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:AttachUserPolicy",
    "iam:AttachRolePolicy",
    "iam:AttachGroupPolicy",
    "iam:PutUserPolicy",
    "iam:CreateAccessKey",
    "iam:CreatePolicyVersion",
    "secretsmanager:GetSecretValue",
}
SUFFIX = "ABCDEFGHIJKL"  # a random suffix of a name CloudFormation generates
SIX = "-AbC123"  # the random characters Secrets Manager adds to a secret's name in its ARN


@functools.cache
def policy_for(name: str) -> dict[str, Any]:
    (configuration,) = [c for c in CONFIGURATIONS if c.name == name]
    return deployer_policy.policy(Target(STACK, dict(configuration.parameters)))


@functools.cache
def resolved(name: str) -> Stack:
    (configuration,) = [c for c in CONFIGURATIONS if c.name == name]
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # samtranslator wants one; nothing is called
    return deploy(configuration.parameters)


CONFIGURATION_NAMES = [c.name for c in CONFIGURATIONS]
DEFAULT = policy_for("defaults")  # generated afresh: samconfig.toml's deployment


# ----------------------------------------------------------------------------------------------
# Reading a policy as IAM does
# ----------------------------------------------------------------------------------------------


def _like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    return _wildcards(pattern, ignore_case).fullmatch(value) is not None


@functools.cache
def _wildcards(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(regex, re.IGNORECASE if ignore_case else 0)


def allows(document: Mapping[str, Any], action: str, arn: str, context: Mapping[str, str] | None = None) -> bool:
    """Whether an Allow statement of `document` lets `action` act on `arn` in `context`."""
    context = context or {}
    for statement in document["Statement"]:
        if not any(_like(a, action, ignore_case=True) for a in as_list(statement["Action"])):
            continue
        if not any(_like(r, arn) for r in as_list(statement["Resource"])):
            continue
        conditions = statement.get("Condition", {})
        assert set(conditions) <= {"StringEquals", "StringLike"}, conditions
        if all(
            key in context
            and any(_like(v, context[key]) if op == "StringLike" else v == context[key] for v in as_list(values))
            for op, pairs in conditions.items()
            for key, values in pairs.items()
        ):
            return True
    return False


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(document: Mapping[str, Any]) -> set[str]:
    return deployer_policy.actions_of(document)


# ----------------------------------------------------------------------------------------------
# What the stack creates, as the template tests' resolver sees it, and what its handlers list
# ----------------------------------------------------------------------------------------------


def sample_arns(stack: Stack) -> Iterator[tuple[str, str, str]]:
    """(path, type, ARN) of each resource the stack creates that has an ARN, its generated names
    with a sample suffix, as CloudFormation makes them."""
    for path, resource in stack.everything().items():
        properties = resource.get("Properties", {})
        nested, _, logical_id = path.rpartition("/")
        stack_name = f"{STACK}-{nested}-{SUFFIX}" if nested else STACK
        generated = f"{stack_name}-{logical_id}-{SUFFIX}"
        name = properties.get("Name")
        arn = {
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{generated}",
            "AWS::IAM::User": f"arn:aws:iam::{ACCOUNT}:user{properties.get('Path', '/')}{properties.get('UserName')}",
            "AWS::IAM::Group": f"arn:aws:iam::{ACCOUNT}:group/{properties.get('GroupName')}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{generated}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{properties.get('LogGroupName')}",
            "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{generated}",
            "AWS::Events::Rule": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{generated}",
            "AWS::CloudWatch::Alarm": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{generated}",
            "AWS::Scheduler::Schedule": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{generated}",
            "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}{SIX}",
            "AWS::SSM::Parameter": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}",
            "AWS::CloudFormation::Stack": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{generated}/0a1b2c3d",
        }.get(resource["Type"])
        if arn is not None:
            yield path, resource["Type"], arn


@functools.cache
def schemas() -> dict[str, dict[str, Any]]:
    """cfn-lint's copies of CloudFormation's resource provider schemas, by type."""
    pattern = os.path.join(os.path.dirname(cfnlint.__file__), "data", "schemas", "resources", "*.json")
    found = (json.loads(Path(path).read_text()) for path in glob.glob(pattern))
    return {schema["typeName"]: schema for schema in found if "typeName" in schema}


def handlers(resource_type: str, retained: bool = False) -> frozenset[str]:
    """Every permission the resource type's schema lists for its create, read, update and delete
    handlers (read here from the schemas, not through the generator); a retained resource is never
    deleted, so its delete handler does not count."""
    listed = schemas()[resource_type].get("handlers", {})
    used = ("create", "read", "update") if retained else ("create", "read", "update", "delete")
    found = {p for h in used for p in listed.get(h, {}).get("permissions", [])}
    # CloudFormation's older types list none.
    return frozenset(found or deployer_needs.LEGACY_PERMISSIONS[resource_type])


@functools.cache
def service_authorization() -> dict[str, Any]:
    path = Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def resource_types_of(action: str) -> list[str] | None:
    service, name = action.split(":")
    entry = service_authorization().get(service, {}).get("Actions", {}).get(name.lower())
    return None if entry is None else [f"{service}:{r.lower()}" for r in entry.get("Resources", [])]


@functools.cache
def written_by_type() -> dict[str, set[str]]:
    """Per resource type, the property paths template.yaml and smtp-user.yaml write for it under
    any condition (a Fn::If's branches both count)."""
    found: dict[str, set[str]] = {}
    for path in (REPO / "template.yaml", REPO / "smtp-user.yaml"):
        source = load_template(path)
        if "Transform" in source:
            source = expand(source, {"SmtpUserNames": ["a"], "AdoptedSmtpUserNames": ["b"]})
            source = transformed(source, {})
        for resource in source["Resources"].values():
            found.setdefault(resource["Type"], set()).update(_paths(resource.get("Properties", {})))
    return found


def _paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and list(node) == ["Fn::If"]:
        for branch in node["Fn::If"][1:]:
            yield from _paths(branch, prefix)
    elif node != {"Ref": "AWS::NoValue"}:
        if prefix:
            yield prefix[:-1]
        if isinstance(node, dict) and not any(k == "Ref" or k.startswith("Fn::") for k in node):
            for key, value in node.items():
                yield from _paths(value, f"{prefix}{key}/")
        elif isinstance(node, list):
            for item in node:
                yield from _paths(item, f"{prefix}*/")


# ----------------------------------------------------------------------------------------------
# The file
# ----------------------------------------------------------------------------------------------


def test_committed_deployer_policy_is_what_samconfigs_deployment_needs_now() -> None:
    assert deployer_policy.policy() == POLICY, "deployer-policy.json is stale: run make deployer-policy"


def test_the_default_deployment_is_samconfigs_stack_in_any_account() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())["default"]
    target = deployer_policy.samconfig_target()
    assert target.stack_name == config["global"]["parameters"]["stack_name"]
    assert target.account == "*"
    assert target.region == config["deploy"]["parameters"].get("region", "*")


def test_samconfigs_parameter_overrides_are_the_deployments(tmp_path: Path) -> None:
    samconfig = tmp_path / "samconfig.toml"
    samconfig.write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "mail"\n[default.deploy.parameters]\n'
        'region = "eu-west-1"\nparameter_overrides = "SmtpUserNames=\\"app,billing\\" SmtpUserPath=/smtp/"\n'
    )
    target = deployer_policy.samconfig_target(samconfig)
    assert target == Target("mail", {"SmtpUserNames": "app,billing", "SmtpUserPath": "/smtp/"}, region="eu-west-1")


def test_every_action_is_an_iam_action() -> None:
    # IAM refuses a policy naming anything else (a schema lists the log event s3:REST.PUT.OBJECT).
    assert granted(DEFAULT)
    assert [a for a in granted(DEFAULT) if not re.fullmatch(r"[a-z0-9-]+:[A-Za-z][A-Za-z0-9]*", a)] == []


# ----------------------------------------------------------------------------------------------
# Nothing the template cannot need
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGURATION_NAMES)
def test_no_action_is_granted_that_the_templates_resources_cannot_need(name: str) -> None:
    """Each action comes from a handler of a resource the stack creates (or Secrets Manager's use of
    the key), its delete handler only if CloudFormation may delete it, and serves a property the
    template writes; or `sam deploy` calls it."""
    written = written_by_type()
    can_need: set[str] = set()
    for resource in resolved(name).everything().values():
        resource_type = resource["Type"]
        retained = resource.get("DeletionPolicy") == resource.get("UpdateReplacePolicy") == "Retain"
        actions = set(handlers(resource_type, retained))
        for (of_type, prop), added in deployer_needs.ADDED.items():
            if of_type == resource_type and prop in written[resource_type]:
                actions |= added
        for entry in deployer_needs.UNNEEDED:
            writes = any(p == w or w.startswith(f"{p}/") for p in entry.properties for w in written[entry.type])
            if entry.type == resource_type and not writes:
                actions -= entry.actions
        can_need |= actions
    sam_calls = (
        deployer_policy.SAM_DEPLOY | deployer_policy.SAM_ARTIFACTS | set(deployer_policy.managed_bucket_actions())
    )
    document = policy_for(name)
    assert sorted(granted(document) - can_need - sam_calls) == []


@pytest.mark.parametrize("name", CONFIGURATION_NAMES)
def test_no_login_profile_managed_policy_attachment_user_policy_or_secret_value(name: str) -> None:
    document = policy_for(name)
    assert sorted(granted(document) & FORBIDDEN) == []
    assert [a for a in granted(document) if "*" in a] == []


@pytest.mark.parametrize("name", CONFIGURATION_NAMES)
def test_pass_role_names_the_stacks_roles_and_the_service_each_is_passed_to(name: str) -> None:
    document = policy_for(name)
    passing = [s for s in document["Statement"] if "iam:PassRole" in as_list(s["Action"])]
    services = {s["Condition"]["StringEquals"]["iam:PassedToService"] for s in passing if "Condition" in s}
    assert services == {"lambda.amazonaws.com", "scheduler.amazonaws.com"}
    for statement in passing:
        assert as_list(statement["Action"]) == ["iam:PassRole"]
        assert list(statement["Condition"]) == ["StringEquals"]
        assert all(r.startswith(f"arn:aws:iam::*:role/{STACK}-") for r in as_list(statement["Resource"]))
    roles = {path: arn for path, t, arn in sample_arns(resolved(name)) if t == "AWS::IAM::Role"}
    to = {"iam:PassedToService": "lambda.amazonaws.com"}
    assert allows(document, "iam:PassRole", roles["RotationFunctionRole"], to)
    assert not allows(document, "iam:PassRole", roles["RotationFunctionRole"])  # to no service named
    assert not allows(
        document, "iam:PassRole", roles["RotationFunctionRole"], {"iam:PassedToService": "ec2.amazonaws.com"}
    )
    assert not allows(document, "iam:PassRole", roles["RetirementScheduleRole"], to)
    assert allows(
        document, "iam:PassRole", roles["RetirementScheduleRole"], {"iam:PassedToService": "scheduler.amazonaws.com"}
    )
    assert not allows(document, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/Admin", to)


@pytest.mark.parametrize("name", CONFIGURATION_NAMES)
def test_only_actions_iam_cannot_scope_are_granted_on_every_resource(name: str) -> None:
    document = policy_for(name)
    everywhere = {a for s in document["Statement"] if s["Resource"] == "*" for a in as_list(s["Action"])}
    assert {a: resource_types_of(a) for a in everywhere} == {a: [] for a in everywhere}
    # What is left reads and writes nothing: a description of the network and the log groups.
    assert all(a.split(":")[1].startswith("Describe") for a in everywhere), everywhere


@pytest.mark.parametrize("name", CONFIGURATION_NAMES)
def test_the_deployer_reaches_nothing_of_anybody_elses(name: str) -> None:
    document = policy_for(name)
    scoped = {a for s in document["Statement"] if s["Resource"] != "*" for a in as_list(s["Action"])}
    others = [
        f"arn:aws:iam::{ACCOUNT}:role/Admin",
        f"arn:aws:iam::{ACCOUNT}:role/{STACK}-SomethingElse-{SUFFIX}",
        f"arn:aws:iam::{ACCOUNT}:user/alice",
        f"arn:aws:iam::{ACCOUNT}:group/Admins",
        f"arn:aws:iam::{ACCOUNT}:policy/org/DeveloperBoundary",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:payments",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/database-AbC123",
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/payments",
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{STACK}-ses-smtp-rotation-and-more",
        f"arn:aws:sns:{REGION}:{ACCOUNT}:payments-alerts",
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/payments",
        f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:payments",
        f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/payments",
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/payments/0a1b2c3d",
        f"arn:aws:kms:{REGION}:{ACCOUNT}:key/another-key",
        "arn:aws:s3:::payments-bucket/object",
    ]
    context = {"iam:PassedToService": "lambda.amazonaws.com", "iam:PermissionsBoundary": BOUNDARY}
    reached = {(a, arn) for arn in others for a in scoped if allows(document, a, arn, context)}
    assert reached == set()


@pytest.mark.parametrize("name", CONFIGURATION_NAMES)
def test_each_resource_the_stack_creates_gets_what_its_handlers_call_on_it(name: str) -> None:
    """Every handler permission that acts on the resource itself is granted on its ARN, unless the
    generator says why it is not needed."""
    document = policy_for(name)
    configuration = next(c for c in CONFIGURATIONS if c.name == name)
    target = Target(STACK, dict(configuration.parameters))
    left_out = {(p.type, p.action) for p in deployer_policy.pruned(target)}
    context = {"iam:PermissionsBoundary": BOUNDARY}
    missing = []
    for path, resource_type, arn in sample_arns(resolved(name)):
        own = NAMING[resource_type].resource_type
        for action in sorted(handlers(resource_type)):
            scopes = resource_types_of(action)
            if scopes is None or own not in scopes or (resource_type, action) in left_out:
                continue
            if not allows(document, action, arn, context):
                missing.append((path, action))
    assert missing == []
    assert len(list(sample_arns(resolved(name)))) >= 15


@pytest.mark.parametrize("name", CONFIGURATION_NAMES)
def test_every_handler_permission_is_granted_or_left_out_with_a_reason(name: str) -> None:
    configuration = next(c for c in CONFIGURATIONS if c.name == name)
    target = Target(STACK, dict(configuration.parameters))
    document = policy_for(name)
    left_out = {(p.type, p.action): p.why for p in deployer_policy.pruned(target)}
    assert all(left_out.values())
    types = {r["Type"] for r in resolved(name).everything().values()}
    silent = {(t, a) for t in types for a in handlers(t) if a not in granted(document) and (t, a) not in left_out}
    assert silent == set()


# ----------------------------------------------------------------------------------------------
# The table of what unwritten properties make unneeded, and the data the scoping relies on
# ----------------------------------------------------------------------------------------------


def test_each_unneeded_entry_names_its_types_handler_permissions_and_schema_properties() -> None:
    for entry in deployer_needs.UNNEEDED:
        assert entry.actions <= handlers(entry.type), entry
        assert entry.why, entry
    properties = {t: set(schema.get("properties", {})) for t, schema in schemas().items()}
    for entry in deployer_needs.UNNEEDED:
        assert {p.split("/")[0] for p in entry.properties} <= properties[entry.type], entry


def test_the_template_writes_no_property_whose_actions_are_left_out() -> None:
    # The other half of the table's promise: what it leaves out is for properties nobody writes.
    written = written_by_type()
    left_out = {(p.type, p.action) for p in deployer_policy.pruned()}
    for entry in deployer_needs.UNNEEDED:
        if any((entry.type, a) in left_out and entry.type in written for a in entry.actions):
            assert not any(w == p or w.startswith(f"{p}/") for p in entry.properties for w in written[entry.type])


def test_the_resource_types_and_arns_it_names_are_the_service_authorization_datas() -> None:
    data = service_authorization()
    for resource_type, naming in NAMING.items():
        service, kind = naming.resource_type.split(":")
        formats = {k.lower(): v for k, v in data[service]["Resources"].items()}[kind]["ARNFormats"]
        for arn in [a for p, t, a in sample_arns(resolved("defaults")) if t == resource_type]:
            regex = (
                formats[0].replace("${Partition}", "aws").replace("${Region}", REGION).replace("${Account}", ACCOUNT)
            )
            assert re.fullmatch(regex, arn), (resource_type, arn, formats)


# ----------------------------------------------------------------------------------------------
# Keys, boundaries, names
# ----------------------------------------------------------------------------------------------


def test_without_a_kms_key_no_kms_action_is_granted() -> None:
    assert [a for a in granted(DEFAULT) if a.startswith("kms:")] == []


def test_a_kms_key_is_used_only_through_the_service_that_needs_it() -> None:
    # The deployment's key encrypts the secrets, and (since the key's use was widened in the
    # template) the functions' environment (KmsKeyArn), the log groups (KmsKeyId) and the alarm
    # topic (KmsMasterKeyId). The deployer uses it through Secrets Manager for the secrets (their
    # values) and through Lambda for the environment (the function handlers' KMS calls); the log
    # groups' and the topic's handlers list no KMS action (CloudWatch Logs, CloudWatch and
    # EventBridge use the key as service principals, by the key policy), so no statement goes through
    # them, and a KMS call through any other service is refused.
    document = policy_for("adopt-user-kms-identity")
    kms = [s for s in document["Statement"] if any(a.startswith("kms:") for a in as_list(s["Action"]))]
    through = {s["Condition"]["StringLike"]["kms:ViaService"]: s for s in kms}
    assert sorted(through) == ["lambda.*.amazonaws.com", "secretsmanager.*.amazonaws.com"]
    assert all(s["Resource"] == KMS_KEY and all(a.startswith("kms:") for a in s["Action"]) for s in kms)
    environment = through["lambda.*.amazonaws.com"]
    assert sorted(environment["Action"]) == [
        "kms:CreateGrant",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:GenerateDataKey",
    ]
    assert allows(document, "kms:CreateGrant", KMS_KEY, {"kms:ViaService": f"lambda.{REGION}.amazonaws.com"})
    for service in ("logs", "sns", "s3"):
        assert not allows(document, "kms:Decrypt", KMS_KEY, {"kms:ViaService": f"{service}.{REGION}.amazonaws.com"})
    assert not allows(
        document, "kms:CreateGrant", KMS_KEY, {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
    )
    statement = through["secretsmanager.*.amazonaws.com"]
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ses-smtp/ses-smtp-user.20240101-120000-AbC123"
    through = {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com", "kms:EncryptionContext:SecretARN": secret}
    assert allows(document, "kms:GenerateDataKey", KMS_KEY, through)
    assert not allows(
        document, "kms:GenerateDataKey", KMS_KEY, {**through, "kms:ViaService": "s3.eu-west-1.amazonaws.com"}
    )
    other = {**through, "kms:EncryptionContext:SecretARN": secret.replace("ses-smtp/", "prod/")}
    assert not allows(document, "kms:Decrypt", KMS_KEY, other)


def test_each_resource_the_key_encrypts_names_it_through_its_own_service() -> None:
    (configuration,) = [c for c in CONFIGURATIONS if c.name == "adopt-user-kms-identity"]
    resources = deployment(Target(STACK, dict(configuration.parameters)))
    services = {
        "AWS::Lambda::Function": "lambda",
        "AWS::SecretsManager::Secret": "secretsmanager",
        "AWS::Logs::LogGroup": "logs",
        "AWS::SNS::Topic": "sns",
    }
    naming = [r for r in resources if "kms:key" in r.arns]
    assert {r.type for r in naming} == set(services)
    for resource in naming:
        assert resource.arns["kms:key"] == (KMS_KEY,)
        via = resource.conditions["kms:key"]["StringLike"]["kms:ViaService"]
        assert via == f"{services[resource.type]}.*.amazonaws.com", resource.path


def test_with_a_permissions_boundary_a_role_or_user_is_created_or_widened_only_within_it() -> None:
    document = policy_for("organisation-vpc-boundary-memory")
    role = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-RotationFunctionRole-{SUFFIX}"
    user = f"arn:aws:iam::{ACCOUNT}:user/billing-mailer"
    bounded = {"iam:PermissionsBoundary": BOUNDARY}
    for action, arn in [
        ("iam:CreateRole", role),
        ("iam:PutRolePolicy", role),
        ("iam:UpdateAssumeRolePolicy", role),
        ("iam:CreateUser", user),
    ]:
        assert allows(document, action, arn, bounded), action
        assert not allows(document, action, arn), action
        assert not allows(
            document, action, arn, {"iam:PermissionsBoundary": "arn:aws:iam::aws:policy/AdministratorAccess"}
        )
    assert not granted(document) & {"iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary"}
    assert {"iam:DeleteRolePermissionsBoundary", "iam:PutRolePolicy"} <= granted(
        DEFAULT
    )  # no boundary: as the handlers


@pytest.mark.parametrize("users", ["app", "app,billing"])
def test_users_are_named_exactly_at_the_root_path_and_by_their_path_elsewhere(users: str) -> None:
    at_the_root = deployer_policy.policy(Target(STACK, {"SmtpUserNames": users}))
    assert allows(at_the_root, "iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/app")
    assert not allows(at_the_root, "iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/apple")
    on_a_path = deployer_policy.policy(Target(STACK, {"SmtpUserNames": users, "SmtpUserPath": "/smtp/"}))
    assert allows(on_a_path, "iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/smtp/anyone")
    assert not allows(on_a_path, "iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/anyone")


def test_the_policy_does_not_grow_with_the_users_beyond_their_names() -> None:
    # IAM allows 10,240 characters (whitespace not counted) in a role's inline policies. The
    # template's registry parameters, fourth alarm, on-failure destination and KMS key for the log
    # groups took 25 users to 10,469; the managed stack's update-only S3 actions, which `sam deploy`
    # never needs (it creates that stack or reads it), bring it to 10,021 (9,158 with one user).
    def size(users: int) -> int:
        names = ",".join(f"app-mailer-{i:02}" for i in range(users))
        return len(json.dumps(deployer_policy.policy(Target(STACK, {"SmtpUserNames": names})), separators=(",", ":")))

    one, twenty_five = size(1), size(25)
    assert (twenty_five - one) / 24 <= len("arn:aws:iam::*:user/app-mailer-00") + 3
    assert twenty_five <= 10_240


def test_a_stack_name_too_long_for_predictable_generated_names_is_refused_with_the_length_to_use() -> None:
    with pytest.raises(DeploymentError, match=r"at most 64.*shorten the stack name by \d+ character"):
        deployer_policy.policy(Target("a-stack-name-long-enough-to-be-shortened-by-cloudformation"))


# ----------------------------------------------------------------------------------------------
# What `sam deploy` calls itself
# ----------------------------------------------------------------------------------------------


def test_sam_deploy_changes_this_stack_and_its_managed_stack_only() -> None:
    statements = {s["Sid"]: s for s in DEFAULT["Statement"]}
    assert statements["SamDeploy"]["Resource"] == [
        f"arn:aws:cloudformation:*:*:stack/{STACK}/*",
        "arn:aws:cloudformation:*:*:stack/aws-sam-cli-managed-default/*",
    ]
    assert allows(
        DEFAULT, "cloudformation:ExecuteChangeSet", f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/1"
    )
    assert not allows(
        DEFAULT, "cloudformation:ExecuteChangeSet", f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/other/1"
    )


def test_sam_deploy_is_granted_the_cloudformation_calls_sam_cli_makes_and_no_other() -> None:
    # Read from SAM CLI's source: its client calls, paginators and waiters (a waiter polls one call).
    client = boto3.client("cloudformation", region_name=REGION)
    source = Path(samcli.__file__).parent
    calls: set[str] = set()
    for module in ("lib/deploy/deployer.py", "lib/utils/managed_cloudformation_stack.py"):
        text = (source / module).read_text()
        calls |= set(re.findall(r"(?:_client|cloudformation_client)\.([a-z_]+)\(", text))
        calls |= set(re.findall(r'get_paginator\("([a-z_]+)"\)', text))
        calls |= {client.get_waiter(w).config.operation for w in re.findall(r'get_waiter\("([a-z_]+)"\)', text)}
    calls -= {"get_waiter", "get_paginator"}
    # Deployer.sync (`sam sync`) and the managed stack's update (`sam pipeline bootstrap`) only.
    calls -= {"create_stack", "update_stack"}
    made = {f"cloudformation:{client.meta.method_to_api_mapping.get(c, c)}" for c in calls}
    assert made == deployer_policy.SAM_DEPLOY


def test_the_templates_transforms_may_be_used() -> None:
    statement = next(s for s in DEFAULT["Statement"] if s["Sid"] == "UseTheTemplatesTransforms")
    assert "arn:aws:cloudformation:*:aws:transform/Serverless-2016-10-31" in statement["Resource"]
    assert "arn:aws:cloudformation:*:aws:transform/LanguageExtensions" in statement["Resource"]


def test_the_first_deploy_may_create_sam_clis_managed_artifacts_bucket() -> None:
    # resolve_s3 (samconfig.toml): SAM CLI creates the stack aws-sam-cli-managed-default, an S3
    # bucket with versioning, encryption, a public access block, tags and a bucket policy.
    assert tomllib.loads((REPO / "samconfig.toml").read_text())["default"]["deploy"]["parameters"]["resolve_s3"]
    assert deployer_policy.managed_stack_types() == {"AWS::S3::Bucket", "AWS::S3::BucketPolicy"}
    statements = {s["Sid"]: s for s in DEFAULT["Statement"]}
    managed = statements["SamManagedArtifactsBucketStack"]
    assert managed["Resource"] == "arn:aws:s3:::aws-sam-cli-managed-default-*"
    needed = {
        "s3:CreateBucket",
        "s3:PutBucketVersioning",
        "s3:GetBucketVersioning",
        "s3:PutEncryptionConfiguration",
        "s3:GetEncryptionConfiguration",
        "s3:PutBucketPublicAccessBlock",
        "s3:GetBucketPublicAccessBlock",
        "s3:PutBucketTagging",
        "s3:GetBucketTagging",
        "s3:PutBucketPolicy",
        "s3:GetBucketPolicy",
        "s3:DeleteBucket",  # a failed creation rolls back
    }
    assert needed <= set(managed["Action"])
    assert len(managed["Action"]) == len(set(managed["Action"]))
    # Its change set (the managed stack's template uses the SAM transform), its waiters, and
    # `sam deploy --on-failure DELETE`.
    assert {"AWS::Serverless-2016-10-31"} == {deployer_policy.managed_stack_template()["Transform"]}
    assert {
        "cloudformation:CreateChangeSet",
        "cloudformation:DescribeChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:DescribeStacks",
        "cloudformation:RollbackStack",
        "cloudformation:DeleteStack",
    } <= set(statements["SamDeploy"]["Action"])


def test_the_functions_code_and_nested_templates_are_read_from_the_artifacts_bucket_only() -> None:
    code = f"arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-abc/{SUFFIX}"
    assert allows(DEFAULT, "s3:GetObject", code)
    assert not allows(DEFAULT, "s3:GetObject", "arn:aws:s3:::payments-bucket/object")


# ----------------------------------------------------------------------------------------------
# The service-role route: `sam deploy --role-arn`
# ----------------------------------------------------------------------------------------------

# Generated afresh here (the files are compared with them once, below).
CALLER, SERVICE_ROLE = deployer_policy.service_role_policies()
SERVICE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-cloudformation"


def test_committed_service_role_route_policies_are_what_samconfigs_deployment_needs_now() -> None:
    committed = [
        json.loads(path.read_text()) for path in (deployer_policy.CALLER_POLICY, deployer_policy.SERVICE_ROLE_POLICY)
    ]
    assert committed == [CALLER, SERVICE_ROLE], "stale: run make deployer-policy"


def test_the_caller_needs_only_sam_deploys_calls_and_passing_the_service_role_to_cloudformation() -> None:
    assert {a.split(":")[0] for a in granted(CALLER)} == {"cloudformation", "s3", "iam"}
    assert {a for a in granted(CALLER) if a.startswith("iam:")} == {"iam:PassRole"}
    to_cloudformation = {"iam:PassedToService": "cloudformation.amazonaws.com"}
    assert allows(CALLER, "iam:PassRole", SERVICE_ROLE_ARN, to_cloudformation)
    assert not allows(CALLER, "iam:PassRole", SERVICE_ROLE_ARN, {"iam:PassedToService": "lambda.amazonaws.com"})
    role = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-RotationFunctionRole-{SUFFIX}"
    assert not allows(CALLER, "iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"})
    # The stack's resources are the service role's business only.
    for path, resource_type, arn in sample_arns(resolved("defaults")):
        assert not any(allows(CALLER, a, arn) for a in handlers(resource_type)), path
    assert granted(CALLER) <= granted(DEFAULT) | {"iam:PassRole"}


def test_the_service_role_gets_what_the_direct_route_grants_the_resources_and_passes_itself_on() -> None:
    sam = {"SamDeploy", "UseTheTemplatesTransforms", "SamArtifactsBucket", "SamManagedArtifactsBucketStack"}
    direct = [s for s in deployer_policy.policy()["Statement"] if s["Sid"] not in sam]
    (passing,) = [s for s in SERVICE_ROLE["Statement"] if s["Sid"] == "IamRolePassedToCloudformation"]
    assert [s for s in SERVICE_ROLE["Statement"] if s is not passing] == direct
    # Nested stacks are created with the parent's service role.
    assert allows(
        SERVICE_ROLE, "iam:PassRole", SERVICE_ROLE_ARN, {"iam:PassedToService": "cloudformation.amazonaws.com"}
    )
    assert not granted(SERVICE_ROLE) & FORBIDDEN


# ----------------------------------------------------------------------------------------------
# Template changes are absorbed by generating again (no list of resources to maintain)
# ----------------------------------------------------------------------------------------------

CHANGED_TEMPLATE = """
Parameters:
  KmsKeyArn: {Type: String, Default: ""}
Conditions:
  HasKmsKey: !Not [!Equals [!Ref KmsKeyArn, ""]]
Resources:
  Binding:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub /ses-smtp-rotation/${AWS::StackName}/app
      Type: String
      Value: arn
  Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub /aws/lambda/${AWS::StackName}-fn
      KmsKeyId: !If [HasKmsKey, !Ref KmsKeyArn, !Ref AWS::NoValue]
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {}
  Function:
    Type: AWS::Lambda::Function
    Properties:
      Role: !GetAtt Role.Arn
      Code: {S3Bucket: aws-sam-cli-managed-default-x, S3Key: code.zip}
      KmsKeyArn: !If [HasKmsKey, !Ref KmsKeyArn, !Ref AWS::NoValue]
"""


def test_a_parameter_store_binding_and_encryption_with_the_deployments_key_are_derived(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(CHANGED_TEMPLATE)
    without = deployer_policy.policy(Target(STACK), template)
    assert not [a for a in granted(without) if a.startswith("kms:")]
    assert "logs:AssociateKmsKey" in granted(without)  # to encrypt later, or stop: the template can
    parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/ses-smtp-rotation/{STACK}/app"
    assert allows(without, "ssm:PutParameter", parameter)
    assert not allows(without, "ssm:PutParameter", parameter.replace(STACK, "another-stack"))
    document = deployer_policy.policy(Target(STACK, {"KmsKeyArn": KMS_KEY}), template)
    through_lambda = {"kms:ViaService": f"lambda.{REGION}.amazonaws.com"}
    assert allows(document, "kms:CreateGrant", KMS_KEY, through_lambda)
    assert not allows(document, "kms:CreateGrant", KMS_KEY, {"kms:ViaService": f"s3.{REGION}.amazonaws.com"})
