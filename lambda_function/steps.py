"""The four rotation steps (SPEC §4). Every step is idempotent: Secrets Manager may repeat any of
them with the same token, at any point, after a crash.

`run_step` checks the version stages once, then dispatches to `create_secret`, `set_secret`,
`test_secret` or `finish_secret`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from lambda_function.access_keys import MAX_KEYS_PER_USER, AccessKey, AccessKeys
from lambda_function.binding import Bindings, check_encryption_key
from lambda_function.errors import (
    EditedDuringRotationError,
    InvalidEventError,
    InvalidSecretError,
    KeyLimitError,
    StateChangedError,
)
from lambda_function.retirement_executor import retire
from lambda_function.secret_document import SecretDocument
from lambda_function.secret_versions import CURRENT, PENDING, SecretVersions
from lambda_function.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
# A field the first release read from the secret; the previous-key policy is the deployment's now.
IGNORED_FIELD = "previous_key_action"


@dataclass(frozen=True)
class Rotation:
    """What one invocation works with: the secret, IAM, the event's tokens and the settings."""

    secrets: SecretVersions
    iam: IAMClient
    bindings: Bindings
    token: str
    rotation_token: str | None
    settings: Settings
    default_region: str
    deadline: float  # time.monotonic() by which the step must have returned
    logger: Logger
    now: datetime  # when the invocation began (UTC), for the retirement rules

    def document(self, label: str, user: str, version_id: str | None = None) -> SecretDocument:
        """A version's document, refused unless it names `user`, the secret's bound IAM user."""
        text = self.secrets.value(label, version_id)
        if text is None:
            raise InvalidSecretError(f"The {label} version of {self.secrets.secret_id} has no value.")
        document = SecretDocument.parse(text, self.default_region, label)
        if document.iam_user_name != user:
            raise InvalidSecretError(
                f"Secret {self.secrets.secret_id} is bound to IAM user {user} by this deployment, but its {label} "
                f"version names IAM user {document.iam_user_name}; refused, nothing changed. Set iam_user_name back "
                f"to {user}, or bind the secret to {document.iam_user_name} in SMTP_SECRET_BINDINGS."
            )
        if IGNORED_FIELD in document.fields:
            self.logger.warning(
                f"Ignoring the secret's {IGNORED_FIELD} field: the deployment decides what happens to the "
                "previous key (PREVIOUS_KEY_ACTION)",
                ignored_field=IGNORED_FIELD,
            )
        return document

    def pending(self, user: str) -> SecretDocument:
        return self.document(PENDING, user, self.token)


def run_step(step: str, rotation: Rotation) -> None:
    """Check the token against the secret's stages, then run `step`.

    The secret must be bound to an IAM user by the deployment (`binding`), have rotation enabled,
    and the token must be one of its versions; createSecret and testSecret also refuse a secret not
    encrypted with the deployment's KMS key. A token already `AWSCURRENT` means the rotation is done: the
    step does nothing, except that a retried finishSecret still retires the previous key.
    Otherwise the token must be `AWSPENDING`.
    """
    if step not in STEPS:
        raise InvalidEventError(f"Unknown Step {step!r}; expected one of {', '.join(STEPS)}.")
    state = rotation.secrets.describe()
    user = rotation.bindings.user_of(state.arn, state.name)
    if not state.rotation_enabled:
        raise InvalidSecretError(f"Secret {state.arn} does not have rotation enabled.")
    labels = state.stages.get(rotation.token)
    if labels is None:
        raise InvalidSecretError(f"Token {rotation.token} is not a version of secret {state.arn}.")
    if CURRENT in labels:
        if step == "finishSecret":
            _clear_pending(rotation, labels)
            _retire_previous_key(rotation, rotation.document(CURRENT, user))
        else:
            rotation.logger.info("Version is already AWSCURRENT; nothing to do")
        return
    if PENDING not in labels:
        raise InvalidSecretError(
            f"Version {rotation.token} of secret {state.arn} is not AWSPENDING (labels: {labels or 'none'})."
        )
    if step in ("createSecret", "testSecret"):
        check_encryption_key(state.arn, state.kms_key_id, rotation.settings.kms_key_arn)
    if step == "createSecret":
        create_secret(rotation, user)
    elif step == "setSecret":
        set_secret(rotation, user)
    elif step == "testSecret":
        test_secret(rotation, user)
    else:
        finish_secret(rotation, user, state.version_with(CURRENT))


