"""No interleaving of two actors breaks the invariants (SPEC §4a "Act on fresh state", issue 14).

Each pair of actors that change one secret and its keys is explored systematically
(`explore`): each actor paused before each of its AWS calls while the other runs to completion,
and killed after each call that writes, then run again. A failure lists the number of schedules
and every violation: the pair, the schedule (which actor, paused before or killed after which
call), where it was first seen, the invariant (`invariants`), and a short trace of the calls each
actor made and how it ended.

The actors are adapters in `actors`: when the product changes a signature (the deployment given
to rollback, the binding registry) or its wording for a refusal because of a hand edit, adapt
them there. "one-current" cannot break on AWS: where it does, the stand-in departs from AWS (moto
5 leaves AWSCURRENT on two versions after a hand edit during a rotation; issue 14 asks for a
stricter stand-in), and that hides what the product would do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta

import boto3
import pytest
from mypy_boto3_iam import IAMClient

from infra.ses_smtp import SesSmtpStandIn
from tests.interleaving import actors
from tests.interleaving.explore import Lab, Pair, Role, explore
from tests.interleaving.invariants import Aws, World
from tests.interleaving.scheduler import Actor

H = timedelta(hours=1)
D = timedelta(days=1)


def rollback_after(delta: timedelta) -> Role:
    """The operator's rollback `delta` after the fresh state was made (the same clock as the run)."""
    return Role("rollback", lambda world: actors.rollback(world.deployment, world.now + delta))


def rotation(world: World) -> Actor:
    return actors.rotation(world.deployment)


def retirement_after(delta: timedelta) -> Role:
    """The retirement run `delta` after the fresh state was made."""
    hours = delta / H
    after = f"{hours / 24:g} days" if hours % 24 == 0 else f"{hours:g} h"
    return Role(f"retirement at +{after}", lambda world: actors.retirement_run(world.deployment, world.now + delta))


def delivery(world: World) -> Actor:
    assert world.token is not None
    return actors.delivery(world.deployment, world.token)


def hand_edit(world: World) -> Actor:
    assert world.edit is not None
    return actors.hand_edit(world.deployment, *world.edit)


PAIRS = [
    # The grace period is over: the run deactivates the previous key the rollback restores.
    Pair("rollback x retirement (deactivates)", rollback_after(25 * H), retirement_after(25 * H)),
    # The rollback window is over: the run deletes the Inactive previous key the rollback restores.
    Pair("rollback x retirement (deletes)", rollback_after(9 * D), retirement_after(9 * D), retired=True),
    # finishSecret deactivates the previous key at once; createSecret deletes keys to free a slot.
    Pair(
        "rollback x rotation (PREVIOUS_KEY_ACTIVE_HOURS=0)",
        rollback_after(timedelta(0)),
        Role("rotation", rotation),
        settings={"PREVIOUS_KEY_ACTIVE_HOURS": "0"},
    ),
    # The grace period is over: the run deactivates the previous key while a rotation replaces it.
    Pair("rotation x retirement", Role("rotation", rotation), retirement_after(25 * H)),
    # A manual invoke or a redrive delivers a rotation's steps again, with its token.
    Pair(
        "the same token delivered twice",
        Role("delivery 1", delivery),
        Role("delivery 2", delivery),
        begun=True,
        symmetric=True,
    ),
    # An operator adds a field in the console while a rotation runs (one may stay pending for days).
    Pair("hand edit x rotation", Role(actors.HAND_EDIT, hand_edit), Role("rotation", rotation), edit=True),
    # EventBridge Scheduler delivers at least once: runs may overlap (here at +25 h and +9 days).
    Pair("two retirement runs", retirement_after(25 * H), retirement_after(9 * D)),
]


@pytest.fixture
def quiet_functions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Both functions log every step at INFO and print metrics: thousands of lines here, which the
    report replaces."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    loggers = [logging.getLogger(name) for name in ("ses-smtp-rotation", "ses-smtp-retirement")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.fixture
def lab(
    quiet_functions: None,
    iam_client: IAMClient,
    ses_smtp: SesSmtpStandIn,
    smtp_ca: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Lab:
    """The deployment's default retirement settings; each pair sets what it needs on top."""
    for name in ("PREVIOUS_KEY_ACTION", "PREVIOUS_KEY_ACTIVE_HOURS", "PREVIOUS_KEY_INACTIVE_DAYS"):
        monkeypatch.delenv(name, raising=False)
    return Lab(Aws(iam_client, boto3.client("secretsmanager")), ses_smtp, monkeypatch)


@pytest.mark.parametrize("pair", PAIRS, ids=[re.sub(r"\W+", "-", pair.name).strip("-") for pair in PAIRS])
def test_no_interleaving_of_two_actors_breaks_an_invariant(lab: Lab, pair: Pair) -> None:
    report = explore(lab, pair)
    print(report)
    assert not report.violations, str(report)
