"""What an organisation's scanner is told (checkov, run by `make scan` inside `make test`, fails on
any finding not skipped): the findings the templates leave as they are, each skipped in its
resource's Metadata with its reason. The list here is exact, so a new suppression is a decision
made in review, not a line slipped into a template; the wiring the reasons rely on is tested
where it lives (test_notifications.py, test_encryption.py, test_organisation.py)."""

from __future__ import annotations

from pathlib import Path

from tests.template.resolver import TEMPLATE, USER_TEMPLATE, load_template
from tests.template.support import FUNCTION_ID, RETIREMENT_ID

DLQ, RESERVED_CONCURRENCY, VPC, SNS_ENCRYPTION = "CKV_AWS_116", "CKV_AWS_115", "CKV_AWS_117", "CKV_AWS_26"
REVIEWED = {
    # Secrets Manager invokes it synchronously: a DLQ would never receive anything.
    (TEMPLATE.name, FUNCTION_ID): [DLQ, RESERVED_CONCURRENCY, VPC],
    # Its failures reach the topic through an on-failure destination, which the check does not read.
    (TEMPLATE.name, RETIREMENT_ID): [DLQ, RESERVED_CONCURRENCY, VPC],
    # Encrypted with the deployment's key when given; the check passes on any value, so the skip is
    # what tells the reviewer that without a key the topic is not encrypted, and why.
    (TEMPLATE.name, "AlarmTopic"): [SNS_ENCRYPTION],
}


def skipped(path: Path) -> dict[tuple[str, str], list[dict[str, str]]]:
    """checkov's skips in a template: Metadata.checkov.skip of each resource, by (file, logical ID)."""
    return {
        (path.name, logical_id): resource["Metadata"]["checkov"]["skip"]
        for logical_id, resource in load_template(path)["Resources"].items()
        if isinstance(resource, dict) and "checkov" in resource.get("Metadata", {})
    }


def test_the_templates_skip_exactly_the_reviewed_findings() -> None:
    found = skipped(TEMPLATE) | skipped(USER_TEMPLATE)
    assert {place: [skip["id"] for skip in skips] for place, skips in found.items()} == REVIEWED


def test_every_skip_says_why() -> None:
    for place, skips in (skipped(TEMPLATE) | skipped(USER_TEMPLATE)).items():
        for skip in skips:
            assert set(skip) == {"id", "comment"}, (place, skip)
            # A reason, not a label: what the template does instead, or why the finding does not apply.
            assert len(skip["comment"].split()) >= 20, (place, skip)
