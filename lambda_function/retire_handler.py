"""Lambda entry point of the retirement function (SPEC §4a), run every hour by EventBridge Scheduler.

Each run is stateless. It takes the deployment's bound secrets from its registry (`binding`: the
secrets' exact ARNs, never a writable field of a secret), and for each one, with the IAM user it is
bound to, reads the state, decides and acts (`retirement_executor.retire`). Then, per secret, it
emits the metrics ``CurrentKeyAgeDays``, ``ActiveAccessKeys`` and ``PreviousKeyStillInUse``, and
publishes a message on the alarm topic (``ALARM_TOPIC_ARN``) for every key still in use.

A writer cannot silence it: a bound secret that is gone, scheduled for deletion, re-pointed to
another rotation function, encrypted with another KMS key, or whose AWSCURRENT names no key of its
user is reported (metric ``BoundSecretUnmanaged``, a message on the alarm topic), and the user's
newest Active key's age is still reported as ``CurrentKeyAgeDays``.

A secret that fails (reading, acting, its metrics or its message on the alarm topic) does not
stop the others: it is one ERROR line with `error` and `reason`, and the run raises at the end, so
the function's Errors metric (and its alarm) shows it, and the next run picks up where this one
stopped. A run that cannot start (bad settings, ListSecrets refused) is one such line too. The
event is ignored and never logged; `now` is read here, once, and passed down.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from lambda_function import aws_clients
from lambda_function.access_keys import AccessKeys
from lambda_function.alarm_topic import AlarmTopic
from lambda_function.binding import Bindings, ParameterStore, bound_twice, check_encryption_key
from lambda_function.errors import (
    InvalidSecretError,
    InvalidSettingsError,
    RetirementError,
    RotationError,
    explain_aws_error,
)
from lambda_function.retirement import Action, Decision, Kind
from lambda_function.retirement_executor import retire
from lambda_function.secret_versions import RotatedSecret, SecretVersions
from lambda_function.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

CURRENT_KEY_AGE_METRIC = "CurrentKeyAgeDays"  # template.yaml's CurrentKeyTooOldAlarm watches it
UNMANAGED_METRIC = "BoundSecretUnmanaged"  # template.yaml's BoundSecretUnmanagedAlarm watches it

# AWS calls stop retrying this long before Lambda would stop the function, so the failure is ours.
LAMBDA_MARGIN_SECONDS = 5.0

# Never let botocore log request or response bodies (the secret's value), even at DEBUG.
for _name in ("botocore", "boto3", "urllib3", "s3transfer"):
    logging.getLogger(_name).setLevel(logging.WARNING)

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "ses-smtp-retirement"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "SesSmtpRotation"
logger = Logger(service=SERVICE)
# Deployment-wide metrics (dimension: service); per-secret ones add SecretName (`_report`).
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


@dataclass(frozen=True)
class Targets:
    """Where the retirement function looks and whom it tells."""

    rotation_function_arn: str
    alarm_topic_arn: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Targets:
        env = os.environ if env is None else env
        function_arn = env.get("ROTATION_FUNCTION_ARN", "").strip()
        if not function_arn.startswith("arn:") or ":function:" not in function_arn:
            raise InvalidSettingsError(
                f"ROTATION_FUNCTION_ARN is {function_arn!r}; set it to the ARN of this deployment's rotation function."
            )
        topic = env.get("ALARM_TOPIC_ARN", "").strip() or None
        if topic is not None and not topic.startswith("arn:"):
            raise InvalidSettingsError(f"ALARM_TOPIC_ARN is {topic!r}; set it to an SNS topic ARN or leave it empty.")
        return cls(function_arn, topic)


@dataclass
class Summary:
    """What one run did (returned by the handler; key IDs and secret names only)."""

    secrets: list[str]
    deactivated: list[str]
    deleted: list[str]
    held: list[str]
    unmanaged: list[str]  # bound secrets it cannot find, read or resolve (reported)
    failed: list[str]

    def as_dict(self) -> dict[str, list[str]]:
        return dict(vars(self))


def run(
    now: datetime,
    settings: Settings,
    targets: Targets,
    secrets: SecretsManagerClient,
    iam: IAMClient,
    topic: AlarmTopic | None,
    ssm: ParameterStore | None = None,
) -> Summary:
    """Retire the old keys of every secret this deployment binds, and report those it cannot."""
    bound = Bindings(settings, ssm).every()
    twice = bound_twice(bound)
    found = [RotatedSecret(b.secret_arn, secret_name(b.secret_arn)) for b in bound]
    summary = Summary([s.name for s in found], [], [], [], [], [])
    metrics.add_metric(name="SecretsFound", unit=MetricUnit.Count, value=len(found))
    for secret, user in zip(found, (b.user for b in bound), strict=True):
        # One secret must not stop the others, whatever fails (an AWS call, the alarm topic, a bug):
        # it is one line, and the handler raises at the end.
        try:
            keys, versions = AccessKeys(iam, user), SecretVersions(secrets, secret.arn)
            problem, retirable = unmanaged(versions, targets, settings)
            if user.lower() in twice:  # each secret's retirement would stop the other's live key
                problem, retirable = f"its IAM user {user} is bound to another secret too", False
            decision = retire(keys, versions, settings.retirement, now, logger) if retirable else None
            if problem is None and decision is not None and decision.current_key_unusable:
                problem = "its AWSCURRENT version names an access key its user no longer has, or an Inactive one"
            if problem is not None:
                summary.unmanaged.append(secret.name)
                _report_unmanaged(secret, user, problem, keys, now, topic)
            if decision is not None:
                summary.deactivated += [a.access_key_id for a in decision.changes if a.kind is Kind.DEACTIVATE]
                summary.deleted += [a.access_key_id for a in decision.changes if a.kind is Kind.DELETE]
                summary.held += [a.access_key_id for a in decision.holds]
                _report(secret, user, decision, topic)
            _metric(UNMANAGED_METRIC, float(problem is not None), MetricUnit.Count, secret.name)
        except Exception as error:
            kind, reason, unexpected = _explain(error)
            logger.error(
                "Retirement failed for this secret",
                secret_id=secret.arn,
                error=kind,
                reason=reason,
                exc_info=unexpected,
            )
            summary.failed.append(secret.name)
    metrics.add_metric(name=UNMANAGED_METRIC, unit=MetricUnit.Count, value=len(summary.unmanaged))
    return summary


def secret_name(arn: str) -> str:
    """A secret's name from its ARN (the part after ``secret:``, without the random suffix)."""
    return arn.partition(":secret:")[2].rpartition("-")[0] or arn


