"""Retire one secret's old keys (SPEC §4a): read the state, decide (`retirement.decide`), act.

The only code between the pure decision and the adapters; the retirement function runs it for
each of its secrets every hour, and finishSecret runs it for the immediate policies.

    decision = retire(AccessKeys(iam, user), SecretVersions(client, arn), policy, now, logger)

Reads come first and in this order: the user's keys, then the secret's versions. A key created
after the versions were listed is then never seen, and a key that is seen was created after its
rotation's AWSPENDING version existed, so a rotation starting meanwhile is always recognised as
in progress. Every action is idempotent (a key already gone or already Inactive is fine), so a
run that fails half-way is finished by the next one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime

from aws_lambda_powertools import Logger

from lambda_function.access_keys import AccessKeys
from lambda_function.errors import InvalidSecretError
from lambda_function.retirement import (
    CURRENT,
    PENDING,
    PREVIOUS,
    STORED_WITHIN,
    Action,
    Decision,
    Key,
    Kind,
    Role,
    Version,
    decide,
)
from lambda_function.secret_versions import SecretVersions, VersionListing
from lambda_function.settings import RetirementPolicy

_LABELS = (CURRENT, PREVIOUS, PENDING)


@dataclass(frozen=True)
class State:
    keys: list[Key]
    versions: list[Version]
    current_user: str | None  # AWSCURRENT's iam_user_name
    listing: list[VersionListing]  # every version, read or not


def _fields(text: str | None) -> tuple[str | None, str | None]:
    """(username, iam_user_name) of a version's value; Nones when it has no such fields."""
    try:
        document = json.loads(text) if text else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return None, None
    username, user = document.get("username"), document.get("iam_user_name")
    return (username if isinstance(username, str) else None, user if isinstance(user, str) else None)


def read_state(keys: AccessKeys, secrets: SecretVersions, *, last_use: bool = True) -> State:
    """The bound user's keys and the secret's labelled versions (with the key each names).

    With `last_use`, GetAccessKeyLastUsed for every key but AWSCURRENT's.
    """
    listed = keys.list()
    versions: list[Version] = []
    current_user = None
    listings = secrets.listing()
    for listing in listings:
        label = next((label for label in _LABELS if label in listing.labels), None)
        if label is None:
            continue  # read only when needed (`_with_history`)
        # By version ID alone: a version's value never changes, so a label that moves after the
        # listing cannot make this read disagree with it (the re-check before acting catches moves).
        username, user = _fields(secrets.value_of_version(listing.version_id))
        versions.append(Version(listing.version_id, listing.labels, listing.created, username))
        if CURRENT in listing.labels:
            current_user = user
    current_key = next((v.access_key_id for v in versions if CURRENT in v.labels), None)
    found = [
        Key(
            key.access_key_id,
            key.status,
            key.created,
            keys.last_used(key.access_key_id) if last_use and key.access_key_id != current_key else None,
        )
        for key in listed
    ]
    return State(found, versions, current_user, listings)


def _with_history(state: State, secrets: SecretVersions) -> State:
    """Add unlabelled versions, oldest first, up to the first that names a key (the first rotation)."""
    known = {version.version_id: version for version in state.versions}
    versions = list(state.versions)
    for entry in sorted(state.listing, key=lambda v: v.created):
        if entry.version_id in known:
            if known[entry.version_id].access_key_id:
                break
            continue
        username, _ = _fields(secrets.value_of_version(entry.version_id))
        versions.append(Version(entry.version_id, entry.labels, entry.created, username))
        if username:
            break
    return State(state.keys, versions, state.current_user, state.listing)


def _dating_current_key(state: State, secrets: SecretVersions) -> State:
    """Add the versions that tell when AWSCURRENT's key became current (`retirement.became_current`).

    Only when the secret was edited since the rotation that made the key: AWSCURRENT's version is
    newer than its key (by more than createSecret takes to store it), and AWSPREVIOUS names that
    key too (an edit moves AWSPREVIOUS onto the version it replaced). Then the versions before
    AWSCURRENT's, newest first, down to the rotation's own: the first that names the key and was
    created by the time createSecret stored it, or else the newest created at or before the key
    (every version of that same CreatedDate, in case two share it). Nothing to read in the usual
    case; one GetSecretValue per unlabelled version otherwise (labelled ones are read already).
    """
    current = next((v for v in state.versions if CURRENT in v.labels), None)
    previous = next((v for v in state.versions if PREVIOUS in v.labels), None)
    key = next((k for k in state.keys if current is not None and k.access_key_id == current.access_key_id), None)
    if current is None or key is None or current.created <= key.created + STORED_WITHIN:
        return state  # the rotation's own version
    if previous is None or previous.access_key_id != key.access_key_id:
        return state  # AWSCURRENT's version is the first to name its key (an edit that put in another key)
    known = {version.version_id: version for version in state.versions}
    versions = list(state.versions)
    older = sorted((e for e in state.listing if e.created < current.created), key=lambda e: e.created, reverse=True)
    boundary: datetime | None = None  # the CreatedDate of the newest version created at or before the key
    for entry in older:
        if entry.created <= key.created:
            boundary = boundary or entry.created
            if entry.created < boundary:
                break
        version = known.get(entry.version_id)
        if version is None:
            username, _ = _fields(secrets.value_of_version(entry.version_id))
            version = Version(entry.version_id, entry.labels, entry.created, username)
            versions.append(version)
        if version.access_key_id == key.access_key_id and entry.created <= key.created + STORED_WITHIN:
            break  # the rotation that made the key: it became current then
    return State(state.keys, versions, state.current_user, state.listing)


