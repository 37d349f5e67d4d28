"""The IAM calls a rotation makes: at most 4 in the steady state (IAM's API rate is the fleet's limit)."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from mypy_boto3_iam import IAMClient

from infra.ses_smtp import SesSmtpStandIn
from tests.support import create_secret, keys_of, on_aws_event, rotate

pytestmark = pytest.mark.usefixtures("smtp_ca")

MAX_IAM_CALLS_PER_ROTATION = 4


@contextmanager
def counting_iam_calls() -> Iterator[collections.Counter[str]]:
    """Count the IAM API calls of every client created inside the block, by operation."""
    calls: collections.Counter[str] = collections.Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    with on_aws_event("before-call.iam", count):
        yield calls


def test_a_rotation_makes_at_most_the_iam_calls_promised(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    with counting_iam_calls() as first:
        rotate(arn)
    rotate(arn)  # from here on the user has the current key and the previous one: the steady state
    with counting_iam_calls() as steady:
        rotate(arn)

    assert sum(first.values()) <= MAX_IAM_CALLS_PER_ROTATION, first
    assert sum(steady.values()) <= MAX_IAM_CALLS_PER_ROTATION, steady
    # The steady state really freed a slot (so the count covers the delete) and created a key.
    assert steady["DeleteAccessKey"] == 1 and steady["CreateAccessKey"] == 1
    assert len(keys_of(iam_client, iam_user)) == 2


@pytest.mark.parametrize(
    ("active_hours", "inactive_days", "budget"),
    [("0", "7", 7), ("0", "0", 6)],
    ids=["deactivate-in-finish", "delete-in-finish"],
)
def test_an_immediate_policy_adds_only_the_calls_the_readme_states(
    iam_client: IAMClient,
    iam_user: str,
    ses_smtp: SesSmtpStandIn,
    monkeypatch: pytest.MonkeyPatch,
    active_hours: str,
    inactive_days: str,
    budget: int,
) -> None:
    monkeypatch.setenv("PREVIOUS_KEY_ACTIVE_HOURS", active_hours)
    monkeypatch.setenv("PREVIOUS_KEY_INACTIVE_DAYS", inactive_days)
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotate(arn)
    rotate(arn)
    with counting_iam_calls() as steady:
        rotate(arn)

    assert sum(steady.values()) <= budget, steady