def unmanaged(versions: SecretVersions, targets: Targets, settings: Settings) -> tuple[str | None, bool]:
    """(why this deployment cannot look after a bound secret, or None; whether its keys may still
    retire). A secret under another KMS key is reported (rotations refuse it), but its keys retire."""
    try:
        state = versions.describe()
    except InvalidSecretError:
        return "it no longer exists (deleted, or deleted and created again under its name: a new ARN)", False
    if state.arn != versions.secret_id:  # a registry value that is a name, not the exact ARN
        return f"the binding names {versions.secret_id}, not its exact ARN {state.arn}", False
    if state.scheduled_for_deletion:
        return "it is scheduled for deletion", False
    if state.rotation_function != targets.rotation_function_arn:
        return f"its rotation function is {state.rotation_function or 'none'}, not this deployment's", False
    try:
        check_encryption_key(state.arn, state.kms_key_id, settings.kms_key_arn)
    except InvalidSecretError:
        key = state.kms_key_id or "aws/secretsmanager"
        return f"it is encrypted with KMS key {key}, not the deployment's: rotations are refused", True
    return None, True


def _report_unmanaged(
    secret: RotatedSecret, user: str, problem: str, keys: AccessKeys, now: datetime, topic: AlarmTopic | None
) -> None:
    """Say so, and still report the age of the user's newest Active key."""
    logger.warning("Bound secret cannot be looked after", secret_id=secret.arn, user=user, problem=problem)
    try:
        newest = max((k for k in keys.list() if k.status == "Active"), key=lambda k: k.created, default=None)
    except InvalidSecretError:  # the user is gone too
        newest = None
    if newest is not None:
        age = (now - newest.created).total_seconds() / 86400
        metrics.add_metric(name=CURRENT_KEY_AGE_METRIC, unit=MetricUnit.NoUnit, value=age)
        _metric(CURRENT_KEY_AGE_METRIC, round(age, 3), MetricUnit.NoUnit, secret.name)
    if topic is not None:
        topic.publish(
            f"SES SMTP: bound secret not looked after ({secret.name})",
            f"The deployment binds secret {secret.arn} to IAM user {user}, but {problem}. Its old keys are not "
            "retired and it is not rotated until this is fixed. Find who changed it in CloudTrail "
            "(DeleteSecret, RotateSecret, UpdateSecret, PutSecretValue), then restore it or redeploy the user's "
            "stack (README: Runbook).",
        )


def _metric(name: str, value: float, unit: MetricUnit, secret_name: str) -> None:
    dimensions = {"service": SERVICE, "SecretName": secret_name}
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE, default_dimensions=dimensions):
        pass


