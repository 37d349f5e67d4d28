"""The deployable artifact: what `sam build` makes, run on its own, rotates a secret.

`sam build` runs once for this module, from the repository root (so with samconfig.toml, as a
deployer runs it), offline apart from the package index, into a temporary directory. Then the
built function directory is checked for what it holds, and run as Lambda would run it: a fresh
interpreter whose import path is the artifact and the standard library only, importing the
function named by the built template's ``Handler``, once per rotation step, against moto in
server mode and the SES SMTP stand-in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from mypy_boto3_iam import IAMClient

from infra.local_aws import MotoServer, lookup_access_key, set_fake_aws_env
from infra.rotation_driver import begin_rotation, run_steps
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.settings import retirement_policy
from tests.support import STANDIN_HOST, smtp_login_code
from tests.test_template import FUNCTION_ID, REPO, RETIREMENT_ID, deploy, tool

PACKAGE = "lambda_function"
DEPENDENCIES = {"boto3", "botocore", "aws_lambda_powertools"}  # requirements.txt, and what boto3 needs
MiB = 1024 * 1024

# Runs inside the fresh interpreter: import the handler from the artifact, call it with the event
# read from stdin and a Lambda-like context, then report where the modules came from.
RUNNER = """
import importlib, json, sys, time

artifact, handler, report_path, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
sys.path.insert(0, artifact)


class Context:
    function_name = "ses-smtp-rotation-artifact-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ses-smtp-rotation-artifact-test"
    aws_request_id = "11111111-2222-3333-4444-555555555555"

    def __init__(self):
        self._deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self):
        return int((self._deadline - time.monotonic()) * 1000)


module_name, _, function_name = handler.rpartition(".")
function = getattr(importlib.import_module(module_name), function_name)
function(json.load(sys.stdin), Context())
names = ("lambda_function", "boto3", "botocore", "aws_lambda_powertools")
with open(report_path, "w") as report:
    json.dump({"sys_path": sys.path, "modules": {name: sys.modules[name].__file__ for name in names}}, report)
