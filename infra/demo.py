"""The local demo (SPEC §7): watch real rotations happen, with no AWS account.

    make demo
    make demo ARGS="--rotations 2 --previous-key-action delete --regions eu-west-1 --verbose"
    make demo ARGS="--no-lifecycle"     # sections 1-5 only

It follows a runbook, one section of output per step:

1. Start the local stand-ins: moto in server mode (IAM, Secrets Manager, SNS, SQS) on a free
   loopback port, the SES SMTP stand-in (its own throwaway CA, trusted through ``SSL_CERT_FILE``;
   a new key is refused for ``--delay`` seconds, as on SES; an accepted AUTH is the key's last
   use), and the rotation and retirement functions in Lambda-like worker processes that import
   the template's ``Handler``s.
2. Provision what ``template.yaml`` creates: the SMTP user in the SES sending group, and the secret
   bootstrapped with ``iam_user_name``, ``region``, the endpoint and an application field.
3. Rotate ``--rotations`` times exactly as Secrets Manager does (RotateSecret's empty AWSPENDING
   version, then createSecret, setSecret, testSecret, finishSecret with a RotationToken), and after
   each rotation show the step timings, the access keys and the version labels.
4. Send one e-mail with the rotated secret the way an application does (``infra/consumer.py``).
5. Show that a retired key is refused.
6. Overlap, then retire (``infra/demo_lifecycle.py``): the whole life of a key with compressed
   durations, the retirement function run by the demo, and a rollback inside the window.

Sections 1-2 (the stand-in wiring) are ``infra/demo_setup.py``, section 3 ``infra/demo_rotations.py``,
section 6 ``infra/demo_lifecycle.py``; the narration is ``infra/demo_narration.py`` and the checks
``infra/demo_checks.py``.

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

from infra.demo_checks import labels_by_version
from infra.demo_lifecycle import show_lifecycle
from infra.demo_narration import say, short
from infra.demo_rotations import rotate
from infra.demo_setup import (
    RECIPIENT,
    REGION,
    SECRET_NAME,
    Demo,
    DemoError,
    Options,
    provision,
    start_local_aws,
)
from infra.lambda_invoke import REPO_ROOT
from lambda_function.smtp_password import SMTP_REGIONS

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
        "--delay", type=float, default=3.0, help="seconds before the SES stand-in accepts a new key (default 3)"
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
