"""The explorer: every schedule of two actors over a fresh state, checked at every scheduling point.

For a pair (A, B), each actor's AWS calls are first counted by an unpaused run on a fresh state.
Then, for each actor X of the pair (Y is the other one) and each k from 1 to X's count:

- pause: X pauses before its k-th call, Y runs to completion, X resumes;
- kill: X's k-th call executes, X dies (`scheduler.Killed`), Y runs to completion, X runs again
  from the start (Secrets Manager's retry, the next hourly run, the operator typing it again).
  Only after a call that may write: killed after a read, X leaves the state as it was after its
  last write, a schedule already explored (or, before any write, "Y then X": X paused at call 1).

A symmetric pair (the same actor twice) is explored in one order only. Each schedule starts
from its own fresh state (unique names, no moto reset). The invariants (`invariants.check_state`)
are checked where X was killed, after Y, and at the end; then `invariants.check_afterwards` (a
later rotation, then the retirement windows passing).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from infra.local_aws import add_to_sending_group
from infra.rotation_driver import begin_rotation
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import RotationError
from lambda_function.secret_document import SecretDocument
from tests.interleaving import actors
from tests.interleaving.invariants import Aws, Problem, World, check_afterwards, check_state
from tests.interleaving.scheduler import Actor, Outcome, Run, Script, run_to_end, scheduling, short
from tests.support import STANDIN_HOST

REGION = "us-east-1"
RETIRED_AT = timedelta(hours=25)  # `Pair.retired`: a retirement run after the 24 h grace period


@dataclass(frozen=True)
class Role:
    """An actor of a pair: its name in reports, and how it is made for a fresh state."""

    name: str
    make: Callable[[World], Actor]


@dataclass(frozen=True)
class Pair:
    """Two actors, the deployment's settings, and the fresh state they start from."""

    name: str
    first: Role
    second: Role
    settings: Mapping[str, str] = field(default_factory=dict)  # environment variables
    retired: bool = False  # the previous key is Inactive already (a retirement run at +25 h)
    begun: bool = False  # a rotation has begun (World.token)
    edit: bool = False  # a hand edit is among the actors (World.edit)
    symmetric: bool = False  # both actors are the same: one order is enough


@dataclass(frozen=True)
class Violation:
    pair: str
    schedule: str  # "rollback paused before call 9 (UpdateSecretVersionStage)"
    point: str  # where it was seen first: "after retirement", "at the end", "afterwards"
    invariant: str
    detail: str
    trace: tuple[str, ...]

    def __str__(self) -> str:
        lines = [f"[{self.pair}] {self.schedule} | {self.point}: {self.invariant}: {self.detail}"]
        return "\n".join(lines + [f"      {line}" for line in self.trace])


@dataclass
class Report:
    pair: str
    calls: dict[str, list[str]] = field(default_factory=dict)  # each actor's calls, run alone
    schedules: int = 0
    violations: list[Violation] = field(default_factory=list)
    # Not a violation, but worth a look: actors that ended with an error neither a refusal of the
    # product's own (RotationError) nor a kill, e.g. a raw AWS error after a label moved.
    raw_errors: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        counts = ", ".join(f"{name}: {len(calls)} calls" for name, calls in self.calls.items())
        head = f"{self.pair}: {self.schedules} schedules ({counts}), {len(self.violations)} violations"
        raw = ", ".join(f"{error} x{count}" for error, count in sorted(self.raw_errors.items()))
        return "\n".join([head, *([f"raw errors (not asserted): {raw}"] if raw else []), *map(str, self.violations)])


@dataclass(frozen=True)
class Lab:
    """What fresh states are made with."""

    aws: Aws
    ses: SesSmtpStandIn
    monkeypatch: pytest.MonkeyPatch

    def fresh(self, pair: Pair) -> World:
        """A secret adopted with its user's console-made key, then rotated once: the console key
        is the previous key (AWSPREVIOUS names it), the rotation's the current one. A bystander
        user with a key of its own. And what the pair needs on top."""
        iam = self.aws.iam
        user, bystander = (f"{who}-{uuid.uuid4().hex[:12]}" for who in ("ses-smtp-interleave", "bystander"))
        for name in (user, bystander):
            iam.create_user(UserName=name)
        add_to_sending_group(iam, user)
        iam.create_access_key(UserName=bystander)
        console_key = iam.create_access_key(UserName=user)["AccessKey"]
        bootstrap = {"iam_user_name": user, "host": STANDIN_HOST, "port": self.ses.starttls_port}
        adopted = SecretDocument.parse(json.dumps(bootstrap), REGION).next_version(
            console_key["AccessKeyId"], console_key["SecretAccessKey"]
        )
        deployment = actors.deploy(iam, self.monkeypatch, user, adopted)
        _must(run_to_end("setup rotation", actors.rotation(deployment)))
        world = World(deployment, bystander, self.aws.keys(bystander), now=datetime.now(UTC))
        if pair.retired:
            _must(run_to_end("setup retirement", actors.retirement_run(deployment, world.now + RETIRED_AT)))
        if pair.begun:
            token = begin_rotation(self.aws.secrets, deployment.secret_arn, deployment.function_arn)
            world = replace(world, token=token)
        if pair.edit:
            world = replace(world, edit=("sender", f"ops-{uuid.uuid4().hex[:8]}@example.com"))
        return world


