"""The retirement decision (SPEC §4a), case by case: every key state against the moments just before
and just after each threshold, with the default policy, the immediate policies and the first
release's PREVIOUS_KEY_ACTION. Pure: no moto, no clock, no sleeping.

The story every case shares: the secret was created at BOOT, rotation 1 made key K1 (version V1),
rotation 2 began at T0 (version V2) and made key K2, now AWSCURRENT. The clock of a retiring key
starts at T0, when K2 became current (the earliest version naming it, or K2's CreateDate if later).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from lambda_function.errors import InvalidSettingsError
from lambda_function.retirement import Decision, Key, Kind, Role, Version, decide
from lambda_function.settings import RetirementPolicy, retirement_policy

BOOT = datetime(2025, 1, 1, tzinfo=UTC)
T0 = datetime(2025, 3, 1, 4, 0, tzinfo=UTC)
V1_CREATED = datetime(2025, 1, 1, 0, 5, tzinfo=UTC)
SECOND = timedelta(seconds=1)
H = timedelta(hours=1)
D = timedelta(days=1)

DEFAULT = RetirementPolicy()  # 24 h Active, 7 days Inactive, idle 1 h, held at most 168 h
DEACTIVATE_AT_FINISH = RetirementPolicy(active_hours=0)
DELETE_AT_FINISH = RetirementPolicy(active_hours=0, inactive_days=0)
KEEP = RetirementPolicy(active_hours=math.inf)

CURRENT_KEY = Key("AKIACURRENT000000002", "Active", T0, None)  # createSecret: seconds after V2
BOOTSTRAP = Version("v0", (), BOOT, None)


def previous_key(status: str = "Active", last_used: datetime | None = None) -> Key:
    return Key("AKIAPREVIOUS00000001", status, V1_CREATED + 3 * SECOND, last_used)


def versions(previous_names: str | None = "AKIAPREVIOUS00000001", *extra: Version) -> list[Version]:
    return [
        BOOTSTRAP,
        Version("v1", ("AWSPREVIOUS",), V1_CREATED, previous_names),
        Version("v2", ("AWSCURRENT",), T0 - 5 * SECOND, CURRENT_KEY.access_key_id),
        *extra,
    ]


@dataclass(frozen=True)
class Case:
    """One row: a key's state, the moment, the policy, and what must be decided for it.

    The user's other keys are `others` (AWSCURRENT's among them, unless the case has none usable).
    """

    key: Key
    now: datetime
    expected: Kind
    role: Role = Role.PREVIOUS
    policy: RetirementPolicy = DEFAULT
    versions: tuple[Version, ...] = tuple(versions())
    others: tuple[Key, ...] = (CURRENT_KEY,)


ADOPTED = Key("AKIACONSOLE000000000", "Active", BOOT - 300 * D, None)  # made in the SES console
FAILED = Key("AKIAFAILED0000000003", "Active", T0 + 30 * D + 5 * SECOND, None)  # rotation 3, cancelled
FAILED_VERSION = Version("v3", (), T0 + 30 * D, FAILED.access_key_id)
PENDING_VERSION = Version("v3", ("AWSPENDING",), T0 + 30 * D, FAILED.access_key_id)
PENDING_UNWRITTEN = Version("v3", ("AWSPENDING",), T0 + 30 * D, None)  # createSecret made the key, no put yet
USED_IN_GRACE = T0 + 23 * H + 30 * 60 * SECOND  # used 30 min before the grace period ends
SOON_AFTER = RetirementPolicy(active_hours=0.5)  # the last use at T0 +- 1 s is then within the idle hour

# Hand edits of the secret (PutSecretValue with the same key, to change `sender`): each is a new
# AWSCURRENT version naming the current key; the rotation's version V2 ends up unlabelled.
EDITED_ONCE = (
    BOOTSTRAP,
    Version("v1", (), V1_CREATED, previous_key().access_key_id),
    Version("v2", ("AWSPREVIOUS",), T0 - 5 * SECOND, CURRENT_KEY.access_key_id),
    Version("v3", ("AWSCURRENT",), T0 + 2 * H, CURRENT_KEY.access_key_id),
)
EDITED_TWICE = (
    BOOTSTRAP,
    Version("v1", (), V1_CREATED, previous_key().access_key_id),
    Version("v2", (), T0 - 5 * SECOND, CURRENT_KEY.access_key_id),
    Version("v3", ("AWSPREVIOUS",), T0 + 20 * H, CURRENT_KEY.access_key_id),
    Version("v4", ("AWSCURRENT",), T0 + 40 * H, CURRENT_KEY.access_key_id),
)
# A hand edit that puts another key in (made by hand an hour earlier): the rotation's key K2
# stopped being current at the edit.
HAND_KEY = Key("AKIAHANDMADE00000004", "Active", T0 + H, None)
EDITED_TO_HAND_KEY = (
    BOOTSTRAP,
    Version("v1", (), V1_CREATED, previous_key().access_key_id),
    Version("v2", ("AWSPREVIOUS",), T0 - 5 * SECOND, CURRENT_KEY.access_key_id),
    Version("v3", ("AWSCURRENT",), T0 + 2 * H, HAND_KEY.access_key_id),
)
# The first rotation (V1) was cancelled: AWSCURRENT is still the bootstrap version, naming no key.
FIRST_CANCELLED = (
    Version("v0", ("AWSCURRENT",), BOOT, None),
    Version("v1", (), V1_CREATED, FAILED.access_key_id),
)
FIRST_FAILED = replace(FAILED, created=V1_CREATED + 2 * SECOND)


def other_key(created: datetime) -> Key:
    return Key("AKIAOTHER00000000005", "Active", created, None)


TABLE: dict[str, Case] = {
    # A previous key, never used after the rotation: Active 24 h, Inactive 7 days, then deleted.
    "previous-unused-just-before-grace-ends": Case(previous_key(), T0 + 24 * H - SECOND, Kind.KEEP),
    "previous-unused-just-after-grace-ends": Case(previous_key(), T0 + 24 * H + SECOND, Kind.DEACTIVATE),
    # A use before the rotation is no evidence: every application used the key then.
    "previous-used-just-before-the-rotation-is-not-held": Case(
        previous_key(last_used=T0 - 10 * 60 * SECOND),
        T0 + 30 * 60 * SECOND + SECOND,
        Kind.DEACTIVATE,
        policy=SOON_AFTER,
    ),
    "previous-used-just-before-promotion-is-not-held": Case(
        previous_key(last_used=T0 - SECOND), T0 + 30 * 60 * SECOND + SECOND, Kind.DEACTIVATE, policy=SOON_AFTER
    ),
    "previous-used-just-after-promotion-is-held": Case(
        previous_key(last_used=T0 + SECOND), T0 + 30 * 60 * SECOND + SECOND, Kind.HOLD, policy=SOON_AFTER
    ),
    "previous-inactive-just-before-window-ends": Case(
        previous_key("Inactive"), T0 + 24 * H + 7 * D - SECOND, Kind.KEEP
    ),
    "previous-inactive-just-after-window-ends": Case(
        previous_key("Inactive"), T0 + 24 * H + 7 * D + SECOND, Kind.DELETE
    ),
    "previous-deactivated-by-hand-early-stays-inactive": Case(previous_key("Inactive"), T0 + H, Kind.KEEP),
    # Evidence of use: used after the rotation and within the last hour = held Active.
    "previous-in-use-at-grace-end-is-held": Case(
        previous_key(last_used=USED_IN_GRACE), T0 + 24 * H + SECOND, Kind.HOLD
    ),
    "previous-used-just-under-idle-is-held": Case(previous_key(last_used=T0 + 30 * H), T0 + 31 * H - SECOND, Kind.HOLD),
    "previous-used-just-over-idle-is-deactivated": Case(
        previous_key(last_used=T0 + 30 * H), T0 + 31 * H + SECOND, Kind.DEACTIVATE
    ),
    "previous-in-use-just-before-max-active-is-held": Case(
        previous_key(last_used=T0 + 168 * H - 60 * SECOND), T0 + 168 * H - SECOND, Kind.HOLD
    ),
    "previous-in-use-just-after-max-active-is-deactivated": Case(
        previous_key(last_used=T0 + 168 * H - 60 * SECOND), T0 + 168 * H + SECOND, Kind.DEACTIVATE
    ),
    # Deletion counts from the last use when it is later than the planned deactivation.
    "previous-inactive-used-late-just-before-window-ends": Case(
        previous_key("Inactive", T0 + 30 * H), T0 + 30 * H + 7 * D - SECOND, Kind.KEEP
    ),
    "previous-inactive-used-late-just-after-window-ends": Case(
        previous_key("Inactive", T0 + 30 * H), T0 + 30 * H + 7 * D + SECOND, Kind.DELETE
    ),
    # A key that pre-dates the first rotation (adopted console key) retires like a previous key.
    "adopted-just-before-grace-ends": Case(ADOPTED, T0 + 24 * H - SECOND, Kind.KEEP),
    "adopted-just-after-grace-ends": Case(ADOPTED, T0 + 24 * H + SECOND, Kind.DEACTIVATE),
    "adopted-used-after-the-rotation-is-held": Case(
        replace(ADOPTED, last_used=USED_IN_GRACE), T0 + 24 * H + SECOND, Kind.HOLD
    ),
    "adopted-inactive-just-before-window-ends": Case(
        replace(ADOPTED, status="Inactive"), T0 + 24 * H + 7 * D - SECOND, Kind.KEEP
    ),
    "adopted-inactive-just-after-window-ends": Case(
        replace(ADOPTED, status="Inactive"), T0 + 24 * H + 7 * D + SECOND, Kind.DELETE
    ),
    # Editing the secret by hand (same key) restarts nothing: the clock starts when the key first
    # became current, the earliest version naming it, however many edits followed.
    "previous-after-a-hand-edit-just-before-grace-ends": Case(
        previous_key(), T0 + 24 * H - SECOND, Kind.KEEP, versions=EDITED_ONCE
    ),
    "previous-after-a-hand-edit-just-after-grace-ends": Case(
        previous_key(), T0 + 24 * H + SECOND, Kind.DEACTIVATE, versions=EDITED_ONCE
    ),
    "previous-after-two-hand-edits-just-before-grace-ends": Case(
        previous_key(), T0 + 24 * H - SECOND, Kind.KEEP, versions=EDITED_TWICE
    ),
    "previous-after-two-hand-edits-just-after-grace-ends": Case(
        previous_key(), T0 + 24 * H + SECOND, Kind.DEACTIVATE, versions=EDITED_TWICE
    ),
    # A hand edit that puts in another key: the key it replaced retires from the edit on.
    "replaced-by-a-hand-edit-just-before-grace-ends": Case(
        CURRENT_KEY, T0 + 26 * H - SECOND, Kind.KEEP, versions=EDITED_TO_HAND_KEY, others=(HAND_KEY,)
    ),
    "replaced-by-a-hand-edit-just-after-grace-ends": Case(
        CURRENT_KEY, T0 + 26 * H + SECOND, Kind.DEACTIVATE, versions=EDITED_TO_HAND_KEY, others=(HAND_KEY,)
    ),
    # The key of a failed or cancelled rotation: deactivated at once, deleted after the window.
    "never-current-active-is-deactivated-at-once": Case(
        FAILED, FAILED.created + SECOND, Kind.DEACTIVATE, Role.NEVER_CURRENT, versions=(*versions(), FAILED_VERSION)
    ),
    "never-current-unnamed-orphan-is-deactivated": Case(
        FAILED, FAILED.created + SECOND, Kind.DEACTIVATE, Role.NEVER_CURRENT
    ),
    # Labels are writable, use is not: a never-current key in use is held like a previous key,
    # from its creation, until idle or for at most PREVIOUS_KEY_MAX_ACTIVE_HOURS.
    "never-current-in-use-is-held": Case(
        replace(FAILED, last_used=FAILED.created + 2 * SECOND),
        FAILED.created + 3 * SECOND,
        Kind.HOLD,
        Role.NEVER_CURRENT,
    ),
    "never-current-idle-since-last-use-is-deactivated": Case(
        replace(FAILED, last_used=FAILED.created + 2 * SECOND),
        FAILED.created + 2 * SECOND + H + SECOND,
        Kind.DEACTIVATE,
        Role.NEVER_CURRENT,
    ),
    "never-current-in-use-just-before-longest-hold": Case(
        replace(FAILED, last_used=FAILED.created + 168 * H - 2 * SECOND),
        FAILED.created + 168 * H - SECOND,
        Kind.HOLD,
        Role.NEVER_CURRENT,
    ),
    "never-current-in-use-at-longest-hold-is-deactivated": Case(
        replace(FAILED, last_used=FAILED.created + 168 * H - 2 * SECOND),
        FAILED.created + 168 * H,
        Kind.DEACTIVATE,
        Role.NEVER_CURRENT,
    ),
    "never-current-inactive-just-before-window-ends": Case(
        replace(FAILED, status="Inactive"), FAILED.created + 7 * D - SECOND, Kind.KEEP, Role.NEVER_CURRENT
    ),
    "never-current-inactive-just-after-window-ends": Case(
        replace(FAILED, status="Inactive"), FAILED.created + 7 * D + SECOND, Kind.DELETE, Role.NEVER_CURRENT
    ),
    # A rotation in progress: its key (stored or not yet) is left alone, however late.
    "pending-key-is-never-touched": Case(
        FAILED, T0 + 90 * D, Kind.KEEP, Role.PENDING, versions=(*versions(), PENDING_VERSION)
    ),
    "key-made-by-a-pending-createsecret-before-its-put-is-left-alone": Case(
        FAILED, T0 + 90 * D, Kind.KEEP, Role.PENDING, versions=(*versions(), PENDING_UNWRITTEN)
    ),
    "key-created-just-before-the-pending-version-is-never-current": Case(
        other_key(PENDING_UNWRITTEN.created - SECOND),
        T0 + 90 * D,
        Kind.DEACTIVATE,
        Role.NEVER_CURRENT,
        versions=(*versions(), PENDING_UNWRITTEN),
    ),
    "key-created-just-after-the-pending-version-is-left-alone": Case(
        other_key(PENDING_UNWRITTEN.created + SECOND),
        T0 + 90 * D,
        Kind.KEEP,
        Role.PENDING,
        versions=(*versions(), PENDING_UNWRITTEN),
    ),
    "pending-label-on-the-current-version-is-no-rotation-in-progress": Case(
        FAILED,
        FAILED.created + SECOND,
        Kind.DEACTIVATE,
        Role.NEVER_CURRENT,
        versions=(
            *versions()[:2],
            Version("v2", ("AWSCURRENT", "AWSPENDING"), T0 - 5 * SECOND, CURRENT_KEY.access_key_id),
        ),
    ),
    # No usable current key (the first rotation was cancelled): only a key created since the first
    # rotation began, and named by neither AWSCURRENT nor AWSPREVIOUS, can be a failed rotation's.
    "no-current-key-created-just-before-the-first-rotation-is-left-alone": Case(
        other_key(V1_CREATED - SECOND),
        V1_CREATED + 400 * D,
        Kind.KEEP,
        Role.UNRESOLVED,
        versions=FIRST_CANCELLED,
        others=(FIRST_FAILED,),
    ),
    "no-current-key-created-just-after-the-first-rotation-is-never-current": Case(
        other_key(V1_CREATED + SECOND),
        V1_CREATED + 400 * D,
        Kind.DEACTIVATE,
        Role.NEVER_CURRENT,
        versions=FIRST_CANCELLED,
        others=(FIRST_FAILED,),
    ),
    # Immediate policies (finishSecret): no grace, no hold, in use or not.
    "deactivate-at-finish": Case(previous_key(), T0 + SECOND, Kind.DEACTIVATE, policy=DEACTIVATE_AT_FINISH),
    "deactivate-at-finish-even-in-use": Case(
        previous_key(last_used=T0 + SECOND), T0 + 2 * SECOND, Kind.DEACTIVATE, policy=DEACTIVATE_AT_FINISH
    ),
    "deactivate-at-finish-then-inactive-7-days": Case(
        previous_key("Inactive"), T0 + 7 * D - SECOND, Kind.KEEP, policy=DEACTIVATE_AT_FINISH
    ),
    "deactivate-at-finish-then-deleted-after-7-days": Case(
        previous_key("Inactive"), T0 + 7 * D + SECOND, Kind.DELETE, policy=DEACTIVATE_AT_FINISH
    ),
    "delete-at-finish": Case(previous_key(), T0 + SECOND, Kind.DELETE, policy=DELETE_AT_FINISH),
    "delete-at-finish-also-never-current-keys": Case(
        FAILED, FAILED.created + SECOND, Kind.DELETE, Role.NEVER_CURRENT, policy=DELETE_AT_FINISH
    ),
    # keep (the first release's default): Active until the next rotation deletes it.
    "keep-previous-stays-active-indefinitely": Case(previous_key(), T0 + 1000 * D, Kind.KEEP, policy=KEEP),
    "keep-still-deactivates-a-never-current-key": Case(
        FAILED, FAILED.created + SECOND, Kind.DEACTIVATE, Role.NEVER_CURRENT, policy=KEEP
    ),
}


@pytest.mark.parametrize("case", TABLE.values(), ids=TABLE.keys())
def test_decision_table(case: Case) -> None:
    decision = decide([*case.others, case.key], case.versions, case.policy, case.now)
    (action,) = [a for a in decision.actions if a.access_key_id == case.key.access_key_id]
    assert (action.kind, action.role) == (case.expected, case.role), action.reason
    current = [a for a in decision.actions if a.access_key_id == decision.current_key_id]
    assert [(a.kind, a.role) for a in current] == ([(Kind.KEEP, Role.CURRENT)] if decision.current_key_id else [])


def test_every_hold_names_the_key_and_its_last_use() -> None:
    case = TABLE["previous-in-use-at-grace-end-is-held"]
    decision = decide([CURRENT_KEY, case.key], case.versions, case.policy, case.now)
    (hold,) = decision.holds
    assert hold.access_key_id == case.key.access_key_id
    assert hold.last_used == USED_IN_GRACE
    assert USED_IN_GRACE.isoformat(timespec="milliseconds") in hold.reason


# --------------------------------------------------------------------------------------------
# Without a usable current key nothing but never-current keys retire
# --------------------------------------------------------------------------------------------


def test_first_rotation_cancelled_deactivates_its_key_and_leaves_the_console_key_alone() -> None:
    cancelled = Version("v1", (), V1_CREATED, FAILED.access_key_id)
    failed = replace(FAILED, created=V1_CREATED + SECOND)
    state = [Version("v0", ("AWSCURRENT",), BOOT, None), cancelled]
    decision = decide([ADOPTED, failed], state, DEFAULT, V1_CREATED + 400 * D)
    kinds = {a.access_key_id: (a.kind, a.role) for a in decision.actions}
    assert kinds == {
        ADOPTED.access_key_id: (Kind.KEEP, Role.UNRESOLVED),
        failed.access_key_id: (Kind.DEACTIVATE, Role.NEVER_CURRENT),
    }
    assert decision.current_key_id is None
    # No current key: the newest Active key's age still reaches the compliance alarm.
    assert decision.current_key_age_days == pytest.approx(400 - 1 / 86400)


@pytest.mark.parametrize("status", ["Inactive", "deleted"])
def test_current_key_inactive_or_deleted_by_hand_retires_nothing_it_cannot_prove_unused(status: str) -> None:
    keys = [previous_key()] + ([replace(CURRENT_KEY, status="Inactive")] if status == "Inactive" else [])
    decision = decide(keys, versions(), DEFAULT, T0 + 30 * D)
    (previous,) = [a for a in decision.actions if a.access_key_id == previous_key().access_key_id]
    assert (previous.kind, previous.role) == (Kind.KEEP, Role.UNRESOLVED)
    assert decision.changes == ()


# --------------------------------------------------------------------------------------------
# Rollback, compliance figures
# --------------------------------------------------------------------------------------------


def test_after_a_rollback_the_key_rolled_away_from_stops_unless_in_use_and_its_window_counts_from_last_use() -> None:
    # AWSCURRENT moved back to V1 (K1); K2, newer, is AWSPREVIOUS now.
    rolled_back = [
        BOOTSTRAP,
        Version("v1", ("AWSCURRENT",), V1_CREATED, "AKIAPREVIOUS00000001"),
        Version("v2", ("AWSPREVIOUS",), T0 - 5 * SECOND, CURRENT_KEY.access_key_id),
    ]
    k1 = previous_key()
    k2 = replace(CURRENT_KEY, last_used=T0 + 2 * H)
    later = T0 + 2 * H + 5 * 60 * SECOND
    (action,) = [
        a for a in decide([k1, k2], rolled_back, DEFAULT, later).actions if a.access_key_id == k2.access_key_id
    ]
    assert (action.kind, action.role) == (Kind.DEACTIVATE, Role.PREVIOUS)
    inactive = replace(k2, status="Inactive")
    window_end = T0 + 2 * H + 7 * D
    for now, expected in ((window_end - SECOND, Kind.KEEP), (window_end + SECOND, Kind.DELETE)):
        (action,) = [a for a in decide([k1, inactive], rolled_back, DEFAULT, now).actions if a.role is Role.PREVIOUS]
        assert action.kind is expected


@pytest.mark.parametrize(("age", "too_old"), [(80 * D - SECOND, False), (80 * D + SECOND, True)])
def test_current_key_age_and_active_key_count(age: timedelta, too_old: bool) -> None:
    decision = decide([CURRENT_KEY, previous_key()], versions(), DEFAULT, CURRENT_KEY.created + age)
    assert decision.current_key_id == CURRENT_KEY.access_key_id
    assert decision.current_key_age_days == pytest.approx(age.total_seconds() / 86400)
    assert decision.active_keys == 2
    assert decision.current_key_too_old is too_old


# --------------------------------------------------------------------------------------------
# Stateless: hourly runs, missed runs and repeated runs converge
# --------------------------------------------------------------------------------------------


def simulate(
    run_every: timedelta, until: timedelta, used_until: timedelta | None = None
) -> list[tuple[timedelta, str]]:
    """Run the decision every `run_every` from T0 and apply it to a two-key user.

    K1 is used by a consumer with a cached secret until T0 + `used_until` (while it still works).
    Returns (time since T0, what happened to K1).
    """
    keys = {key.access_key_id: key for key in (CURRENT_KEY, previous_key())}
    k1 = previous_key().access_key_id
    events: list[tuple[timedelta, str]] = []
    now = T0
    while now <= T0 + until:
        if used_until is not None and k1 in keys and keys[k1].status == "Active" and now <= T0 + used_until:
            keys[k1] = replace(keys[k1], last_used=now - 60 * SECOND)
        for _ in range(2):  # a second, concurrent or repeated run must change nothing more
            for action in decide(list(keys.values()), versions(), DEFAULT, now).changes:
                assert action.access_key_id != CURRENT_KEY.access_key_id
                if action.kind is Kind.DEACTIVATE:
                    keys[action.access_key_id] = replace(keys[action.access_key_id], status="Inactive")
                else:
                    assert keys[action.access_key_id].status == "Inactive", "an Active key is never deleted"
                    del keys[action.access_key_id]
                events.append((now - T0, action.kind.value))
        now += run_every
    return events


def test_hourly_runs_deactivate_after_the_grace_period_and_delete_after_the_window() -> None:
    assert simulate(H, 10 * D) == [(24 * H, "deactivate"), (24 * H + 7 * D, "delete")]


def test_runs_missed_for_days_still_deactivate_before_deleting() -> None:
    assert simulate(50 * H, 20 * D) == [(50 * H, "deactivate"), (200 * H, "delete")]


def test_a_key_in_use_is_held_then_deleted_a_window_after_its_last_use() -> None:
    # Used every hour until T0 + 30 h: held from 24 h, deactivated once idle for an hour.
    assert simulate(H, 10 * D, used_until=30 * H) == [(31 * H, "deactivate"), (30 * H + 7 * D, "delete")]


def test_a_key_in_use_for_ever_is_stopped_at_the_maximum() -> None:
    assert simulate(H, 15 * D, used_until=15 * D) == [(168 * H, "deactivate"), (168 * H + 7 * D, "delete")]


# --------------------------------------------------------------------------------------------
# Settings: the durations, and PREVIOUS_KEY_ACTION for existing deployments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, RetirementPolicy(24, 7, 1, 168, 80)),
        ({"PREVIOUS_KEY_ACTION": "keep"}, RetirementPolicy(math.inf, 7)),
        ({"PREVIOUS_KEY_ACTION": "deactivate"}, RetirementPolicy(0, 7)),
        ({"PREVIOUS_KEY_ACTION": "Delete"}, RetirementPolicy(0, 0)),
        ({"PREVIOUS_KEY_ACTION": "delete", "PREVIOUS_KEY_INACTIVE_DAYS": "2"}, RetirementPolicy(0, 2)),
        ({"PREVIOUS_KEY_ACTION": "keep", "PREVIOUS_KEY_ACTIVE_HOURS": "12"}, RetirementPolicy(12, 7)),
        (
            {
                "PREVIOUS_KEY_ACTIVE_HOURS": "0.002",
                "PREVIOUS_KEY_INACTIVE_DAYS": "0.0001",
                "PREVIOUS_KEY_IDLE_HOURS": "0.5",
                "PREVIOUS_KEY_MAX_ACTIVE_HOURS": "2.5",
                "MAX_KEY_AGE_DAYS": "89.5",
            },
            RetirementPolicy(0.002, 0.0001, 0.5, 2.5, 89.5),
        ),
    ],
    ids=["defaults", "keep", "deactivate", "delete", "delete-but-2-days", "keep-but-12-hours", "fractions"],
)
def test_retirement_settings(env: dict[str, str], expected: RetirementPolicy) -> None:
    assert retirement_policy(env) == expected


@pytest.mark.parametrize(
    "env",
    [
        {"PREVIOUS_KEY_ACTIVE_HOURS": "-1"},
        {"PREVIOUS_KEY_INACTIVE_DAYS": "seven"},
        {"PREVIOUS_KEY_IDLE_HOURS": "nan"},
        {"PREVIOUS_KEY_MAX_ACTIVE_HOURS": "inf"},
        {"MAX_KEY_AGE_DAYS": "0"},
        {"PREVIOUS_KEY_ACTION": "archive"},
    ],
)
def test_bad_retirement_settings_are_refused_naming_the_variable(env: dict[str, str]) -> None:
    (name,) = env
    with pytest.raises(InvalidSettingsError, match=name):
        retirement_policy(env)


def _decision_for(policy: RetirementPolicy) -> Decision:
    return decide([CURRENT_KEY, previous_key()], versions(), policy, T0 + SECOND)


@pytest.mark.parametrize(
    ("action", "expected"), [("keep", Kind.KEEP), ("deactivate", Kind.DEACTIVATE), ("delete", Kind.DELETE)]
)
def test_previous_key_action_keeps_its_meaning_at_finish(action: str, expected: Kind) -> None:
    decision = _decision_for(retirement_policy({"PREVIOUS_KEY_ACTION": action}))
    (previous,) = [a for a in decision.actions if a.role is Role.PREVIOUS]
    assert previous.kind is expected
