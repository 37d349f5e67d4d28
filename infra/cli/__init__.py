"""The operator command line (SPEC §8): ``ses-smtp-rotation <subcommand>`` or ``python -m infra.cli``.

One module per subcommand, each thin over the adapters and pure functions the Lambda functions
use. A subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``run``: a function of the parsed arguments that returns the exit status.

Every subcommand works against AWS or, with ``AWS_ENDPOINT_URL`` set, against moto.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# The subcommands, in the order ``--help`` lists them; each is the module infra.cli.<name>.
SUBCOMMANDS = ("password", "audit", "adopt", "rollback")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ses-smtp-rotation",
        description="Operator tools for SES SMTP credentials rotated by AWS Secrets Manager.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"infra.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