def explore(lab: Lab, pair: Pair) -> Report:
    """Run every schedule of `pair`; return how many, and what they broke."""
    report = Report(pair.name)
    for name, value in pair.settings.items():
        lab.monkeypatch.setenv(name, value)
    orders = [(pair.first, pair.second)] + ([] if pair.symmetric else [(pair.second, pair.first)])
    with scheduling():
        for stopped, _ in orders:
            alone = run_to_end(stopped.name, stopped.make(lab.fresh(pair)))
            # Alone, an actor may be refused by the product (a rollback when the key's deletion is
            # due): its calls up to the refusal are still the points to pause it at.
            if not isinstance(alone.error, RotationError):
                _must(alone)
            report.calls[stopped.name] = alone.calls
        for stopped, other in orders:
            for k, operation in enumerate(report.calls[stopped.name], start=1):
                for kill in (False, True) if _writes(operation) else (False,):
                    report.schedules += 1
                    violations, outcomes = _schedule(lab, pair, stopped, other, k, kill=kill)
                    report.violations += violations
                    report.raw_errors.update(_raw_error(outcome) for outcome in outcomes if _raw_error(outcome))
    return report


def _writes(operation: str) -> bool:
    """Whether an AWS call ("iam.UpdateAccessKey") may change state."""
    return not operation.partition(".")[2].startswith(("Get", "List", "Describe"))


def _raw_error(outcome: Outcome) -> str:
    """What an actor ended with (e.g. rollback: InvalidParameterException) when it was neither a
    success, a refusal of the product's own, nor a kill; else the empty string."""
    error = outcome.error
    if error is None or isinstance(error, RotationError) or outcome.killed:
        return ""
    return f"{outcome.name.removesuffix(' again')}: {type(error).__name__}"


def _schedule(
    lab: Lab, pair: Pair, stopped: Role, other: Role, k: int, *, kill: bool
) -> tuple[list[Violation], list[Outcome]]:
    """One schedule on a fresh state: `stopped` paused before (or killed after) its k-th call.
    Returns the violations and how the actors' runs ended."""
    world = lab.fresh(pair)
    actor = stopped.make(world)
    outcomes: list[Outcome] = []
    trace: list[str] = []
    seen: list[tuple[str, Problem]] = []

    def ended(outcome: Outcome) -> None:
        outcomes.append(outcome)
        trace.append(outcome.describe())

    def check(point: str) -> None:
        found = check_state(lab.aws, world, outcomes)
        seen.extend((point, problem) for problem in found)
        trace.append(f"check {point}: " + ("; ".join(f"{name}: {detail}" for name, detail in found) or "ok"))

    if kill:
        ended(run_to_end(stopped.name, actor, Script(kill_after=k)))
        check(f"after {stopped.name} was killed")
        made = outcomes[0].calls
    else:
        paused = Run(stopped.name, actor, Script(pause_before=k)).start()
        made = paused.script.calls
        state = "paused" if paused.paused else "finished before it (not paused)"
        trace.append(f"{stopped.name}: {state} before call {k}, after [{', '.join(short(c) for c in made[: k - 1])}]")
    ended(run_to_end(other.name, other.make(world)))
    check(f"after {other.name}")
    ended(run_to_end(f"{stopped.name} again", actor) if kill else paused.finish())
    check("at the end")
    afterwards, how = check_afterwards(lab.aws, world, outcomes)
    if afterwards:
        trace += how
    seen += [("afterwards", problem) for problem in afterwards]

    call = short(made[k - 1]) if len(made) >= k else "never made"
    schedule = f"{stopped.name} {'killed after' if kill else 'paused before'} call {k} ({call})"
    violations = [
        Violation(pair.name, schedule, point, name, detail, tuple(trace)) for point, (name, detail) in _first(seen)
    ]
    return violations, outcomes


def _first(seen: Sequence[tuple[str, Problem]]) -> Iterator[tuple[str, Problem]]:
    """Each invariant once per schedule, where it was first seen."""
    reported: set[str] = set()
    for point, (name, detail) in seen:
        if name not in reported:
            reported.add(name)
            yield point, (name, detail)


def _must(outcome: Outcome) -> None:
    if outcome.error is not None:
        raise AssertionError(f"Setting up the fresh state failed: {outcome.describe()}")