def create_secret(rotation: Rotation, user: str) -> None:
    """Create a new access key of `user` and store its SMTP credentials as the AWSPENDING version.

    Guarantees: nothing changes when the current document, its endpoint or the IAM user is
    invalid; the user never holds more than two keys; a failed write leaves no orphan key; a retry
    does not create a second key; a key is deleted only after re-reading that AWSCURRENT still names
    the key it was decided from and this token's version is still empty, so a duplicate delivery of
    the token or a rollback meanwhile never loses the key in use. Raises InvalidSecretError,
    KeyLimitError, StateChangedError (Secrets Manager retries).
    """
    log = rotation.logger
    if rotation.secrets.value(PENDING, rotation.token) is not None:
        log.info("AWSPENDING already has a value; createSecret already done")
        return
    current = rotation.document(CURRENT, user)
    current.check_endpoint(rotation.settings.smtp_allowed_hosts)
    keys = AccessKeys(rotation.iam, user)
    if not _free_key_slot(rotation, keys, current):
        log.info("Another delivery of this token stored AWSPENDING meanwhile; createSecret already done")
        return

    new_key = keys.create()
    log.info("Created access key", key_id=new_key.access_key_id, user=keys.user_name)
    document = current.next_version(new_key.access_key_id, new_key.secret_access_key)
    rotation_token = rotation.rotation_token
    if rotation_token is not None and not rotation.secrets.supports_rotation_token():
        log.warning("This botocore does not know PutSecretValue's RotationToken; sending without it")
        rotation_token = None
    try:
        rotation.secrets.put_pending(rotation.token, json.dumps(document), rotation_token)
    except Exception:
        # A timeout may hide a write that succeeded: keep the key if the pending version names it.
        stored = rotation.secrets.value_of_version(rotation.token)
        if stored is not None and json.loads(stored).get("username") == new_key.access_key_id:
            log.warning("PutSecretValue failed but the pending version was stored", key_id=new_key.access_key_id)
            return
        keys.delete(new_key.access_key_id)
        log.error("PutSecretValue failed; deleted the new access key", key_id=new_key.access_key_id)
        raise
    log.info("Stored AWSPENDING", key_id=new_key.access_key_id)


def _free_key_slot(rotation: Rotation, keys: AccessKeys, current: SecretDocument) -> bool:
    """Make room for one key without deleting a key that applications may still use.

    Returns False, deleting nothing, when this token's version got a value meanwhile (another
    delivery of the same token did createSecret).
    """
    existing = keys.list()
    current_key = current.username if any(k.access_key_id == current.username for k in existing) else None
    if current_key is not None:
        # The current key is the one in use; any other is the previous rotation's grace key
        # or an orphan of a crashed attempt.
        doomed = [k for k in existing if k.access_key_id != current_key]
    else:
        if current.username is not None:
            rotation.logger.warning("AWSCURRENT names an access key the user no longer has", key_id=current.username)
        # Keys older than this rotation may be in use by applications: keep them. An orphan of a
        # crashed attempt of this rotation was created since its version appeared, is named by no
        # version and was never used: time alone deletes nothing.
        started = rotation.secrets.created(rotation.token)
        doomed = [k for k in existing if started is not None and k.created >= started and _orphan(rotation, keys, k)]
    for key in doomed:
        if not _still_as_decided(rotation, current.username):
            return False
        keys.delete(key.access_key_id)
        rotation.logger.info("Deleted access key to free a slot", key_id=key.access_key_id, status=key.status)
    remaining = [k for k in existing if k not in doomed]
    if len(remaining) >= MAX_KEYS_PER_USER:
        listed = ", ".join(f"{k.access_key_id} ({k.status}, created {k.created:%Y-%m-%d})" for k in remaining)
        raise KeyLimitError(
            f"IAM user {keys.user_name} has {len(remaining)} access keys ({listed}) and the secret names "
            "neither, so neither is safe to delete. Delete the one no application uses, or put its ID "
            "in the secret's username field, then rotate again."
        )
    return True


def _orphan(rotation: Rotation, keys: AccessKeys, key: AccessKey) -> bool:
    """Whether `key` is an orphan of a crashed createSecret: never used, and named by no version."""
    if keys.last_used(key.access_key_id) is not None:
        return False
    return not any(
        key.access_key_id in (rotation.secrets.value_of_version(version) or "")
        for version in rotation.secrets.describe().stages
    )


def _still_as_decided(rotation: Rotation, current_key: str | None) -> bool:
    """Re-read, right before deleting a key, the facts the deletion was decided on.

    AWSCURRENT must still name `current_key` (a rollback or a hand edit may have moved it: raise,
    Secrets Manager retries from fresh state) and this token must still be AWSPENDING without a
    value (False: another delivery of the token finished createSecret meanwhile).
    """
    state = rotation.secrets.describe()
    if PENDING not in state.stages.get(rotation.token, []):
        return False
    if rotation.secrets.value_of_version(rotation.token) is not None:
        return False
    now_current = rotation.secrets.value(CURRENT)
    named = json.loads(now_current).get("username") if now_current else None
    if named != current_key:
        raise StateChangedError(
            f"AWSCURRENT of {rotation.secrets.secret_id} changed while this rotation was freeing a key slot (it "
            f"named {current_key}, now {named}); no key was deleted. Secrets Manager retries from the new state."
        )
    return True


def set_secret(rotation: Rotation, user: str) -> None:
    """An IAM key is live once created: confirm the pending key exists and is Active."""
    pending = rotation.pending(user)
    if pending.username is None:
        raise InvalidSecretError("The AWSPENDING version has no username; run createSecret first.")
    key = AccessKeys(rotation.iam, user).get(pending.username)
    if key is None or key.status != "Active":
        raise InvalidSecretError(
            f"The pending access key {pending.username} of IAM user {user} is "
            f"{'missing' if key is None else key.status}; cancel this rotation and rotate again."
        )
    rotation.logger.info("Pending access key is Active", key_id=key.access_key_id)


