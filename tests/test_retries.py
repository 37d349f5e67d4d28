"""Every step is idempotent and a crash at any point is repaired by a retry (SPEC §4, item 3).

Failures are injected into botocore (`failing_call`), below our code, which runs unmodified.
"""

from __future__ import annotations

import json
import time

import pytest
from mypy_boto3_iam import IAMClient

from infra.rotation_driver import STEPS, begin_rotation, run_steps, step_event
from infra.ses_smtp import SesSmtpStandIn
from tests.support import Crash, create_secret, current, failing_call, invoke, keys_of, pending_value, rotate, stages
from tests.support import secrets_client as sm

pytestmark = pytest.mark.usefixtures("smtp_ca")


def state(iam: IAMClient, user: str, arn: str) -> tuple[dict[str, str], dict[str, list[str]], str]:
    return keys_of(iam, user), stages(arn), json.dumps(current(arn), sort_keys=True)


def test_every_step_invoked_twice_gives_the_same_end_state(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotate(arn)  # a current key, so the second rotation exercises the slot rules too
    token = begin_rotation(sm(), arn)
    for step in STEPS:
        invoke(step_event(step, arn, token, None))
        after_once = state(iam_client, iam_user, arn), pending_value(arn, token)
        invoke(step_event(step, arn, token, None))
        assert (state(iam_client, iam_user, arn), pending_value(arn, token)) == after_once, step
    assert current(arn)["username"] in keys_of(iam_client, iam_user)
    assert len(keys_of(iam_client, iam_user)) == 2  # the new key and the previous one (keep)


@pytest.mark.parametrize("earlier_rotations", [0, 1], ids=["first-rotation", "later-rotation"])
def test_retry_after_crash_between_key_and_put_leaves_one_new_key_and_no_orphan(
    earlier_rotations: int, iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    for _ in range(earlier_rotations):
        rotate(arn)
    before = keys_of(iam_client, iam_user)
    token = begin_rotation(sm(), arn)

    with failing_call("after-call.iam.CreateAccessKey"), pytest.raises(Crash):
        invoke(step_event("createSecret", arn, token, None))
    orphan = set(keys_of(iam_client, iam_user)) - set(before)
    assert len(orphan) == 1 and pending_value(arn, token) is None

    time.sleep(1.1)  # Secrets Manager retries later: the orphan must be found by its date, not "now"
    run_steps(invoke, arn, token)

    keys = keys_of(iam_client, iam_user)
    assert current(arn)["username"] in keys
    assert not orphan & set(keys)
    assert set(keys) == set(before) | {current(arn)["username"]}


def test_failing_put_deletes_the_key_it_made(iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotate(arn)
    before = keys_of(iam_client, iam_user), stages(arn)
    token = begin_rotation(sm(), arn)

    with failing_call("before-call.secrets-manager.PutSecretValue"), pytest.raises(Crash):
        invoke(step_event("createSecret", arn, token, None))

    assert pending_value(arn, token) is None
    assert keys_of(iam_client, iam_user) == before[0]


def test_put_that_timed_out_after_writing_keeps_its_key(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    token = begin_rotation(sm(), arn)

    with failing_call("after-call.secrets-manager.PutSecretValue"):
        invoke(step_event("createSecret", arn, token, None))

    stored = pending_value(arn, token)
    assert stored is not None
    assert list(keys_of(iam_client, iam_user)) == [json.loads(stored)["username"]]
    run_steps(invoke, arn, token, steps=STEPS[1:])
    assert current(arn)["username"] == json.loads(stored)["username"]


@pytest.mark.parametrize("action", ["deactivate", "delete"])
def test_crash_in_finish_after_the_label_moved_then_retry_still_retires_the_previous_key(
    action: str, iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREVIOUS_KEY_ACTION", action)
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotate(arn)
    old_key = current(arn)["username"]
    token = begin_rotation(sm(), arn)
    run_steps(invoke, arn, token, steps=STEPS[:3])

    with failing_call("after-call.secrets-manager.UpdateSecretVersionStage"), pytest.raises(Crash):
        invoke(step_event("finishSecret", arn, token, None))
    assert "AWSCURRENT" in stages(arn)[token]
    assert keys_of(iam_client, iam_user)[old_key] == "Active"  # the action was lost in the crash

    invoke(step_event("finishSecret", arn, token, None))

    keys = keys_of(iam_client, iam_user)
    assert keys.get(old_key) == ("Inactive" if action == "deactivate" else None)
    assert keys[current(arn)["username"]] == "Active"


def test_steps_retried_after_the_rotation_completed_change_nothing(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREVIOUS_KEY_ACTION", "delete")
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotate(arn)
    token = rotate(arn)
    before = state(iam_client, iam_user, arn)
    run_steps(invoke, arn, token)
    assert state(iam_client, iam_user, arn) == before
