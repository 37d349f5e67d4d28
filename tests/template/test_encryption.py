"""The deployment's KMS key (KmsKeyArn), for each configuration: when given, it encrypts what the
stack keeps at rest, the secrets (their grants: test_secrets.py), both functions' environment,
their log groups and the alarm topic (publishing to it: test_notifications.py); when empty, no
resource names a key and no policy grants one. The parameter's description names every service the
key's policy must then let in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.template.resolver import Stack, deploy, load_template, walk
from tests.template.support import ADOPT_KMS_IDENTITY, FUNCTION_ID, RETIREMENT_ID, Configuration, identity_grants

# Where a resource names its KMS key.
KEY_PROPERTIES = frozenset({"KmsKeyArn", "KmsKeyId", "KmsMasterKeyId"})


def named_keys(stack: Stack) -> dict[str, Any]:
    """Every KMS key a resource of the stack or its nested stacks names, by "<logical ID>.<property>"
    (the parameters a parent passes its nested stacks are not resources: left out)."""
    found: dict[str, Any] = {}
    for logical_id, resource in stack.everything().items():
        if resource["Type"] == "AWS::CloudFormation::Stack":
            continue
        for node in walk(resource.get("Properties", {})):
            if isinstance(node, Mapping):
                found |= {f"{logical_id}.{name}": value for name, value in node.items() if name in KEY_PROPERTIES}
    return found


def test_the_key_encrypts_the_secrets_both_functions_environment_their_log_groups_and_the_topic(
    stack: Stack, configuration: Configuration
) -> None:
    key = configuration.kms_key
    if key is None:
        assert named_keys(stack) == {}
        assert [g.source for g in identity_grants(stack) if any(a.startswith("kms:") for a in g.actions)] == []
        return
    secrets = [f"{stack_id}/Secret.KmsKeyId" for stack_id in stack.nested]
    assert named_keys(stack) == {
        f"{FUNCTION_ID}.KmsKeyArn": key,  # the environment
        f"{RETIREMENT_ID}.KmsKeyArn": key,
        "RotationFunctionLogGroup.KmsKeyId": key,
        "RetirementFunctionLogGroup.KmsKeyId": key,
        "AlarmTopic.KmsMasterKeyId": key,
        **dict.fromkeys(secrets, key),
    }


def test_the_key_parameters_description_names_every_service_the_key_policy_must_let_in() -> None:
    """Each service that uses the key on its own account (not through a role of this stack, whose
    grants the default key policy lets IAM give) must be allowed in the key's policy: the deployer
    is told so in the parameter they set."""
    stack = deploy(ADOPT_KMS_IDENTITY.parameters)
    description = " ".join(load_template()["Parameters"]["KmsKeyArn"]["Description"].split())
    needed = set()
    if any("KmsKeyId" in r["Properties"] for r in stack.of_type("AWS::Logs::LogGroup").values()):
        needed.add("logs.<region>.amazonaws.com")  # CloudWatch Logs encrypts the log groups itself
    if "KmsMasterKeyId" in stack.properties("AlarmTopic"):  # every service that publishes to the topic
        _, topic_policy = stack.only("AWS::SNS::TopicPolicy")
        needed |= {s["Principal"]["Service"] for s in topic_policy["PolicyDocument"]["Statement"]}
    if any("KmsKeyArn" in r["Properties"] for r in stack.of_type("AWS::Lambda::Function").values()):
        needed.add("kms:CreateGrant")  # Lambda's grant for the environment, made with the deployer's rights
    assert needed == {
        "logs.<region>.amazonaws.com",
        "cloudwatch.amazonaws.com",
        "events.amazonaws.com",
        "kms:CreateGrant",
    }
    assert [item for item in sorted(needed) if item not in description] == []
