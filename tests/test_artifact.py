"""The deployable artifact: what `make build` makes, run on its own, rotates a secret.

`make build`'s code (infra/build.py: SAM CLI version check, `sam build` from the repository root
with samconfig.toml, precompiled bytecode) runs once for this module, offline apart from the
package index, into a temporary directory. Then the built function directory is checked for what
it holds, and run as Lambda would run it: a fresh ``python3.13 -I -S`` whose import path is the
artifact, the runtime's boto3 (this environment's, linked into a directory of its own) and the
standard library only, importing the function named by the built template's ``Handler``, once per
rotation step, against moto in server mode and the SES SMTP stand-in.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from mypy_boto3_iam import IAMClient

from infra import build as make_build
from infra.artifact import is_unchecked_hash_pyc, runtime_sdk_dir, zip_size
from infra.local_aws import MotoServer, lookup_access_key, set_fake_aws_env
from infra.rotation_driver import begin_rotation, run_steps
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.settings import retirement_policy
from tests.support import STANDIN_HOST, smtp_login_code
from tests.template.resolver import REPO, deploy
from tests.template.support import FUNCTION_ID, RETIREMENT_ID, tool

PACKAGE = "lambda_function"
DEPENDENCIES = {"aws_lambda_powertools", "jmespath", "typing_extensions.py"}  # requirements.txt's lock
RUNTIME_SDK = {"boto3", "botocore", "s3transfer", "dateutil", "urllib3"}  # the runtime ships these
MiB = 1024 * 1024

# Runs inside the fresh interpreter: import the handler from the artifact, call it with the event
# read from stdin and a Lambda-like context, then report where the modules came from.
RUNNER = """
import importlib, json, sys, time

artifact, sdk, handler, report_path, timeout = sys.argv[1:5] + [float(sys.argv[5])]
sys.path[:0] = [artifact, sdk]


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
modules = {name: sys.modules[name].__file__ for name in names}
loaded = {name: [getattr(m, "__file__", None), getattr(m, "__cached__", None)] for name, m in list(sys.modules.items())}
with open(report_path, "w") as report:
    json.dump({"sys_path": sys.path, "modules": modules, "loaded": loaded}, report)
"""


@dataclass(frozen=True)
class Build:
    python: Path  # the interpreter sam build used, which also runs the artifact
    template: Path  # the built template
    function_dir: Path  # .aws-sam/build/<Function>, here in a temporary directory
    sdk_dir: Path  # the runtime's boto3 and its dependencies, and nothing else


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    if make_build.find_python313() is None:
        pytest.skip("no Python 3.13 here (neither under `pyenv root` nor a working python3.13 on PATH)")
    env = dict(os.environ)
    set_fake_aws_env(env)
    env.pop("AWS_ENDPOINT_URL", None)
    built = make_build.build(tmp_path_factory.mktemp("sam") / "build", sam=tool("sam"), env=env)
    sdk_dir = runtime_sdk_dir(tmp_path_factory.mktemp("runtime") / "sdk", built.python)
    return Build(built.python, built.template, built.function_dir, sdk_dir)


def test_artifact_holds_the_package_and_its_dependencies_and_nothing_else_of_the_repository(build: Build) -> None:
    top_level = {path.name for path in build.function_dir.iterdir()}
    assert DEPENDENCIES | {PACKAGE} <= top_level
    assert not top_level & RUNTIME_SDK, "the runtime ships boto3 and botocore: the artifact must not"
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
    assert {module for module in built_modules if "__pycache__" not in module.parts} == source_modules


def test_artifact_is_pure_python_so_it_runs_on_arm64(build: Build) -> None:
    native = [p for p in build.function_dir.rglob("*") if p.suffix in {".so", ".pyd", ".dylib"}]
    assert native == []


def test_artifact_zip_is_lean(build: Build) -> None:
    assert zip_size(build.function_dir) < 2 * MiB  # it was 18 MB with botocore and boto3


def test_every_module_of_the_package_ships_bytecode_python_uses_without_checking_the_source(build: Build) -> None:
    functions = [path for path in build.function_dir.parent.iterdir() if (path / PACKAGE).is_dir()]
    assert len(functions) >= 2  # the rotation function and the retirement function
    for function_dir in functions:
        for source in (function_dir / PACKAGE).rglob("*.py"):
            [compiled] = (source.parent / "__pycache__").glob(f"{source.stem}.cpython-313.pyc")
            assert is_unchecked_hash_pyc(compiled), compiled


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
        # -I: no PYTHON* variables, no user site, no script dir; -S: no site-packages at all;
        # -B: write no bytecode, as on Lambda's read-only /var/task.
        command = [str(self.build.python), "-I", "-S", "-B", "-c", RUNNER, str(self.build.function_dir)]
        command += [str(self.build.sdk_dir), self.handler, str(report), str(self.timeout)]
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

    # Everything ran from the artifact, the runtime's boto3 and the standard library; no site-packages.
    artifact, sdk = str(artifact_function.build.function_dir), str(artifact_function.build.sdk_dir)
    for report in artifact_function.reports:
        modules = report["modules"]
        assert modules["lambda_function"].startswith(artifact), modules
        assert modules["aws_lambda_powertools"].startswith(artifact), modules
        assert modules["boto3"].startswith(sdk) and modules["botocore"].startswith(sdk), modules
        assert not [p for p in report["sys_path"] if "site-packages" in p]
        # and every module it loaded from the artifact came with its bytecode
        loaded = {
            name: cached for name, (file, cached) in report["loaded"].items() if (file or "").startswith(artifact)
        }
        missing = [name for name, cached in loaded.items() if not (cached and Path(cached).exists())]
        assert loaded and missing == [], f"loaded from the artifact without bytecode: {missing}"

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