def _needs_history(decision: Decision, state: State) -> bool:
    """Whether a key left alone might be a failed rotation's key named only by an unlabelled version."""
    named = {version.access_key_id for version in state.versions}
    return any(a.role is Role.UNRESOLVED and a.access_key_id not in named for a in decision.actions)


def retire(
    keys: AccessKeys,
    secrets: SecretVersions,
    policy: RetirementPolicy,
    now: datetime,
    logger: Logger,
    *,
    last_use: bool = True,
) -> Decision:
    """Read the state, decide, and deactivate or delete what the decision says; return the decision
    as carried out (an action whose facts moved before it is a KEEP saying so).

    Raises InvalidSecretError (nothing changed) when AWSCURRENT names another IAM user than
    `keys.user_name`, the user this secret is bound to.
    """
    state = read_state(keys, secrets, last_use=last_use)
    if state.current_user is not None and state.current_user != keys.user_name:
        raise InvalidSecretError(
            f"Secret {secrets.secret_id} is bound to IAM user {keys.user_name}, but its AWSCURRENT version "
            f"names {state.current_user}; nothing was retired. Fix the secret's iam_user_name or the binding."
        )
    state = _dating_current_key(state, secrets)
    decision = decide(state.keys, state.versions, policy, now)
    if _needs_history(decision, state):
        state = _with_history(state, secrets)
        decision = decide(state.keys, state.versions, policy, now)
    labels = _labelled(state.versions)
    done: list[Action] = []
    for action in decision.actions:
        if action.kind in (Kind.DEACTIVATE, Kind.DELETE) and not still_as_decided(action, labels, keys, secrets):
            action = replace(action, kind=Kind.KEEP, reason=f"{MOVED} (decided: {action.kind.value})")
        _apply(action, keys, secrets.secret_id, logger)
        if action.kind is Kind.DEACTIVATE:
            _restore_if_made_current(action.access_key_id, labels, keys, secrets, logger)
        done.append(action)
    return replace(decision, actions=tuple(done))


# Why an action decided on was not carried out.
MOVED = "the secret's labels or the key changed since the decision; the next run decides again"


def _labelled(versions: list[Version]) -> dict[str, str | None]:
    """The version ID holding each of AWSCURRENT and AWSPENDING (None when none does)."""
    return {label: next((v.version_id for v in versions if label in v.labels), None) for label in (CURRENT, PENDING)}


def still_as_decided(action: Action, labels: dict[str, str | None], keys: AccessKeys, secrets: SecretVersions) -> bool:
    """Re-read, right before deactivating or deleting a key, what the decision was made from: the
    versions AWSCURRENT and AWSPENDING are on, and the key's status. A rotation, a rollback or a hand
    edit may have moved a label since (SPEC §4a "Act on fresh state")."""
    stages = secrets.describe().stages
    now = {label: next((v for v, held in stages.items() if label in held), None) for label in labels}
    if now.get(PENDING) is not None and now[PENDING] == now.get(CURRENT):
        now[PENDING] = None  # AWSPENDING left on AWSCURRENT: no rotation in progress
    before = dict(labels)
    if before.get(PENDING) is not None and before[PENDING] == before.get(CURRENT):
        before[PENDING] = None
    if now != before:
        return False
    key = keys.get(action.access_key_id)
    return key is not None and key.status == action.status


def _restore_if_made_current(
    key_id: str, labels: dict[str, str | None], keys: AccessKeys, secrets: SecretVersions, logger: Logger
) -> None:
    """After a deactivation: if AWSCURRENT moved meanwhile to a version naming that key (a rollback
    between the re-check and the deactivation), make the key Active again."""
    current = secrets.describe().version_with(CURRENT)
    if current is None or current == labels.get(CURRENT):
        return
    username, _ = _fields(secrets.value_of_version(current))
    if username == key_id:
        keys.activate(key_id)
        logger.warning(
            "AWSCURRENT moved to this key while it was being deactivated (a rollback); made it Active again",
            extra={"secret_id": secrets.secret_id, "key_id": key_id},
        )


def _apply(action: Action, keys: AccessKeys, secret_id: str, logger: Logger) -> None:
    """One structured log line per decision, after acting on it."""
    found = None
    if action.kind is Kind.DEACTIVATE:
        found = keys.deactivate(action.access_key_id)
    elif action.kind is Kind.DELETE:
        found = keys.delete(action.access_key_id)
    fields: dict[str, object] = {
        "secret_id": secret_id,
        "user": keys.user_name,
        "key_id": action.access_key_id,
        "action": action.kind.value,
        "role": action.role.value,
        "status": action.status,
        "reason": action.reason,
        "last_used": _iso(action.last_used),
        "due": _iso(action.due),
    }
    if found is not None:
        fields["key_found"] = found
    if action.kind is Kind.HOLD:
        logger.warning("Previous access key still in use; kept Active", extra=fields)
    elif action.kind is Kind.KEEP:
        logger.info("Access key left as it is", extra=fields)
    else:
        logger.info(f"Access key {'deactivated' if action.kind is Kind.DEACTIVATE else 'deleted'}", extra=fields)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds")
