"""deployer-policy.json is what `sam deploy` of template.yaml needs, derived from CloudFormation's
resource schemas (infra/deployer_policy.py), and never stale."""

from __future__ import annotations

import json
import re
import tomllib

from infra import deployer_policy


def test_committed_deployer_policy_is_what_the_template_needs_now() -> None:
    assert json.loads(deployer_policy.POLICY.read_text()) == deployer_policy.policy(), (
        "deployer-policy.json is stale: run python -m infra.deployer_policy"
    )


def test_every_resource_type_of_the_template_is_covered_by_its_handlers_permissions() -> None:
    granted = set(deployer_policy.policy()["Statement"][-1]["Action"])
    per_type = deployer_policy.handler_permissions(deployer_policy.resource_types())
    assert {"AWS::IAM::Role", "AWS::Lambda::Function", "AWS::SecretsManager::Secret"} <= set(per_type)
    for resource_type, permissions in per_type.items():
        assert permissions <= granted, resource_type
    # Roles are passed to Lambda and to EventBridge Scheduler; secrets are rotated at once.
    assert {"iam:PassRole", "secretsmanager:RotateSecret", "lambda:AddPermission"} <= granted


def test_the_templates_transforms_may_be_used() -> None:
    statement = next(s for s in deployer_policy.policy()["Statement"] if s["Sid"] == "UseTheTemplatesTransforms")
    assert "arn:aws:cloudformation:*:aws:transform/Serverless-2016-10-31" in statement["Resource"]


def test_every_action_is_an_iam_action() -> None:
    # IAM refuses a policy naming anything else (a schema once listed the log event s3:REST.PUT.OBJECT).
    document = json.loads(deployer_policy.POLICY.read_text())
    actions = [
        a for s in document["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert actions
    assert [a for a in actions if not re.fullmatch(r"[a-z0-9-]+:[A-Za-z][A-Za-z0-9]*", a)] == []


def test_the_first_deploy_may_create_sam_clis_managed_artifacts_bucket() -> None:
    # resolve_s3 (samconfig.toml): SAM CLI creates the stack aws-sam-cli-managed-default, an S3
    # bucket with versioning, encryption, a public access block, tags and a bucket policy.
    assert tomllib.loads((deployer_policy.REPO / "samconfig.toml").read_text())["default"]["deploy"]["parameters"][
        "resolve_s3"
    ]
    assert deployer_policy.managed_stack_types() == {"AWS::S3::Bucket", "AWS::S3::BucketPolicy"}
    statements = {s["Sid"]: s for s in json.loads(deployer_policy.POLICY.read_text())["Statement"]}
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
    # Its change set (the managed stack's template uses the SAM transform), its waiters, and
    # `sam deploy --on-failure DELETE`.
    assert {"AWS::Serverless-2016-10-31"} == {deployer_policy.managed_stack_template()["Transform"]}
    assert (
        "arn:aws:cloudformation:*:aws:transform/Serverless-2016-10-31"
        in statements["UseTheTemplatesTransforms"]["Resource"]
    )
    assert {
        "cloudformation:CreateChangeSet",
        "cloudformation:DescribeChangeSet",
        "cloudformation:ExecuteChangeSet",
        "cloudformation:DescribeStacks",
        "cloudformation:RollbackStack",
        "cloudformation:DeleteStack",
    } <= set(statements["SamDeploy"]["Action"])
