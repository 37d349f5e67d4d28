"""Section 3 of the demo: rotations exactly as Secrets Manager runs them, each told step by step."""

from __future__ import annotations

from typing import Any

from infra.demo_checks import check_invariants, key_statuses, read_version, show_versions
from infra.demo_narration import describe_smtp_attempts, say, short, show_log
from infra.demo_setup import Demo, DemoError, Options, Version
from infra.lambda_invoke import Invocation
from infra.rotation_driver import begin_rotation, run_steps


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
