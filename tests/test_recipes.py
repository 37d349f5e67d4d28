"""Each consumer recipe of the README runs as written, with its real client, against the stand-ins.

The code is read out of README.md (tests/recipes/readme.py), so the README cannot drift from what
works: the secret's name, TLS on the secret's port, the login, and re-reading the secret on 535.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from mypy_boto3_iam import IAMClient

from infra.ses_smtp import SesSmtpStandIn
from tests.recipes.readme import (
    APP_USER,
    NODE_RECIPE,
    RECIPIENT,
    SENDER,
    app_secret,
    expect_one_message,
    need,
    recipe,
    sent_by,
)
from tests.support import current, rotate, secrets_client

pytestmark = pytest.mark.usefixtures("smtp_ca")


@pytest.fixture
def arn(iam_client: IAMClient, ses_smtp: SesSmtpStandIn) -> str:
    return app_secret(iam_client, ses_smtp)


def retire(iam: IAMClient, key_id: str) -> None:
    """What retiring the previous key does to it, here at once (hours later on AWS)."""
    iam.update_access_key(UserName=APP_USER, AccessKeyId=key_id, Status="Inactive")


def test_python_boto3_recipe_sends_with_awscurrent(arn: str, ses_smtp: SesSmtpStandIn) -> None:
    with expect_one_message(ses_smtp, arn):
        result = subprocess.run(
            [sys.executable, "-c", recipe("python-boto3")], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr


def test_python_caching_recipe_reads_the_secret_again_after_a_535(
    arn: str, ses_smtp: SesSmtpStandIn, iam_client: IAMClient
) -> None:
    namespace: dict[str, Any] = {"__name__": "recipe"}
    exec(compile(recipe("python-caching"), "README.md:python-caching", "exec"), namespace)  # noqa: S102
    send = namespace["send"]
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, RECIPIENT, "cached"
    message.set_content("hello")

    cached_key = current(arn)["username"]
    since = len(ses_smtp.messages)
    send(message)  # fills the cache
    rotate(arn)
    retire(iam_client, cached_key)
    new_key = current(arn)["username"]
    attempts = len(ses_smtp.auth_attempts)

    send(message)  # the cache still holds the retired key: 535, refresh_secret_now(), retry

    assert len(sent_by(ses_smtp, cached_key, since)) == 1
    assert len(sent_by(ses_smtp, new_key, since)) == 1
    codes = [(a.username, a.code) for a in ses_smtp.auth_attempts[attempts:]]
    assert (cached_key, 535) in codes
    assert codes[-1] == (new_key, 235)


def test_node_recipe_sends_with_nodemailer_and_sdk_v3(
    arn: str, ses_smtp: SesSmtpStandIn, tmp_path: Path, moto_server: Any
) -> None:
    with expect_one_message(ses_smtp, arn):
        result = run_node_recipe(recipe("node"), ses_smtp, tmp_path, moto_server)
        assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sent: 250")


def test_swaks_recipe_sends_and_prints_no_password(arn: str, ses_smtp: SesSmtpStandIn) -> None:
    need("swaks", "jq", "bash")
    aws = Path(sys.executable).with_name("aws")  # the AWS CLI of requirements-dev.lock
    assert aws.exists(), "the AWS CLI is not installed: run `make setup`"
    env = {**os.environ, "PATH": f"{aws.parent}{os.pathsep}{os.environ['PATH']}"}  # SSL_CERT_FILE: smtp_ca
    secret = current(arn)
    with expect_one_message(ses_smtp, arn):
        result = subprocess.run(
            ["bash", "-c", recipe("swaks")], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
    transcript = result.stdout + result.stderr
    assert "<~  235 Authentication successful." in transcript
    for shown in (secret["password"], base64.b64encode(secret["password"].encode()).decode()):
        assert shown not in transcript


def test_swaks_recipe_refuses_a_certificate_it_cannot_verify(
    arn: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    need("swaks", "jq", "bash")
    monkeypatch.delenv("SSL_CERT_FILE")  # the system store does not know the stand-in's CA
    aws = Path(sys.executable).with_name("aws")
    env = {**os.environ, "PATH": f"{aws.parent}{os.pathsep}{os.environ['PATH']}"}
    attempts = len(ses_smtp.auth_attempts)
    result = subprocess.run(
        ["bash", "-c", recipe("swaks")], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "certificate verify failed" in result.stdout + result.stderr
    assert ses_smtp.auth_attempts[attempts:] == []  # no AUTH, so no password, was sent


def test_postfix_refresh_template_lints_clean(tmp_path: Path) -> None:
    template = tmp_path / "postfix-refresh.yaml"
    template.write_text(recipe("postfix-ssm"))
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or "cfn-lint"
    result = subprocess.run([cfn_lint, str(template)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def implicit_tls(arn: str, ses_smtp: SesSmtpStandIn) -> Iterator[int]:
    """AWSCURRENT pointed at the stand-in's implicit-TLS listener (like 465) while the test runs.

    The stand-in cannot listen on 465 here, so the tests add its port to the recipe's list of
    implicit-TLS ports: the only change made to the README's code."""
    client = secrets_client()
    document = current(arn)
    client.put_secret_value(
        SecretId=arn, SecretString=json.dumps({**document, "port": ses_smtp.tls_port}), VersionStages=["AWSCURRENT"]
    )
    try:
        yield ses_smtp.tls_port
    finally:
        client.put_secret_value(SecretId=arn, SecretString=json.dumps(document), VersionStages=["AWSCURRENT"])


