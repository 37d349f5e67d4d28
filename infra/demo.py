"""The local demo (SPEC §7): watch real rotations happen, with no AWS account.

    make demo
    make demo ARGS="--rotations 2 --previous-key-action delete --regions eu-west-1 --verbose"

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
5. Show that a key retired by the previous-key action is refused.

Exit status 0 on success, 1 with the cause on any failure, 130 when interrupted. Everything it
starts is stopped on the way out. It never prints a password, a secret access key or a
RotationToken: key IDs and version IDs only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

import boto3

from infra.lambda_invoke import REPO_ROOT, Invocation, LambdaWorker
from infra.local_aws import MotoServer, lookup_access_key, set_fake_aws_env
from infra.rotation_driver import begin_rotation, run_steps
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.smtp_password import SMTP_REGIONS

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

HANDLER = "lambda_function.handler.lambda_handler"  # the template's Handler
REGION = "us-east-1"  # the stand-in's region: SES checks the password of its own region
USER = "ses-smtp-user"  # the template's default SmtpUserName
SECRET_NAME = f"ses-smtp/{USER}"  # the template's default secret name
STANDIN_HOST = "localhost"  # the SES stand-in, on loopback: the one host the demo's deployment allows
SENDING_GROUP = "AWSSESSendingGroupDoNotRename"
SENDING_POLICY = "AmazonSesSendingAccess"
SENDER = "app@example.com"  # the application field of the secret
VERIFIED_DOMAIN = "example.com"
RECIPIENT = "success@simulator.amazonses.com"
HANDLER_MARGIN_SECONDS = 10  # the function timeout beyond the SMTP budget (the handler keeps 5 s)
VERSIONS_SHOWN = 4
INDENT = " " * 35  # continuation lines of section 1


class DemoError(Exception):
    """The demo cannot go on; the message names the cause."""


@dataclass(frozen=True)
class Options:
    rotations: int = 3
    delay: float = 5.0
    auth_timeout: float = 25.0
    previous_key_action: str = "keep"
    regions: tuple[str, ...] = ()
    verbose: bool = False


@dataclass(frozen=True)
class Version:
    """One secret version as the demo shows it: IDs and field names, never values."""

    version_id: str
    rotation: int  # 0: the deployer's bootstrap version
    key_id: str | None
    fields: tuple[str, ...]
    password_regions: tuple[str, ...]


@dataclass
class Demo:
    """What the demo started and what it has seen so far."""

    options: Options
    moto: MotoServer
    ses: SesSmtpStandIn
    function: LambdaWorker
    iam: IAMClient
    secrets: SecretsManagerClient
    secret_arn: str = ""
    versions: list[Version] = field(default_factory=list)  # oldest first
    retired_by: dict[str, tuple[int, str]] = field(default_factory=dict)  # key -> (rotation, what)


class StepFailed(Exception):
    def __init__(self, step: str, invocation: Invocation) -> None:
        super().__init__(f"{step} failed")
        self.step = step
        self.invocation = invocation


def say(text: str = "") -> None:
    print(text, flush=True)


def short(version_id: str) -> str:
    return version_id[:8]


# -- 1. the local stand-ins --------------------------------------------------------------------------


def start_local_aws(stack: contextlib.ExitStack, options: Options) -> Demo:
    say("1. Local stand-ins (nothing here talks to AWS)")
    set_fake_aws_env(os.environ, region=REGION)  # before any client exists: fake credentials only
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    moto = stack.enter_context(MotoServer())
    set_fake_aws_env(os.environ, moto.endpoint_url, region=REGION)
    say(f"   {'moto (IAM, Secrets Manager)':<32}{moto.endpoint_url}")
    ses = stack.enter_context(
        SesSmtpStandIn(
            lookup_access_key, region=REGION, propagation_delay=options.delay, verified_senders=[VERIFIED_DOMAIN]
        )
    )
    say(f"   {f'SES SMTP stand-in ({REGION})':<32}localhost:{ses.starttls_port} STARTTLS, localhost:{ses.tls_port} TLS")
    say(f"{INDENT}a new key is refused (535) for its first {options.delay:g} s")
    say(f"{INDENT}verified identity: {VERIFIED_DOMAIN}; CA in SSL_CERT_FILE")
    timeout = options.auth_timeout + HANDLER_MARGIN_SECONDS
    function = LambdaWorker(HANDLER, env=function_env(options, moto, ses), timeout=timeout)
    stack.callback(function.close)
    function.start()
    if options.verbose:
        show_log(function.read_new_log())
    say(f"   {'rotation function':<32}{HANDLER} in a worker process (INIT {function.init_seconds:.1f} s)")
    say(
        f"{INDENT}timeout {timeout:g} s, PREVIOUS_KEY_ACTION={options.previous_key_action}, "
        f"SMTP_AUTH_TIMEOUT_SECONDS={options.auth_timeout:g}"
    )
    return Demo(
        options=options,
        moto=moto,
        ses=ses,
        function=function,
        iam=boto3.client("iam"),
        secrets=boto3.client("secretsmanager"),
    )


def function_env(options: Options, moto: MotoServer, ses: SesSmtpStandIn) -> dict[str, str]:
    """The function's environment: what the template sets, pointed at the stand-ins."""
    env = dict(os.environ)
    set_fake_aws_env(env, moto.endpoint_url, region=REGION)
    env.pop("SMTP_TEST_SENDER", None)
    env.update(
        {
            "SSL_CERT_FILE": ses.ca_path,
            # As the template does: the stand-in is the one host credentials may go to, and the
            # secret may rotate USER's keys only (bound by name here: the ARN comes later).
            "SMTP_ALLOWED_HOSTS": STANDIN_HOST,
            "SMTP_SECRET_BINDINGS": json.dumps({SECRET_NAME: USER}),
            "PREVIOUS_KEY_ACTION": options.previous_key_action,
            "SMTP_AUTH_TIMEOUT_SECONDS": f"{options.auth_timeout:g}",
            "SMTP_CONNECT_TIMEOUT_SECONDS": "10",
            "POWERTOOLS_SERVICE_NAME": "ses-smtp-rotation",
            "POWERTOOLS_METRICS_NAMESPACE": "SesSmtpRotation",
            "POWERTOOLS_LOG_LEVEL": "INFO" if options.verbose else "WARNING",
        }
    )
    return env


