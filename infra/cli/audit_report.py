"""The audit report for people (a table) and for machines (JSON, schema ``audit.schema.json``).

The table escapes every value (`infra.cli.printable`); the JSON needs no more than ``json.dumps``.
The JSON document is stable: ``schema_version`` changes only when a field is removed or changes
meaning; new fields may appear. Times are ISO 8601 in UTC. Passwords never appear, only the
signature version of each stored password.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from infra.cli.inventory import SEVERITIES, KeyReport, Report, SecretReport, UserReport
from infra.cli.printable import printable
from lambda_function.secret_versions import CURRENT

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("audit.schema.json")


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _key(key: KeyReport) -> dict[str, Any]:
    return {
        "access_key_id": key.facts.access_key_id,
        "status": key.facts.status,
        "created": _time(key.facts.created),
        "age_days": round(key.age_days, 2),
        "last_used": _time(key.facts.last_used),
        "last_used_service": key.facts.last_used_service,
        "named_by": [
            {
                "secret_arn": r.secret_arn,
                "secret_name": r.secret_name,
                "version_id": r.version_id,
                "labels": list(r.labels),
            }
            for r in key.named_by
        ],
    }


def _user(user: UserReport) -> dict[str, Any]:
    return {"name": user.name, "found_by": list(user.found_by), "keys": [_key(k) for k in user.keys]}


def _secret(secret: SecretReport) -> dict[str, Any]:
    facts = secret.facts
    return {
        "arn": facts.arn,
        "name": facts.name,
        "iam_user_name": facts.iam_user_name,
        "rotation_enabled": facts.rotation_enabled,
        "rotation_lambda_arn": facts.rotation_lambda_arn,
        "last_rotated": _time(facts.last_rotated),
        "rotation_state": secret.rotation_state,
        "versions": [
            {
                "version_id": v.version_id,
                "labels": list(v.labels),
                "created": _time(v.created),
                "access_key_id": v.username,
                "password_versions": list(v.password_versions),
            }
            for v in facts.versions
        ],
    }


def to_json(report: Report, unreadable: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    counts = {severity: 0 for severity in reversed(SEVERITIES)}
    for finding in report.findings:
        counts[finding.severity] += 1
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": _time(report.now),
        "thresholds": {
            "max_key_age_days": report.policy.max_key_age.total_seconds() / 86400,
            "grace_hours": report.policy.grace.total_seconds() / 3600,
            "stuck_after_hours": report.policy.stuck_after.total_seconds() / 3600,
        },
        "users": [_user(u) for u in report.users],
        "secrets": [_secret(s) for s in report.secrets],
        "unreadable_secrets": [{"name": name, "error": code} for name, code in unreadable],
        "findings": [
            {
                "code": f.code,
                "severity": f.severity,
                "user": f.user,
                "access_key_id": f.access_key_id,
                "secret_arn": f.secret_arn,
                "control": f.control,
                "message": f.message,
            }
            for f in report.findings
        ],
        "summary": {"users": len(report.users), "secrets": len(report.secrets), "findings": counts},
    }


def _columns(cells: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart; the last column is not padded. Every cell is escaped
    (`printable`): secrets' values, names and messages built from them may hold terminal controls."""
    rows = [[printable(cell) for cell in row] for row in cells]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]) for row in rows]


def _day(moment: datetime | None) -> str:
    return "never" if moment is None else f"{moment:%Y-%m-%d}"


def _named_by(key: KeyReport) -> str:
    return ", ".join(f"{r.secret_name} {r.version_id[:8]} {'+'.join(r.labels)}" for r in key.named_by) or "-"


def to_table(report: Report, unreadable: Sequence[tuple[str, str]] = ()) -> str:
    lines = [f"SES SMTP users ({len(report.users)})"]
    rows = [["user", "found by", "access key", "status", "age", "last used", "named by"]]
    for user in report.users:
        if not user.keys:
            rows.append([user.name, ", ".join(user.found_by), "(no keys)", "", "", "", ""])
        for index, key in enumerate(user.keys):
            first = index == 0  # the user's name and reasons once, on its first key's row
            rows.append(
                [
                    user.name if first else "",
                    ", ".join(user.found_by) if first else "",
                    key.facts.access_key_id,
                    key.facts.status,
                    f"{key.age_days:.0f}d",
                    _day(key.facts.last_used),
                    _named_by(key),
                ]
            )
    lines += ["  " + line for line in _columns(rows)]

    lines += ["", f"Secrets ({len(report.secrets)})"]
    rows = [["secret", "iam user", "rotation", "AWSCURRENT since", "AWSCURRENT key"]]
    for secret in report.secrets:
        current = secret.facts.version_with(CURRENT)
        rows.append(
            [
                secret.facts.name,
                secret.facts.iam_user_name,
                secret.rotation_state.replace("_", " "),
                _day(current.created) if current and current.created else "-",
                (current.username if current else None) or "-",
            ]
        )
    lines += ["  " + line for line in _columns(rows)]
    for name, code in unreadable:
        lines.append(f"  {printable(name)}: not readable ({printable(code)}); not audited")

    lines += ["", f"Findings ({len(report.findings)})"]
    if report.findings:
        rows = [["severity", "finding", "user", "message"]]
        rows += [[f.severity, f.code, f.user, f.message] for f in report.findings]
        lines += ["  " + line for line in _columns(rows)]
    else:
        lines.append("  none")
    return "\n".join(lines)
