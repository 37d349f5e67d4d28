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

from lambda_function.access_keys import MAX_KEYS_PER_USER, AccessKeys
from lambda_function.errors import InvalidEventError, InvalidSecretError, KeyLimitError
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

    The secret must be bound to an IAM user by the deployment, have rotation enabled, and the
    token must be one of its versions. A token already `AWSCURRENT` means the rotation is done: the
    step does nothing, except that a retried finishSecret still retires the previous key.
    Otherwise the token must be `AWSPENDING`.
    """
    if step not in STEPS:
        raise InvalidEventError(f"Unknown Step {step!r}; expected one of {', '.join(STEPS)}.")
    state = rotation.secrets.describe()
    user = rotation.settings.bound_user(state.arn, state.name)
    if user is None:
        raise InvalidSecretError(
            f"Secret {state.arn} is not bound to an IAM user in this deployment, so it may rotate no one's keys; "
            "nothing changed. Add it to SMTP_SECRET_BINDINGS, or name it ses-smtp/<user> and add the user to "
            "SMTP_BOUND_USERS (the template does this for the secrets it makes)."
        )
    if not state.rotation_enabled:
        raise InvalidSecretError(f"Secret {state.arn} does not have rotation enabled.")
    labels = state.stages.get(rotation.token)
    if labels is None:
        raise InvalidSecretError(f"Token {rotation.token} is not a version of secret {state.arn}.")
    if CURRENT in labels:
        if step == "finishSecret":
            _retire_previous_key(rotation, rotation.document(CURRENT, user))
        else:
            rotation.logger.info("Version is already AWSCURRENT; nothing to do")
        return
    if PENDING not in labels:
        raise InvalidSecretError(
            f"Version {rotation.token} of secret {state.arn} is not AWSPENDING (labels: {labels or 'none'})."
        )
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
    does not create a second key. Raises InvalidSecretError, KeyLimitError.
    """
    log = rotation.logger
    if rotation.secrets.value(PENDING, rotation.token) is not None:
        log.info("AWSPENDING already has a value; createSecret already done")
        return
    current = rotation.document(CURRENT, user)
    current.check_endpoint(rotation.settings.smtp_allowed_hosts)
    keys = AccessKeys(rotation.iam, user)
    _free_key_slot(rotation, keys, current)

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
        stored = rotation.secrets.value(PENDING, rotation.token)
        if stored is not None and json.loads(stored).get("username") == new_key.access_key_id:
            log.warning("PutSecretValue failed but the pending version was stored", key_id=new_key.access_key_id)
            return
        keys.delete(new_key.access_key_id)
        log.error("PutSecretValue failed; deleted the new access key", key_id=new_key.access_key_id)
        raise
    log.info("Stored AWSPENDING", key_id=new_key.access_key_id)


def _free_key_slot(rotation: Rotation, keys: AccessKeys, current: SecretDocument) -> None:
    """Make room for one key without deleting a key that applications may still use."""
    existing = keys.list()
    current_key = current.username if any(k.access_key_id == current.username for k in existing) else None
    if current_key is not None:
        # The current key is the one in use; any other is the previous rotation's grace key
        # or an orphan of a crashed attempt.
        doomed = [k for k in existing if k.access_key_id != current_key]
    else:
        if current.username is not None:
            rotation.logger.warning("AWSCURRENT names an access key the user no longer has", key_id=current.username)
        # Keys older than this rotation may be in use by applications: keep them. Keys created
        # since the pending version appeared are orphans of a crashed attempt of this rotation.
        started = rotation.secrets.created(rotation.token)
        doomed = [k for k in existing if started is not None and k.created >= started]
    for key in doomed:
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
    """Move AWSCURRENT to the token; with an immediate policy, stop the previous key at once."""
    if current_version is None:
        raise InvalidSecretError(f"Secret {rotation.secrets.secret_id} has no AWSCURRENT version.")
    pending = rotation.pending(user)  # validates the document before anything moves
    rotation.secrets.promote(rotation.token, current_version)
    rotation.logger.info("Moved AWSCURRENT", from_version=current_version, key_id=pending.username)
    _retire_previous_key(rotation, pending)


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