# -- 2. what template.yaml creates -----------------------------------------------------------------


def provision(demo: Demo) -> None:
    say()
    say("2. Provision what template.yaml creates")
    iam = demo.iam
    iam.create_user(UserName=USER)
    iam.create_group(GroupName=SENDING_GROUP)
    allow_send = {"Sid": "SendThroughSesSmtp", "Effect": "Allow", "Action": "ses:SendRawEmail", "Resource": "*"}
    policy = {"Version": "2012-10-17", "Statement": [allow_send]}
    iam.put_group_policy(GroupName=SENDING_GROUP, PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(policy))
    iam.add_user_to_group(GroupName=SENDING_GROUP, UserName=USER)
    say(f"   IAM user {USER} (no access key yet) in group {SENDING_GROUP} ({SENDING_POLICY}: ses:SendRawEmail)")

    bootstrap: dict[str, Any] = {
        "iam_user_name": USER,
        "region": REGION,
        "host": STANDIN_HOST,  # the stand-in, instead of email-smtp.us-east-1.amazonaws.com
        "port": demo.ses.starttls_port,
        "sender": SENDER,
    }
    if demo.options.regions:
        bootstrap["regions"] = list(demo.options.regions)
    description = f"SES SMTP credentials of IAM user {USER} (username, password, host, port), rotated locally."
    created = demo.secrets.create_secret(Name=SECRET_NAME, Description=description, SecretString=json.dumps(bootstrap))
    demo.secret_arn = created["ARN"]
    demo.versions.append(Version(created["VersionId"], 0, None, tuple(sorted(bootstrap)), ()))
    say(f"   secret {SECRET_NAME}: {json.dumps(bootstrap)}")
    say("   rotation: every 30 days with the function above; deploying rotates at once (rotation 1)")


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


def read_version(demo: Demo, version_id: str, rotation: int) -> Version:
    """The key ID and field names of a version (its values stay here)."""
    try:
        text = demo.secrets.get_secret_value(SecretId=demo.secret_arn, VersionId=version_id).get("SecretString")
    except demo.secrets.exceptions.ResourceNotFoundException:
        text = None  # a pending version that createSecret did not fill
    document = json.loads(text or "{}")
    passwords = document.get("passwords")
    return Version(
        version_id=version_id,
        rotation=rotation,
        key_id=document.get("username"),
        fields=tuple(sorted(document)),
        password_regions=tuple(passwords) if isinstance(passwords, dict) else (),
    )


def key_statuses(demo: Demo) -> dict[str, str]:
    """Every key the user has or any version named: Active, Inactive or deleted."""
    listed = demo.iam.list_access_keys(UserName=USER)["AccessKeyMetadata"]
    statuses: dict[str, str] = {key["AccessKeyId"]: key["Status"] for key in listed}
    for version in demo.versions:
        if version.key_id is not None:
            statuses.setdefault(version.key_id, "deleted")
    return statuses


def labels_by_version(demo: Demo) -> dict[str, list[str]]:
    return dict(demo.secrets.describe_secret(SecretId=demo.secret_arn).get("VersionIdsToStages", {}))


def describe_smtp_attempts(codes: list[int]) -> str:
    if not codes:
        return "no SMTP login seen"
    if codes == [235]:
        return "SMTP AUTH: 235 at the first attempt"
    refused = codes[:-1] if codes[-1] == 235 else codes
    text = f"SMTP AUTH: {'/'.join(str(c) for c in sorted(set(refused)))} x{len(refused)} while the key propagated"
    return text + (f", then 235 (attempt {len(codes)})" if codes[-1] == 235 else "")


def describe_previous_key(previous: Version, keys: dict[str, str], options: Options) -> str:
    if previous.key_id is None:
        return "the bootstrap version had no key to retire"
    status = keys.get(previous.key_id, "deleted")
    if options.previous_key_action == "keep":
        return f"previous key {previous.key_id} kept {status} until the next rotation (keep)"
    return f"previous key {previous.key_id} {status} ({options.previous_key_action})"


