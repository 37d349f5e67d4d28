"""Each consumer recipe of the README runs as written, with its real client, against the stand-ins.

The code is read out of README.md (tests/recipes/readme.py), so the README cannot drift from what
works: the secret's name, TLS on the secret's port, the login, and re-reading the secret on 535.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
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
from tests.support import current, rotate

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
    need("node")
    if not (NODE_RECIPE / "node_modules").is_dir():
        pytest.fail("the Node recipe's clients are not installed: run `make node-deps` (make test does)")
    (tmp_path / "node_modules").symlink_to(NODE_RECIPE / "node_modules")
    (tmp_path / "send.mjs").write_text(recipe("node"))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": ses_smtp.region,
        "AWS_ENDPOINT_URL": moto_server.endpoint_url,
        "NODE_EXTRA_CA_CERTS": ses_smtp.ca_path,
    }
    with expect_one_message(ses_smtp, arn):
        result = subprocess.run(
            ["node", "send.mjs"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
        )
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
