"""The local demo (SPEC §7): watch real rotations happen, with no AWS account.

    make demo
    make demo ARGS="--rotations 2 --previous-key-action delete --regions eu-west-1 --verbose"
    make demo ARGS="--no-lifecycle"     # sections 1-5 only

It follows a runbook, one section of output per step:

1. Start the local stand-ins: moto in server mode (IAM, Secrets Manager) on a free loopback port,
   the SES SMTP stand-in (its own throwaway CA, trusted through ``SSL_CERT_FILE``; a new key is
   refused for ``--delay`` seconds, as on SES), and the rotation function in a Lambda-like worker
   process that imports the template's ``Handler``.
2. Provision what ``template.yaml`` creates: the SMTP user in the SES sending group, and the secret
   bootstrapped with ``iam_user_name``, ``region``, the endpoint and an application field.
3. Rotate ``--rotations`` times exactly as Secrets Manager does (RotateSecret's empty AWSPENDING
   version, then createSecret, setSecret, testSecret, finishSecret with a RotationToken), and after
   each rotation show the step timings, the access keys and the version labels.
4. Send one e-mail with the rotated secret the way an application does (``infra/consumer.py``).
5. Show that a retired key is refused.
6. Overlap, then retire (``infra/demo_lifecycle.py``): the whole life of a key with compressed
   durations, the retirement function run by the demo, and a rollback inside the window.

The stand-in wiring is ``infra/demo_setup.py``, the narration ``infra/demo_narration.py`` and the
checks ``infra/demo_checks.py``.

Exit status 0 on success, 1 with the cause on any failure, 130 when interrupted. Everything it
starts is stopped on the way out. It never prints a password, a secret access key or a
RotationToken: key IDs and version IDs only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any

from infra.demo_checks import check_invariants, key_statuses, labels_by_version, read_version, show_versions
from infra.demo_lifecycle import show_lifecycle
from infra.demo_narration import describe_smtp_attempts, say, short, show_log
from infra.demo_setup import (
    RECIPIENT,
    REGION,
    SECRET_NAME,
    Demo,
    DemoError,
    Options,
    Version,
    provision,
    start_local_aws,
)
from infra.lambda_invoke import REPO_ROOT, Invocation
from infra.rotation_driver import begin_rotation, run_steps
from lambda_function.smtp_password import SMTP_REGIONS


class StepFailed(Exception):
    def __init__(self, step: str, invocation: Invocation) -> None:
        super().__init__(f"{step} failed")
        self.step = step
        self.invocation = invocation


# -- 3. rotations, as Secrets Manager runs them -----------------------------------------------------


def rotate(demo: Demo, number: int) -> None:
    options = demo.options
    say()
    say(f"3.{number} Rotation {number} of {options.rotations}")
    keys_before = key_statuses(demo)
    auth_seen = len(demo.ses.auth_attempts)
    token = begin_rotation(demo.secrets, demo.secret_arn)
    say(f"   Secrets Manager: new version {short(token)} labelled AWSPENDING (empty); invoking the four steps")

    def invoke(event: dict[str, Any]) -> Invocation:
        invocation = demo.function.invoke(event)
        if options.verbose:
            show_log(invocation.log)
        if invocation.failed:
            raise StepFailed(event["Step"], invocation)
        return invocation

    try:
        timings = run_steps(invoke, demo.secret_arn, token)
    except StepFailed as failure:
        demo.versions.append(read_version(demo, token, number))
        raise DemoError(explain_step_failure(demo, number, failure)) from None

    version = read_version(demo, token, number)
    demo.versions.append(version)
    keys_after = key_statuses(demo)
    for key, status in keys_after.items():
        if status != "Active" and keys_before.get(key) == "Active":
            demo.retired_by[key] = (number, "deleted" if status == "deleted" else "deactivated")
    new_key = version.key_id or "?"
    codes = [a.code for a in demo.ses.auth_attempts[auth_seen:] if a.username == new_key]
    previous = demo.versions[-2]
    notes = {
        "createSecret": f"created access key {new_key}",
        "setSecret": "the new key is Active",
        "testSecret": describe_smtp_attempts(codes),
        "finishSecret": f"AWSCURRENT -> {short(token)}; {describe_previous_key(previous, keys_after, options)}",
    }
    say("   step            seconds")
    for step, seconds in timings.items():
        say(f"   {step:<14}{seconds:>8.2f}   {notes[step]}")
    say(f"   {'total':<14}{sum(timings.values()):>8.2f}")
    show_versions(demo, keys_after)
    check_invariants(demo, number, keys_after)


def describe_previous_key(previous: Version, keys: dict[str, str], options: Options) -> str:
    if previous.key_id is None:
        return "the bootstrap version had no key to retire"
    status = keys.get(previous.key_id, "deleted")
    if options.previous_key_action is None:
        return f"previous key {previous.key_id} stays {status} for its grace period (the retirement function's job)"
    if options.previous_key_action == "keep":
        return f"previous key {previous.key_id} kept {status} until the next rotation (keep)"
    return f"previous key {previous.key_id} {status} ({options.previous_key_action})"


def explain_step_failure(demo: Demo, number: int, failure: StepFailed) -> str:
    """Name the step, the function's error and, where the demo can tell, the cause."""
    invocation, options = failure.invocation, demo.options
    if not options.verbose:
        say(f"   function log of {failure.step} (its records; --verbose shows the whole log):")
        show_log("\n".join(line for line in invocation.log.splitlines() if line.startswith("{")))
    say("   secret versions now:")
    show_versions(demo, key_statuses(demo))
    message = (
        f"Rotation {number} failed at {failure.step}: {invocation.error_type}: {invocation.error_message}\n"
        "Secrets Manager would retry the rotation; the version stays AWSPENDING until one succeeds."
    )
    if failure.step == "testSecret" and invocation.error_type == "SmtpAuthenticationError":
        if options.delay >= options.auth_timeout:
            message += (
                f"\nCause: the SES stand-in accepts a new key only after its propagation delay "
                f"({options.delay:g} s), which is longer than the function's SMTP_AUTH_TIMEOUT_SECONDS "
                f"({options.auth_timeout:g} s): the new key was refused with 535 until the function gave up. "
                "Use a larger --auth-timeout or a smaller --delay."
            )
    elif invocation.error_type == "Sandbox.Timedout":
        message += "\nCause: the function ran past its timeout and was stopped, as Lambda would."
    return message


