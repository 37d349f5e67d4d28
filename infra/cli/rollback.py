"""``rollback --secret-id SECRET``: move AWSCURRENT back to the AWSPREVIOUS version (SPEC §4a).

Within the rollback window the previous key still exists (Inactive after its grace period). The
command then reactivates it if needed and moves AWSCURRENT back to its version; Secrets Manager
moves AWSPREVIOUS onto the version rolled away from. It refuses, changing nothing and exiting 1,
when that is not safe: the previous key was deleted (rotate instead), a rotation is in progress,
or the previous version names no key or another IAM user.

Steps, each safe to repeat after a failure: reactivate the key; remove a stale AWSPENDING label
from the current version (it would block the next rotation once that version is not current);
move AWSCURRENT. Running the command again after it succeeded rolls forward again.

After a rollback the retirement function treats the key rolled away from as a previous key whose
grace period is over: it is deactivated at the next hourly run unless still in use.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import boto3

from lambda_function.access_keys import AccessKeys
from lambda_function.errors import InvalidSecretError, RollbackRefusedError
from lambda_function.secret_versions import CURRENT, PENDING, PREVIOUS, SecretVersions

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


@dataclass(frozen=True)
class Rollback:
    """What a rollback did (or would have done, when refused)."""

    secret: str
    from_version: str | None
    to_version: str | None
    user: str | None
    key_id: str | None
    key_status_before: str | None  # "Active", "Inactive", or None when the key is gone
    reactivated: bool = False
    removed_stale_pending: bool = False


def _document(secrets: SecretVersions, label: str, version_id: str) -> dict[str, Any]:
    text = secrets.value(label, version_id)
    try:
        document = json.loads(text) if text else None
    except ValueError:
        document = None
    return document if isinstance(document, dict) else {}


class Refused(RollbackRefusedError):
    """A refused rollback, with what was found before refusing."""

    def __init__(self, message: str, found: Rollback) -> None:
        super().__init__(message)
        self.found = found


def plan(secrets: SecretVersions, iam: IAMClient) -> tuple[Rollback, AccessKeys]:
    """Check that a rollback is safe; raise Refused (nothing changed) otherwise."""
    try:
        state = secrets.describe()
    except InvalidSecretError as error:
        raise Refused(str(error), Rollback(secrets.secret_id, None, None, None, None, None)) from None
    current, previous = state.version_with(CURRENT), state.version_with(PREVIOUS)
    found = Rollback(state.arn, current, previous, None, None, None)
    if current is None or previous is None:
        missing = "AWSCURRENT" if current is None else "AWSPREVIOUS"
        raise Refused(f"Secret {state.arn} has no {missing} version: there is nothing to roll back to.", found)
    pending = state.version_with(PENDING)
    if pending is not None and pending != current:
        raise Refused(
            f"A rotation of {state.arn} is in progress (AWSPENDING on version {pending}); let it finish or cancel "
            "it (README: Runbook), then roll back.",
            found,
        )
    old = _document(secrets, PREVIOUS, previous)
    now = _document(secrets, CURRENT, current)
    key_id, user = old.get("username"), old.get("iam_user_name")
    if not isinstance(key_id, str) or not isinstance(user, str):
        raise Refused(
            f"The AWSPREVIOUS version {previous} of {state.arn} names no access key (it is the deployer's "
            "bootstrap value, or not a rotated version): there is nothing to roll back to.",
            found,
        )
    found = replace(found, user=user, key_id=key_id)
    if now.get("iam_user_name") not in (None, user):
        raise Refused(
            f"The AWSPREVIOUS version {previous} names IAM user {user}, but AWSCURRENT names "
            f"{now.get('iam_user_name')}; roll back by hand if that is really intended.",
            found,
        )
    keys = AccessKeys(iam, user)
    try:
        key = keys.get(key_id)  # ListAccessKeys: NoSuchEntity when the user is gone
    except InvalidSecretError:
        raise Refused(f"IAM user {user} no longer exists; rotate {state.arn} instead.", found) from None
    if key is None:
        raise Refused(
            f"Access key {key_id} of AWSPREVIOUS version {previous} was deleted (the rollback window is over); "
            f"nothing was changed. Rotate {state.arn} to get a new key instead.",
            found,
        )
    return replace(found, key_status_before=key.status), keys


def rollback(secrets: SecretVersions, iam: IAMClient) -> Rollback:
    """Reactivate the previous key if needed and move AWSCURRENT back to its version."""
    found, keys = plan(secrets, iam)
    assert found.key_id is not None and found.to_version is not None and found.from_version is not None
    reactivated = found.key_status_before != "Active"
    if reactivated and not keys.activate(found.key_id):
        raise Refused(f"Access key {found.key_id} disappeared while rolling back; rotate instead.", found)
    stale_pending = PENDING in secrets.describe().stages.get(found.from_version, [])
    if stale_pending:
        secrets.remove_label(PENDING, found.from_version)
    secrets.promote(found.to_version, found.from_version)
    return replace(found, reactivated=reactivated, removed_stale_pending=stale_pending)


def _print_table(result: Rollback, refused: str | None) -> None:
    rows = [
        ("secret", result.secret),
        ("AWSCURRENT was", result.from_version or "-"),
        ("rolled back to", result.to_version or "-"),
        ("IAM user", result.user or "-"),
        ("access key", result.key_id or "-"),
        ("key status before", result.key_status_before or "deleted"),
    ]
    if refused is None:
        rows.append(("key status now", "Active" + (" (reactivated)" if result.reactivated else "")))
    for name, value in rows:
        print(f"{name:<20}{value}")
    if refused is None:
        print(
            f"\nAWSCURRENT is {result.to_version} again; AWSPREVIOUS is {result.from_version}. Applications "
            "re-read the secret on their next refresh (or on a 535). The key rolled away from is deactivated by "
            "the retirement function at its next run unless still in use."
        )


def run(args: argparse.Namespace) -> int:
    secrets = SecretVersions(boto3.client("secretsmanager"), args.secret_id)
    iam = boto3.client("iam")
    refused: str | None = None
    try:
        result = rollback(secrets, iam)
    except Refused as error:
        refused, result = str(error), error.found
    if args.json:
        print(json.dumps({"status": "refused" if refused else "rolled-back", "reason": refused, **asdict(result)}))
    else:
        _print_table(result, refused)
        if refused:
            print(f"\nRefused: {refused}", file=sys.stderr)
    return 1 if refused else 0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "rollback",
        help="move AWSCURRENT back to the previous version while its key still exists",
        description=(
            "Move AWSCURRENT back to the AWSPREVIOUS version while its access key still exists, reactivating "
            "the key if it is Inactive. Refuses, changing nothing (exit 1), once the key is deleted or while a "
            "rotation is in progress. Works against moto with AWS_ENDPOINT_URL."
        ),
    )
    parser.add_argument("--secret-id", required=True, help="the secret's name or ARN")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run)
