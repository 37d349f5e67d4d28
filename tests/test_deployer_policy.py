"""deployer-policy.json is what `sam deploy` of template.yaml needs, derived from CloudFormation's
resource schemas (infra/deployer_policy.py), and never stale."""

from __future__ import annotations

import json

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
