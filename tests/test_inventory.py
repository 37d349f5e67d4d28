"""The audit's decisions, case by case: pure functions of the collected state and `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from infra.cli.inventory import AuditPolicy, KeyFacts, SecretFacts, UserFacts, VersionFacts, audit

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
USER = "ses-smtp-app"


def key(key_id: str, age: timedelta, status: str = "Active") -> KeyFacts:
    return KeyFacts(key_id, status, NOW - age, None, None)


def user(*keys: KeyFacts, inline: tuple[str, ...] = ()) -> UserFacts:
    return UserFacts(USER, True, inline, False, keys)


def version(
    version_id: str,
    labels: tuple[str, ...],
    key_id: str | None,
    age: timedelta = timedelta(days=1),
    passwords: tuple[int | None, ...] = (4,),
) -> VersionFacts:
    return VersionFacts(version_id, labels, NOW - age, key_id, passwords)


def secret(*versions: VersionFacts, rotation_enabled: bool = True, iam_user_name: str = USER) -> SecretFacts:
    return SecretFacts("arn:secret", "ses-smtp/app", iam_user_name, rotation_enabled, None, None, versions)


def codes(users: list[UserFacts], secrets: list[SecretFacts], missing: tuple[str, ...] = ()) -> list[str]:
    return [f.code for f in audit(users, secrets, missing, now=NOW).findings]


NAMED = secret(version("v1", ("AWSCURRENT",), "AKIA1"), version("v0", ("AWSPREVIOUS",), "AKIA0"))


@pytest.mark.parametrize(
    ("age_days", "status", "expected"),
    [(89, "Active", []), (91, "Active", ["active_key_too_old"]), (200, "Inactive", [])],
)
def test_only_an_active_key_past_the_limit_fails_iam3(age_days: int, status: str, expected: list[str]) -> None:
    assert codes([user(key("AKIA1", timedelta(days=age_days), status))], [NAMED]) == expected


@pytest.mark.parametrize(
    ("newest_age", "older_status", "expected"),
    [
        (timedelta(hours=23), "Active", []),
        (timedelta(hours=25), "Active", ["two_active_keys"]),
        (timedelta(days=30), "Inactive", []),
    ],
)
def test_two_active_keys_are_a_finding_only_outside_the_grace_window(
    newest_age: timedelta, older_status: str, expected: list[str]
) -> None:
    keys = (key("AKIA0", timedelta(days=40), older_status), key("AKIA1", newest_age))
    assert codes([user(*keys)], [NAMED]) == expected


def test_grace_window_is_a_setting() -> None:
    keys = (key("AKIA0", timedelta(days=40)), key("AKIA1", timedelta(hours=25)))
    report = audit([user(*keys)], [NAMED], now=NOW, policy=AuditPolicy(grace=timedelta(hours=48)))
    assert report.findings == ()


def test_a_key_named_only_by_an_unlabelled_version_is_named_by_no_secret() -> None:
    facts = secret(version("v2", ("AWSCURRENT",), "AKIA2"), version("v1", (), "AKIA1"))
    assert codes([user(key("AKIA2", timedelta(days=1)), key("AKIA1", timedelta(hours=1)))], [facts]) == [
        "key_named_by_no_secret"
    ]


@pytest.mark.parametrize(
    ("pending_age", "state", "expected"),
    [(timedelta(minutes=30), "in_progress", []), (timedelta(hours=3), "stuck", ["rotation_stuck"])],
)
def test_a_pending_version_becomes_a_stuck_rotation_after_the_threshold(
    pending_age: timedelta, state: str, expected: list[str]
) -> None:
    facts = secret(
        version("v1", ("AWSCURRENT",), "AKIA1", timedelta(days=3)),
        version("v2", ("AWSPENDING",), "AKIA2", pending_age),
    )
    keys = (key("AKIA1", timedelta(days=3)), key("AKIA2", pending_age))
    report = audit([user(*keys)], [facts], now=NOW)
    assert [s.rotation_state for s in report.secrets] == [state]
    assert [f.code for f in report.findings] == expected


def test_pending_on_the_current_version_is_a_finished_rotation() -> None:
    facts = secret(version("v1", ("AWSCURRENT", "AWSPENDING"), "AKIA1", timedelta(days=3)))
    report = audit([user(key("AKIA1", timedelta(days=3)))], [facts], now=NOW)
    assert [s.rotation_state for s in report.secrets] == ["rotated"]
    assert report.findings == ()


@pytest.mark.parametrize(
    ("current", "previous", "expected"),
    [((2,), (4,), ["v2_password"]), ((4, 2), (4,), ["v2_password"]), ((4,), (2,), []), ((), (), [])],
    ids=["current-v2", "regional-v2", "previous-only", "no-password"],
)
def test_a_v2_password_in_awscurrent_is_a_finding(
    current: tuple[int, ...], previous: tuple[int, ...], expected: list[str]
) -> None:
    facts = secret(
        version("v1", ("AWSCURRENT",), "AKIA1", passwords=current),
        version("v0", ("AWSPREVIOUS",), "AKIA0", passwords=previous),
    )
    assert codes([user(key("AKIA1", timedelta(days=1)))], [facts]) == expected


def test_a_secret_naming_a_missing_user() -> None:
    assert codes([], [secret(iam_user_name="gone")], missing=("gone",)) == ["secret_user_missing"]


def test_findings_come_worst_first_and_fail_on_compares_severities() -> None:
    facts = secret(version("v1", ("AWSCURRENT",), "AKIA1", passwords=(2,)))
    report = audit([user(key("AKIA1", timedelta(days=1)), inline=("AmazonSesSendingAccess",))], [facts], now=NOW)
    assert [(f.severity, f.code) for f in report.findings] == [
        ("high", "v2_password"),
        ("low", "inline_sending_policy"),
    ]
    assert report.worst_at_least("high") and report.worst_at_least("low")
    assert not report.worst_at_least("critical")
