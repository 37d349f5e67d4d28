"""SES SMTP password derivation: pure functions and the table of SMTP regions.

An SES SMTP password is a signature of the IAM secret access key, not the key itself
(seed 003: "Obtaining your Amazon SES SMTP credentials")::

    >>> smtp_password("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1")[:1]
    'B'

Run as a tool, it prints only the password, like AWS's reference script::

    python -m lambda_function.smtp_password SECRET REGION    # or "-" to read SECRET from stdin
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse  # the tool's; the function never parses arguments

# The 17 regions of AWS's reference script, plus us-west-1 and eu-west-3 (SPEC §3).
SMTP_REGIONS: frozenset[str] = frozenset(
    {
        "us-east-2",
        "us-east-1",
        "us-west-1",
        "us-west-2",
        "ap-south-1",
        "ap-northeast-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-northeast-1",
        "ca-central-1",
        "eu-central-1",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-south-1",
        "eu-north-1",
        "sa-east-1",
        "us-gov-west-1",
        "us-gov-east-1",
    }
)

# Fixed inputs of the algorithm; SES recomputes the same chain to check a password.
_DATE = "11111111"
_SERVICE = "ses"
_TERMINAL = "aws4_request"
_MESSAGE = "SendRawEmail"
_VERSION_V4 = 0x04
_VERSION_V2 = 0x02


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def smtp_password(secret_access_key: str, region: str) -> str:
    """Return the v4 SES SMTP password of `secret_access_key` for `region`.

    Raises ValueError when `region` has no SES SMTP endpoint.
    """
    if region not in SMTP_REGIONS:
        raise ValueError(
            f"The {region} Region doesn't have an SES SMTP endpoint (known: {', '.join(sorted(SMTP_REGIONS))})."
        )
    return derive_password(secret_access_key, region)


def derive_password(secret_access_key: str, region: str) -> str:
    """The v4 derivation for any region name, unchecked (for endpoints a deployer vouches for)."""
    signature = _sign(("AWS4" + secret_access_key).encode("utf-8"), _DATE)
    for part in (region, _SERVICE, _TERMINAL, _MESSAGE):
        signature = _sign(signature, part)
    return base64.b64encode(bytes([_VERSION_V4]) + signature).decode("ascii")


def password_version(password: str) -> int | None:
    """Return the signature version of an SMTP password: 4, 2 (pre-2019), or None if neither.

    v2 passwords (created before 2019-01-10) are region independent and should be replaced.
    """
    try:
        raw = base64.b64decode(password, validate=True)
    except ValueError:
        return None
    if len(raw) != 33 or raw[0] not in (_VERSION_V2, _VERSION_V4):
        return None
    return raw[0]


DESCRIPTION = "Convert an IAM secret access key to an SES SMTP password (prints only the password)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The reference script's interface: SECRET REGION, "-" reading SECRET from standard input."""
    parser.add_argument("secret", help='the secret access key, or "-" to read it from standard input')
    parser.add_argument("region", help="the AWS Region where the SMTP password will be used")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Print only the password; a bad secret or region is a usage error (exit status 2)."""
    secret = sys.stdin.readline().strip() if args.secret == "-" else args.secret  # noqa: S105
    if not secret:
        parser.error("the secret access key is empty")
    try:
        print(smtp_password(secret, args.region))
    except ValueError as error:
        parser.error(str(error))
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse  # only the command line needs it

    parser = argparse.ArgumentParser(prog="python -m lambda_function.smtp_password", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
