"""``ses-smtp-rotation rollback`` (SPEC §4a, §8): inside the rollback window it reactivates the
previous key and moves AWSCURRENT back; once the key is deleted it refuses and changes nothing.
Against moto server and the SES SMTP stand-in, with time made to pass in moto's state.

The deployment, not the secret, says whose keys a rollback may touch and where the restored
version may send: each test's secret is rotated by a real (moto) Lambda function whose
environment is the one the template sets, and rollback reads its binding from there. A writer of
the secret who names another user, that user's key or another host gets a refusal, nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import boto3
import pytest
from mypy_boto3_iam import IAMClient

from infra.cli import main
from infra.lambda_invoke import REPO_ROOT
from infra.rotation_driver import begin_rotation
from infra.ses_smtp import SesSmtpStandIn
from tests.retirement_support import Deployment, deploy
from tests.support import (
    STANDIN_HOST,
    Crash,
    create_secret,
    current,
    failing_call,
    keys_of,
    secrets_client,
    smtp_login_code,
    stages,
)

pytestmark = pytest.mark.usefixtures("smtp_ca")

H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.fixture
def deployment(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    return deploy(iam_client, iam_user, ses_smtp, monkeypatch, rotation_function=True)


@pytest.fixture
def victim(iam_client: IAMClient) -> tuple[str, str]:
    """Another SMTP user, whose only key its owner deliberately made Inactive: (user, key)."""
    user = f"ses-smtp-victim-{uuid.uuid4().hex[:12]}"
    iam_client.create_user(UserName=user)
    key = iam_client.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    iam_client.update_access_key(UserName=user, AccessKeyId=key, Status="Inactive")
    return user, key


def retired_after_rotation(deployment: Deployment) -> tuple[str, str, dict[str, Any]]:
    """Two rotations, then the grace period passes and the retirement function stops the old key."""
    deployment.rotate()
    old_secret = current(deployment.arn)
    deployment.rotate()
    new = deployment.current_key()
    deployment.time_passes(25 * H)
    deployment.retire()
    assert deployment.keys() == {old_secret["username"]: "Inactive", new: "Active"}
    return old_secret["username"], new, old_secret


def rollback_in_process(secret_id: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["rollback", "--secret-id", secret_id, "--json"])
    return code, json.loads(capsys.readouterr().out)


def snapshot(deployment: Deployment) -> tuple[dict[str, str], dict[str, list[str]], str]:
    return deployment.keys(), stages(deployment.arn), json.dumps(current(deployment.arn), sort_keys=True)


def write_version(secret_arn: str, document: dict[str, Any]) -> str:
    """PutSecretValue as a writer of the secret does it (AWSCURRENT moves; AWSPREVIOUS follows)."""
    return secrets_client().put_secret_value(SecretId=secret_arn, SecretString=json.dumps(document))["VersionId"]


def version_with(secret_arn: str, label: str) -> str:
    return next(v for v, labels in stages(secret_arn).items() if label in labels)


@contextmanager
def answer_lost_after_awscurrent_moves() -> Iterator[None]:
    """Like tests.support.failing_call, at the UpdateSecretVersionStage that moves AWSCURRENT only:
    AWS moves the label, then the caller "crashes" before it hears the answer."""
    update = "secrets-manager.UpdateSecretVersionStage"

    def note(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["moves_awscurrent"] = params.get("VersionStage") == "AWSCURRENT"

    def crash(context: dict[str, Any], **_: Any) -> None:
        if context.get("moves_awscurrent"):
            raise Crash(update)

    boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION._session.get_component("event_emitter")  # type: ignore[union-attr]
    events.register(f"before-parameter-build.{update}", note)
    events.register(f"after-call.{update}", crash)
    try:
        yield
    finally:
        events.unregister(f"before-parameter-build.{update}", note)
        events.unregister(f"after-call.{update}", crash)


def set_function_setting(deployment: Deployment, name: str, value: str | None) -> None:
    """Change (None: remove) one variable of the rotation function's environment, as a stack update would."""
    functions = boto3.client("lambda")
    variables = functions.get_function_configuration(FunctionName=deployment.function_arn)["Environment"]["Variables"]
    if value is None:
        variables.pop(name, None)
    else:
        variables[name] = value
    functions.update_function_configuration(FunctionName=deployment.function_arn, Environment={"Variables": variables})


