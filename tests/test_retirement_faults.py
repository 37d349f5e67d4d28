"""Faults in a retirement run (SPEC §4a): an error or a crash after each AWS call of a run, then
another run, ends in the same state as a run without a fault.

Failures are injected into botocore, below our code, which runs unmodified: ``before-call``
(the call fails: throttling, a network error) and ``after-call`` (the call took effect, then the
function died). The calls come from a recording of a fault-free run of the same scenario, so a
new call in the run is covered without touching this file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import boto3
import pytest
from mypy_boto3_iam import IAMClient

from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import RetirementError
from tests.retirement_support import Deployment, deploy
from tests.support import Crash, secrets_client

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

    boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION._session.get_component("event_emitter")  # type: ignore[union-attr]
    events.register("before-call", record)
    try:
        yield calls
    finally:
        events.unregister("before-call", record)


@contextmanager
def fault(when: str, call: str, occurrence: int) -> Iterator[None]:
    """Raise Crash at the `occurrence`-th `call` (``before`` it is sent, or ``after`` it took effect)."""
    seen = 0

    def crash(**_: Any) -> None:
        nonlocal seen
        seen += 1
        if seen == occurrence:
            raise Crash(f"{when}-call {call} #{occurrence}")

    boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION._session.get_component("event_emitter")  # type: ignore[union-attr]
    event = f"{when}-call.{call}"
    events.register(event, crash)
    try:
        yield
    finally:
        events.unregister(event, crash)


# Each scenario brings a deployment to the moment a run has something to do; returns what it
# expects afterwards: {key role: status or None for deleted}, by names from the scenario.
Scenario = Callable[[Deployment], dict[str, str | None]]


def two_keys(deployment: Deployment) -> tuple[str, str]:
    deployment.rotate()
    old = deployment.current_key()
    deployment.rotate()
    return old, deployment.current_key()


def grace_over(deployment: Deployment) -> dict[str, str | None]:
    old, new = two_keys(deployment)
    deployment.time_passes(25 * H)
    return {old: "Inactive", new: "Active"}


def window_over(deployment: Deployment) -> dict[str, str | None]:
    old, new = two_keys(deployment)
    deployment.time_passes(25 * H)
    deployment.iam.update_access_key(UserName=deployment.user, AccessKeyId=old, Status="Inactive")
    deployment.time_passes(8 * D)
    return {old: None, new: "Active"}


def still_in_use(deployment: Deployment) -> dict[str, str | None]:
    old, new = two_keys(deployment)
    deployment.time_passes(25 * H)
    deployment.key_used(old)
    return {old: "Active", new: "Active"}


def cancelled_rotation(deployment: Deployment) -> dict[str, str | None]:
    deployment.rotate()
    good = deployment.current_key()
    token = deployment.rotate(steps=("createSecret", "setSecret"))
    (failed,) = set(deployment.keys()) - {good}
    secrets_client().update_secret_version_stage(
        SecretId=deployment.arn, VersionStage="AWSPENDING", RemoveFromVersionId=token
    )
    return {good: "Active", failed: "Inactive"}


SCENARIOS: dict[str, Scenario] = {
    "deactivate-after-grace": grace_over,
    "delete-after-window": window_over,
    "hold-in-use": still_in_use,
    "deactivate-cancelled-rotation": cancelled_rotation,
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
        return deployment, scenario(deployment)

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
        with fault(when, call, occurrence), pytest.raises(expected_error):
            deployment.retire(check=False)
        deployment.retire()
        assert deployment.keys() == expected_keys(expected), f"{when} {call} #{occurrence}"
        if reference_messages:  # a hold is announced by the run that completes
            assert deployment.messages(), f"{when} {call} #{occurrence}: no message on the alarm topic"


def test_a_retirement_run_makes_few_aws_calls_per_secret(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The steady state: one previous key past its grace period, one current key."""
    deployment = deploy(iam_client, iam_user, ses_smtp, monkeypatch)
    grace_over(deployment)
    with recorded_calls() as calls:
        deployment.retire(check=False)
    # Once per run: ListSecrets, one page per 100 secrets of the account (moto holds every test's).
    pages = calls.count("secrets-manager.ListSecrets")
    assert pages >= 1 and calls[:pages] == ["secrets-manager.ListSecrets"] * pages
    assert calls[pages:] == [
        "iam.ListAccessKeys",
        "secrets-manager.ListSecretVersionIds",
        "secrets-manager.GetSecretValue",  # AWSCURRENT: the current key and the user it names
        "secrets-manager.GetSecretValue",  # AWSPREVIOUS: the previous key
        "iam.GetAccessKeyLastUsed",  # evidence of use, for every key but AWSCURRENT's
        "iam.UpdateAccessKey",  # the deactivation
    ]
