"""The local demo (SPEC §7), its Lambda-like invoke, and the consumer example.

The demo runs as a user runs it: a separate process. A small runner around ``infra.demo.main``
records, from moto's own state in that process, every secret access key IAM issued, every
password the secret's versions hold and every RotationToken sent, so the test can prove the
output shows none of them. Every demo process gets a marker in its environment, so the test can
also prove that nothing it started outlives it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from mypy_boto3_iam import IAMClient

from infra import consumer
from infra.lambda_invoke import LambdaWorker
from infra.local_aws import MotoServer, set_fake_aws_env
from infra.rotation_driver import begin_rotation, run_steps
from infra.ses_smtp import SesSmtpStandIn
from tests.support import STANDIN_HOST

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER_VARIABLE = "SES_DEMO_TEST_MARKER"
RECIPIENT = "success@simulator.amazonses.com"

# Runs the demo in its own process, then writes what must never be printed to argv[1].
RUNNER = """
import json, sys
from moto.iam.models import IAMBackend
import infra.rotation_driver as driver

issued, rotation_tokens = [], []
create_access_key = IAMBackend.create_access_key
def recording_create_access_key(self, *args, **kwargs):
    key = create_access_key(self, *args, **kwargs)
    issued.append(key.secret_access_key)
    return key
IAMBackend.create_access_key = recording_create_access_key
step_event = driver.step_event
def recording_step_event(step, secret_id, token, rotation_token):
    rotation_tokens.append(rotation_token)
    return step_event(step, secret_id, token, rotation_token)
driver.step_event = recording_step_event

from infra import demo
code = demo.main(sys.argv[2:])

from moto.secretsmanager.models import secretsmanager_backends
passwords = []
for regions in secretsmanager_backends.values():
    for backend in regions.values():
        for secret in backend.secrets.values():
            for version in secret.versions.values():
                document = json.loads(version.get("secret_string") or "{}")
                passwords += [document[k] for k in ("password",) if k in document]
                passwords += list(document.get("passwords", {}).values())
with open(sys.argv[1], "w") as out:
    json.dump({"secret_access_keys": issued, "passwords": passwords, "rotation_tokens": rotation_tokens}, out)
