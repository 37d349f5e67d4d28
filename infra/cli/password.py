"""``password SECRET REGION``: the SES SMTP password of a secret access key (prints only it).

The interface of AWS's reference script (seed 003), shared with ``python -m lambda_function.smtp_password``.
"""

from __future__ import annotations

import argparse
from typing import Any

from lambda_function import smtp_password


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "password",
        help="convert an IAM secret access key to an SES SMTP password",
        description=smtp_password.DESCRIPTION,
    )
    smtp_password.add_arguments(parser)
    parser.set_defaults(run=lambda args: smtp_password.run(parser, args))
