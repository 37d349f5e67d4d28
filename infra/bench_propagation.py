"""How close testSecret gets to the physical limit: a sweep over the propagation delay D.

SES refuses a new key for D seconds, then accepts it; testSecret cannot know D, so it tries about
once a second. For each D, several new keys are proven at once (one thread each) against an SES
SMTP stand-in that starts accepting each key exactly D seconds after IAM created it, and we
measure the overshoot: from that moment to the moment the check returns. Goals (issue 7): median
overshoot <= 1.0 s for any D from 1 to 60 s, and AUTH attempts <= D / 1 s + 5.

    .venv/bin/python -m infra.bench_propagation --delays 0 1.5 2 2.5 10 10.5 30 60 --samples 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3

from infra.local_aws import lookup_access_key
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.smtp_check import SmtpEndpoint, check_login
from lambda_function.smtp_password import smtp_password

# Whole and half seconds: attempts start about once a second, so a D that falls between two
# attempts shows a different overshoot from one that falls on an attempt.
DEFAULT_DELAYS = (0.0, 1.5, 2.0, 2.5, 10.0, 10.5, 30.0, 60.0)


@dataclass(frozen=True)
class Sample:
    delay: float
    overshoot: float  # seconds from "SES accepts the key" to "the check returned"
    attempts: int


def prove_new_key(ses: SesSmtpStandIn, delay: float, results: list[Sample]) -> None:
    """Create a key, then run testSecret's check until the stand-in accepts it; record the sample."""
    iam = boto3.client("iam")
    user = f"ses-smtp-bench-{uuid.uuid4().hex[:10]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    created = lookup_access_key(key["AccessKeyId"])
    assert created is not None
    password = smtp_password(key["SecretAccessKey"], ses.region)
    endpoint = SmtpEndpoint("localhost", ses.starttls_port, implicit_tls=False, connect_timeout=10)
    attempts = check_login(endpoint, key["AccessKeyId"], password, deadline=time.monotonic() + delay + 60)
    accepted_at = created.create_date.timestamp() + delay
    results.append(Sample(delay, datetime.now(UTC).timestamp() - accepted_at, attempts))


def sweep(delays: Sequence[float], samples: int) -> list[Sample]:
    """All samples of all delays at once: the whole sweep takes about max(delays) seconds."""
    results: list[Sample] = []
    with contextlib.ExitStack() as stack:
        threads = []
        bundle = stack.enter_context(tempfile.NamedTemporaryFile("wb", suffix=".pem"))
        for delay in delays:
            ses = stack.enter_context(SesSmtpStandIn(lookup_access_key, propagation_delay=delay))
            bundle.write(Path(ses.ca_path).read_bytes())  # one stand-in (and one CA) per delay
            threads += [
                threading.Thread(target=prove_new_key, args=(ses, delay, results), daemon=True) for _ in range(samples)
            ]
        bundle.flush()
        os.environ["SSL_CERT_FILE"] = bundle.name
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return results


def report(results: list[Sample], delays: Sequence[float]) -> None:
    print("\ntestSecret vs the propagation delay D (overshoot = from SES accepting the key to the check returning)")
    print(
        f"  {'D (s)':>6} {'n':>3} {'median overshoot':>17} {'max overshoot':>14} {'median attempts':>16} "
        f"{'max attempts':>13} {'goal: attempts <=':>18}"
    )
    for delay in delays:
        rows = [r for r in results if r.delay == delay]
        if not rows:
            continue
        overshoot = [r.overshoot for r in rows]
        attempts = [r.attempts for r in rows]
        print(
            f"  {delay:6g} {len(rows):3d} {statistics.median(overshoot):16.2f}s {max(overshoot):13.2f}s "
            f"{statistics.median(attempts):16g} {max(attempts):13d} {delay + 5:18g}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", type=float, nargs="+", default=list(DEFAULT_DELAYS))
    parser.add_argument("--samples", type=int, default=5, help="keys proven per delay (default 5)")
    args = parser.parse_args(argv)
    from infra.bench import local_stand_ins  # the same moto and fake credentials as the rest of the bench

    with local_stand_ins():
        print(f"Sweeping D over {', '.join(f'{d:g}' for d in args.delays)} s, {args.samples} keys each, at once ...")
        results = sweep(args.delays, args.samples)
    report(results, args.delays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