def _explain(error: Exception) -> tuple[str, str, bool]:
    """`(error, reason, unexpected)`: what kind of failure, what to do, and whether it is a bug
    (then the traceback is logged too). As the rotation function's handler says it."""
    if isinstance(error, RotationError):
        return type(error).__name__, str(error), False
    if isinstance(error, ClientError | BotoCoreError):
        return (*explain_aws_error(error), False)
    # Not an AWS error and not ours: its message is ours or Python's, never a secret.
    return type(error).__name__, f"Unexpected error: {error}", True


def _report(secret: RotatedSecret, user: str, decision: Decision, topic: AlarmTopic | None) -> None:
    """Metrics for this secret, and a message for every key still in use."""
    stopped_active = sum(1 for a in decision.changes if a.status == "Active")
    values: dict[str, tuple[float, MetricUnit]] = {
        "ActiveAccessKeys": (decision.active_keys - stopped_active, MetricUnit.Count),
        "PreviousKeyStillInUse": (len(decision.holds), MetricUnit.Count),
    }
    if decision.current_key_age_days is not None:
        values[CURRENT_KEY_AGE_METRIC] = (round(decision.current_key_age_days, 3), MetricUnit.NoUnit)
        # Without the secret's dimension too: one alarm then covers every secret of the deployment.
        metrics.add_metric(name=CURRENT_KEY_AGE_METRIC, unit=MetricUnit.NoUnit, value=decision.current_key_age_days)
        if decision.current_key_too_old:
            logger.warning(
                "The current access key is older than MAX_KEY_AGE_DAYS; rotate the secret",
                secret_id=secret.arn,
                key_id=decision.current_key_id,
                age_days=round(decision.current_key_age_days, 1),
                max_key_age_days=decision.max_key_age_days,
            )
    for name, (value, unit) in values.items():
        _metric(name, value, unit, secret.name)
    for action in decision.actions:
        if action.in_use and topic is not None:
            topic.publish(*_in_use_message(secret, user, action))


def _in_use_message(secret: RotatedSecret, user: str, action: Action) -> tuple[str, str]:
    last = _seconds(action.last_used) if action.last_used else "unknown"
    if action.kind is Kind.HOLD:
        subject = f"SES SMTP: old key still in use ({secret.name})"
        outcome = "It stays Active while it is in use; the next run looks again."
        if action.due is not None and (action.latest is None or action.due < action.latest):
            outcome += (
                f" If it is not used again, it is stopped at the first run after {_seconds(action.due)} "
                "(PREVIOUS_KEY_IDLE_HOURS after its last use)."
            )
        if action.latest is not None:
            outcome += (
                f" In use or not, it is stopped at the first run after {_seconds(action.latest)} "
                "(PREVIOUS_KEY_MAX_ACTIVE_HOURS after the rotation)."
            )
    else:
        subject = f"SES SMTP: old key stopped while in use ({secret.name})"
        outcome = f"It was held for the longest time allowed (PREVIOUS_KEY_MAX_ACTIVE_HOURS) and is now {action.kind}d."
    message = (
        f"Access key {action.access_key_id} of IAM user {user} was replaced by a rotation of secret {secret.name} "
        f"({secret.arn}), but it was last used at {last}. {outcome}\n\n"
        "Find the application still sending with the old password (CloudTrail, SES sending logs) and make it "
        "re-read the secret: on a 535 reply, read the secret again and retry once.\n"
        f"Reason: {action.reason}"
    )
    return subject, message


def _seconds(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, list[str]]:
    """One retirement run over every secret of the deployment; raise if any secret failed."""
    now = datetime.now(UTC)
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - LAMBDA_MARGIN_SECONDS
    try:
        settings = Settings.from_env()
        targets = Targets.from_env()
        sns = aws_clients.client("sns", deadline=deadline) if targets.alarm_topic_arn else None
        topic = AlarmTopic(sns, targets.alarm_topic_arn) if sns is not None and targets.alarm_topic_arn else None
        secrets = aws_clients.client("secretsmanager", deadline=deadline)
        ssm = aws_clients.client("ssm", deadline=deadline) if settings.binding_path else None
        iam = aws_clients.client("iam", deadline=deadline)
        summary = run(now, settings, targets, secrets, iam, topic, ssm)
    except Exception as error:  # bad settings, or the registry could not be read: no secret was looked at
        kind, reason, unexpected = _explain(error)
        logger.error("Retirement run failed", error=kind, reason=reason, exc_info=unexpected)
        raise
    logger.info("Retirement run done", extra=summary.as_dict())
    if summary.failed:
        metrics.add_metric(name="RetirementFailed", unit=MetricUnit.Count, value=len(summary.failed))
        raise RetirementError(
            f"Could not retire the old keys of {', '.join(summary.failed)}; the log says why. The next run tries again."
        )
    return summary.as_dict()
