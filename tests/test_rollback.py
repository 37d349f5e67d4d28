"""``ses-smtp-rotation rollback`` (SPEC §4a, §8): inside the rollback window it reactivates the
previous key and moves AWSCURRENT back; once the key is deleted it refuses and changes nothing;
run again, it finishes an interrupted rollback and never rolls forward. Against moto server and
the SES SMTP stand-in, with time made to pass in moto's state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from mypy_boto3_iam import IAMClient

from infra.cli import main
from infra.lambda_invoke import REPO_ROOT
from infra.rotation_driver import begin_rotation
from infra.ses_smtp import SesSmtpStandIn
from tests.retirement_support import Deployment, deploy
from tests.rollback_support import (
    answer_lost_after_awscurrent_moves,
    retired_after_rotation,
    rollback_in_process,
    snapshot,
)
from tests.support import Crash, current, failing_call, secrets_client, smtp_login_code, stages

pytestmark = pytest.mark.usefixtures("smtp_ca")

H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.fixture
def deployment(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    return deploy(iam_client, iam_user, ses_smtp, monkeypatch, rotation_function=True)


def test_rollback_inside_the_window_reactivates_the_previous_key_and_moves_awscurrent_back(
    deployment: Deployment, ses_smtp: SesSmtpStandIn
) -> None:
    old, new, old_secret = retired_after_rotation(deployment)
    previous_version = next(v for v, labels in stages(deployment.arn).items() if "AWSPREVIOUS" in labels)

    # As an operator runs it: the installed command line, against moto through AWS_ENDPOINT_URL.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.cli",
            "rollback",
            "--secret-id",
            deployment.arn,
            "--function",
            deployment.function_arn,
            "--yes",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["status"], report["key_id"], report["reactivated"]) == ("rolled-back", old, True)
    assert report["to_version"] == previous_version
    assert current(deployment.arn) == old_secret
    assert deployment.keys() == {old: "Active", new: "Active"}
    assert "AWSPREVIOUS" in stages(deployment.arn)[report["from_version"]]
    assert smtp_login_code(ses_smtp, old_secret["username"], old_secret["password"]) == 235

    # The key rolled away from has no grace left: the next run stops it; the rolled-back key stays.
    deployment.time_passes(H)
    assert deployment.retire()["deactivated"] == [new]
    assert deployment.keys() == {old: "Active", new: "Inactive"}
    # And rotation goes on (no stale AWSPENDING blocks it).
    deployment.rotate()
    assert deployment.current_key() not in (old, new)


def test_rollback_after_deletion_is_refused_and_changes_nothing(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    old, _new, _ = retired_after_rotation(deployment)
    deployment.time_passes(8 * D)
    assert deployment.retire()["deleted"] == [old]
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1
    assert report["status"] == "refused" and report["key_id"] == old
    assert f"Access key {old}" in report["reason"] and "deleted" in report["reason"]
    assert snapshot(deployment) == before


def test_rollback_during_a_rotation_in_progress_is_refused_and_changes_nothing(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    retired_after_rotation(deployment)
    token = begin_rotation(secrets_client(), deployment.arn, function_arn=deployment.function_arn)
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1 and token in report["reason"] and "in progress" in report["reason"]
    assert snapshot(deployment) == before


def test_rollback_with_only_the_bootstrap_version_behind_is_refused(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.rotate()
    before = snapshot(deployment)
    code, report = rollback_in_process(deployment, capsys)
    assert code == 1 and "names no access key" in report["reason"]
    assert snapshot(deployment) == before


def test_rollback_interrupted_before_the_label_moved_completes_when_run_again(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, old_secret = retired_after_rotation(deployment)
    with failing_call("before-call.secrets-manager.UpdateSecretVersionStage"), pytest.raises(Crash):
        main(["rollback", "--secret-id", deployment.arn, "--function", deployment.function_arn, "--yes"])
    assert current(deployment.arn)["username"] == new  # not rolled back yet, key already Active
    assert deployment.keys() == {old: "Active", new: "Active"}

    code, report = rollback_in_process(deployment, capsys)

    assert code == 0 and report["reactivated"] is False
    assert current(deployment.arn) == old_secret


def test_rollback_prints_a_table_for_people(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    old, _, _ = retired_after_rotation(deployment)
    capsys.readouterr()
    assert main(["rollback", "--secret-id", deployment.arn, "--function", deployment.function_arn, "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"access key          {old}" in out
    assert "key status now      Active (reactivated)" in out


# -- Safe to repeat: a second run never rolls forward ----------------------------------------------


def test_rollback_run_twice_refuses_the_second_time_and_changes_nothing(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    _old, _new, old_secret = retired_after_rotation(deployment)
    assert rollback_in_process(deployment, capsys)[0] == 0
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1 and "already looks rolled back" in report["reason"] and "rotate-secret" in report["reason"]
    assert snapshot(deployment) == before
    assert current(deployment.arn) == old_secret


def test_rollback_whose_answer_was_lost_after_the_label_moved_stays_rolled_back_when_run_again(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, old_secret = retired_after_rotation(deployment)
    with answer_lost_after_awscurrent_moves(), pytest.raises(Crash):
        main(
            ["rollback", "--secret-id", deployment.arn, "--function", deployment.function_arn, "--yes"]
        )  # the label moved; the operator saw a failure
    assert current(deployment.arn) == old_secret
    rolled_back = snapshot(deployment)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1 and "already looks rolled back" in report["reason"]
    assert snapshot(deployment) == rolled_back
    assert deployment.keys() == {old: "Active", new: "Active"}
