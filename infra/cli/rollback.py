"""``rollback --secret-id SECRET --function ARN|--stack NAME``: move AWSCURRENT back to the
AWSPREVIOUS version (SPEC §4a).

Within the rollback window the previous key still exists (Inactive after its grace period). The
command then reactivates it if needed and moves AWSCURRENT back to its version; Secrets Manager
moves AWSPREVIOUS onto the version rolled away from.

The deployment, not the secret, decides whose key this may touch and where the restored version
may send: the operator names the deployment, whose rotation function states the allowed SMTP hosts
and binds the secret by its exact ARN (``rollback_binding``). It refuses, changing nothing and
exiting 1, when that is not safe: the secret is rotated by another function or is not bound to a
user; AWSCURRENT or AWSPREVIOUS does not name the bound IAM user; AWSPREVIOUS names no key, a
deleted key, a key whose deletion is due before the next retirement run, or an endpoint the
deployment does not allow; a rotation is in progress; or the secret already looks rolled back
(AWSPREVIOUS's key is newer than AWSCURRENT's).

It shows what it will do and asks before changing anything (``--yes`` for scripts). Steps:
reactivate the key; re-read the labels (another actor may have moved them: then it refuses);
remove a stale AWSPENDING label from the current version (it would block the next rotation once
that version is not current); move AWSCURRENT; re-read the key and make sure it is Active (a
retirement run may have stopped it meanwhile). Safe to repeat: run
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from infra.cli.printable import printable
from infra.cli.rollback_binding import Binding, deployment_binding, function_of_stack
from lambda_function.access_keys import AccessKeys
from lambda_function.errors import InvalidSecretError, RollbackRefusedError, aws_error_code, explain_aws_error
from lambda_function.retirement import Kind, decide
from lambda_function.retirement_executor import read_state
from lambda_function.secret_document import SecretDocument
from lambda_function.secret_versions import CURRENT, PENDING, PREVIOUS, SecretState, SecretVersions

# Exit codes: 0 rolled back, 1 refused (nothing changed), 2 usage, 3 an AWS error (one line).
AWS_ERROR = 3
# The retirement function runs every hour: a key whose deletion is due before then is not restored.
RETIREMENT_RUN_INTERVAL = timedelta(hours=1)

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
    secrets: SecretVersions,
    iam: IAMClient,
    functions: LambdaClient,
    secretsmanager: SecretsManagerClient,
    ssm: Any,
    function_arn: str,
    now: datetime,
) -> tuple[Rollback, AccessKeys]:
    """Check that a rollback is safe; raise Refused (nothing changed) otherwise. Reads only."""
    try:
        state = secrets.describe()
    except InvalidSecretError as error:
        raise Refused(str(error), Rollback(secrets.secret_id, None, None, None, None, None)) from None
    found = Rollback(state.arn, state.version_with(CURRENT), state.version_with(PREVIOUS), None, None, None)
    try:
        binding = deployment_binding(secretsmanager, functions, ssm, function_arn, state.arn)
    except RollbackRefusedError as error:
        raise Refused(str(error), found) from None
    found = replace(found, user=binding.user, rotation_function=binding.function_arn)
    current, previous = _check_stages(state, found)

    now_doc = _json_object(secrets.value(CURRENT, current))
    named = now_doc.get("iam_user_name")
    if not isinstance(named, str) or named.strip() != binding.user:
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
    current_key_id = now_doc.get("username")
    current_key = listed.get(current_key_id) if isinstance(current_key_id, str) else None
    if current_key is not None and key.created > current_key.created:
        raise Refused(
            f"Secret {state.arn} already looks rolled back: AWSPREVIOUS names access key {key_id}, created "
            f"{key.created.isoformat()}, newer than AWSCURRENT's {current_key.access_key_id}, created "
            f"{current_key.created.isoformat()}. Nothing was changed. Moving forward to a newer key is a rotation: "
            f"aws secretsmanager rotate-secret --secret-id {state.arn}",
            found,
        )
    _refuse_if_deletion_is_due(keys, secrets, binding, key_id, now, found)
    return found, keys


def _refuse_if_deletion_is_due(
    keys: AccessKeys, secrets: SecretVersions, binding: Binding, key_id: str, now: datetime, found: Rollback
) -> None:
    """A retirement run may already be deleting the key (it decided before this rollback moves the
    label): refuse when its deletion is due before the next run, by the retirement function's own rule."""
    state = read_state(keys, secrets)
    decision = decide(state.keys, state.versions, binding.settings.retirement, now)
    action = next((a for a in decision.actions if a.access_key_id == key_id), None)
    if action is None:
        return
    # The next hourly run; when the rollback window itself is shorter (durations compressed, as in
    # the demo), a tenth of it.
    window = timedelta(days=binding.settings.retirement.inactive_days)
    soon = now + min(RETIREMENT_RUN_INTERVAL, window / 10)
    if action.kind is Kind.DELETE or (action.status != "Active" and action.due is not None and action.due <= soon):
        when = "now" if action.kind is Kind.DELETE or action.due is None else action.due.isoformat(timespec="seconds")
        raise Refused(
            f"Access key {key_id} is due to be deleted by the retirement function ({when}, before its next run); "
            "rolling back to it could leave AWSCURRENT naming a deleted key. Nothing was changed. "
            f"Rotate {secrets.secret_id} to get a new key instead.",
            found,
        )


