"""What must hold at every scheduling point of an interleaving, and after it (SPEC §4a "Act on
fresh state", §9). Each check returns the violations it found as `(invariant, detail)` pairs.

- ``one-current``: exactly one version is AWSCURRENT;
- ``current-key-active``: its key exists and is Active;
- ``at-most-2-keys``: the user never holds more than two keys;
- ``bystander-untouched``: another user's keys are as they were;
- ``edit-kept``: a hand edit is in AWSCURRENT, unless an actor refused because of it;
- ``later-rotation``: a rotation still finishes (the one in progress, retried; then a new one);
- ``windows-pass``: once the retirement windows are over, only AWSCURRENT's key is left.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mypy_boto3_iam import IAMClient
from mypy_boto3_secretsmanager import SecretsManagerClient

from tests.interleaving import actors
from tests.interleaving.actors import Deployment
from tests.interleaving.scheduler import Actor, Outcome, run_to_end

Problem = tuple[str, str]  # (invariant, what was seen)
# Far enough ahead that every key but AWSCURRENT's is past its grace period and rollback window
# (24 h + 7 days by default; also a key held while in use: 168 h at most).
WINDOWS = timedelta(days=30)


@dataclass(frozen=True)
class World:
    """One schedule's fresh state: the deployment, a bystander user with a key, and what the
    actors were given (a rotation already begun, the field a hand edit sets)."""

    deployment: Deployment
    bystander: str
    bystander_keys: dict[str, str]
    now: datetime  # when the state was made: the retirement runs' `now` counts from here
    token: str | None = None
    edit: tuple[str, str] | None = None  # (field, value)


@dataclass(frozen=True)
class Aws:
    """The harness's own clients (made outside any actor's thread: never scheduled)."""

    iam: IAMClient
    secrets: SecretsManagerClient

    def keys(self, user: str) -> dict[str, str]:
        """{access key ID: status}"""
        listed = self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {key["AccessKeyId"]: key["Status"] for key in listed}

    def stages(self, secret_arn: str) -> dict[str, list[str]]:
        return self.secrets.describe_secret(SecretId=secret_arn).get("VersionIdsToStages", {})

    def document(self, secret_arn: str, version_id: str) -> dict[str, object]:
        text = self.secrets.get_secret_value(SecretId=secret_arn, VersionId=version_id)["SecretString"]
        document = json.loads(text)
        return document if isinstance(document, dict) else {}


def check_state(aws: Aws, world: World, outcomes: Sequence[Outcome]) -> list[Problem]:
    """The invariants of every scheduling point; `outcomes`: the actor runs that ended so far."""
    problems: list[Problem] = []
    secret, user = world.deployment.secret_arn, world.deployment.user
    keys = aws.keys(user)
    current = [version for version, labels in aws.stages(secret).items() if "AWSCURRENT" in labels]
    document = aws.document(secret, current[0]) if len(current) == 1 else {}
    if len(current) != 1:
        # Secrets Manager keeps AWSCURRENT on exactly one version: a break here is the stand-in
        # (moto) departing from AWS, which hides what the product would do there.
        problems.append(("one-current", f"{len(current)} versions are AWSCURRENT: {current}"))
    else:
        key = document.get("username")
        if not isinstance(key, str) or key not in keys:
            problems.append(("current-key-active", f"AWSCURRENT names key {key}, which does not exist; keys: {keys}"))
        elif keys[key] != "Active":
            problems.append(("current-key-active", f"AWSCURRENT names key {key}, which is {keys[key]}; keys: {keys}"))
    if len(keys) > 2:
        problems.append(("at-most-2-keys", f"the user holds {len(keys)} keys: {keys}"))
    if aws.keys(world.bystander) != world.bystander_keys:
        problems.append(("bystander-untouched", f"{world.bystander}'s keys: {aws.keys(world.bystander)}"))
    if world.edit is not None and len(current) == 1:
        problems += _edit_kept(world.edit, document, outcomes)
    return problems


def _edit_kept(edit: tuple[str, str], document: dict[str, object], outcomes: Sequence[Outcome]) -> list[Problem]:
    field, value = edit
    edited = any(o.name.startswith(actors.HAND_EDIT) and o.error is None for o in outcomes)
    said_so = any(actors.refused_because_of_edit(o.error) for o in outcomes)
    if edited and not said_so and document.get(field) != value:
        return [("edit-kept", f"AWSCURRENT has {field}={document.get(field)!r}, not the edit's {value!r}; no refusal")]
    return []


def check_afterwards(aws: Aws, world: World, outcomes: Sequence[Outcome]) -> tuple[list[Problem], list[str]]:
    """After the schedule: the rotation left in progress (if any) finishes when Secrets Manager
    retries it, a new rotation succeeds, and once the retirement windows are over only AWSCURRENT's
    key is left. Returns the problems (the first only: later steps depend on earlier ones) and what
    was run."""
    deployment = world.deployment
    trace: list[str] = []

    def run(name: str, actor: Actor) -> Outcome:
        outcome = run_to_end(name, actor)
        trace.append(outcome.describe())
        return outcome

    ran = list(outcomes)
    pending = _rotation_in_progress(aws, deployment.secret_arn)
    if pending is not None:
        retried = run("retry of the rotation in progress", actors.delivery(deployment, pending))
        ran.append(retried)
        if retried.error is not None and not actors.refused_because_of_edit(retried.error):
            return [("later-rotation", f"the rotation in progress cannot finish: {retried.describe()}")], trace
    if any(actors.refused_because_of_edit(o.error) for o in ran):
        actors.after_refused_edit(deployment)
        trace.append("the operator's step after a refusal because of an edit (actors.after_refused_edit)")
    rotated = run("a later rotation", actors.rotation(deployment))
    if rotated.error is not None:
        return [("later-rotation", rotated.describe())], trace
    problems = check_state(aws, world, ran)  # a retried rotation may lose an edit too
    if problems:
        return problems, trace
    for _ in range(2):  # an Active key is deactivated by one run and deleted by the next
        retired = run("retirement once the windows passed", actors.retirement_run(deployment, world.now + WINDOWS))
        if retired.error is not None:
            return [("windows-pass", retired.describe())], trace
    keys = aws.keys(deployment.user)
    current = [v for v, labels in aws.stages(deployment.secret_arn).items() if "AWSCURRENT" in labels]
    kept = aws.document(deployment.secret_arn, current[0]).get("username") if len(current) == 1 else None
    if list(keys) != [kept]:
        return [("windows-pass", f"AWSCURRENT names {kept}; the user holds {keys}")], trace
    return [], trace


def _rotation_in_progress(aws: Aws, secret_arn: str) -> str | None:
    stages = aws.stages(secret_arn)
    return next((v for v, labels in stages.items() if "AWSPENDING" in labels and "AWSCURRENT" not in labels), None)
