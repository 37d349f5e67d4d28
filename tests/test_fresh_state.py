"""Act on fresh state (SPEC §4a): another actor moves labels and keys between a decision and its
action. Each test runs the other actor at one chosen AWS call of the first (a botocore hook, as the
interleaving explorer in tests/interleaving does systematically) and checks what must hold.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mypy_boto3_iam import IAMClient

from infra.rotation_driver import begin_rotation, step_event
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import EditedDuringRotationError, KeyLimitError, StateChangedError
from tests.moto_clock import key_used
from tests.retirement_support import Deployment, deploy
from tests.rollback_support import retired_after_rotation, rollback_in_process, version_with
from tests.support import current, invoke, on_aws_event, secrets_client, stages

pytestmark = pytest.mark.usefixtures("smtp_ca")
H = timedelta(hours=1)


@pytest.fixture
def deployment(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    return deploy(iam_client, iam_user, ses_smtp, monkeypatch, rotation_function=True)


@contextmanager
def at_call(event_name: str, other: Callable[[], object], occurrence: int = 1) -> Iterator[list[int]]:
    """Run `other` to completion when the `occurrence`-th `event_name` happens (once; the other
    actor's own calls do not count). Yields a list that holds 1 once it ran."""
    ran: list[int] = []
    seen = 0
    running = False

    def hook(**_: Any) -> None:
        nonlocal seen, running
        if running or ran:
            return
        seen += 1
        if seen == occurrence:
            running = True
            try:
                other()
            finally:
                running = False
                ran.append(1)

    with on_aws_event(event_name, hook):
        yield ran


def rolled_back_by_hand(deployment: Deployment, key: str) -> Callable[[], None]:
    """An operator rolling back without the command: reactivate `key`, move AWSCURRENT to
    AWSPREVIOUS's version (as it is now, when the returned function is made)."""
    previous = version_with(deployment.arn, "AWSPREVIOUS")

    def roll_back() -> None:
        deployment.iam.update_access_key(UserName=deployment.user, AccessKeyId=key, Status="Active")
        secrets_client().update_secret_version_stage(
            SecretId=deployment.arn,
            VersionStage="AWSCURRENT",
            MoveToVersionId=previous,
            RemoveFromVersionId=version_with(deployment.arn, "AWSCURRENT"),
        )

    return roll_back


def edit(arn: str, **fields: str) -> None:
    """An operator's hand edit: a new AWSCURRENT version keeping the credentials."""
    secrets_client().put_secret_value(SecretId=arn, SecretString=json.dumps({**current(arn), **fields}))


def test_a_hand_edit_during_a_rotation_is_never_lost_silently(deployment: Deployment) -> None:
    deployment.rotate()
    token = deployment.rotate(steps=("createSecret", "setSecret", "testSecret"))
    edit(deployment.arn, sender="billing@example.com")

    with pytest.raises(EditedDuringRotationError, match="sender"):
        invoke(step_event("finishSecret", deployment.arn, token, None))

    assert current(deployment.arn)["sender"] == "billing@example.com"  # the edit is still AWSCURRENT
    assert "AWSPENDING" in stages(deployment.arn)[token]  # nothing promoted
    deployment.check_invariants()
    # The documented way out: cancel (remove AWSPENDING), rotate again; the edit is carried over.
    secrets_client().update_secret_version_stage(
        SecretId=deployment.arn, VersionStage="AWSPENDING", RemoveFromVersionId=token
    )
    deployment.rotate()
    assert current(deployment.arn)["sender"] == "billing@example.com"


def test_the_same_token_delivered_twice_never_deletes_the_key_the_other_delivery_made_current(
    deployment: Deployment,
) -> None:
    deployment.rotate()
    deployment.rotate()  # a previous key, which createSecret deletes to free a slot
    token = begin_rotation(secrets_client(), deployment.arn, function_arn=deployment.function_arn)

    def first_delivery() -> None:
        for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
            invoke(step_event(step, deployment.arn, token, None))

    # The late delivery read AWSCURRENT, then the first one ran to completion before it deleted a key.
    # It may then find no free slot (the first delivery's key took it): a refusal, never a loss.
    with at_call("before-call.iam.DeleteAccessKey", first_delivery) as ran, contextlib.suppress(KeyLimitError):
        invoke(step_event("createSecret", deployment.arn, token, None))
    assert ran
    deployment.check_invariants()
    assert current(deployment.arn)["username"] in set(deployment.keys())
    deployment.rotate()  # and a later rotation succeeds
    deployment.check_invariants()


def test_a_rollback_by_hand_between_createsecrets_decision_and_its_deletion_deletes_nothing(
    deployment: Deployment,
) -> None:
    old, _, _ = retired_after_rotation(deployment)
    token = begin_rotation(secrets_client(), deployment.arn, function_arn=deployment.function_arn)
    roll_back_by_hand = rolled_back_by_hand(deployment, old)

    # createSecret decided to delete the old key (AWSCURRENT named the new one); the operator moves
    # AWSCURRENT back before createSecret re-reads it.
    with (
        at_call("before-call.secrets-manager.DescribeSecret", roll_back_by_hand, 2) as ran,
        pytest.raises(StateChangedError, match="changed while this rotation was freeing a key slot"),
    ):
        invoke(step_event("createSecret", deployment.arn, token, None))
    assert ran
    assert current(deployment.arn)["username"] == old
    assert deployment.keys()[old] == "Active"  # not deleted under the rollback
    deployment.check_invariants()


def test_the_rollback_command_refuses_while_a_rotation_is_about_to_free_a_slot(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    _, new, _ = retired_after_rotation(deployment)
    token = begin_rotation(secrets_client(), deployment.arn, function_arn=deployment.function_arn)
    refused: list[dict[str, Any]] = []

    def roll_back() -> None:
        code, report = rollback_in_process(deployment, capsys)
        assert code == 1
        refused.append(report)

    with at_call("before-call.iam.DeleteAccessKey", roll_back) as ran:
        invoke(step_event("createSecret", deployment.arn, token, None))
    assert ran and "rotation of" in refused[0]["reason"] and "in progress" in refused[0]["reason"]
    assert current(deployment.arn)["username"] == new
    deployment.check_invariants()


@pytest.mark.parametrize("at", ["before-call.secrets-manager.DescribeSecret", "before-call.iam.UpdateAccessKey"])
def test_a_rollback_during_a_retirement_run_leaves_the_restored_key_active(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], at: str
) -> None:
    deployment.rotate()
    old = deployment.current_key()
    deployment.rotate()
    deployment.time_passes(25 * H)  # the old key is due for deactivation

    def roll_back() -> None:
        assert rollback_in_process(deployment, capsys)[0] == 0

    # The run decided to deactivate the old key; the rollback makes it current again, either just
    # before the run re-reads the labels, or after it re-read them, just before it deactivates.
    occurrence = 2 if at.endswith("DescribeSecret") else 1  # the 1st DescribeSecret: is the secret looked after
    with at_call(at, roll_back, occurrence) as ran:
        deployment.retire(check=False)
    assert ran
    assert current(deployment.arn)["username"] == old
    deployment.check_invariants()  # AWSCURRENT's key is Active


def test_the_orphan_rule_never_deletes_a_used_key_on_time_alone(deployment: Deployment, iam_client: IAMClient) -> None:
    """No usable current key (the first rotation of an adopted user), and a key made after the
    rotation's version appeared: it is an orphan of a crashed attempt only if nothing ever used it."""
    console = iam_client.create_access_key(UserName=deployment.user)["AccessKey"]["AccessKeyId"]
    deployment.time_passes(H)
    token = begin_rotation(secrets_client(), deployment.arn, function_arn=deployment.function_arn)
    made_by_hand = iam_client.create_access_key(UserName=deployment.user)["AccessKey"]["AccessKeyId"]
    key_used(deployment.user, made_by_hand, datetime.now(UTC))

    with pytest.raises(KeyLimitError, match="2 access keys"):
        invoke(step_event("createSecret", deployment.arn, token, None))
    assert set(deployment.keys()) == {console, made_by_hand}  # both kept: one was used


def test_a_deletion_decided_before_an_operator_restored_the_key_by_hand_is_not_carried_out(
    deployment: Deployment,
) -> None:
    """A deletion cannot be undone: the run re-reads the labels right before it and skips it."""
    old, _, _ = retired_after_rotation(deployment)
    deployment.time_passes(8 * 24 * H)  # the rollback window is over: the run decides to delete it
    roll_back_by_hand = rolled_back_by_hand(deployment, old)

    # The 1st DescribeSecret asks whether the secret is looked after; the 2nd is the re-check.
    with at_call("before-call.secrets-manager.DescribeSecret", roll_back_by_hand, 2) as ran:
        result = deployment.retire(check=False)
    assert ran and result["deleted"] == []
    assert current(deployment.arn)["username"] == old and deployment.keys()[old] == "Active"
    deployment.check_invariants()