def rollback(
    secrets: SecretVersions,
    iam: IAMClient,
    functions: LambdaClient,
    secretsmanager: SecretsManagerClient,
    ssm: Any,
    function_arn: str,
    now: datetime,
    confirm: Callable[[Rollback], bool] = lambda _: True,
) -> Rollback:
    """Reactivate the previous key if needed and move AWSCURRENT back to its version, once
    `confirm` accepts the plan; re-check the labels right before moving them and the key right after."""
    found, keys = plan(secrets, iam, functions, secretsmanager, ssm, function_arn, now)
    assert found.key_id is not None and found.to_version is not None and found.from_version is not None
    if not confirm(found):
        raise Refused("Not confirmed; nothing was changed (pass --yes to roll back without a prompt).", found)
    reactivated = found.key_status_before != "Active"
    if reactivated and not keys.activate(found.key_id):
        raise Refused(f"Access key {found.key_id} disappeared while rolling back; rotate instead.", found)
    stages = secrets.describe().stages
    moved = CURRENT not in stages.get(found.from_version, []) or PREVIOUS not in stages.get(found.to_version, [])
    pending = next((v for v, labels in stages.items() if PENDING in labels and CURRENT not in labels), None)
    if moved or pending is not None:
        _undo_reactivation(reactivated, keys, secrets, found.key_id)
        raise Refused(
            f"The labels of {found.secret} moved while rolling back (a rotation, another rollback or an edit); "
            "AWSCURRENT was not moved. Run the command again to decide from the new state.",
            found,
        )
    stale_pending = PENDING in stages.get(found.from_version, [])
    try:
        if stale_pending:
            secrets.remove_label(PENDING, found.from_version)
        secrets.promote(found.to_version, found.from_version)
    except ClientError as error:
        _undo_reactivation(reactivated, keys, secrets, found.key_id)
        code = aws_error_code(error)
        if "AccessDenied" in code:
            raise Refused(
                f"Moving AWSCURRENT of {found.secret} was denied ({code}): the secret's resource policy lets only "
                "the rotation function's role and the stack's SecretWriterArns move its labels. Run the command "
                "as one of those principals; nothing was changed.",
                found,
            ) from None
        raise Refused(
            f"Moving AWSCURRENT of {found.secret} failed ({code}): its labels moved meanwhile. Nothing was "
            "changed; run the command again to decide from the new state.",
            found,
        ) from None
    restored = keys.get(found.key_id)
    if restored is None:  # a rotation that began meanwhile freed its slot: move AWSCURRENT back
        secrets.promote(found.from_version, found.to_version)
        raise Refused(
            f"Access key {found.key_id} was deleted while rolling back (a rotation began meanwhile), so AWSCURRENT "
            f"was moved back to {found.from_version}; nothing is changed. Let the rotation finish.",
            found,
        )
    if restored.status != "Active":  # stopped by a retirement run meanwhile
        keys.activate(found.key_id)
        reactivated = True
    return replace(found, reactivated=reactivated, removed_stale_pending=stale_pending)


def _undo_reactivation(reactivated: bool, keys: AccessKeys, secrets: SecretVersions, key_id: str) -> None:
    """Make a key this command reactivated Inactive again when the rollback does not happen,
    unless AWSCURRENT names it by now (then it must stay Active)."""
    if not reactivated:
        return
    current = _json_object(secrets.value(CURRENT)).get("username")
    if current != key_id:
        keys.deactivate(key_id)


