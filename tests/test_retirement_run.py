"""The retirement function end to end (SPEC §4a): rotations through the rotation handler, then runs
of the retirement handler, against moto server and the SES SMTP stand-in. Time is made to pass
by backdating moto's state (``tests/moto_clock.py``), never by waiting.

Every run also checks that AWSCURRENT's key is Active and that the user holds at most two keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from mypy_boto3_iam import IAMClient

from infra.rotation_driver import begin_rotation, run_steps
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import RetirementError
from tests.moto_clock import version_created
from tests.retirement_support import Deployment, deploy, rotated_twice, secret_metrics
from tests.support import Crash, current, failing_call, invoke, secrets_client, smtp_login_code, stages

pytestmark = pytest.mark.usefixtures("smtp_ca")

H = timedelta(hours=1)
D = timedelta(days=1)
MINUTE = timedelta(minutes=1)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def created(deployment: Deployment, access_key_id: str) -> datetime:
    """An access key's CreateDate, as IAM reports it."""
    (key,) = [
        k
        for k in deployment.iam.list_access_keys(UserName=deployment.user)["AccessKeyMetadata"]
        if k["AccessKeyId"] == access_key_id
    ]
    return key["CreateDate"]


@pytest.fixture
def deployment(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    yield deploy(iam_client, iam_user, ses_smtp, monkeypatch)


def test_after_a_rotation_the_previous_key_is_active_through_the_grace_period_then_inactive_then_deleted(
    deployment: Deployment,
) -> None:
    old, new = rotated_twice(deployment)
    observed = []
    for step in (timedelta(0), 23 * H, 2 * H, 6 * D, 2 * D):
        deployment.time_passes(step)
        deployment.retire()
        observed.append(deployment.keys())
    assert observed == [
        {old: "Active", new: "Active"},  # just rotated
        {old: "Active", new: "Active"},  # 23 h: still in the grace period
        {old: "Inactive", new: "Active"},  # 25 h: stopped
        {old: "Inactive", new: "Active"},  # 6 days later: still in the rollback window
        {new: "Active"},  # 8 days later: deleted
    ]


def test_a_second_run_at_the_same_time_changes_nothing(deployment: Deployment) -> None:
    old, new = rotated_twice(deployment)
    deployment.time_passes(25 * H)
    first = deployment.retire()
    second = deployment.retire()
    assert (first["deactivated"], second["deactivated"]) == ([old], [])
    assert deployment.keys() == {old: "Inactive", new: "Active"}


def test_an_old_key_in_use_is_held_and_announced_then_deactivated_at_the_maximum(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    old, new = rotated_twice(deployment)
    rotated = created(deployment, new)
    deployment.time_passes(25 * H)
    rotated -= 25 * H
    used = datetime.now(UTC) - 10 * MINUTE
    deployment.key_used(old, ago=10 * MINUTE)
    capsys.readouterr()

    held = deployment.retire()

    assert held["held"] == [old]
    assert deployment.keys() == {old: "Active", new: "Active"}
    # Announced three ways: the metric, a WARNING line naming the key and its last use, a message.
    signals = secret_metrics(capsys.readouterr().out, deployment.name())
    assert (signals["PreviousKeyStillInUse"], signals["ActiveAccessKeys"]) == (1, 2)
    (warning,) = [r for r in caplog.records if r.getMessage() == "Previous access key still in use; kept Active"]
    assert (warning.levelname, warning.__dict__["key_id"]) == ("WARNING", old)
    assert abs(datetime.fromisoformat(warning.__dict__["last_used"]) - used) < timedelta(seconds=1)
    (message,) = deployment.messages()
    assert old in message["Message"] and deployment.user in message["Message"]
    # It says when the key stops if it is not used again, and the latest it can stay Active.
    last_used, idle_end, latest = [datetime.fromisoformat(t) for t in TIMESTAMP.findall(message["Message"])]
    assert abs(last_used - used) < timedelta(seconds=1)
    assert idle_end == last_used + H
    assert abs(latest - (rotated + 168 * H)) < timedelta(seconds=2)

    deployment.time_passes(140 * H)  # 165 h after the rotation, still in use
    deployment.key_used(old)
    assert deployment.retire()["held"] == [old]
    assert len(deployment.messages()) == 1

    deployment.time_passes(4 * H)  # 169 h: held the longest allowed
    deployment.key_used(old)
    stopped = deployment.retire()
    assert stopped["deactivated"] == [old]
    assert deployment.keys() == {old: "Inactive", new: "Active"}
    (message,) = deployment.messages()
    assert "stopped while in use" in message["Subject"]


def test_an_smtp_login_with_the_old_password_is_the_evidence_that_holds_the_key(
    deployment: Deployment, ses_smtp: SesSmtpStandIn
) -> None:
    deployment.rotate()
    old_secret = current(deployment.arn)
    deployment.rotate()
    deployment.time_passes(25 * H)
    # A consumer with a cached secret logs in: the SES stand-in records it, as IAM shows SMTP use.
    assert smtp_login_code(ses_smtp, old_secret["username"], old_secret["password"]) == 235

    assert deployment.retire()["held"] == [old_secret["username"]]


def test_an_old_key_that_goes_idle_is_deactivated_at_the_next_run(deployment: Deployment) -> None:
    old, new = rotated_twice(deployment)
    deployment.time_passes(25 * H)
    deployment.key_used(old, ago=10 * 60 * timedelta(seconds=1))
    assert deployment.retire()["held"] == [old]
    deployment.time_passes(H)
    assert deployment.retire()["deactivated"] == [old]
    assert deployment.keys() == {old: "Inactive", new: "Active"}


def test_the_key_of_a_cancelled_rotation_is_deactivated_at_the_next_run_and_deleted_after_the_window(
    deployment: Deployment,
) -> None:
    deployment.rotate()
    good = deployment.current_key()
    token = deployment.rotate(steps=("createSecret", "setSecret"))  # then testSecret fails for ever
    (failed,) = set(deployment.keys()) - {good}
    client = secrets_client()
    client.cancel_rotate_secret(SecretId=deployment.arn)  # the README runbook
    client.update_secret_version_stage(SecretId=deployment.arn, VersionStage="AWSPENDING", RemoveFromVersionId=token)

    assert deployment.retire()["deactivated"] == [failed]
    assert deployment.keys() == {good: "Active", failed: "Inactive"}
    deployment.time_passes(7 * D + H)
    assert deployment.retire()["deleted"] == [failed]
    assert deployment.keys() == {good: "Active"}


@pytest.mark.parametrize(
    "dated",
    [
        "by-rotate-secret",
        "by-put-secret-value",
    ],
)
def test_a_cancelled_first_rotation_leaves_the_adopted_console_key_alone_and_stops_its_own_key(
    deployment: Deployment, dated: str
) -> None:
    # An adopted user: a console key that applications use, older than any rotation.
    console = deployment.iam.create_access_key(UserName=deployment.user)["AccessKey"]["AccessKeyId"]
    deployment.time_passes(30 * D)
    token = deployment.rotate(steps=("createSecret", "setSecret"))  # then testSecret fails for ever
    (failed,) = set(deployment.keys()) - {console}
    if dated == "by-rotate-secret":
        date_version_before_its_key(deployment, token, failed)
    client = secrets_client()
    client.cancel_rotate_secret(SecretId=deployment.arn)
    client.update_secret_version_stage(SecretId=deployment.arn, VersionStage="AWSPENDING", RemoveFromVersionId=token)

    # AWSCURRENT (the bootstrap) names no key: only the key of the cancelled rotation may retire,
    # found through the unlabelled version that names it.
    assert deployment.retire()["deactivated"] == [failed]
    deployment.time_passes(30 * D)
    deployment.retire()
    assert deployment.keys() == {console: "Active"}


def date_version_before_its_key(deployment: Deployment, version_id: str, key_id: str) -> None:
    """Date the version that names `key_id` a second before the key, as when AWS dates a version by
    the RotateSecret that made it empty (before createSecret makes the key) rather than by the
    PutSecretValue that filled it (as moto does; which one AWS does is unverified)."""
    keys = deployment.iam.list_access_keys(UserName=deployment.user)["AccessKeyMetadata"]
    (key,) = [k for k in keys if k["AccessKeyId"] == key_id]
    version_created(deployment.arn, version_id, key["CreateDate"] - timedelta(seconds=1))


@pytest.mark.parametrize("stage", ["after-createSecret", "between-CreateAccessKey-and-PutSecretValue"])
def test_a_run_during_a_rotation_in_progress_leaves_the_pending_key_alone(stage: str, deployment: Deployment) -> None:
    deployment.rotate()
    deployment.time_passes(30 * D)
    current = deployment.current_key()
    token = begin_rotation(secrets_client(), deployment.arn, function_arn=deployment.function_arn)
    if stage == "after-createSecret":
        run_steps(invoke, deployment.arn, token, steps=("createSecret",))
    else:
        with failing_call("after-call.iam.CreateAccessKey"), pytest.raises(Crash):
            run_steps(invoke, deployment.arn, token, steps=("createSecret",))
    (pending,) = set(deployment.keys()) - {current}

    deployment.time_passes(H)
    result = deployment.retire()

    assert result["deactivated"] == result["deleted"] == []
    assert deployment.keys() == {current: "Active", pending: "Active"}
    run_steps(invoke, deployment.arn, token, steps=("createSecret", "setSecret", "testSecret", "finishSecret"))
    assert "AWSCURRENT" in stages(deployment.arn)[token]


def test_the_current_key_is_never_touched_however_old_and_its_age_is_reported(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    deployment.rotate()
    key = deployment.current_key()
    deployment.time_passes(400 * D)
    capsys.readouterr()

    result = deployment.retire()

    assert result["deactivated"] == result["deleted"] == []
    assert deployment.keys() == {key: "Active"}
    too_old = [r.__dict__ for r in caplog.records if "older than MAX_KEY_AGE_DAYS" in r.getMessage()]
    assert [(r["key_id"], r["age_days"] >= 400) for r in too_old] == [(key, True)]
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    secret_name = secrets_client().describe_secret(SecretId=deployment.arn)["Name"]
    per_secret = {
        metric["Name"]: record[metric["Name"]][0]
        for record in metrics
        if record.get("SecretName") == secret_name
        for directive in record["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }
    assert per_secret["ActiveAccessKeys"] == 1
    assert per_secret["PreviousKeyStillInUse"] == 0
    assert per_secret["CurrentKeyAgeDays"] >= 400


def test_a_secret_the_deployment_does_not_bind_is_left_alone_though_it_names_the_function(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = rotated_twice(deployment)
    deployment.time_passes(30 * D)
    monkeypatch.setenv("SMTP_SECRET_BINDINGS", "{}")  # its RotationLambdaARN still names the function
    result = deployment.retire()
    assert result["secrets"] == [] and result["deactivated"] == []
    assert deployment.keys() == {old: "Active", new: "Active"}


def test_a_secret_whose_current_version_names_another_user_is_refused_and_nothing_changes(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, iam_client: IAMClient
) -> None:
    old, new = rotated_twice(deployment)
    deployment.time_passes(30 * D)
    other = f"{deployment.user}-other"
    iam_client.create_user(UserName=other)
    monkeypatch.setenv("SMTP_SECRET_BINDINGS", json.dumps({deployment.arn: other}))
    with pytest.raises(RetirementError):
        deployment.retire()
    assert deployment.keys() == {old: "Active", new: "Active"}


def test_editing_the_secret_by_hand_does_not_restart_the_previous_keys_grace(deployment: Deployment) -> None:
    old, new = rotated_twice(deployment)
    client = secrets_client()
    for sender in ("billing@example.com", "alerts@example.com"):  # edits at +10 h and +20 h, same key
        deployment.time_passes(10 * H)
        document = {**current(deployment.arn), "sender": sender}
        client.put_secret_value(SecretId=deployment.arn, SecretString=json.dumps(document))
        assert deployment.current_key() == new
    deployment.time_passes(5 * H)  # 25 h after the rotation: the grace period is over

    assert deployment.retire()["deactivated"] == [old]
    assert deployment.keys() == {old: "Inactive", new: "Active"}
