"""Section 6 of the demo: overlap, then retire (SPEC §4a), with durations compressed to seconds.

6.1 An application caches the secret (for an hour, like ``aws-secretsmanager-caching``) and keeps
    sending while a rotation replaces its key. The key stays Active through the grace period; the
    retirement function then holds it because it is still in use (and says so on the alarm
    topic), until the longest hold; once it is deactivated the application gets ``535``, re-reads
    the secret and sends with the new key. The old key stays Inactive for the rollback window,
    then it is deleted.
6.2 Another rotation; the previous key goes Inactive after its grace period, and an operator rolls
    back inside the window (``ses-smtp-rotation rollback``): the key is Active again and
    AWSCURRENT names it; the key rolled away from is stopped at the next run.

The retirement function runs every hour on AWS; here the demo invokes it about once a second. Its
decisions are read from its own log (one structured line per key), its messages from an SQS queue
subscribed to the alarm topic. Nothing here is faked: only the durations are short.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import boto3

from infra.consumer import CachedSecret, ConsumerError, build_message
from infra.demo_checks import check_invariants, key_statuses, read_version, show_versions
from infra.demo_narration import Clock, say, short
from infra.demo_setup import RECIPIENT, SECRET_NAME, SENDER, Demo, DemoError
from infra.lambda_invoke import REPO_ROOT
from infra.rotation_driver import LOCAL_FUNCTION_ARN, begin_rotation, run_steps

TICK_SECONDS = 1.0  # how often the demo looks (the retirement function runs hourly on AWS)


def show_lifecycle(demo: Demo) -> None:
    say()
    say("6. Overlap, then retire: the previous key's whole life (the retirement function)")
    if demo.options.previous_key_action is not None:
        say(f"   Skipped: PREVIOUS_KEY_ACTION={demo.options.previous_key_action} is the first release's policy.")
        return
    durations = demo.options.durations
    say(
        f"   compressed: Active {durations.grace:g} s after the rotation, held at most {durations.max_active:g} s "
        f"while used within {durations.idle:g} s, then Inactive {durations.window:g} s"
    )
    say("   (on AWS: 24 h, at most 168 h while used within 1 h, then 7 days)")
    app = CachedSecret(demo.secrets, SECRET_NAME, ttl=3600)
    cached_key_lifecycle(demo, app)
    rollback_inside_the_window(demo, app)


# -- 6.1 ------------------------------------------------------------------------------------------


def cached_key_lifecycle(demo: Demo, app: CachedSecret) -> None:
    say()
    say("6.1 A consumer with a cached secret, through a rotation")
    clock = Clock()
    old = app.refresh().username
    say(f"   {clock.stamp()}  consumer reads the secret and caches it for an hour: access key {old}")
    new = rotate_quietly(demo, clock)
    durations = demo.options.durations
    retirement = RetirementRuns(demo, clock, old)

    # Grace period, then the hold: the consumer keeps sending with its cached key.
    deadline = clock.now() + durations.max_active + 30  # slack for a loaded machine
    while key_statuses(demo).get(old) == "Active":
        if clock.now() > deadline:
            raise DemoError(f"Access key {old} was still Active after the longest hold ({durations.max_active:g} s).")
        send(app, clock, expect=old)
        retirement.run()
        time.sleep(TICK_SECONDS)
    if not retirement.held:
        raise DemoError(f"The retirement function never held access key {old} although the consumer used it.")

    # The cached key is refused: the consumer re-reads the secret once and goes on.
    delivery = send(app, clock, expect=new)
    if delivery != (new, old):
        raise DemoError(f"The consumer did not recover from 535 with the new key {new} (got {delivery}).")

    # The rollback window, then deletion.
    deadline = clock.now() + durations.window + 10
    while old in key_statuses(demo) and key_statuses(demo)[old] != "deleted":
        if clock.now() > deadline:
            raise DemoError(f"Access key {old} was not deleted after the rollback window ({durations.window:g} s).")
        time.sleep(TICK_SECONDS)
        retirement.run()
    keys = key_statuses(demo)
    say(f"   {clock.stamp()}  IAM user keys now: {describe_keys(keys, [old, new])}")


# -- 6.2 ------------------------------------------------------------------------------------------


def rollback_inside_the_window(demo: Demo, app: CachedSecret) -> None:
    say()
    say("6.2 Rollback inside the window")
    clock = Clock()
    previous = app.credentials.username
    rolled_to = next(v.version_id for v in reversed(demo.versions) if v.key_id == previous)
    newer = rotate_quietly(demo, clock)
    say(f"   {clock.stamp()}  the consumer is idle; the new password turns out to break something")
    retirement = RetirementRuns(demo, clock, previous, newer)
    deadline = clock.now() + demo.options.durations.grace + 10
    while key_statuses(demo).get(previous) == "Active":
        if clock.now() > deadline:
            raise DemoError(f"Access key {previous} was still Active after its grace period.")
        time.sleep(TICK_SECONDS)
        retirement.run()

    result = run_tool(
        ["-m", "infra.cli", "rollback", "--secret-id", SECRET_NAME, "--function", LOCAL_FUNCTION_ARN, "--yes"]
    )
    if result.returncode != 0:
        raise DemoError(f"The rollback inside the window failed (exit {result.returncode}).")
    keys = key_statuses(demo)
    if keys.get(previous) != "Active" or read_version(demo, rolled_to, 0).key_id != previous:
        raise DemoError(
            f"After the rollback access key {previous} is {keys.get(previous)}, not AWSCURRENT's and Active."
        )
    send(app, clock, expect=previous)  # the consumer's cached password works again
    retirement.run()  # the key rolled away from has no grace left
    keys = key_statuses(demo)
    if keys.get(newer) != "Inactive":
        raise DemoError(f"The key rolled away from, {newer}, is {keys.get(newer)} after the next run, not Inactive.")
    show_versions(demo, keys)


# -- helpers --------------------------------------------------------------------------------------


def rotate_quietly(demo: Demo, clock: Clock) -> str:
    """One rotation, as Secrets Manager runs it, told in one line; returns the new key."""
    number = len(demo.versions)
    token = begin_rotation(demo.secrets, demo.secret_arn)

    def invoke(event: dict[str, Any]) -> None:
        invocation = demo.function.invoke(event)
        if invocation.failed:
            raise DemoError(
                f"Rotation {number} failed at {event['Step']}: {invocation.error_type}: {invocation.error_message}"
            )

    timings = run_steps(invoke, demo.secret_arn, token)
    version = read_version(demo, token, number)
    demo.versions.append(version)
    keys = key_statuses(demo)
    check_invariants(demo, number, keys)
    assert version.key_id is not None
    say(
        f"   {clock.stamp()}  rotation {number}: AWSCURRENT -> {short(token)}, new access key {version.key_id} "
        f"({sum(timings.values()):.1f} s, most of it waiting for the key to propagate)"
    )
    return version.key_id


def send(app: CachedSecret, clock: Clock, *, expect: str) -> tuple[str, str | None]:
    """The consumer sends one message; returns (key it signed in with, key refused first)."""
    message = build_message(SENDER, RECIPIENT, "Overlap, then retire", "Sent with a cached secret.\n")
    try:
        delivery = app.send(message)
    except ConsumerError as error:
        raise DemoError(f"The consumer could not send: {error}") from None
    if delivery.refused_key is not None:
        say(
            f"   {clock.stamp()}  consumer: 535 for cached key {delivery.refused_key} -> re-reads the secret "
            f"-> 250, sent as {delivery.access_key_id}"
        )
    else:
        say(f"   {clock.stamp()}  consumer: 250, sent as {delivery.access_key_id} (cached)")
    if delivery.access_key_id != expect:
        raise DemoError(f"The consumer sent as {delivery.access_key_id}, expected {expect}.")
    return delivery.access_key_id, delivery.refused_key


class RetirementRuns:
    """Invoke the retirement function and tell what it decided about the watched keys."""

    def __init__(self, demo: Demo, clock: Clock, *watched: str) -> None:
        self._demo = demo
        self._clock = clock
        self._watched = watched
        self._last: dict[str, tuple[str, str]] = {}
        self.held = 0

    def run(self) -> None:
        held = self.held
        invocation = self._demo.retirement.invoke({"source": "aws.scheduler"})
        if invocation.failed:
            raise DemoError(f"The retirement function failed: {invocation.error_type}: {invocation.error_message}")
        for record in _records(invocation.log):
            key = record.get("key_id")
            if key not in self._watched or "action" not in record:
                continue
            action, role = record["action"], record.get("role", "")
            self.held += action == "hold"
            # The same decision again (still in its grace period, still Inactive) is not news.
            if self._last.get(key) == (action, role) and action == "keep":
                continue
            self._last[key] = (action, role)
            reason = self._clock.relative_text(str(record.get("reason", "")))
            say(f"   {self._clock.stamp()}  retirement function: {key} {action.upper()} ({role}): {reason}")
        self._show_alarms(expected=held < self.held)

    def _show_alarms(self, *, expected: bool) -> None:
        """What the alarm topic received; when this run held a key, wait up to a second for its
        message (on a busy machine the queue may show it a moment later)."""
        sqs = boto3.client("sqs")
        wait = 1 if expected else 0
        received = sqs.receive_message(
            QueueUrl=self._demo.alarm_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
        )
        for message in received.get("Messages", []):
            subject = json.loads(message["Body"]).get("Subject", "")
            say(f"   {self._clock.stamp()}  alarm topic: {subject!r}")
            sqs.delete_message(QueueUrl=self._demo.alarm_queue_url, ReceiptHandle=message["ReceiptHandle"])


def _records(log: str) -> list[dict[str, Any]]:
    records = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def describe_keys(keys: dict[str, str], shown: list[str]) -> str:
    return ", ".join(f"{key} {keys.get(key, 'deleted')}" for key in shown)


def run_tool(args: list[str], show: Callable[[str], None] = say) -> subprocess.CompletedProcess[str]:
    """Run an operator tool as an operator would, and show its output."""
    show(f"   $ python {' '.join(args)}")
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    for line in (result.stdout + result.stderr).splitlines():
        show(f"   | {line}" if line else "   |")
    return result