sys.exit(code)
"""


@dataclass(frozen=True)
class DemoRun:
    returncode: int
    output: str  # stdout and stderr, interleaved as a terminal shows them
    seconds: float
    secrets: dict[str, list[str]]  # what must never be printed
    marker: str

    def leaked(self) -> list[str]:
        return [kind for kind, values in self.secrets.items() for value in values if value in self.output]


def processes_with_marker(marker: str) -> list[int]:
    """PIDs of processes whose environment holds the marker (children of a demo inherit it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or not ours
    return found


def assert_nothing_left_running(marker: str) -> None:
    if not Path("/proc/self/environ").exists():
        return  # no /proc on this platform: cannot look
    deadline = time.monotonic() + 3
    while (left := processes_with_marker(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"processes left running: {left}"


def demo_env(marker: str) -> dict[str, str]:
    env = dict(os.environ)
    env[MARKER_VARIABLE] = marker
    return env


def run_demo(tmp_path: Path, *args: str) -> DemoRun:
    marker = uuid.uuid4().hex
    secrets_file = tmp_path / "secrets.json"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(secrets_file), *args],
        cwd=REPO_ROOT,
        env=demo_env(marker),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,  # a safety net: the default run takes ~30 s, with section 6's compressed durations
        check=False,
    )
    secrets = json.loads(secrets_file.read_text())
    return DemoRun(result.returncode, result.stdout, time.monotonic() - started, secrets, marker)


def test_demo_rotates_three_times_sends_mail_shows_a_keys_whole_life_and_never_prints_a_secret(
    tmp_path: Path,
) -> None:
    run = run_demo(tmp_path, "--delay", "1")  # the defaults, with a shorter propagation delay

    assert run.returncode == 0, run.output
    assert "3.3 Rotation 3 of 3" in run.output
    assert "then 235" in run.output  # the new key was refused while it propagated, then accepted
    assert "SES stand-in: accepted (250)" in run.output
    assert "deleted by rotation 3 (overlap, then retire)" in run.output
    assert "SES stand-in: 535 for" in run.output
    assert "Demo passed" in run.output
    assert len(run.secrets["secret_access_keys"]) == 5  # sections 3 and 6
    assert len(run.secrets["passwords"]) == 5
    assert len(run.secrets["rotation_tokens"]) == 20
    assert run.leaked() == []
    assert_nothing_left_running(run.marker)
    assert_lifecycle_shown(run.output)


def lifecycle_events(output: str, section: str, key: str) -> list[str]:
    """What section 6.x of the demo output says happened to `key`, in order."""
    start = output.index(section)
    end = output.find("\n6.", start + len(section))
    events = []
    for line in output[start : end if end != -1 else None].splitlines():
        if f"retirement function: {key} " in line:
            events.append(line.split(f"retirement function: {key} ")[1].split(" ")[0])
        elif f"consumer: 535 for cached key {key}" in line:
            events.append("535-then-reread")
        elif f"consumer: 250, sent as {key} (cached)" in line:
            events.append("sent")
        elif "alarm topic: 'SES SMTP: old key still in use" in line:
            events.append("alarm")
    return events


def assert_lifecycle_shown(output: str) -> None:
    """Section 6: overlap, hold while in use, 535 and re-read, Inactive, deleted; then a rollback."""
    old = output.split("caches it for an hour: access key ")[1].split()[0]
    events = lifecycle_events(output, "6.1 A consumer with a cached secret", old)
    # The cached key works through the grace period, is held while in use (announced), then stopped;
    # the consumer re-reads on 535; the key stays Inactive for the window, then is deleted.
    collapsed = [e for i, e in enumerate(events) if i == 0 or e != events[i - 1]]
    assert collapsed[:2] == ["sent", "KEEP"], events
    assert collapsed.index("HOLD") < collapsed.index("DEACTIVATE") < collapsed.index("DELETE"), events
    assert "alarm" in collapsed[collapsed.index("HOLD") :], events
    assert "535-then-reread" in collapsed[collapsed.index("DEACTIVATE") :], events
    assert "sent" not in collapsed[collapsed.index("DEACTIVATE") :], events
    assert f"IAM user keys now: {old} deleted" in output

    rollback = output[output.index("6.2 Rollback inside the window") :]
    assert "DEACTIVATE (previous): grace period over" in rollback
    assert "$ python -m infra.cli rollback --secret-id ses-smtp/ses-smtp-user" in rollback
    assert "key status before   Inactive" in rollback
    assert "key status now      Active (reactivated)" in rollback
    assert "AWSCURRENT               " in rollback  # the versions table after the rollback


def test_demo_with_every_option_keeps_logs_free_of_secrets(tmp_path: Path) -> None:
    run = run_demo(
        tmp_path,
        *("--rotations", "2", "--previous-key-action", "delete", "--regions", "eu-west-1", "--delay", "0.5"),
        "--verbose",
    )

    assert run.returncode == 0, run.output
    assert "passwords for us-east-1, eu-west-1" in run.output
    assert "INFO SMTP login accepted" in run.output  # the function's own log, shown by --verbose
    assert "deleted by rotation 2 (delete)" in run.output
    assert "Skipped: PREVIOUS_KEY_ACTION=delete" in run.output  # section 6 is the overlap's
    assert len(run.secrets["passwords"]) == 2 * 3  # per version: password, passwords[us-east-1, eu-west-1]
    assert run.leaked() == []
    assert_nothing_left_running(run.marker)


def test_demo_fails_naming_the_cause_when_the_key_propagates_slower_than_the_budget(tmp_path: Path) -> None:
    run = run_demo(tmp_path, "--delay", "8", "--auth-timeout", "2", "--rotations", "1")

    assert run.returncode == 1, run.output
    assert "DEMO FAILED: Rotation 1 failed at testSecret: SmtpAuthenticationError" in run.output
    assert "535: credentials not accepted" in run.output  # the code and our reason, never the server's text
    assert "propagation delay (8 s)" in run.output
    assert "SMTP_AUTH_TIMEOUT_SECONDS (2 s)" in run.output
    assert "AWSPENDING" in run.output  # the state it leaves, shown to the operator
    assert run.seconds < 8  # it gave up within its budget instead of waiting for the key
    assert run.leaked() == []
    assert_nothing_left_running(run.marker)


def test_interrupted_demo_stops_everything_it_started() -> None:
    marker = uuid.uuid4().hex
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.demo", "--delay", "30", "--rotations", "1"],
        cwd=REPO_ROOT,
        env=demo_env(marker),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        output = b""
        deadline = time.monotonic() + 30
        while b"invoking the four steps" not in output and time.monotonic() < deadline:
            if select.select([process.stdout], [], [], 1)[0]:
                output += os.read(process.stdout.fileno(), 65536)
        assert b"invoking the four steps" in output, output.decode()
        time.sleep(1)  # testSecret is now waiting for the key to propagate
        assert len(processes_with_marker(marker)) == 3  # the demo and its two function workers
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert_nothing_left_running(marker)


# -- the Lambda-like invoke and the consumer, against the session's stand-ins ------------------------


def function_env(moto_server: MotoServer, ses_smtp: SesSmtpStandIn, **extra: str) -> dict[str, str]:
    """The rotation function's environment, pointed at the session's moto and SMTP stand-in."""
    env = dict(os.environ)
    set_fake_aws_env(env, moto_server.endpoint_url)
    env.update(SSL_CERT_FILE=ses_smtp.ca_path, SMTP_AUTH_TIMEOUT_SECONDS="10", POWERTOOLS_LOG_LEVEL="WARNING", **extra)
    return env


@pytest.fixture(scope="module")
def rotation_function(moto_server: MotoServer, ses_smtp: SesSmtpStandIn) -> Iterator[LambdaWorker]:
    """The rotation function in a worker process (bound to no secret)."""
    env = function_env(moto_server, ses_smtp)
    with LambdaWorker("lambda_function.handler.lambda_handler", env=env, timeout=30) as worker:
        yield worker


@pytest.fixture
def rotated_secret(iam_user: str, moto_server: MotoServer, ses_smtp: SesSmtpStandIn) -> str:
    """A secret for `iam_user`, rotated once by the function deployed for it; returns its name."""
    secrets = boto3.client("secretsmanager")
    name = f"consumer-test/{uuid.uuid4().hex[:12]}"
    bootstrap = {
        "iam_user_name": iam_user,
        "region": "us-east-1",
        "host": STANDIN_HOST,
        "port": ses_smtp.starttls_port,
        "sender": "app@example.com",
    }
    arn = secrets.create_secret(Name=name, SecretString=json.dumps(bootstrap))["ARN"]
    env = function_env(moto_server, ses_smtp, SMTP_SECRET_BINDINGS=json.dumps({arn: iam_user}))
    with LambdaWorker("lambda_function.handler.lambda_handler", env=env, timeout=30) as function:

        def invoke(event: dict[str, Any]) -> None:
            invocation = function.invoke(event)
            assert not invocation.failed, f"{event['Step']}: {invocation.error_type}: {invocation.error_message}"

        run_steps(invoke, arn, begin_rotation(secrets, arn))
    return name


def current_document(secret_id: str) -> dict[str, Any]:
    text = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
    document: dict[str, Any] = json.loads(text["SecretString"])
    return document


def test_consumer_sends_with_the_rotated_secret(
    rotated_secret: str, smtp_ca: str, ses_smtp: SesSmtpStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    current = current_document(rotated_secret)
    received = len(ses_smtp.messages)

    assert consumer.main(["--secret-id", rotated_secret, "--to", RECIPIENT]) == 0

    sent = [m for m in ses_smtp.messages[received:] if m.username == current["username"]]
    assert [(m.mail_from, m.rcpt_tos, m.listener) for m in sent] == [("app@example.com", (RECIPIENT,), "starttls")]
    output = capsys.readouterr().out
    assert current["username"] in output
    assert current["password"] not in output


def test_consumer_fails_clearly_against_a_deleted_key(
    rotated_secret: str,
    smtp_ca: str,
    iam_client: IAMClient,
    iam_user: str,
    ses_smtp: SesSmtpStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    current = current_document(rotated_secret)
    iam_client.delete_access_key(UserName=iam_user, AccessKeyId=current["username"])
    received = len(ses_smtp.messages)

    assert consumer.main(["--secret-id", rotated_secret, "--to", RECIPIENT]) == 1

    error = capsys.readouterr().err
    assert f"refused the credentials of access key {current['username']} (535 Authentication" in error
    assert "deleted or deactivated" in error
    assert current["password"] not in error
    assert len(ses_smtp.messages) == received


def test_consumer_never_sends_the_password_without_tls(
    smtp_ca: str, ses_smtp: SesSmtpStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"consumer-test/{uuid.uuid4().hex[:12]}"
    document = {"host": "localhost", "port": ses_smtp.plain_port, "username": "AKIAEXAMPLE", "password": "B" * 44}
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(document))
    attempts = len(ses_smtp.auth_attempts)

    assert consumer.main(["--secret-id", name, "--to", RECIPIENT, "--from", "app@example.com"]) == 1

    assert "offers no STARTTLS; not sending the password" in capsys.readouterr().err
    assert ses_smtp.auth_attempts[attempts:] == []


def test_lambda_worker_reports_errors_like_lambda_and_never_echoes_the_event(
    rotation_function: LambdaWorker,
) -> None:
    token = f"rotation-token-{uuid.uuid4().hex}"

    invocation = rotation_function.invoke({"Step": "createSecret", "RotationToken": token})

    assert invocation.failed
    assert invocation.error_type == "InvalidEventError"
    assert "SecretId" in (invocation.error_message or "")
    assert token not in (invocation.error_message or "")
    assert token not in invocation.log
    assert "START RequestId" in invocation.log and "REPORT RequestId" in invocation.log
