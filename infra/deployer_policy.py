"""The IAM policy a deployer needs for `sam deploy` of template.yaml, derived, not hand-written.

CloudFormation's resource provider schemas (shipped with cfn-lint) list the permissions each
resource type's create, read, update and delete handlers call. This tool transforms the template
offline (SAM, as CloudFormation would), takes every resource type it can create under any
parameter values, and writes the union of those handlers' permissions plus what `sam deploy`
itself calls (change sets, the transforms, the artifacts bucket) to ``deployer-policy.json``.
With ``resolve_s3`` (samconfig.toml) the first `sam deploy` in an account and region also creates
SAM CLI's managed stack ``aws-sam-cli-managed-default`` (the artifacts bucket): its resource types
are read from SAM CLI's own template (``samcli.lib.bootstrap.bootstrap``), their handlers' S3
permissions granted on that bucket only.

    .venv/bin/python -m infra.deployer_policy            # rewrite deployer-policy.json
    .venv/bin/python -m infra.deployer_policy --check    # exit 1 when the file is stale
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import cfnlint  # type: ignore[import-untyped]
from samcli.cli.global_config import GlobalConfig  # type: ignore[import-untyped]
from samcli.lib.bootstrap import bootstrap  # type: ignore[import-untyped]
from samtranslator.translator.transform import transform  # type: ignore[import-untyped]
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

from infra.language_extensions import TRANSFORM as LANGUAGE_EXTENSIONS
from infra.language_extensions import expand

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
POLICY = REPO / "deployer-policy.json"
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
# samcli/lib/utils/managed_cloudformation_stack.py): change sets for the stack and for the managed
# stack, their waiters (DescribeChangeSet, DescribeStacks), events, and with `--on-failure DELETE`
# RollbackStack then DeleteStack.
SAM_DEPLOY = {
    "cloudformation:CreateChangeSet",
    "cloudformation:DescribeChangeSet",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:DeleteChangeSet",
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "cloudformation:GetTemplateSummary",
    "cloudformation:ListStackResources",
    "cloudformation:RollbackStack",
    "cloudformation:DeleteStack",
}
# Uploading the artifacts (samcli/lib/package/s3_uploader.py: HeadObject, then PutObject through
# boto3's transfer manager). HeadObject is authorized as s3:GetObject; ListBucket makes a missing
# object a 404 rather than a 403. The managed bucket encrypts with the AWS managed key aws/s3,
# whose key policy lets this account's principals use it through S3: no KMS permission needed.
SAM_ARTIFACTS = {"s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}
SAM_MANAGED_BUCKET = "arn:aws:s3:::aws-sam-cli-managed-default-*"
# An IAM action: a service prefix, a colon, an action name (letters and digits, e.g. ec2:AssignIpv6Addresses).
IAM_ACTION = re.compile(r"[a-z0-9-]+:[A-Za-z][A-Za-z0-9]*")


# A value for each list the template loops over (Fn::ForEach), so that every loop makes its resources.
LOOP_SAMPLES = {"SmtpUserNames": ["created-user"], "AdoptedSmtpUserNames": ["adopted-user"]}


def resource_types(template_path: Path = TEMPLATE) -> set[str]:
    """Every resource type the template and its nested stacks' templates can create (all
    conditions), after the transforms (LanguageExtensions, SAM)."""
    document = yaml_parse(template_path.read_text())
    if LANGUAGE_EXTENSIONS in as_list(document.get("Transform", [])):
        document = expand(document, LOOP_SAMPLES)
    if not document.get("Transform"):
        return {str(resource["Type"]) for resource in document["Resources"].values()}
    for resource in document["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifacts-bucket/function.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    parameters = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # samtranslator wants one; nothing is called
    result: dict[str, Any] = transform(document, parameters, NoManagedPolicies())
    types = {str(resource["Type"]) for resource in result["Resources"].values()}
    for resource in result["Resources"].values():
        if resource["Type"] == "AWS::CloudFormation::Stack":  # a local template, uploaded by sam deploy
            types |= resource_types(template_path.parent / resource["Properties"]["TemplateURL"])
    return types


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def handler_permissions(types: set[str]) -> dict[str, set[str]]:
    """The permissions of each type's CRUD handlers, from the schemas cfn-lint ships."""
    found: dict[str, set[str]] = {}
    schemas = os.path.join(os.path.dirname(cfnlint.__file__), "data", "schemas", "resources", "*.json")
    for path in glob.glob(schemas):
        with open(path) as file:
            schema = json.load(file)
        if schema.get("typeName") in types:
            handlers = schema.get("handlers", {})
            # Some schemas list a log event name, not an action (AWS::Lambda::Function lists
            # s3:REST.PUT.OBJECT): IAM would refuse the policy, and it grants nothing.
            permissions = {
                p for h in HANDLERS for p in handlers.get(h, {}).get("permissions", []) if IAM_ACTION.fullmatch(p)
            }
            if permissions:
                found[schema["typeName"]] = permissions
    for resource_type in types - set(found):
        if resource_type not in LEGACY_PERMISSIONS:
            raise SystemExit(f"No permissions known for {resource_type}: add it to LEGACY_PERMISSIONS.")
        found[resource_type] = LEGACY_PERMISSIONS[resource_type]
    return found


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
    per_type = handler_permissions(managed_stack_types())
    return sorted(p for permissions in per_type.values() for p in permissions if p.startswith("s3:"))


def policy(template_path: Path = TEMPLATE) -> dict[str, Any]:
    # The template's transforms, and the managed stack's (SAM's, too).
    transforms = as_list(yaml_parse(template_path.read_text()).get("Transform", []))
    transforms += [t for t in as_list(managed_stack_template().get("Transform", [])) if t not in transforms]
    per_type = handler_permissions(resource_types(template_path))
    actions = sorted(set().union(*per_type.values()))
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "SamDeploy", "Effect": "Allow", "Action": sorted(SAM_DEPLOY), "Resource": "*"},
            {
                "Sid": "UseTheTemplatesTransforms",
                "Effect": "Allow",
                "Action": "cloudformation:CreateChangeSet",
                "Resource": [f"arn:aws:cloudformation:*:aws:transform/{t.split('::')[1]}" for t in transforms],
            },
            {
                "Sid": "SamArtifactsBucket",
                "Effect": "Allow",
                "Action": sorted(SAM_ARTIFACTS),
                "Resource": [SAM_MANAGED_BUCKET, f"{SAM_MANAGED_BUCKET}/*"],
            },
            {
                # The first deploy in an account and region (resolve_s3): SAM CLI's managed stack
                # creates the bucket (versioning, encryption, public access block, tags, policy).
                "Sid": "SamManagedArtifactsBucketStack",
                "Effect": "Allow",
                "Action": managed_bucket_actions(),
                "Resource": SAM_MANAGED_BUCKET,
            },
            {"Sid": "CreateUpdateDeleteTheStacksResources", "Effect": "Allow", "Action": actions, "Resource": "*"},
        ],
    }


def render(template_path: Path = TEMPLATE) -> str:
    return json.dumps(policy(template_path), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when deployer-policy.json is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if POLICY.read_text() != text:
            print("deployer-policy.json is stale: run python -m infra.deployer_policy", file=sys.stderr)
            return 1
        return 0
    POLICY.write_text(text)
    print(f"wrote {POLICY.name}: {len(json.loads(text)['Statement'][-1]['Action'])} resource actions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
