"""``rollback --secret-id SECRET``: move AWSCURRENT back to the AWSPREVIOUS version (SPEC §4a).

Within the rollback window the previous key still exists (Inactive after its grace period). The
command then reactivates it if needed and moves AWSCURRENT back to its version; Secrets Manager
moves AWSPREVIOUS onto the version rolled away from.

The deployment, not the secret, decides whose key this may touch and where the restored version
may send: the secret's rotation function states the bound IAM user and the allowed SMTP hosts
(``rollback_binding``). It refuses, changing nothing and exiting 1, when that is not safe: the
secret has no rotation function or is not bound to a user; AWSCURRENT or AWSPREVIOUS names another
IAM user; AWSPREVIOUS names no key, a deleted key, or an endpoint the deployment does not allow; a
rotation is in progress; or the secret already looks rolled back (AWSPREVIOUS's key is newer than
AWSCURRENT's).

Steps: reactivate the key; remove a stale AWSPENDING label from the current version (it would
block the next rotation once that version is not current); move AWSCURRENT. Safe to repeat: run
again after a failure, it finishes what is left; run again after it succeeded (or after its answer
was lost once the label moved), it refuses, because the key AWSPREVIOUS then names is newer than
AWSCURRENT's, and moving forward again is a rotation's job, not a rollback's.

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

from infra.cli.rollback_binding import Binding, deployment_binding
from lambda_function.access_keys import AccessKeys
from lambda_function.errors import InvalidSecretError, RollbackRefusedError
from lambda_function.secret_document import SecretDocument
from lambda_function.secret_versions import CURRENT, PENDING, PREVIOUS, SecretState, SecretVersions

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_secretsmanager import SecretsManagerClient


@dataclass(frozen=True)
class Rollback:
    """What a rollback did (or would have done, when refused)."""

    secret: str
    from_version: str | None
    to_version: str | None
    user: str | None  # the IAM user the deployment binds the secret to
    key_id: str | None
    key_status_before: str | None  # "Active", "Inactive", or None when the key is gone
    reactivated: bool = False
    removed_stale_pending: bool = False
    rotation_function: str | None = None  # whose environment states the binding


class Refused(RollbackRefusedError):
    """A refused rollback, with what was found before refusing."""

    def __init__(self, message: str, found: Rollback) -> None:
        super().__init__(message)
        self.found = found


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        document = json.loads(text) if text else None
    except ValueError:
        document = None
    return document if isinstance(document, dict) else {}


def _check_stages(state: SecretState, found: Rollback) -> tuple[str, str]:
    """(AWSCURRENT's version, AWSPREVIOUS's version), when there is one of each and no rotation runs."""
    current, previous = found.from_version, found.to_version
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
    return current, previous


def _key_to_restore(secrets: SecretVersions, state: SecretState, binding: Binding, found: Rollback) -> str:
    """The key AWSPREVIOUS names, if that version names the bound user and an allowed endpoint."""
    previous = found.to_version
    region = state.arn.split(":")[3] if state.arn.count(":") >= 3 else ""
    try:
        old = SecretDocument.parse(secrets.value(PREVIOUS, previous), region, PREVIOUS)
    except InvalidSecretError as error:
        raise Refused(f"The AWSPREVIOUS version {previous} of {state.arn} cannot be restored: {error}", found) from None
    if old.iam_user_name != binding.user:
        raise Refused(
            f"Secret {state.arn} is bound to IAM user {binding.user} by its deployment ({binding.function_arn}), but "
            f"its AWSPREVIOUS version {previous} names IAM user {old.iam_user_name}; refused, nothing changed. "
            "Someone who can write the secret wrote that version: find who in CloudTrail (PutSecretValue).",
            found,
        )
    if old.username is None:
        raise Refused(
            f"The AWSPREVIOUS version {previous} of {state.arn} names no access key (it is the deployer's "
            "bootstrap value, or not a rotated version): there is nothing to roll back to.",
            found,
        )
    try:
        old.check_endpoint(binding.settings.smtp_allowed_hosts)
    except InvalidSecretError as error:
        raise Refused(
            f"The AWSPREVIOUS version {previous} of {state.arn} is not restored: its endpoint is not one the "
            f"deployment ({binding.function_arn}) allows. {error}",
            found,
        ) from None
    return old.username


def plan(
    secrets: SecretVersions, iam: IAMClient, functions: LambdaClient, secretsmanager: SecretsManagerClient
) -> tuple[Rollback, AccessKeys]:
    """Check that a rollback is safe; raise Refused (nothing changed) otherwise. Reads only."""
    try:
        state = secrets.describe()
    except InvalidSecretError as error:
        raise Refused(str(error), Rollback(secrets.secret_id, None, None, None, None, None)) from None
    found = Rollback(state.arn, state.version_with(CURRENT), state.version_with(PREVIOUS), None, None, None)
    try:
        binding = deployment_binding(secretsmanager, functions, state.arn, state.name)
    except RollbackRefusedError as error:
        raise Refused(str(error), found) from None
    found = replace(found, user=binding.user, rotation_function=binding.function_arn)
    current, previous = _check_stages(state, found)

    now = _json_object(secrets.value(CURRENT, current))
    named = now.get("iam_user_name")
    if named is not None and (not isinstance(named, str) or named.strip() != binding.user):
        raise Refused(
            f"Secret {state.arn} is bound to IAM user {binding.user} by its deployment ({binding.function_arn}), but "
            f"its AWSCURRENT version {current} names IAM user {named}; refused, nothing changed. Set iam_user_name "
            f"back to {binding.user} first (find who changed it in CloudTrail: PutSecretValue).",
            found,
        )
    key_id = _key_to_restore(secrets, state, binding, found)
    found = replace(found, key_id=key_id)

    keys = AccessKeys(iam, binding.user)
    try:
        listed = {key.access_key_id: key for key in keys.list()}  # NoSuchEntity when the user is gone
    except InvalidSecretError:
        raise Refused(f"IAM user {binding.user} no longer exists; rotate {state.arn} instead.", found) from None
    key = listed.get(key_id)
    if key is None:
        raise Refused(
            f"Access key {key_id} of AWSPREVIOUS version {previous} was deleted (the rollback window is over); "
            f"nothing was changed. Rotate {state.arn} to get a new key instead.",
            found,
        )
    found = replace(found, key_status_before=key.status)
    current_key_id = now.get("username")
    current_key = listed.get(current_key_id) if isinstance(current_key_id, str) else None
    if current_key is not None and key.created > current_key.created:
        raise Refused(
            f"Secret {state.arn} already looks rolled back: AWSPREVIOUS names access key {key_id}, created "
            f"{key.created.isoformat()}, newer than AWSCURRENT's {current_key.access_key_id}, created "
            f"{current_key.created.isoformat()}. Nothing was changed. Moving forward to a newer key is a rotation: "
            f"aws secretsmanager rotate-secret --secret-id {state.arn}",
            found,
        )
    return found, keys


def rollback(
    secrets: SecretVersions, iam: IAMClient, functions: LambdaClient, secretsmanager: SecretsManagerClient
) -> Rollback:
    """Reactivate the previous key if needed and move AWSCURRENT back to its version."""
    found, keys = plan(secrets, iam, functions, secretsmanager)
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
        ("rotation function", result.rotation_function or "-"),
        ("IAM user (bound)", result.user or "-"),
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
    secretsmanager = boto3.client("secretsmanager")
    secrets = SecretVersions(secretsmanager, args.secret_id)
    refused: str | None = None
    try:
        result = rollback(secrets, boto3.client("iam"), boto3.client("lambda"), secretsmanager)
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
            "the key if it is Inactive. Only the IAM user the secret's rotation function binds it to is touched, "
            "and only a version naming that user and an endpoint the deployment allows is restored. Refuses, "
            "changing nothing (exit 1), once the key is deleted, while a rotation is in progress, when a version "
            "names another user or endpoint, or when the secret already looks rolled back. Works against moto "
            "with AWS_ENDPOINT_URL."
        ),
    )
    parser.add_argument("--secret-id", required=True, help="the secret's name or ARN")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run)
