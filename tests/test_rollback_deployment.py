"""`rollback` takes the deployment from the operator, never from the secret (SPEC §4a, §8): a
secret re-pointed at a function whose environment an attacker controls is refused; nothing changes
without confirmation; a key about to be deleted is not restored; a refusal never reads as a success.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from mypy_boto3_iam import IAMClient

from infra.local_lambda import register_rotation_function
from infra.rotation_driver import begin_rotation
from infra.ses_smtp import SesSmtpStandIn
from tests.retirement_support import Deployment, deploy
from tests.rollback_support import retired_after_rotation, rollback_in_process, snapshot, write_version
from tests.support import current, keys_of, secrets_client

pytestmark = pytest.mark.usefixtures("smtp_ca")
H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.fixture
def deployment(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    return deploy(iam_client, iam_user, ses_smtp, monkeypatch, rotation_function=True)


def test_a_secret_repointed_at_an_attackers_function_is_refused_and_no_other_users_key_moves(
    deployment: Deployment, iam_client: IAMClient, capsys: pytest.CaptureFixture[str]
) -> None:
    retired_after_rotation(deployment)
    # The victim: an administrator whose only key is deliberately Inactive.
    victim = f"admin-{uuid.uuid4().hex[:8]}"
    iam_client.create_user(UserName=victim)
    victim_key = iam_client.create_access_key(UserName=victim)["AccessKey"]["AccessKeyId"]
    iam_client.update_access_key(UserName=victim, AccessKeyId=victim_key, Status="Inactive")
    # The attacker's function binds the secret to the victim; two writes plant the victim's key.
    evil = register_rotation_function(
        iam_client,
        f"evil-{uuid.uuid4().hex[:8]}",
        {"SMTP_SECRET_BINDINGS": json.dumps({deployment.arn: victim}), "SMTP_ALLOWED_HOSTS": "attacker.example"},
    )
    planted = {"iam_user_name": victim, "username": victim_key, "host": "attacker.example", "port": 25}
    write_version(deployment.arn, planted)
    write_version(deployment.arn, {**planted, "note": "on top"})
    begin_rotation(secrets_client(), deployment.arn, function_arn=evil)  # RotationLambdaARN -> evil
    before = snapshot(deployment), keys_of(iam_client, victim)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1 and report["status"] == "refused"
    assert f"is rotated by {evil}, not by the deployment you named" in report["reason"]
    assert (snapshot(deployment), keys_of(iam_client, victim)) == before
    assert keys_of(iam_client, victim) == {victim_key: "Inactive"}


def test_without_yes_and_without_a_terminal_nothing_changes_and_the_plan_is_shown(
    deployment: Deployment,
) -> None:
    old, _, _ = retired_after_rotation(deployment)
    before = snapshot(deployment)
    command = ["rollback", "--secret-id", deployment.arn, "--function", deployment.function_arn]
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli", *command],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "will restore" in done.stderr and f"Access key {old} will be made Active again" in done.stderr
    assert "Not confirmed" in done.stderr and "--yes" in done.stderr
    assert "rolled back" not in done.stdout + done.stderr  # a refusal never prints what a success prints
    assert "Traceback" not in done.stderr
    assert snapshot(deployment) == before


def test_a_key_whose_deletion_is_due_before_the_next_retirement_run_is_not_restored(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, _ = retired_after_rotation(deployment)
    deployment.time_passes(7 * D - 30 * timedelta(minutes=1))  # Inactive for 7 days less 30 minutes
    before = snapshot(deployment)

    code, report = rollback_in_process(deployment, capsys)

    assert code == 1 and "due to be deleted by the retirement function" in report["reason"]
    assert snapshot(deployment) == before
    assert current(deployment.arn)["username"] == new and deployment.keys()[old] == "Inactive"


def test_a_key_with_its_window_well_ahead_is_restored(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    old, _, _ = retired_after_rotation(deployment)
    deployment.time_passes(6 * D)  # a day of the window left
    code, report = rollback_in_process(deployment, capsys)
    assert code == 0 and report["status"] == "rolled-back"
    assert current(deployment.arn)["username"] == old and deployment.keys()[old] == "Active"


def test_the_stack_names_the_deployment_through_its_function_output(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3

    old, _, _ = retired_after_rotation(deployment)
    stack = f"ses-smtp-{uuid.uuid4().hex[:8]}"
    template = {
        "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"FunctionArn": {"Value": deployment.function_arn}},
    }
    boto3.client("cloudformation").create_stack(StackName=stack, TemplateBody=json.dumps(template))
    capsys.readouterr()
    from infra.cli import main

    code = main(["rollback", "--secret-id", deployment.arn, "--stack", stack, "--yes", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["rotation_function"] == deployment.function_arn
    assert current(deployment.arn)["username"] == old


def test_a_rotation_beginning_in_the_rollbacks_gap_never_leaves_awscurrent_on_a_deleted_key(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rollback re-read the labels; a rotation begins and its createSecret frees the slot of the
    key the rollback reactivated; the rollback moves AWSCURRENT, finds the key gone, moves it back."""
    from infra.rotation_driver import step_event
    from tests.support import invoke
    from tests.test_fresh_state import at_call

    retired_after_rotation(deployment)
    new = deployment.current_key()

    def rotation_begins_and_creates() -> None:
        token = begin_rotation(secrets_client(), deployment.arn, function_arn=deployment.function_arn)
        invoke(step_event("createSecret", deployment.arn, token, None))

    with at_call("before-call.secrets-manager.UpdateSecretVersionStage", rotation_begins_and_creates) as ran:
        code, report = rollback_in_process(deployment, capsys)
    assert ran and code == 1 and "moved back" in report["reason"]
    assert current(deployment.arn)["username"] == new
    deployment.check_invariants()  # AWSCURRENT's key exists and is Active


def test_a_denied_move_says_who_may_roll_back_and_leaves_the_key_inactive_again(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support import aws_answers

    old, new, _ = retired_after_rotation(deployment)
    body = json.dumps({"__type": "AccessDeniedException", "message": "explicit deny in a resource-based policy"})
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    with aws_answers("before-send.secrets-manager.UpdateSecretVersionStage", 400, body, headers):
        code, report = rollback_in_process(deployment, capsys)
    assert code == 1 and "SecretWriterArns" in report["reason"]
    assert current(deployment.arn)["username"] == new
    assert deployment.keys() == {old: "Inactive", new: "Active"}  # the reactivation was undone


@pytest.mark.parametrize(
    ("event", "code_name"),
    [
        ("before-send.secrets-manager.GetSecretValue", "AccessDeniedException"),
        ("before-send.iam.UpdateAccessKey", "AccessDenied"),
    ],
)
def test_an_aws_error_is_one_line_and_exit_3_never_a_traceback(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], event: str, code_name: str
) -> None:
    from infra.cli import main
    from tests.support import aws_answers

    retired_after_rotation(deployment)
    if event.startswith("before-send.secrets-manager"):
        body, headers = (
            json.dumps({"__type": code_name, "message": "no"}),
            {"Content-Type": "application/x-amz-json-1.1"},
        )
    else:
        body = f"<ErrorResponse><Error><Type>Sender</Type><Code>{code_name}</Code><Message>no</Message></Error>"
        body, headers = body + "</ErrorResponse>", {}
    capsys.readouterr()
    with aws_answers(event, 403, body, headers):
        code = main(["rollback", "--secret-id", deployment.arn, "--function", deployment.function_arn, "--yes"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and err.startswith(f"Error: {code_name}")