def _print_plan(found: Rollback) -> None:
    """What the rollback will do (before anything changes)."""
    _rows(found, [("will restore", found.to_version), ("key status now", found.key_status_before)], sys.stderr)
    if found.key_status_before != "Active":
        print(f"\nAccess key {printable(found.key_id)} will be made Active again.", file=sys.stderr)


def _rows(result: Rollback, extra: list[tuple[str, str | None]], out: TextIO = sys.stdout) -> None:
    rows = [
        ("secret", result.secret),
        ("AWSCURRENT is", result.from_version),
        ("deployment", result.rotation_function),
        ("IAM user (bound)", result.user),
        ("access key", result.key_id),
        *extra,
    ]
    for name, value in rows:
        print(
            f"{name:<20}{printable(value or '-')}",
            file=sys.stderr if extra and extra[0][0] == "will restore" else sys.stdout,
        )


def _print_result(result: Rollback, refused: str | None) -> None:
    """A refusal never prints what a success prints."""
    if refused is not None:
        print(f"Refused: {printable(refused)}", file=sys.stderr)
        return
    _rows(
        replace(result, from_version=result.to_version),
        [
            ("rolled back from", result.from_version),
            ("key status before", result.key_status_before),
            ("key status now", "Active" + (" (reactivated)" if result.reactivated else "")),
        ],
    )
    print(
        f"\nAWSCURRENT is {printable(result.to_version)} again; AWSPREVIOUS is {printable(result.from_version)}. "
        "Applications re-read the secret on their next refresh (or on a 535). The key rolled away from is "
        "deactivated by the retirement function at its next run unless still in use."
    )


def _confirm(args: argparse.Namespace) -> Callable[[Rollback], bool]:
    def confirm(found: Rollback) -> bool:
        if args.yes:
            return True
        _print_plan(found)
        if not sys.stdin.isatty():
            return False
        return input("Roll back? [y/N] ").strip().lower() in ("y", "yes")

    return confirm


def run(args: argparse.Namespace) -> int:
    secretsmanager = boto3.client("secretsmanager")
    secrets = SecretVersions(secretsmanager, args.secret_id)
    refused: str | None = None
    try:
        function_arn = args.function or function_of_stack(boto3.client("cloudformation"), args.stack)
        result = rollback(
            secrets,
            boto3.client("iam"),
            boto3.client("lambda"),
            secretsmanager,
            boto3.client("ssm"),
            function_arn,
            datetime.now(UTC),
            _confirm(args),
        )
    except Refused as error:
        refused, result = str(error), error.found
    except RollbackRefusedError as error:  # the named stack is not a deployment
        refused, result = str(error), Rollback(args.secret_id, None, None, None, None, None)
    except (ClientError, BotoCoreError) as error:  # denied, throttled, unreachable: one line, no traceback
        code, reason = explain_aws_error(error)
        print(f"Error: {printable(code)}: {printable(reason)}", file=sys.stderr)
        return AWS_ERROR
    if args.json:
        print(json.dumps({"status": "refused" if refused else "rolled-back", "reason": refused, **asdict(result)}))
    else:
        _print_result(result, refused)
    return 1 if refused else 0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "rollback",
        help="move AWSCURRENT back to the previous version while its key still exists",
        description=(
            "Move AWSCURRENT back to the AWSPREVIOUS version while its access key still exists, reactivating "
            "the key if it is Inactive. Name the deployment (--stack or --function): the secret must be rotated "
            "by it and bound by it to its IAM user, whose key alone is touched; only a version naming that user "
            "and an endpoint the deployment allows is restored. Shows the plan and asks first (--yes for "
            "scripts). Refuses, changing nothing (exit 1), once the key is deleted or due for deletion, while a "
            "rotation is in progress, when a version names another user or endpoint, or when the secret "
            "already looks rolled back. An AWS error (denied, throttled, unreachable) is one line and exit 3. "
            "Works against moto with AWS_ENDPOINT_URL."
        ),
    )
    parser.add_argument("--secret-id", required=True, help="the secret's name or ARN")
    deployment = parser.add_mutually_exclusive_group(required=True)
    deployment.add_argument("--stack", help="the deployment's stack name (its FunctionArn output)")
    deployment.add_argument("--function", help="the deployment's rotation function ARN")
    parser.add_argument("--yes", action="store_true", help="roll back without asking (scripts)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run)
