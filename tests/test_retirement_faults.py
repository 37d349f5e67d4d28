"""Faults in a retirement run (SPEC §4a): an error or a crash after each AWS call of a run, then
another run, ends in the same state as a run without a fault.

Failures are injected into botocore, below our code, which runs unmodified: ``before-call``
(the call fails: throttling, a network error) and ``after-call`` (the call took effect, then the
function died). The calls come from a recording of a fault-free run of the same scenario, so a
new call in the run is covered without touching this file.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from mypy_boto3_iam import IAMClient

from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import RetirementError
from tests.moto_clock import version_created
from tests.retirement_support import Deployment, deploy
from tests.support import Crash, current, on_aws_event, secrets_client

pytestmark = pytest.mark.usefixtures("smtp_ca")

H = timedelta(hours=1)
D = timedelta(days=1)


@contextmanager
def recorded_calls() -> Iterator[list[str]]:
    """The AWS operations every client created inside the block makes, as ``service.Operation``."""
    calls: list[str] = []

    def record(event_name: str, **_: Any) -> None:
        service, operation = event_name.split(".")[1:]
        calls.append(f"{service}.{operation}")

    with on_aws_event("before-call", record):
        yield calls


@contextmanager
def fault(when: str, call: str, occurrence: int) -> Iterator[list[str]]:
    """Raise Crash at the `occurrence`-th `call` (``before`` it is sent, or ``after`` it took effect).

    Yields the list of faults raised (empty if the run never made that call that often)."""
    seen = 0
    raised: list[str] = []

    def crash(**_: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == occurrence:
            raised.append(f"{when}-call {call} #{occurrence}")
            raise Crash(raised[-1])

    with on_aws_event(f"{when}-call.{call}", crash):
        yield raised


# Each scenario brings a deployment to the moment a run has something to do (settings through
# the monkeypatch); returns what it expects afterwards: {key: status, or None for deleted}.
Scenario = Callable[[Deployment, pytest.MonkeyPatch], dict[str, str | None]]


def two_keys(deployment: Deployment) -> tuple[str, str]:
    deployment.rotate()
    old = deployment.current_key()
    deployment.rotate()
    return old, deployment.current_key()


def grace_over(deployment: Deployment, _: pytest.MonkeyPatch) -> dict[str, str | None]:
    old, new = two_keys(deployment)
    deployment.time_passes(25 * H)
    return {old: "Inactive", new: "Active"}


def window_over(deployment: Deployment, _: pytest.MonkeyPatch) -> dict[str, str | None]:
    old, new = two_keys(deployment)
    deployment.time_passes(25 * H)
    deployment.iam.update_access_key(UserName=deployment.user, AccessKeyId=old, Status="Inactive")
    deployment.time_passes(8 * D)
    return {old: None, new: "Active"}


def still_in_use(deployment: Deployment, _: pytest.MonkeyPatch) -> dict[str, str | None]:
    old, new = two_keys(deployment)
    deployment.time_passes(25 * H)
    deployment.key_used(old)
    return {old: "Active", new: "Active"}


def cancelled_rotation(deployment: Deployment, _: pytest.MonkeyPatch) -> dict[str, str | None]:
    deployment.rotate()
    good = deployment.current_key()
    token = deployment.rotate(steps=("createSecret", "setSecret"))
    (failed,) = set(deployment.keys()) - {good}
    secrets_client().update_secret_version_stage(
        SecretId=deployment.arn, VersionStage="AWSPENDING", RemoveFromVersionId=token
    )
    return {good: "Active", failed: "Inactive"}


def cancelled_first_rotation(deployment: Deployment, _: pytest.MonkeyPatch) -> dict[str, str | None]:
    """An adopted console key, then a first rotation that failed and was cancelled: AWSCURRENT
    names no key, and the run finds the failed key through the unlabelled version naming it.
    That version is dated before the key, as by the RotateSecret that made it (the other dating:
    test_retirement_run's cancelled first rotation, by-put-secret-value)."""
    console = deployment.iam.create_access_key(UserName=deployment.user)["AccessKey"]["AccessKeyId"]
    deployment.time_passes(30 * D)
    token = deployment.rotate(steps=("createSecret", "setSecret"))
    (failed,) = set(deployment.keys()) - {console}
    keys = deployment.iam.list_access_keys(UserName=deployment.user)["AccessKeyMetadata"]
    (key,) = [k for k in keys if k["AccessKeyId"] == failed]
    version_created(deployment.arn, token, key["CreateDate"] - timedelta(seconds=1))
    secrets_client().update_secret_version_stage(
        SecretId=deployment.arn, VersionStage="AWSPENDING", RemoveFromVersionId=token
    )
    return {console: "Active", failed: "Inactive"}


def no_inactive_period(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """PREVIOUS_KEY_INACTIVE_DAYS=0: the grace period over, the previous key is deleted at once."""
    monkeypatch.setenv("PREVIOUS_KEY_INACTIVE_DAYS", "0")
    old, new = two_keys(deployment)
    deployment.time_passes(25 * H)
    return {old: None, new: "Active"}


def edited_by_hand(deployment: Deployment, _: pytest.MonkeyPatch, *, put_dated: bool = False) -> dict[str, str | None]:
    """Two edits of the secret by hand since the rotation (same key), at +10 h and +20 h: at
    +25 h the grace period is over (it counts from the rotation, not from an edit)."""
    deployment.rotate()
    old = deployment.current_key()
    deployment.time_passes(H)  # versions a second apart at least (moto dates them to the second)
    deployment.rotate()
    new = deployment.current_key()
    if put_dated:
        date_current_version_after_its_key(deployment)
    edit_by_hand(deployment, 10 * H)
    edit_by_hand(deployment, 10 * H)
    deployment.time_passes(5 * H)
    return {old: "Inactive", new: "Active"}


def edit_by_hand(deployment: Deployment, after: timedelta) -> None:
    deployment.time_passes(after)
    document = {**current(deployment.arn), "sender": f"{uuid.uuid4().hex[:8]}@example.com"}
    secrets_client().put_secret_value(SecretId=deployment.arn, SecretString=json.dumps(document))


SCENARIOS: dict[str, Scenario] = {
    "deactivate-after-grace": grace_over,
    "delete-after-window": window_over,
    "hold-in-use": still_in_use,
    "deactivate-cancelled-rotation": cancelled_rotation,
    "deactivate-cancelled-first-rotation": cancelled_first_rotation,
    "delete-with-no-inactive-period": no_inactive_period,
    "deactivate-after-hand-edits": edited_by_hand,
}


def expected_keys(expected: dict[str, str | None]) -> dict[str, str]:
    return {key: status for key, status in expected.items() if status is not None}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_fault_at_any_call_of_a_run_then_another_run_converges(
    scenario: Scenario,
    when: str,
    iam_client: IAMClient,
    ses_smtp: SesSmtpStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fresh() -> tuple[Deployment, dict[str, str | None]]:
        user = f"ses-smtp-test-{uuid.uuid4().hex[:12]}"
        iam_client.create_user(UserName=user)
        deployment = deploy(iam_client, user, ses_smtp, monkeypatch)
        return deployment, scenario(deployment, monkeypatch)

    reference, expected = fresh()
    with recorded_calls() as calls:
        reference.retire(check=False)
    assert reference.keys() == expected_keys(expected)
    reference_messages = len(reference.messages())

    for index, call in enumerate(calls):
        occurrence = calls[: index + 1].count(call)
        deployment, expected = fresh()
        # Before any secret is looked at the run stops; after, the failing secret is one line and
        # the run goes on to the others, then raises RetirementError.
        expected_error = Crash if call == "secrets-manager.ListSecrets" else RetirementError
        with fault(when, call, occurrence) as raised, pytest.raises(expected_error):
            try:
                deployment.retire(check=False)
            finally:
                assert raised, f"{when} {call} #{occurrence}: the run never made that call (calls: {calls})"
        deployment.retire()
        assert deployment.keys() == expected_keys(expected), f"{when} {call} #{occurrence}"
        if reference_messages:  # a hold is announced by the run that completes
            assert deployment.messages(), f"{when} {call} #{occurrence}: no message on the alarm topic"


def date_current_version_after_its_key(deployment: Deployment) -> None:
    """AWSCURRENT's version dated two seconds after its key, as when the version is dated by the
    PutSecretValue that filled it (moto does so, to the second) rather than by RotateSecret."""
    stages = secrets_client().describe_secret(SecretId=deployment.arn)["VersionIdsToStages"]
    (version_id,) = [version for version, labels in stages.items() if "AWSCURRENT" in labels]
    keys = deployment.iam.list_access_keys(UserName=deployment.user)["AccessKeyMetadata"]
    (key,) = [k for k in keys if k["AccessKeyId"] == deployment.current_key()]
    version_created(deployment.arn, version_id, key["CreateDate"] + 2 * timedelta(seconds=1))


# Right before each deactivation or deletion: the labels and the key's status, read again.
RECHECK = ("secrets-manager.DescribeSecret", "iam.ListAccessKeys")


@pytest.mark.parametrize("dated", ["by-rotate-secret", "by-put-secret-value"])
def test_a_retirement_run_makes_few_aws_calls_per_secret(
    dated: str, iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The steady state: one previous key past its grace period, one current key; whether the
    rotation's version is dated before its key or just after, nothing more is read."""
    deployment = deploy(iam_client, iam_user, ses_smtp, monkeypatch)
    grace_over(deployment, monkeypatch)
    if dated == "by-put-secret-value":
        date_current_version_after_its_key(deployment)
    with recorded_calls() as calls:
        deployment.retire(check=False)
    # The secret comes from the deployment's bindings (here SMTP_SECRET_BINDINGS: no call).
    assert calls == [
        "secrets-manager.DescribeSecret",  # it still exists, rotated by this deployment, with its key
        "iam.ListAccessKeys",
        "secrets-manager.ListSecretVersionIds",
        "secrets-manager.GetSecretValue",  # AWSCURRENT: the current key and the user it names
        "secrets-manager.GetSecretValue",  # AWSPREVIOUS: the previous key
        "iam.GetAccessKeyLastUsed",  # evidence of use, for every key but AWSCURRENT's
        *RECHECK,
        "iam.UpdateAccessKey",  # the deactivation
        "secrets-manager.DescribeSecret",  # AWSCURRENT did not move onto the key meanwhile
    ]


@pytest.mark.parametrize("dated", ["by-rotate-secret", "by-put-secret-value"])
def test_after_edits_by_hand_a_run_reads_one_more_version(
    dated: str, iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWSCURRENT's key is dated by the earliest version naming it: after two edits the rotation's
    version is unlabelled, and read by its ID; the edit labelled AWSPREVIOUS is read already."""
    deployment = deploy(iam_client, iam_user, ses_smtp, monkeypatch)
    expected = edited_by_hand(deployment, monkeypatch, put_dated=dated == "by-put-secret-value")
    with recorded_calls() as calls:
        deployment.retire(check=False)
    assert deployment.keys() == expected
    assert calls == [
        "secrets-manager.DescribeSecret",
        "iam.ListAccessKeys",
        "secrets-manager.ListSecretVersionIds",
        "secrets-manager.GetSecretValue",  # AWSCURRENT: the second edit
        "secrets-manager.GetSecretValue",  # AWSPREVIOUS: the first edit, same key
        "iam.GetAccessKeyLastUsed",
        "secrets-manager.GetSecretValue",  # the rotation's version, unlabelled: when the key became current
        *RECHECK,
        "iam.UpdateAccessKey",
        "secrets-manager.DescribeSecret",
    ]