def test_rollback_inside_the_window_reactivates_the_previous_key_and_moves_awscurrent_back(
    deployment: Deployment, ses_smtp: SesSmtpStandIn
) -> None:
    old, new, old_secret = retired_after_rotation(deployment)
    previous_version = next(v for v, labels in stages(deployment.arn).items() if "AWSPREVIOUS" in labels)

    # As an operator runs it: the installed command line, against moto through AWS_ENDPOINT_URL.
    result = subprocess.run(
        [sys.executable, "-m", "infra.cli", "rollback", "--secret-id", deployment.arn, "--json"],
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

    code, report = rollback_in_process(deployment.arn, capsys)

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

    code, report = rollback_in_process(deployment.arn, capsys)

    assert code == 1 and token in report["reason"] and "in progress" in report["reason"]
    assert snapshot(deployment) == before


def test_rollback_with_only_the_bootstrap_version_behind_is_refused(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.rotate()
    before = snapshot(deployment)
    code, report = rollback_in_process(deployment.arn, capsys)
    assert code == 1 and "names no access key" in report["reason"]
    assert snapshot(deployment) == before


def test_rollback_interrupted_before_the_label_moved_completes_when_run_again(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, old_secret = retired_after_rotation(deployment)
    with failing_call("before-call.secrets-manager.UpdateSecretVersionStage"), pytest.raises(Crash):
        main(["rollback", "--secret-id", deployment.arn])
    assert current(deployment.arn)["username"] == new  # not rolled back yet, key already Active
    assert deployment.keys() == {old: "Active", new: "Active"}

    code, report = rollback_in_process(deployment.arn, capsys)

    assert code == 0 and report["reactivated"] is False
    assert current(deployment.arn) == old_secret


def test_rollback_prints_a_table_for_people(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    old, _, _ = retired_after_rotation(deployment)
    capsys.readouterr()
    assert main(["rollback", "--secret-id", deployment.arn]) == 0
    out = capsys.readouterr().out
    assert f"access key          {old}" in out
    assert "key status now      Active (reactivated)" in out


# -- The deployment decides whose key and which endpoint (README: "The secret cannot steer") --------


def test_rollback_never_reactivates_another_users_key_whatever_the_secret_says(
    deployment: Deployment, victim: tuple[str, str], ses_smtp: SesSmtpStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    victim_user, victim_key = victim
    deployment.rotate()
    # A writer of the secret (PutSecretValue only) names the victim and its Inactive key, twice, so
    # that AWSPREVIOUS holds the key and AWSCURRENT names the same user.
    endpoint = {"host": STANDIN_HOST, "port": ses_smtp.starttls_port}
    planted = write_version(deployment.arn, {"iam_user_name": victim_user, "username": victim_key, **endpoint})
    write_version(deployment.arn, {"iam_user_name": victim_user, **endpoint})
    assert version_with(deployment.arn, "AWSPREVIOUS") == planted
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment.arn, capsys)

    assert code == 1 and report["status"] == "refused"
    assert deployment.user in report["reason"] and victim_user in report["reason"]
    assert keys_of(deployment.iam, victim_user) == {victim_key: "Inactive"}
    assert snapshot(deployment) == before


def test_rollback_refuses_when_awscurrent_names_another_user(
    deployment: Deployment, victim: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    old, _new, _ = retired_after_rotation(deployment)
    write_version(deployment.arn, {"iam_user_name": victim[0]})  # the rotated version becomes AWSPREVIOUS
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment.arn, capsys)

    assert code == 1 and "AWSCURRENT" in report["reason"] and victim[0] in report["reason"]
    assert snapshot(deployment) == before


def test_rollback_refuses_a_version_that_sends_elsewhere_than_the_deployment_allows(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, old_secret = retired_after_rotation(deployment)
    # The writer copies the rotated version (a real, Inactive key of the bound user) with its own host.
    write_version(deployment.arn, {**old_secret, "host": "smtp.attacker.example", "port": 587})
    write_version(deployment.arn, current(deployment.arn) | {"username": new})
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment.arn, capsys)

    assert code == 1 and "smtp.attacker.example" in report["reason"]
    assert deployment.keys() == {old: "Inactive", new: "Active"}
    assert snapshot(deployment) == before


def test_rollback_checks_the_endpoint_against_the_rotation_functions_allowed_hosts(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    retired_after_rotation(deployment)
    # This process allows the stand-in's host; the deployment no longer does: the deployment wins.
    set_function_setting(deployment, "SMTP_ALLOWED_HOSTS", None)
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment.arn, capsys)

    assert code == 1 and STANDIN_HOST in report["reason"] and "SMTP_ALLOWED_HOSTS" in report["reason"]
    assert snapshot(deployment) == before


def test_rollback_refuses_a_secret_its_rotation_function_does_not_bind(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    retired_after_rotation(deployment)
    # This process still binds the secret (SMTP_SECRET_BINDINGS); its rotation function no longer does.
    set_function_setting(deployment, "SMTP_SECRET_BINDINGS", None)
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment.arn, capsys)

    assert code == 1 and "not bound" in report["reason"] and deployment.function_arn in report["reason"]
    assert snapshot(deployment) == before


def test_rollback_refuses_a_secret_without_a_rotation_function(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    older, newer = (iam_client.create_access_key(UserName=iam_user)["AccessKey"]["AccessKeyId"] for _ in range(2))
    iam_client.update_access_key(UserName=iam_user, AccessKeyId=older, Status="Inactive")
    arn = create_secret({"iam_user_name": iam_user, "username": older}, ses_smtp)  # bound in this process
    write_version(arn, current(arn) | {"username": newer})
    before = keys_of(iam_client, iam_user), stages(arn)

    code, report = rollback_in_process(arn, capsys)

    assert code == 1 and "no rotation function" in report["reason"]
    assert (keys_of(iam_client, iam_user), stages(arn)) == before


def test_rollback_refuses_when_the_rotation_function_is_gone(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    retired_after_rotation(deployment)
    boto3.client("lambda").delete_function(FunctionName=deployment.function_arn)
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment.arn, capsys)

    assert code == 1 and deployment.function_arn in report["reason"] and "no longer exists" in report["reason"]
    assert snapshot(deployment) == before


# -- Safe to repeat: a second run never rolls forward ----------------------------------------------


def test_rollback_run_twice_refuses_the_second_time_and_changes_nothing(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, old_secret = retired_after_rotation(deployment)
    assert rollback_in_process(deployment.arn, capsys)[0] == 0
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment.arn, capsys)

    assert code == 1 and "already looks rolled back" in report["reason"] and "rotate-secret" in report["reason"]
    assert snapshot(deployment) == before
    assert current(deployment.arn) == old_secret


def test_rollback_whose_answer_was_lost_after_the_label_moved_stays_rolled_back_when_run_again(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, old_secret = retired_after_rotation(deployment)
    with answer_lost_after_awscurrent_moves(), pytest.raises(Crash):
        main(["rollback", "--secret-id", deployment.arn])  # the label moved; the operator saw a failure
    assert current(deployment.arn) == old_secret

    code, report = rollback_in_process(deployment.arn, capsys)

    assert code == 1 and "already looks rolled back" in report["reason"]
    assert current(deployment.arn) == old_secret
    assert deployment.keys() == {old: "Active", new: "Active"}
    assert "AWSPREVIOUS" in stages(deployment.arn)[version_with(deployment.arn, "AWSPREVIOUS")]
    assert json.loads(
        secrets_client().get_secret_value(SecretId=deployment.arn, VersionStage="AWSPREVIOUS")["SecretString"]
    )["username"] == new