# -- 4. an application sends mail -------------------------------------------------------------------


def run_consumer(demo: Demo, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m infra.consumer`` as an application would, trusting the stand-in's CA."""
    shown = shlex.join(["python", "-m", "infra.consumer", *args])
    say(f"   $ SSL_CERT_FILE=<stand-in CA> {shown}")
    env = {**os.environ, "SSL_CERT_FILE": demo.ses.ca_path}
    result = subprocess.run(
        [sys.executable, "-m", "infra.consumer", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for line in (result.stdout + result.stderr).splitlines():
        say(f"   {line}")
    return result


def send_as_application(demo: Demo) -> None:
    say()
    say("4. An application sends mail with the rotated secret (infra/consumer.py)")
    current = demo.versions[-1]
    received = len(demo.ses.messages)
    result = run_consumer(demo, "--secret-id", SECRET_NAME, "--to", RECIPIENT)
    new = [m for m in demo.ses.messages[received:] if m.username == current.key_id]
    if result.returncode != 0 or not new:
        raise DemoError(
            f"The application could not send with the rotated secret (exit {result.returncode}): "
            f"{result.stderr.strip() or 'the SES stand-in received no message'}"
        )
    message = new[-1]
    say(
        f"   SES stand-in: accepted (250) a message from {message.mail_from} to {', '.join(message.rcpt_tos)}, "
        f"signed in as {message.username} (AWSCURRENT's key) over {message.listener.upper()}"
    )


# -- 5. a retired key is refused -------------------------------------------------------------------


def show_retired_key_refused(demo: Demo) -> None:
    say()
    say("5. A retired key is refused")
    options = demo.options
    retired = [v for v in reversed(demo.versions[:-1]) if v.key_id in demo.retired_by]
    if not retired:
        say(f"   Nothing retired yet: {why_nothing_retired(demo)}")
        return
    version = retired[0]
    assert version.key_id is not None
    rotation, what = demo.retired_by[version.key_id]
    labels = ", ".join(labels_by_version(demo).get(version.version_id, [])) or "no label now"
    say(
        f"   version {short(version.version_id)} (rotation {version.rotation}, {labels}) names access key "
        f"{version.key_id}, {what} by rotation {rotation} ({options.policy})"
    )
    if options.previous_key_action == "keep":
        say("   (keep: AWSPREVIOUS's key stays Active as a grace period; the next rotation deletes it)")
    elif options.previous_key_action is None:
        say("   (these rotations came faster than the grace period: createSecret freed a key slot; section 6")
        say("    shows the previous key retiring at its own pace)")
    attempts = len(demo.ses.auth_attempts)
    result = run_consumer(demo, "--secret-id", SECRET_NAME, "--to", RECIPIENT, "--version-id", version.version_id)
    codes = {a.code for a in demo.ses.auth_attempts[attempts:] if a.username == version.key_id}
    if result.returncode == 0 or codes != {535}:
        raise DemoError(
            f"The password of retired key {version.key_id} was not refused with 535 "
            f"(consumer exit {result.returncode}, SMTP replies {sorted(codes)})."
        )
    say(f"   SES stand-in: 535 for {version.key_id}; refused, as it must be")


def why_nothing_retired(demo: Demo) -> str:
    options = demo.options
    if len(demo.versions) <= 2:
        return "rotation 1 replaced the bootstrap version, which had no key; run --rotations 2 or more."
    if options.previous_key_action in (None, "keep"):
        return (
            "AWSPREVIOUS's key is still in its grace period (the next rotation frees its slot); run "
            "--rotations 3 or more, or --previous-key-action deactivate or delete."
        )
    return "no key was deactivated or deleted."


# -- the runbook -----------------------------------------------------------------------------------


def run(options: Options, *, lifecycle: bool = True) -> None:
    """The whole demo; everything started is stopped when this returns or raises."""
    say("SES SMTP credential rotation: local demo, no AWS account needed")
    say(
        f"({options.rotations} rotation(s), previous key: {options.policy}, "
        f"propagation delay {options.delay:g} s{', regions ' + ' '.join(options.regions) if options.regions else ''})"
    )
    say()
    with contextlib.ExitStack() as stack:
        demo = start_local_aws(stack, options)
        provision(demo)
        for number in range(1, options.rotations + 1):
            rotate(demo, number)
        send_as_application(demo)
        show_retired_key_refused(demo)
        if lifecycle:
            show_lifecycle(demo)


def parse_args(argv: Sequence[str] | None) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m infra.demo",
        description="Rotate SES SMTP credentials against local stand-ins of IAM, Secrets Manager and SES.",
    )
    parser.add_argument("--rotations", type=int, default=3, help="how many rotations (default 3)")
    parser.add_argument(
        "--delay", type=float, default=5.0, help="seconds before the SES stand-in accepts a new key (default 5)"
    )
    parser.add_argument(
        "--auth-timeout",
        type=float,
        help="the function's SMTP_AUTH_TIMEOUT_SECONDS (default: delay + 20)",
    )
    parser.add_argument(
        "--previous-key-action",
        choices=("keep", "deactivate", "delete"),
        help="the first release's PREVIOUS_KEY_ACTION instead of the (compressed) overlap durations",
    )
    parser.add_argument(
        "--no-lifecycle", action="store_true", help="leave out section 6 (overlap, then retire; about 20 s)"
    )
    parser.add_argument(
        "--regions", nargs="+", default=[], metavar="REGION", help="extra regions to derive passwords for"
    )
    parser.add_argument("--verbose", action="store_true", help="show the function's logs")
    args = parser.parse_args(argv)
    if not 1 <= args.rotations <= 20:
        parser.error("--rotations must be between 1 and 20")
    if not 0 <= args.delay <= 60:
        parser.error("--delay must be between 0 and 60 seconds")
    auth_timeout = args.delay + 20 if args.auth_timeout is None else args.auth_timeout
    if not 0 < auth_timeout <= 900:
        parser.error("--auth-timeout must be more than 0 and at most 900 seconds")
    regions = tuple(dict.fromkeys(r for item in args.regions for r in item.split(",") if r and r != REGION))
    unknown = [r for r in regions if r not in SMTP_REGIONS]
    if unknown:
        parser.error(f"no SES SMTP endpoint in {', '.join(unknown)}; choose from {', '.join(sorted(SMTP_REGIONS))}")
    options = Options(args.rotations, args.delay, auth_timeout, args.previous_key_action, regions, args.verbose)
    return options, not args.no_lifecycle


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM: stop everything the same way as Ctrl-C


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    options, lifecycle = parse_args(argv)
    started = time.monotonic()
    code = 1
    with _sigterm_as_interrupt():
        try:
            run(options, lifecycle=lifecycle)
            code = 0
        except DemoError as error:
            print(f"\nDEMO FAILED: {error}", file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            print("\nDEMO INTERRUPTED.", file=sys.stderr, flush=True)
            code = 130
        except Exception as error:
            print(f"\nDEMO FAILED unexpectedly: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            if options.verbose:
                traceback.print_exc()
    elapsed = time.monotonic() - started
    say()
    if code == 0:
        say(f"Demo passed in {elapsed:.1f} s. Stopped the function workers, the SES SMTP stand-in and moto.")
    else:
        say(f"Stopped the function workers, the SES SMTP stand-in and moto after {elapsed:.1f} s.")
    return code


if __name__ == "__main__":
    sys.exit(main())
