"""Retiring old access keys (SPEC §4a): a pure function of IAM and Secrets Manager state and `now`.

    decision = decide(keys, versions, policy, now)
    for action in decision.actions:      # one per key of the bound user
        print(action.kind, action.access_key_id, action.reason)

Nothing here calls AWS or reads the clock: the retirement function, finishSecret (immediate
policies), the demo and the operator tools all pass in what they read, and tests pass in a table.

**Which keys retire.** AWSCURRENT's key is never touched, nor AWSPENDING's while a rotation is in
progress (nor any key created since that rotation began: createSecret may have made it and not
yet stored it). Every other key of the bound user is one of:

- *previous*: AWSPREVIOUS names it, or it is older than the current key (it may have been current
  before someone edited the secret, which moves AWSPREVIOUS onto a version with the same key); a
  key that pre-dates the first rotation (an adopted console key) is older than the current key too.
  It retires: Active for `active_hours`, then Inactive for `inactive_days`, then deleted.
- *never current*: newer than the current key and named by neither AWSCURRENT nor AWSPREVIOUS:
  the key of a failed or cancelled rotation. No application was given its password through
  AWSCURRENT, so it is deactivated at once and deleted after the rollback window, unless it is in
  use: labels are writable, so a key used since it was made is held like a previous key (its clock
  starts at its creation). A failed rotation's key was never used and still stops at once.

Without a usable current key (no rotation has succeeded yet, or AWSCURRENT names a key the user no
longer has, or one that is Inactive) nothing but never-current keys retire: applications may
depend on whatever key they have. A key is then never current when it was created at or after the
first rotation began (the oldest version that names a key).

**The clock, without state.** IAM does not record when a key was deactivated, and Secrets Manager
does not record when a label moved. The clock of a retiring key starts at `T0`, when AWSCURRENT's
key became current: the CreatedDate of the earliest version naming that key, or the key's
CreateDate if later (`became_current`). A rotation creates its version when it begins and the
key in createSecret, and moves the label at finishSecret, normally seconds later (at most the
rotation window when Secrets Manager retries), so the grace period can only be shorter by that.

Why the earliest version naming the key, not AWSCURRENT's own: editing the secret by hand
(PutSecretValue of the same key, to change `sender`, say) makes a new AWSCURRENT version. Dating
`T0` by it would restart the previous key's grace at every edit, and edits every 20 hours would
keep two keys Active for ever (CIS 1.13). The versions are all listed already
(ListSecretVersionIds), and the ones to read are few: none in the usual case (AWSCURRENT's version
is the rotation's, and AWSPREVIOUS names the key it replaced), at most one per edit since the
rotation otherwise (`retirement_executor`). Whether Secrets Manager dates the rotation's version
by RotateSecret (before the key) or by the PutSecretValue that fills it (seconds after; moto
does), `T0` is within seconds of the rotation. The secret's LastRotatedDate (ListSecrets) was
considered and left out: AWS documents it as the last *successful rotation*, null once rotation is
turned off (CancelRotateSecret, which the runbook uses), and it says nothing of which key is
current; an edit that puts in another key (a console key, by hand) would then date the key it
replaced from the rotation rather than from the edit. With the earliest version naming the key,
such an edit is a new key whose `T0` is the edit, and the key it replaced retires from there. A
version that names the key but was never current (a cancelled rotation whose value someone then
copied into AWSCURRENT by hand, then edited) can date `T0` early: the grace is then shorter, never
longer.

After a rollback `T0` is the old version's date, so the key rolled away from has no grace left:
it stops at the next run unless it is in use, and its deletion counts from its last use.

- Planned deactivation: `T0 + active_hours`. A key used after `T0` and within the last
  `idle_hours` is *held* Active (announced on every run) until it goes idle or until
  `T0 + max_active_hours`. With `active_hours = 0` (incident response) nothing is held.
- Deletion: `inactive_days` after the later of the planned deactivation and the last use. The
  last use bounds the real deactivation time of a held key from below, and no use is recorded
  once a key is Inactive, so the rule gives the same answer on every run, repeated or late.
- An Active key is deactivated first, never deleted (unless `inactive_days` is 0): if runs were
  missed, the next run deactivates and the one after deletes, so an operator always gets an
  Inactive period in which `rollback` can still bring the key back.
- A key someone deactivated early stays Inactive; this function never reactivates a key.

Every run recomputes everything from the state, so repeated runs, concurrent runs and a run after
missed runs converge on the same keys. `GetAccessKeyLastUsed` is evidence, never the only
safeguard: AWS does not document how SMTP use shows in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from lambda_function.settings import RetirementPolicy

# createSecret stores the version naming a new key within seconds of making it (see
# retirement_executor): a version dated later than this after its key was written by someone else.
STORED_WITHIN = timedelta(minutes=1)

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"
ACTIVE = "Active"
INACTIVE = "Inactive"


@dataclass(frozen=True)
class Key:
    """An access key of the bound IAM user, as IAM reports it."""

    access_key_id: str
    status: str  # "Active" or "Inactive"
    created: datetime
    last_used: datetime | None  # GetAccessKeyLastUsed's LastUsedDate; None = never used


@dataclass(frozen=True)
class Version:
    """A version of the secret: its labels, its CreatedDate and the key its `username` names."""

    version_id: str
    labels: tuple[str, ...]
    created: datetime
    access_key_id: str | None  # None: no value, or no username


class Kind(StrEnum):
    KEEP = "keep"  # nothing to do now
    HOLD = "hold"  # due for deactivation, but kept Active because it is in use: say so
    DEACTIVATE = "deactivate"
    DELETE = "delete"


class Role(StrEnum):
    CURRENT = "current"
    PENDING = "pending"  # a rotation in progress
    PREVIOUS = "previous"  # retiring: was current, or pre-dates the first rotation
    NEVER_CURRENT = "never-current"  # a failed or cancelled rotation's key
    UNRESOLVED = "unresolved"  # no usable current key: left alone


@dataclass(frozen=True)
class Action:
    kind: Kind
    access_key_id: str
    role: Role
    reason: str
    status: str  # the key's status when decided
    last_used: datetime | None
    # When the next step is due (deactivation or deletion); None when there is none. For a hold:
    # when the key stops if it is not used again (its last use + idle_hours, or `latest`).
    due: datetime | None = None
    in_use: bool = False  # held because in use, or stopped at the longest hold although in use
    latest: datetime | None = None  # a hold: when it stops, in use or not (T0 + max_active_hours)


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    current_key_id: str | None  # AWSCURRENT's key when the user has it
    current_key_age_days: float | None  # its age; without one, the newest Active key's
    active_keys: int
    max_key_age_days: float
    # AWSCURRENT's username names a key that the user no longer has, or one that is Inactive
    current_key_unusable: bool = False

    @property
    def current_key_too_old(self) -> bool:
        return self.current_key_age_days is not None and self.current_key_age_days > self.max_key_age_days

    @property
    def changes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind in (Kind.DEACTIVATE, Kind.DELETE))

    @property
    def holds(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind is Kind.HOLD)


def _hours(value: float) -> timedelta | None:
    """A duration in hours; None for infinity (keep until the next rotation)."""
    return None if math.isinf(value) else timedelta(hours=value)


def _labelled(versions: Sequence[Version], label: str) -> Version | None:
    return next((v for v in versions if label in v.labels), None)


def _at(moment: datetime | None) -> str:
    return "never" if moment is None else moment.isoformat(timespec="milliseconds")


def decide(keys: Sequence[Key], versions: Sequence[Version], policy: RetirementPolicy, now: datetime) -> Decision:
    """One action per key of the bound user, with its reason, and the compliance figures.

    `versions` may leave out versions never read, as long as every labelled version is in; when
    AWSCURRENT's version is newer than its key and AWSPREVIOUS names that key too (an edit), every
    version from the key's creation on (and the newest before it, the rotation's); when no usable
    current key exists, the oldest version that names a key.
    """
    by_id = {key.access_key_id: key for key in keys}
    current_version = _labelled(versions, CURRENT)
    previous_version = _labelled(versions, PREVIOUS)
    pending_version = _labelled(versions, PENDING)
    if pending_version is not None and current_version is not None and pending_version is current_version:
        pending_version = None  # AWSPENDING left on AWSCURRENT: no rotation in progress

    current_id = current_version.access_key_id if current_version else None
    current_key = by_id.get(current_id) if current_id else None
    usable = current_key is not None and current_key.status == ACTIVE
    previous_id = previous_version.access_key_id if previous_version else None

    actions: list[Action] = []
    for key in sorted(keys, key=lambda k: k.created):
        if current_key is not None and key.access_key_id == current_key.access_key_id:
            actions.append(_action(Kind.KEEP, key, Role.CURRENT, "AWSCURRENT's key: never touched"))
        elif pending_version is not None and (
            key.access_key_id == pending_version.access_key_id or key.created >= pending_version.created
        ):
            reason = f"a rotation is in progress (AWSPENDING on version {pending_version.version_id})"
            actions.append(_action(Kind.KEEP, key, Role.PENDING, reason))
        elif current_key is not None and usable:
            if key.access_key_id == previous_id or key.created < current_key.created:
                actions.append(_retire_previous(key, became_current(current_key, versions), policy, now))
            else:
                actions.append(_retire_never_current(key, policy, now))
        else:
            first_rotation = min((v.created for v in versions if v.access_key_id), default=None)
            # The version naming a failed rotation's key may be dated by RotateSecret (before
            # createSecret made the key) or by the put that filled it (just after it).
            named = min((v.created for v in versions if v.access_key_id == key.access_key_id), default=None)
            made_for = named is not None and key.created >= named - STORED_WITHIN
            since_first = first_rotation is not None and key.created >= first_rotation
            if key.access_key_id not in (current_id, previous_id) and (since_first or made_for):
                actions.append(_retire_never_current(key, policy, now))
            else:
                why = (
                    "AWSCURRENT names no key of this user"
                    if current_key is None
                    else f"AWSCURRENT's key {current_key.access_key_id} is {current_key.status}"
                )
                actions.append(
                    _action(Kind.KEEP, key, Role.UNRESOLVED, f"{why}: nothing retires until a rotation succeeds")
                )

    # Without a current key, the newest Active key's age: a writer who points AWSCURRENT at no key
    # must not silence the compliance signal.
    aged = current_key or max((k for k in keys if k.status == ACTIVE), key=lambda k: k.created, default=None)
    age = (now - aged.created).total_seconds() / 86400 if aged is not None else None
    return Decision(
        actions=tuple(actions),
        current_key_id=current_key.access_key_id if current_key is not None else None,
        current_key_age_days=age,
        active_keys=sum(1 for key in keys if key.status == ACTIVE),
        max_key_age_days=policy.max_key_age_days,
        current_key_unusable=current_id is not None and not usable,
    )


def became_current(key: Key, versions: Sequence[Version]) -> datetime:
    """`T0`, when `key` became AWSCURRENT's key: the earliest version naming it, or the key's own
    creation if later (the rotation's version is created before createSecret makes the key).

    The earliest, not AWSCURRENT's own version: an edit by hand (PutSecretValue naming the same
    key) makes a new AWSCURRENT version, and must not restart the previous key's grace period.
    """
    named = [version.created for version in versions if version.access_key_id == key.access_key_id]
    return max(key.created, min(named)) if named else key.created


def _action(
    kind: Kind,
    key: Key,
    role: Role,
    reason: str,
    due: datetime | None = None,
    *,
    in_use: bool = False,
    latest: datetime | None = None,
) -> Action:
    return Action(kind, key.access_key_id, role, reason, key.status, key.last_used, due, in_use, latest)


def _deletion(key: Key, role: Role, anchor: datetime, policy: RetirementPolicy, now: datetime) -> Action:
    """An Inactive key: delete it `inactive_days` after `anchor` (or after its last use, if later)."""
    start = max(anchor, key.last_used) if key.last_used is not None else anchor
    due = start + timedelta(days=policy.inactive_days)
    if now >= due:
        return _action(Kind.DELETE, key, role, f"Inactive since {_at(start)} or later; rollback window over", due)
    return _action(Kind.KEEP, key, role, f"Inactive: rollback window until {_at(due)}", due)


def _stop(key: Key, role: Role, why: str, policy: RetirementPolicy, *, in_use: bool = False) -> Action:
    """An Active key whose time is up: deactivate it, or delete it when there is no Inactive period."""
    if policy.inactive_days == 0:
        return _action(Kind.DELETE, key, role, f"{why}; PREVIOUS_KEY_INACTIVE_DAYS is 0", in_use=in_use)
    return _action(Kind.DEACTIVATE, key, role, why, in_use=in_use)


def _retire_previous(key: Key, t0: datetime, policy: RetirementPolicy, now: datetime) -> Action:
    active = _hours(policy.active_hours)
    if active is None:  # keep: Active until the next rotation's createSecret deletes it
        if key.status == ACTIVE:
            return _action(
                Kind.KEEP, key, Role.PREVIOUS, "kept Active until the next rotation (PREVIOUS_KEY_ACTION=keep)"
            )
        return _action(
            Kind.KEEP, key, Role.PREVIOUS, "Inactive; the next rotation deletes it (PREVIOUS_KEY_ACTION=keep)"
        )
    planned = t0 + active
    if key.status != ACTIVE:
        return _deletion(key, Role.PREVIOUS, planned, policy, now)
    if now < planned:
        return _action(Kind.KEEP, key, Role.PREVIOUS, f"grace period: Active until {_at(planned)}", planned)
    if policy.immediate:
        why = "PREVIOUS_KEY_ACTIVE_HOURS is 0: stopped when the rotation finished"
    else:
        why = f"grace period over at {_at(planned)}; last used {_at(key.last_used)}"
    return _hold_or_stop(key, Role.PREVIOUS, t0, why, policy, now)


def _hold_or_stop(key: Key, role: Role, since: datetime, why: str, policy: RetirementPolicy, now: datetime) -> Action:
    """An Active key due to stop: held while used after `since` and within `idle_hours` (evidence of
    use: labels are writable, use is not), up to `since + max_active_hours`; otherwise stopped."""
    last = key.last_used
    in_use = (
        not policy.immediate and last is not None and last > since and now - last < timedelta(hours=policy.idle_hours)
    )
    limit = since + timedelta(hours=policy.max_active_hours)
    if in_use and now < limit:
        assert last is not None
        due = min(last + timedelta(hours=policy.idle_hours), limit)
        return _action(
            Kind.HOLD,
            key,
            role,
            f"still in use (last used {_at(last)}): held Active until idle or {_at(limit)}",
            due,
            in_use=True,
            latest=limit,
        )
    if in_use:
        why = f"still in use (last used {_at(last)}) but held the longest allowed (until {_at(limit)})"
    return _stop(key, role, why, policy, in_use=in_use)


def _retire_never_current(key: Key, policy: RetirementPolicy, now: datetime) -> Action:
    if key.status != ACTIVE:
        return _deletion(key, Role.NEVER_CURRENT, key.created, policy, now)
    why = f"never AWSCURRENT's key (a failed or cancelled rotation); last used {_at(key.last_used)}"
    return _hold_or_stop(key, Role.NEVER_CURRENT, key.created, why, policy, now)
