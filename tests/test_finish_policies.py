"""finishSecret's immediate policies (SPEC §4, §4a): with PREVIOUS_KEY_ACTIVE_HOURS=0 the previous key
stops when the rotation finishes, and with both durations 0 it is deleted; otherwise finishSecret
leaves it to the retirement function. Through the rotation handler, then the retirement handler.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from mypy_boto3_iam import IAMClient

from infra.ses_smtp import SesSmtpStandIn
from tests.retirement_support import Deployment, deploy, rotated_twice

pytestmark = pytest.mark.usefixtures("smtp_ca")


@pytest.fixture
def deployment(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    return deploy(iam_client, iam_user, ses_smtp, monkeypatch)


@pytest.mark.parametrize(
    ("env", "after_finish"),
    [
        ({}, "Active"),  # the default: 24 h of grace, the retirement function's job
        ({"PREVIOUS_KEY_ACTIVE_HOURS": "0"}, "Inactive"),
        ({"PREVIOUS_KEY_ACTIVE_HOURS": "0", "PREVIOUS_KEY_INACTIVE_DAYS": "0"}, None),
        ({"PREVIOUS_KEY_ACTION": "deactivate"}, "Inactive"),
        ({"PREVIOUS_KEY_ACTION": "delete"}, None),
        ({"PREVIOUS_KEY_ACTION": "delete", "PREVIOUS_KEY_INACTIVE_DAYS": "7"}, "Inactive"),  # the new variable wins
        ({"PREVIOUS_KEY_ACTION": "keep"}, "Active"),
    ],
    ids=["default", "active-0", "both-0", "legacy-deactivate", "legacy-delete", "new-wins", "legacy-keep"],
)
def test_finish_secret_applies_only_the_immediate_policies(
    env: dict[str, str], after_finish: str | None, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    old, new = rotated_twice(deployment)
    expected = {new: "Active"} | ({old: after_finish} if after_finish else {})
    assert deployment.keys() == expected


def test_a_key_stopped_at_finish_is_deleted_by_the_retirement_function_after_the_window(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREVIOUS_KEY_ACTIVE_HOURS", "0")
    old, new = rotated_twice(deployment)
    deployment.key_used(old)  # a consumer with a cached secret tried it; the immediate policy ignores that
    deployment.time_passes(timedelta(days=6))
    assert deployment.retire()["deleted"] == []
    deployment.time_passes(timedelta(days=1, hours=1))
    assert deployment.retire()["deleted"] == [old]
    assert deployment.keys() == {new: "Active"}
