"""The SMTP password derivation and its command-line tool."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys

import pytest

from lambda_function.smtp_password import SMTP_REGIONS, password_version, smtp_password
from tests.reference_script import calculate_key

EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documentation example


@pytest.mark.parametrize("region", sorted(SMTP_REGIONS))
def test_password_equals_aws_reference_script_in_every_region(region: str) -> None:
    assert smtp_password(EXAMPLE_SECRET, region) == calculate_key(EXAMPLE_SECRET, region)


def test_password_equals_independently_published_vector() -> None:
    # Published in the test suite of the PhpAwsSmtpPassword library (PHP), for us-east-1.
    assert smtp_password(EXAMPLE_SECRET, "us-east-1") == "BLBM/9hSUELfq8Gw+rU1YcBjkOxGbhT2XG763xVLGWL9"


def test_password_is_v4_and_differs_per_region() -> None:
    east, west = smtp_password(EXAMPLE_SECRET, "us-east-1"), smtp_password(EXAMPLE_SECRET, "eu-west-1")
    assert east != west
    assert len(east) == 44 and east.startswith("B")
    assert password_version(east) == 4


def test_pre_2019_v2_password_is_recognised_as_v2() -> None:
    # The pre-2019 algorithm (NOTES): base64(0x02 || HMAC-SHA256(secret, "SendRawEmail")).
    digest = hmac.new(EXAMPLE_SECRET.encode(), b"SendRawEmail", hashlib.sha256).digest()
    v2 = base64.b64encode(b"\x02" + digest).decode()
    assert v2.startswith("A")
    assert password_version(v2) == 2


@pytest.mark.parametrize("text", ["", "not base64!", base64.b64encode(b"\x04short").decode(), EXAMPLE_SECRET])
def test_text_that_is_no_smtp_password_has_no_version(text: str) -> None:
    assert password_version(text) is None


@pytest.mark.parametrize("region", ["af-south-1", "il-central-1", "mars-1"])
def test_region_without_smtp_endpoint_is_refused(region: str) -> None:
    with pytest.raises(ValueError, match=f"{region} Region doesn't have an SES SMTP endpoint"):
        smtp_password(EXAMPLE_SECRET, region)


def _cli(
    *args: str, stdin: str = "", module: str = "lambda_function.smtp_password"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_only_the_password_like_the_reference_script() -> None:
    result = _cli(EXAMPLE_SECRET, "eu-west-2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == calculate_key(EXAMPLE_SECRET, "eu-west-2") + "\n"
    assert result.stderr == ""


def test_cli_reads_the_secret_from_stdin_with_a_dash() -> None:
    result = _cli("-", "us-west-2", stdin=EXAMPLE_SECRET + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == calculate_key(EXAMPLE_SECRET, "us-west-2")


def test_cli_rejects_an_unknown_region_without_printing_a_password() -> None:
    result = _cli(EXAMPLE_SECRET, "af-south-1")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "af-south-1 Region doesn't have an SES SMTP endpoint" in result.stderr


def test_cli_rejects_an_empty_secret_on_stdin() -> None:
    result = _cli("-", "us-east-1", stdin="\n")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "empty" in result.stderr


def test_the_operator_command_line_has_every_subcommand_and_the_same_password() -> None:
    result = _cli("password", "-", "us-west-2", stdin=EXAMPLE_SECRET + "\n", module="infra.cli")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == calculate_key(EXAMPLE_SECRET, "us-west-2")
    usage = _cli("--help", module="infra.cli")
    assert usage.returncode == 0
    listed = [line.split()[0] for line in usage.stdout.splitlines() if line[:4] == "    " and line[4] != " "]
    assert listed == ["password", "audit", "adopt", "rollback"]