"""


def find_python313() -> Path | None:
    """The Lambda runtime's Python (3.13): pyenv's interpreter, else a working python3.13 on PATH.

    pyenv's `python3.13` shim on PATH fails unless a version is selected, so the interpreter is
    looked up under `pyenv root` first, and every candidate must actually run and be 3.13.
    """
    candidates: list[Path] = []
    pyenv_root = os.environ.get("PYENV_ROOT")
    if not pyenv_root and shutil.which("pyenv"):
        found = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False, timeout=30)
        pyenv_root = found.stdout.strip() if found.returncode == 0 else None
    if pyenv_root:
        candidates += sorted(Path(pyenv_root).glob("versions/3.13*/bin/python3.13"), reverse=True)
    on_path = shutil.which("python3.13")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "3.13":
            return candidate
    return None


@dataclass(frozen=True)
class Build:
    python: Path  # the interpreter sam build used, which also runs the artifact
    template: Path  # the built template
    function_dir: Path  # .aws-sam/build/<Function>, here in a temporary directory


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    python = find_python313()
    if python is None:
        pytest.skip("no Python 3.13 here (neither under `pyenv root` nor a working python3.13 on PATH)")
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    env = dict(os.environ)
    set_fake_aws_env(env)
    env.pop("AWS_ENDPOINT_URL", None)
    # sam build looks for a python3.13 on PATH that matches the runtime.
    env.update(PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}", SAM_CLI_TELEMETRY="0")
    result = subprocess.run(
        [tool("sam"), "build", "--build-dir", str(build_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"sam build failed:\n{result.stdout}\n{result.stderr}"
    return Build(python, build_dir / "template.yaml", build_dir / FUNCTION_ID)


def test_artifact_holds_the_package_and_its_dependencies_and_nothing_else_of_the_repository(build: Build) -> None:
    top_level = {path.name for path in build.function_dir.iterdir()}
    assert DEPENDENCIES | {PACKAGE} <= top_level
    repository_entries = {path.name for path in REPO.iterdir()}
    assert top_level & repository_entries == {PACKAGE}, "tests/, infra/, docs or config leaked into the artifact"
    built_modules = {
        path.relative_to(build.function_dir / PACKAGE) for path in (build.function_dir / PACKAGE).rglob("*")
    }
    source_modules = {
        path.relative_to(REPO / PACKAGE)
        for path in (REPO / PACKAGE).rglob("*")
        if "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert built_modules == source_modules


def test_artifact_is_pure_python_so_it_runs_on_arm64(build: Build) -> None:
    native = [p for p in build.function_dir.rglob("*") if p.suffix in {".so", ".pyd", ".dylib"}]
    assert native == []


def test_artifact_zip_fits_lambda_limits(build: Build, tmp_path: Path) -> None:
    archive = tmp_path / "function.zip"
    unzipped = 0
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(build.function_dir.rglob("*")):
            if path.is_file():
                zipped.write(path, path.relative_to(build.function_dir))
                unzipped += path.stat().st_size
    assert unzipped < 250 * MiB  # Lambda's limit for an unzipped deployment package
    assert archive.stat().st_size < 50 * MiB  # and for a zip uploaded directly


def test_built_template_keeps_the_handler_runtime_and_architecture(build: Build) -> None:
    function = deploy(path=build.template).properties(FUNCTION_ID)
    assert function["Handler"] == f"{PACKAGE}.handler.lambda_handler"
    assert (function["Runtime"], function["Architectures"]) == ("python3.13", ["arm64"])
    retirement = deploy(path=build.template).properties(RETIREMENT_ID)
    module = retirement["Handler"].rpartition(".")[0].replace(".", "/") + ".py"
    assert (build.function_dir.parent / RETIREMENT_ID / module).is_file()


# --------------------------------------------------------------------------------------------
# Running the artifact
# --------------------------------------------------------------------------------------------


@dataclass
class ArtifactFunction:
    """The built function, invoked like Lambda does: a fresh process per invocation."""

    build: Build
    handler: str
    timeout: float
    env: dict[str, str]
    work_dir: Path
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any]) -> None:
        report = self.work_dir / f"report-{len(self.reports)}.json"
        # -I: no PYTHON* variables, no user site, no script dir; -S: no site-packages at all.
        command = [str(self.build.python), "-I", "-S", "-c", RUNNER]
        command += [str(self.build.function_dir), self.handler, str(report), str(self.timeout)]
        result = subprocess.run(
            command,
            input=json.dumps(event),
            env=self.env,
            cwd=self.work_dir,
            capture_output=True,
            text=True,
            timeout=self.timeout + 30,
            check=False,
        )
        self.stdout.append(result.stdout)
        self.stderr.append(result.stderr)
        assert result.returncode == 0, f"{event['Step']} failed in the artifact:\n{result.stderr}\n{result.stdout}"
        self.reports.append(json.loads(report.read_text()))


@pytest.fixture
def artifact_function(
    build: Build, moto_server: MotoServer, ses_smtp: SesSmtpStandIn, tmp_path: Path
) -> Iterator[ArtifactFunction]:
    function = deploy(path=build.template).properties(FUNCTION_ID)
    log_config = function["LoggingConfig"]
    # What Lambda would set, plus the template's own variables; nothing of this process's env.
    env = {
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "AWS_LAMBDA_FUNCTION_NAME": "ses-smtp-rotation-artifact-test",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function["MemorySize"]),
        "AWS_LAMBDA_LOG_FORMAT": log_config["LogFormat"],
        "AWS_LAMBDA_LOG_LEVEL": log_config["ApplicationLogLevel"],
        "SSL_CERT_FILE": ses_smtp.ca_path,
        **{name: str(value) for name, value in function["Environment"]["Variables"].items()},
    }
    set_fake_aws_env(env, moto_server.endpoint_url, region=ses_smtp.region)
    # What the deployer would pass as the SmtpAllowedHosts parameter for this endpoint; the test
    # binds its secret itself (the template binds the secret it makes).
    env["SMTP_ALLOWED_HOSTS"] = STANDIN_HOST
    yield ArtifactFunction(build, function["Handler"], float(function["Timeout"]), env, tmp_path)


def test_built_artifact_alone_completes_two_rotations_against_moto_and_the_smtp_endpoint(
    artifact_function: ArtifactFunction, iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    secrets_manager = boto3.client("secretsmanager")
    document = {
        "iam_user_name": iam_user,
        "region": ses_smtp.region,
        "host": STANDIN_HOST,
        "port": ses_smtp.starttls_port,
    }
    arn = secrets_manager.create_secret(Name=f"ses-smtp/{iam_user}", SecretString=json.dumps(document))["ARN"]
    artifact_function.env["SMTP_SECRET_BINDINGS"] = json.dumps({arn: iam_user})
    rotation_token = str(uuid.uuid4())

    rotated: list[dict[str, Any]] = []
    for _ in range(2):
        token = begin_rotation(secrets_manager, arn)
        run_steps(artifact_function, arn, token, rotation_token=rotation_token)
        current = secrets_manager.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
        assert current["VersionId"] == token
        rotated.append(json.loads(current["SecretString"]))

    first, second = rotated
    assert second["username"] != first["username"]
    assert {k: second[k] for k in ("host", "port", "region")} == {
        "host": STANDIN_HOST,
        "port": ses_smtp.starttls_port,
        "region": ses_smtp.region,
    }
    # The template's previous-key policy: only an immediate one (0 hours) acts in finishSecret;
    # otherwise the previous key stays Active for the retirement function to retire later.
    keys = {k["AccessKeyId"]: k["Status"] for k in iam_client.list_access_keys(UserName=iam_user)["AccessKeyMetadata"]}
    policy = retirement_policy(artifact_function.env)
    expected_keys = {second["username"]: "Active"}
    if not policy.immediate:
        expected_keys[first["username"]] = "Active"
    elif policy.inactive_days > 0:
        expected_keys[first["username"]] = "Inactive"
    assert keys == expected_keys
    # An application logs in with what the secret now holds.
    assert smtp_login_code(ses_smtp, second["username"], second["password"]) == 235

    # Everything ran from the artifact: its directory and the standard library, no site-packages.
    artifact = str(artifact_function.build.function_dir)
    for report in artifact_function.reports:
        assert all(path.startswith(artifact) for path in report["modules"].values()), report["modules"]
        assert not [p for p in report["sys_path"] if "site-packages" in p and not p.startswith(artifact)]

    # Structured logs (one JSON object a line), and nothing secret in them or anywhere else.
    log_lines = [line for out in artifact_function.stdout for line in out.splitlines() if line.strip()]
    assert log_lines, "the function logged nothing"
    assert all(isinstance(json.loads(line), dict) for line in log_lines)
    logs = "".join(artifact_function.stdout + artifact_function.stderr)
    for version in rotated:
        assert version["password"] not in logs
        key = lookup_access_key(version["username"])
        assert key is None or key.secret_access_key not in logs
    assert rotation_token not in logs