def show_versions(demo: Demo, keys: dict[str, str]) -> None:
    labels = labels_by_version(demo)
    say(f"   version   {'labels':<24} {'access key':<22} key status")
    newest_first = list(reversed(demo.versions))
    for version in newest_first[:VERSIONS_SHOWN]:
        label = ", ".join(sorted(labels.get(version.version_id, []))) or "-"
        key = version.key_id or ("(bootstrap: no key)" if version.rotation == 0 else "(no value)")
        status = keys.get(version.key_id, "") if version.key_id else ""
        say(f"   {short(version.version_id)}  {label:<24} {key:<22} {status}".rstrip())
    if len(newest_first) > VERSIONS_SHOWN:
        say(f"   ... and {len(newest_first) - VERSIONS_SHOWN} older version(s) without labels")
    current = next(v for v in demo.versions if "AWSCURRENT" in labels.get(v.version_id, []))
    fields = ", ".join(current.fields)
    regions = f"; passwords for {', '.join(current.password_regions)}" if current.password_regions else ""
    say(f"   AWSCURRENT holds {fields} (values not shown){regions}")


def check_invariants(demo: Demo, number: int, keys: dict[str, str]) -> None:
    """What a successful rotation guarantees (SPEC §9); the demo refuses to go on without it."""
    labels = labels_by_version(demo)
    current = demo.versions[-1]
    problems = []
    if "AWSCURRENT" not in labels.get(current.version_id, []):
        problems.append(f"AWSCURRENT is not on the new version {short(current.version_id)}")
    if current.key_id is None or keys.get(current.key_id) != "Active":
        problems.append(f"the AWSCURRENT key {current.key_id} is not Active")
    existing = [key for key, status in keys.items() if status != "deleted"]
    if len(existing) > 2:
        problems.append(f"IAM user {USER} has {len(existing)} access keys")
    named = {version.key_id for version in demo.versions}
    orphans = [key for key in existing if key not in named]
    if orphans:
        problems.append(f"no version names access key(s) {', '.join(orphans)}")
    stuck = [v for v, stages in labels.items() if "AWSPENDING" in stages and "AWSCURRENT" not in stages]
    if stuck:
        problems.append(f"AWSPENDING is left on version {short(stuck[0])}")
    if problems:
        raise DemoError(f"Rotation {number} reported success, but {'; '.join(problems)}.")


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


# Keys every Powertools record repeats (Lambda context, where in the code): left out of the display.
_LOG_CONTEXT_KEYS = frozenset(
    {"level", "location", "message", "timestamp", "service", "cold_start", "secret_id", "version_id", "xray_trace_id"}
)


def show_log(text: str) -> None:
    """The function's log, one line per record; structured records compacted to their own keys."""
    for line in text.splitlines():
        if line.startswith("END RequestId"):
            continue
        say(f"   | {compact_log_line(line)}")


def compact_log_line(line: str) -> str:
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    if "_aws" in record:  # an embedded-metric-format record
        metrics = [m["Name"] for d in record["_aws"].get("CloudWatchMetrics", []) for m in d.get("Metrics", [])]
        return "metric " + ", ".join(metrics)
    extra = " ".join(
        f"{key}={value}"
        for key, value in record.items()
        if key not in _LOG_CONTEXT_KEYS and not key.startswith("function_")
    )
    return f"{record.get('level', '')} {record.get('message', '')}  {extra}".rstrip()


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
        f"{version.key_id}, {what} by rotation {rotation} ({options.previous_key_action})"
    )
    if options.previous_key_action == "keep":
        say("   (keep: AWSPREVIOUS's key stays Active as a grace period; the next rotation deletes it)")
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
    return (
        "with keep, AWSPREVIOUS's key stays Active as a grace period until the next rotation deletes "
        "it; run --rotations 3 or more, or --previous-key-action deactivate or delete."
        if options.previous_key_action == "keep"
        else "no key was deactivated or deleted."
    )


# -- the runbook -----------------------------------------------------------------------------------


def run(options: Options) -> None:
    """The whole demo; everything started is stopped when this returns or raises."""
    say("SES SMTP credential rotation: local demo, no AWS account needed")
    say(
        f"({options.rotations} rotation(s), previous-key action {options.previous_key_action}, "
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


def parse_args(argv: Sequence[str] | None) -> Options:
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
        default="keep",
        help="what finishSecret does with the previous key (default keep)",
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
    return Options(args.rotations, args.delay, auth_timeout, args.previous_key_action, regions, args.verbose)


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
    options = parse_args(argv)
    started = time.monotonic()
    code = 1
    with _sigterm_as_interrupt():
        try:
            run(options)
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
        say(f"Demo passed in {elapsed:.1f} s. Stopped the function worker, the SES SMTP stand-in and moto.")
    else:
        say(f"Stopped the function worker, the SES SMTP stand-in and moto after {elapsed:.1f} s.")
    return code


if __name__ == "__main__":
    sys.exit(main())