def with_implicit_tls_port(code: str, listed: str, port: int) -> str:
    assert listed in code, f"the recipe no longer lists its implicit-TLS ports as {listed}"
    return code.replace(listed, listed.replace("2465", f"2465, {port}"))


def test_python_boto3_recipe_uses_implicit_tls_on_a_465_style_port(
    arn: str, ses_smtp: SesSmtpStandIn, implicit_tls: int
) -> None:
    code = with_implicit_tls_port(recipe("python-boto3"), "(465, 2465)", implicit_tls)
    with expect_one_message(ses_smtp, arn):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr


def run_node_recipe(code: str, ses: SesSmtpStandIn, folder: Path, moto_server: Any) -> subprocess.CompletedProcess[str]:
    need("node")
    if not (NODE_RECIPE / "node_modules").is_dir():
        pytest.fail("the Node recipe's clients are not installed: run `make node-deps` (make test does)")
    (folder / "node_modules").symlink_to(NODE_RECIPE / "node_modules")
    (folder / "send.mjs").write_text(code)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(folder),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": ses.region,
        "AWS_ENDPOINT_URL": moto_server.endpoint_url,
        "NODE_EXTRA_CA_CERTS": ses.ca_path,
    }
    return subprocess.run(
        ["node", "send.mjs"], cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_node_recipe_uses_implicit_tls_on_a_465_style_port(
    arn: str, ses_smtp: SesSmtpStandIn, implicit_tls: int, tmp_path: Path, moto_server: Any
) -> None:
    code = with_implicit_tls_port(recipe("node"), "[465, 2465]", implicit_tls)
    with expect_one_message(ses_smtp, arn):
        result = run_node_recipe(code, ses_smtp, tmp_path, moto_server)
        assert result.returncode == 0, result.stderr


def test_node_recipe_reads_the_secret_again_once_on_535_then_gives_up(
    arn: str, ses_smtp: SesSmtpStandIn, iam_client: IAMClient, tmp_path: Path, moto_server: Any
) -> None:
    key_id = current(arn)["username"]
    iam_client.update_access_key(UserName=APP_USER, AccessKeyId=key_id, Status="Inactive")
    attempts = len(ses_smtp.auth_attempts)
    try:
        result = run_node_recipe(recipe("node"), ses_smtp, tmp_path, moto_server)
    finally:
        iam_client.update_access_key(UserName=APP_USER, AccessKeyId=key_id, Status="Active")
    assert result.returncode != 0
    assert [(a.username, a.code) for a in ses_smtp.auth_attempts[attempts:]] == [(key_id, 535), (key_id, 535)]
