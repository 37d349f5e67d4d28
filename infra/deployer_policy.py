"""The IAM policy a deployer needs for `sam deploy` of template.yaml: derived, least privilege.

What each resource of the deployment needs, on which of its ARNs, comes from
infra/deployer_needs.py (CloudFormation's handler lists, pruned by what the template writes) and
infra/deployer_resources.py (the deployment's resources and their names). ``iam:PassRole`` names
the stack's roles and the service each is passed to; a KMS key is used only through the service
that needs it; when the deployment sets a permissions boundary, creating or widening a role or
user requires it. Around the resources: what `sam deploy` itself calls (change sets of this
stack, the template's transforms, SAM CLI's managed artifacts bucket), on those only.

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
import json
import logging
import re
import shlex
import sys
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

from samcli.cli.global_config import GlobalConfig  # type: ignore[import-untyped]
from samcli.lib.bootstrap import bootstrap  # type: ignore[import-untyped]
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

from infra.deployer_needs import IAM_ACTION, Grant, Pruned, handler_permissions, needed
from infra.deployer_resources import (
    REPO,
    SAM_MANAGED_BUCKET,
    TEMPLATE,
    DeploymentError,
    Target,
    deployment,
)

POLICY = REPO / "deployer-policy.json"
# The service-role route: the caller's policy, and the policy of the CloudFormation service role.
CALLER_POLICY = REPO / "deployer-caller-policy.json"
SERVICE_ROLE_POLICY = REPO / "deployer-service-role-policy.json"
CLOUDFORMATION = "cloudformation.amazonaws.com"
SAMCONFIG = REPO / "samconfig.toml"
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


# SAM CLI creates its managed stack when it is missing and otherwise only reads it (`sam deploy`:
# samcli/lib/utils/managed_cloudformation_stack.py, manage_stack and _create_or_get_stack); it never
# updates it (update_stack there serves `sam pipeline bootstrap`). A failed creation rolls back.
MANAGED_STACK_HANDLERS = ("create", "read", "delete")


def managed_bucket_actions() -> list[str]:
    """What CloudFormation's create, read and delete handlers of the managed stack's types call on
    its bucket (S3 only: the grant names the bucket, which no other service's action applies to)."""
    return sorted(
        {
            p
            for t in managed_stack_types()
            for handler in MANAGED_STACK_HANDLERS
            for p in handler_permissions()[t][handler]
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
