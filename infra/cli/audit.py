"""``audit``: the account's SES SMTP users, their keys, the secrets that name them, and findings.

Read only (List/Get calls; the README lists the IAM policy). ``--json`` prints a document that
follows ``infra/cli/audit.schema.json``; ``--fail-on SEVERITY`` makes the exit status say whether
a finding of at least that severity exists, for CI::

    ses-smtp-rotation audit                      # a table
    ses-smtp-rotation audit --json --fail-on high

Exit status: 0 done (and no finding at or above ``--fail-on``), 1 a finding at or above
``--fail-on``, 2 bad arguments, 3 the audit could not finish (an AWS error, e.g. access denied).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from infra.cli.audit_report import to_json, to_table
from infra.cli.audit_state import collect_secrets, collect_users
from infra.cli.inventory import SEVERITIES, AuditPolicy, audit
from infra.cli.printable import printable
from infra.cli.sending_policy import SENDING_GROUP

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_AWS_ERROR = 3


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit",
        help="list SES SMTP users, keys and secrets, with findings (read only)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON (schema: infra/cli/audit.schema.json)")
    parser.add_argument(
        "--fail-on",
        choices=SEVERITIES,
        metavar="SEVERITY",
        help=f"exit 1 when a finding is at least this severe ({', '.join(SEVERITIES)})",
    )
    parser.add_argument("--sending-group", default=SENDING_GROUP, help="the IAM group that grants sending")
    parser.add_argument("--max-key-age-days", type=_positive, default=90.0, help="IAM.3's limit (default 90)")
    parser.add_argument(
        "--grace-hours", type=_positive, default=24.0, help="two Active keys are fine this long after a rotation"
    )
    parser.add_argument(
        "--stuck-after-hours", type=_positive, default=2.0, help="AWSPENDING older than this is a stuck rotation"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policy = AuditPolicy(
        max_key_age=timedelta(days=args.max_key_age_days),
        grace=timedelta(hours=args.grace_hours),
        stuck_after=timedelta(hours=args.stuck_after_hours),
    )
    try:
        secrets, unreadable = collect_secrets(boto3.client("secretsmanager"))
        users, missing = collect_users(
            boto3.client("iam"), bound_users={s.iam_user_name for s in secrets}, sending_group=args.sending_group
        )
    except (ClientError, BotoCoreError) as error:
        print(f"audit: could not read the account: {printable(error)}", file=sys.stderr)
        return EXIT_AWS_ERROR
    report = audit(users, secrets, missing, now=datetime.now(UTC), policy=policy)
    if args.json:
        print(json.dumps(to_json(report, unreadable), indent=2))
    else:
        print(to_table(report, unreadable))
    if args.fail_on is not None and report.worst_at_least(args.fail_on):
        return EXIT_FINDINGS
    return EXIT_OK
