"""Fleet benchmark: N SMTP users rotated at once, IAM optionally limited to R calls/s.

    make bench-fleet ARGS="--users 200 --iam-rate 5"
    .venv/bin/python -m infra.bench_fleet --users 20 [--iam-rate R] [--workers W]

One moto server (IAM, Secrets Manager), one SES SMTP stand-in, and IAM behind a proxy that counts
calls and, with ``--iam-rate``, answers IAM's ``Throttling`` error beyond R calls/s across the
fleet. Secrets Manager starts every rotation at once; W Lambda-like workers (warm containers, the
template's handler, the timeout a default deployment has) run the four steps; the rotations that
failed are retried once with the same token, as Secrets Manager retries. Then it prints:
completed/failed on the first attempt and after the retry, p50/p95 rotation time, IAM calls per
rotation, keys per user and orphans (keys no secret version names, by the audit's rules).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import boto3
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

from infra.fleet import FleetCheck, Outcome, check_fleet, provision, rotate_all, start_rotations, start_workers
from infra.iam_throttle import IamThrottle
from infra.local_aws import MotoServer, lookup_access_key, set_fake_aws_env
from infra.ses_smtp import SesSmtpStandIn

HANDLER = "lambda_function.handler.lambda_handler"  # the template's Handler
TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


def template_timeout(template_path: Path = TEMPLATE) -> float:
    """The rotation function's Timeout a default deployment gets: the template derives it from
    SmtpAuthTimeoutSeconds (its default) through the RotationTimeouts mapping."""
    template = yaml_parse(template_path.read_text())
    wait = str(template["Parameters"]["SmtpAuthTimeoutSeconds"]["Default"])
    return float(template["Mappings"]["RotationTimeouts"][wait]["FunctionTimeout"])


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] if ordered else float("nan")


def _attempt_line(name: str, outcomes: Sequence[Outcome], total: int) -> str:
    done = sum(o.completed for o in outcomes)
    return f"  {name:<24} {done:>5} completed  {len(outcomes) - done:>5} failed   ({done / total:.1%} of {total})"


def _errors(outcomes: Sequence[Outcome]) -> list[str]:
    errors = collections.Counter(f"{o.failed_step}: {(o.error or '')[:150]}" for o in outcomes if not o.completed)
    return [f"    {count:>4} x {error}" for error, count in errors.most_common(5)]


def function_env(moto: MotoServer, ses: SesSmtpStandIn, iam_url: str, bindings: dict[str, str]) -> dict[str, str]:
    """What the template sets, pointed at the stand-ins; IAM through the throttling proxy."""
    env = dict(os.environ)
    set_fake_aws_env(env, moto.endpoint_url, region=ses.region)
    env.update(
        {
            "AWS_ENDPOINT_URL_IAM": iam_url,
            "SSL_CERT_FILE": ses.ca_path,
            "SMTP_ALLOWED_HOSTS": "localhost",
            "SMTP_SECRET_BINDINGS": json.dumps(bindings),
            "POWERTOOLS_SERVICE_NAME": "ses-smtp-rotation",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_NAMESPACE": "SesSmtpRotation",
        }
    )
    env.pop("SMTP_TEST_SENDER", None)
    return env


def report(
    args: argparse.Namespace,
    first: Sequence[Outcome],
    retried: Sequence[Outcome],
    throttle: IamThrottle,
    check: FleetCheck,
    seconds: tuple[float, float],
) -> None:
    users = args.users
    completed_after_retry = sum(o.completed for o in first) + sum(o.completed for o in retried)
    rate = f"{args.iam_rate:g} calls/s (burst {throttle.bucket.burst:g})" if throttle.bucket else "unlimited"
    print(f"\nFleet: {users} users, {args.workers} workers, IAM rate {rate}, function timeout {args.timeout:g} s")
    print(_attempt_line("first attempt", first, users) + f"   in {seconds[0]:.1f} s")
    print(
        f"  {'after one retry':<24} {completed_after_retry:>5} completed  {users - completed_after_retry:>5} failed   "
        f"({completed_after_retry / users:.1%} of {users})   retry took {seconds[1]:.1f} s"
    )
    if not all(o.completed for o in first):
        print("  first-attempt failures (step: error):")
        print("\n".join(_errors(first)))
    if retried and not all(o.completed for o in retried):
        print("  failures after the retry:")
        print("\n".join(_errors(retried)))
    times = [o.seconds for o in first if o.completed]
    print(
        f"  rotation time (first attempt, completed): p50 {_percentile(times, 0.5):.2f} s, "
        f"p95 {_percentile(times, 0.95):.2f} s, max {max(times, default=float('nan')):.2f} s"
    )
    accepted, throttled = sum(throttle.accepted.values()), sum(throttle.throttled.values())
    print(
        f"  IAM calls per rotation: {accepted / users:.2f} answered + {throttled / users:.2f} throttled "
        f"({accepted} + {throttled} in all)"
    )
    per_op = ", ".join(f"{op} {n / users:.2f}" for op, n in sorted(throttle.accepted.items()))
    print(f"    answered, per rotation: {per_op}")
    spread = ", ".join(f"{n} key(s): {count} users" for n, count in sorted(check.keys_per_user.items()))
    print(f"  keys per user: {spread}; max {max(check.keys_per_user, default=0)}")
    print(f"  orphans (keys no secret version names): {check.orphans}; rotations left pending: {check.unfinished}")
    others = {code: n for code, n in check.findings.items() if code != "key_named_by_no_secret"}
    print(f"  other audit findings: {others or 'none'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20, help="N: users and secrets (default 20)")
    parser.add_argument("--iam-rate", type=float, default=None, help="R: IAM calls per second across the fleet")
    parser.add_argument("--burst", type=float, default=None, help="IAM calls saved up at most (default R)")
    parser.add_argument(
        "--workers", type=int, default=None, help="Lambda-like workers in parallel (default min(N, 50))"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="function timeout, seconds (default: the template's default)"
    )
    parser.add_argument("--propagation-delay", type=float, default=0.0, help="seconds before SES accepts a new key")
    args = parser.parse_args(argv)
    args.workers = args.workers or min(args.users, 50)
    args.timeout = args.timeout or template_timeout()

    set_fake_aws_env(os.environ)  # before any client exists: fake credentials only
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with (
        MotoServer() as moto,
        SesSmtpStandIn(lookup_access_key, propagation_delay=args.propagation_delay) as ses,
        IamThrottle(moto.endpoint_url, rate=args.iam_rate, burst=args.burst) as throttle,
    ):
        set_fake_aws_env(os.environ, moto.endpoint_url, region=ses.region)
        iam, secrets = boto3.client("iam"), boto3.client("secretsmanager")  # straight to moto: not limited
        print(f"Provisioning {args.users} users (2 keys each) and secrets ...", flush=True)
        fleet = provision(iam, secrets, args.users, ses)
        env = function_env(moto, ses, throttle.endpoint_url, {m.secret_arn: m.user for m in fleet})
        print(f"Starting {args.workers} Lambda-like workers ...", flush=True)
        workers = start_workers(HANDLER, env, args.workers, args.timeout)
        try:
            tokens = start_rotations(secrets, fleet)
            print(f"Rotating {args.users} secrets at once ...", flush=True)
            started = time.monotonic()
            first = rotate_all(workers, list(tokens.items()))
            first_seconds = time.monotonic() - started
            failed = [(o.secret_arn, tokens[o.secret_arn]) for o in first if not o.completed]
            started = time.monotonic()
            retried = rotate_all(workers, failed) if failed else []
            retry_seconds = time.monotonic() - started
        finally:
            for worker in workers:
                worker.close()
        check = check_fleet(iam, secrets)
        report(args, first, retried, throttle, check, (first_seconds, retry_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
