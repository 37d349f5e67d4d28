"""The audit's decisions: from collected IAM and Secrets Manager state and `now`, the inventory
of SES SMTP users and the findings (SPEC §8). Pure: no AWS calls, no clock.

    report = audit(users, secrets, missing_users, now=datetime.now(UTC))
    for finding in report.findings:
        print(finding.severity, finding.code, finding.message)

`infra.cli.audit_state` collects the facts; `infra.cli.audit` prints the report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from lambda_function.secret_versions import CURRENT, PENDING

# Lowest first; `--fail-on` compares by this order.
SEVERITIES = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class KeyFacts:
    access_key_id: str
    status: str  # "Active" or "Inactive"
    created: datetime
    last_used: datetime | None  # GetAccessKeyLastUsed; None: never (or not recorded)
    last_used_service: str | None


@dataclass(frozen=True)
class UserFacts:
    """An IAM user and why it looks like an SES SMTP user."""

    name: str
    in_sending_group: bool
    inline_sending_policies: tuple[str, ...]  # inline policies that allow ses:SendRawEmail
    console_tag: bool  # tagged InvokedBy=SESConsole
    keys: tuple[KeyFacts, ...]


@dataclass(frozen=True)
class VersionFacts:
    """A labelled version of a secret: what it names, never its passwords (only their kind)."""

    version_id: str
    labels: tuple[str, ...]
    created: datetime | None
    username: str | None  # the access key ID the version names
    password_versions: tuple[int | None, ...]  # smtp_password.password_version of each stored password


@dataclass(frozen=True)
class SecretFacts:
    """A secret that looks like ours: its AWSCURRENT value is a JSON object with iam_user_name."""

    arn: str
    name: str
    iam_user_name: str
    rotation_enabled: bool
    rotation_lambda_arn: str | None
    last_rotated: datetime | None
    versions: tuple[VersionFacts, ...]

    def version_with(self, label: str) -> VersionFacts | None:
        return next((v for v in self.versions if label in v.labels), None)


@dataclass(frozen=True)
class AuditPolicy:
    """The thresholds of the findings (the CLI's options)."""

    max_key_age: timedelta = timedelta(days=90)  # Security Hub IAM.3
    grace: timedelta = timedelta(hours=24)  # two Active keys are normal this long after a rotation
    stuck_after: timedelta = timedelta(hours=2)  # a rotation's four steps take minutes, not hours


@dataclass(frozen=True)
class KeyReference:
    secret_arn: str
    secret_name: str
    version_id: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class KeyReport:
    facts: KeyFacts
    age_days: float
    named_by: tuple[KeyReference, ...]


@dataclass(frozen=True)
class UserReport:
    name: str
    found_by: tuple[str, ...]  # sending_group, inline_policy, console_tag, secret
    keys: tuple[KeyReport, ...]


@dataclass(frozen=True)
class SecretReport:
    facts: SecretFacts
    rotation_state: str  # see ROTATION_STATES


ROTATION_STATES = ("disabled", "never_rotated", "rotated", "in_progress", "stuck")


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    user: str
    message: str
    access_key_id: str | None = None
    secret_arn: str | None = None
    control: str | None = None  # the compliance control it fails, e.g. IAM.3


# code -> severity; the JSON schema lists the same codes.
FINDINGS = {
    "active_key_too_old": "medium",  # Security Hub rates IAM.3 medium
    "two_active_keys": "low",
    "inline_sending_policy": "low",
    "v2_password": "high",
    "key_named_by_no_secret": "medium",
    "rotation_stuck": "high",
    "secret_user_missing": "high",
}


@dataclass(frozen=True)
class Report:
    now: datetime
    policy: AuditPolicy
    users: tuple[UserReport, ...]
    secrets: tuple[SecretReport, ...]
    findings: tuple[Finding, ...]

    def worst_at_least(self, severity: str) -> bool:
        """Whether any finding is at least `severity` (the `--fail-on` test)."""
        floor = SEVERITIES.index(severity)
        return any(SEVERITIES.index(f.severity) >= floor for f in self.findings)


def _finding(code: str, user: str, message: str, **where: str | None) -> Finding:
    return Finding(code=code, severity=FINDINGS[code], user=user, message=message, **where)


def _references(secrets: Iterable[SecretFacts]) -> dict[str, list[KeyReference]]:
    """Access key ID -> the labelled versions that name it."""
    named: dict[str, list[KeyReference]] = {}
    for secret in secrets:
        for version in secret.versions:
            if version.username and version.labels:
                reference = KeyReference(secret.arn, secret.name, version.version_id, version.labels)
                named.setdefault(version.username, []).append(reference)
    return named


def rotation_state(secret: SecretFacts, now: datetime, policy: AuditPolicy) -> str:
    pending = secret.version_with(PENDING)
    if pending is not None and CURRENT not in pending.labels:
        started = pending.created or now
        return "stuck" if now - started >= policy.stuck_after else "in_progress"
    if not secret.rotation_enabled:
        return "disabled"
    current = secret.version_with(CURRENT)
    return "rotated" if current is not None and current.username else "never_rotated"


def _user_findings(
    user: UserFacts, keys: Sequence[KeyReport], bound: bool, now: datetime, policy: AuditPolicy
) -> list[Finding]:
    found: list[Finding] = []
    for name in user.inline_sending_policies:
        found.append(
            _finding(
                "inline_sending_policy",
                user.name,
                f"Inline policy {name} grants ses:SendRawEmail (the SES console's pre-2024 pattern); "
                f"move the user to the sending group: ses-smtp-rotation adopt {user.name}.",
            )
        )
    for key in keys:
        key_id = key.facts.access_key_id
        if key.facts.status == "Active" and now - key.facts.created > policy.max_key_age:
            found.append(
                _finding(
                    "active_key_too_old",
                    user.name,
                    f"Active access key {key_id} is {key.age_days:.0f} days old (IAM.3 fails after "
                    f"{policy.max_key_age.days}); rotate it.",
                    access_key_id=key_id,
                    control="IAM.3",
                )
            )
        if not key.named_by:
            advice = (
                "an orphan of a failed rotation, or made by hand: delete it once GetAccessKeyLastUsed shows no use"
                if bound
                else "no rotation manages it: put the user under a rotated secret or delete the key"
            )
            found.append(
                _finding(
                    "key_named_by_no_secret",
                    user.name,
                    f"Access key {key_id} ({key.facts.status}) is named by no secret version; {advice}.",
                    access_key_id=key_id,
                )
            )
    active = sorted((k.facts for k in keys if k.facts.status == "Active"), key=lambda k: k.created)
    if len(active) >= 2 and now - active[-1].created > policy.grace:
        found.append(
            _finding(
                "two_active_keys",
                user.name,
                f"{len(active)} Active access keys ({', '.join(k.access_key_id for k in active)}), the newest "
                f"{(now - active[-1].created).total_seconds() / 3600:.0f} hours old (grace "
                f"{policy.grace.total_seconds() / 3600:g} h); deactivate the keys AWSCURRENT does not name once "
                "applications use the current one (CIS 1.13: one active key per user).",
                control="CIS 1.13",
            )
        )
    return found


def _secret_findings(secret: SecretReport, now: datetime) -> list[Finding]:
    facts = secret.facts
    found: list[Finding] = []
    current = facts.version_with(CURRENT)
    if current is not None and 2 in current.password_versions:
        found.append(
            _finding(
                "v2_password",
                facts.iam_user_name,
                f"Secret {facts.name} holds a pre-2019 (v2) SMTP password in AWSCURRENT; rotate it to store a v4 one.",
                access_key_id=current.username,
                secret_arn=facts.arn,
            )
        )
    if secret.rotation_state == "stuck":
        pending = facts.version_with(PENDING)
        assert pending is not None  # "stuck" means there is one
        since = f" since {pending.created:%Y-%m-%d %H:%M} UTC" if pending.created else ""
        found.append(
            _finding(
                "rotation_stuck",
                facts.iam_user_name,
                f"Secret {facts.name} has AWSPENDING on version {pending.version_id}{since}: later rotations "
                "fail until it completes or is cancelled (see the runbook).",
                secret_arn=facts.arn,
            )
        )
    return found


def audit(
    users: Iterable[UserFacts],
    secrets: Iterable[SecretFacts],
    missing_users: Iterable[str] = (),
    *,
    now: datetime,
    policy: AuditPolicy | None = None,
) -> Report:
    """Decide the inventory and findings. `missing_users`: users a secret names that IAM does not have."""
    policy = policy or AuditPolicy()
    secrets = sorted(secrets, key=lambda s: s.name)
    named = _references(secrets)
    bound_users = {s.iam_user_name for s in secrets}
    user_reports: list[UserReport] = []
    findings: list[Finding] = []
    for user in sorted(users, key=lambda u: u.name):
        keys = tuple(
            KeyReport(k, (now - k.created).total_seconds() / 86400, tuple(named.get(k.access_key_id, ())))
            for k in sorted(user.keys, key=lambda k: k.created)
        )
        found_by = tuple(
            reason
            for reason, applies in (
                ("sending_group", user.in_sending_group),
                ("inline_policy", bool(user.inline_sending_policies)),
                ("console_tag", user.console_tag),
                ("secret", user.name in bound_users),
            )
            if applies
        )
        user_reports.append(UserReport(user.name, found_by, keys))
        findings += _user_findings(user, keys, user.name in bound_users, now, policy)
    secret_reports = tuple(SecretReport(s, rotation_state(s, now, policy)) for s in secrets)
    for report in secret_reports:
        findings += _secret_findings(report, now)
    for name in sorted(set(missing_users)):
        for secret in (s for s in secrets if s.iam_user_name == name):
            findings.append(
                _finding(
                    "secret_user_missing",
                    name,
                    f"Secret {secret.name} names IAM user {name}, which does not exist; its rotation fails.",
                    secret_arn=secret.arn,
                )
            )
    findings.sort(key=lambda f: (-SEVERITIES.index(f.severity), f.user, f.code, f.access_key_id or ""))
    return Report(now, policy, tuple(user_reports), secret_reports, tuple(findings))