def test_secret(rotation: Rotation, user: str) -> None:
    """Log in to the pending version's SMTP endpoint over TLS with the new credentials.

    The endpoint is checked against the deployment's allowed hosts again before connecting: the
    pending version is a value too. Other regions' passwords come from the same key by the same
    derivation, so the primary endpoint proves them too. Raises InvalidSecretError,
    SmtpConfigurationError, SmtpAuthenticationError, SmtpSendError.
    """
    # Imported here: only this step talks SMTP, and the check's asyncio and email modules are a
    # tenth of the cold start every other step would pay.
    from lambda_function.smtp_check import SmtpEndpoint, check_login

    pending = rotation.pending(user)
    if pending.username is None or pending.password is None:
        raise InvalidSecretError("The AWSPENDING version has no username/password; run createSecret first.")
    settings = rotation.settings
    pending.check_endpoint(settings.smtp_allowed_hosts)
    endpoint = SmtpEndpoint(pending.host, pending.port, pending.implicit_tls, settings.smtp_connect_timeout)
    deadline = min(time.monotonic() + settings.smtp_auth_timeout, rotation.deadline)
    started = time.monotonic()

    def on_retry(attempt: int, reason: str, delay: float) -> None:
        rotation.logger.info(
            "SMTP login not accepted yet; retrying", attempt=attempt, reason=reason, retry_in=round(delay, 2)
        )

    attempts = check_login(
        endpoint,
        pending.username,
        pending.password,
        deadline=deadline,
        hard_deadline=rotation.deadline,
        sender=settings.smtp_test_sender,
        on_retry=on_retry,
    )
    rotation.logger.info(
        "SMTP login accepted",
        endpoint=str(endpoint),
        key_id=pending.username,
        attempts=attempts,
        elapsed=round(time.monotonic() - started, 2),
        sent_test_message=settings.smtp_test_sender is not None,
    )


def finish_secret(rotation: Rotation, user: str, current_version: str | None) -> None:
    """Move AWSCURRENT to the token; with an immediate policy, stop the previous key at once.

    Refuses (EditedDuringRotationError, nothing moved) when AWSCURRENT was edited since createSecret
    built the pending version from it: promoting would silently drop the edit.
    """
    if current_version is None:
        raise InvalidSecretError(f"Secret {rotation.secrets.secret_id} has no AWSCURRENT version.")
    pending = rotation.pending(user)  # validates the document before anything moves
    current = rotation.document(CURRENT, user, current_version)
    edited = pending.carried_differences(current)
    if edited:
        raise EditedDuringRotationError(
            f"AWSCURRENT of {rotation.secrets.secret_id} was edited after this rotation began (field(s) "
            f"{', '.join(edited)} differ from the pending version, which was built from the value before the edit); "
            "finishing would lose that edit, so nothing was promoted. Cancel this rotation and rotate again, which "
            "builds the new version from the edited value: aws secretsmanager cancel-rotate-secret --secret-id "
            f"{rotation.secrets.secret_id}; then remove AWSPENDING from version {rotation.token} "
            "(update-secret-version-stage --version-stage AWSPENDING --remove-from-version-id ...); then "
            "aws secretsmanager rotate-secret, which also turns automatic rotation back on (README: Runbook)."
        )
    rotation.secrets.promote(rotation.token, current_version)
    rotation.logger.info("Moved AWSCURRENT", from_version=current_version, key_id=pending.username)
    _clear_pending(rotation, [CURRENT, PENDING])
    _retire_previous_key(rotation, pending)


def _clear_pending(rotation: Rotation, labels: list[str]) -> None:
    """Take AWSPENDING off the version just made current. Left there, the next edit of the secret
    (a put moves AWSCURRENT and AWSPREVIOUS only) would leave it on a version that is not
    AWSCURRENT: a rotation that looks in progress for ever, which Secrets Manager refuses to follow."""
    if PENDING in labels:
        rotation.secrets.remove_label(PENDING, rotation.token)


def _retire_previous_key(rotation: Rotation, current: SecretDocument) -> None:
    """Apply the immediate policies of SPEC §4a; otherwise the retirement function does it later.

    With PREVIOUS_KEY_ACTIVE_HOURS=0 the old keys are deactivated now, and deleted now when
    PREVIOUS_KEY_INACTIVE_DAYS is 0 too: the same decision as the retirement function's
    (`retirement.decide`), without evidence of use, which the immediate policies ignore. Also runs
    when a finishSecret is retried after the label moved, so the action is never lost.
    """
    policy = rotation.settings.retirement
    if not policy.immediate:
        rotation.logger.info(
            "The previous access key retires later (retirement function)",
            previous_key_active_hours=policy.active_hours,
            previous_key_inactive_days=policy.inactive_days,
        )
        return
    keys = AccessKeys(rotation.iam, current.iam_user_name)
    retire(keys, rotation.secrets, policy, rotation.now, rotation.logger, last_use=False)
