"""Figures for the closing notes and regressions: AWS calls per rotation, step times, import cost,
and testSecret against the propagation delay.

    .venv/bin/python -m infra.bench [--rotations N] [--no-sweep]

Runs whole rotations through the handler in-process against moto (server mode) and the SES SMTP
stand-in, counting every AWS API call botocore makes, then times ``import`` of the handler
module and of boto3 in fresh interpreters (``python -X importtime``), then sweeps the propagation
delay (``infra.bench_propagation``; about a minute).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3

from infra.lambda_invoke import LocalContext
from infra.local_aws import MotoServer, set_fake_aws_env
from infra.rotation_driver import STEPS, begin_rotation, step_event


def import_ms(module: str, runs: int = 5) -> float:
    """Median cumulative import time of `module` in a fresh interpreter, in milliseconds."""
    samples = []
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
        ).stderr
        last = [line for line in err.splitlines() if re.search(rf"\|\s*{re.escape(module)}$", line)][-1]
        samples.append(int(last.split("|")[1]) / 1000)
    return statistics.median(samples)


@contextlib.contextmanager
def local_stand_ins() -> Iterator[MotoServer]:
    """moto in server mode, with this process's AWS clients pointed at it (fake credentials)."""
    with MotoServer() as moto:
        set_fake_aws_env(os.environ, moto.endpoint_url)
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        os.environ["SMTP_ALLOWED_HOSTS"] = "localhost"  # the SES stand-in, as the deployer would allow it
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        yield moto


def artifact_figures() -> None:
    """Build the deployable artifact as `make build` does; print its zip size and cold import."""
    import tempfile
    from pathlib import Path

    from infra.artifact import cold_import, runtime_sdk_dir, zip_size
    from infra.build import build

    with tempfile.TemporaryDirectory() as tmp:
        built = build(Path(tmp) / "build")
        sdk = runtime_sdk_dir(Path(tmp) / "sdk", built.python)
        figures = cold_import(built.python, built.function_dir, sdk)
        print(f"\nBuilt artifact ({built.function_dir.name}, python3.13, boto3 from the runtime):")
        print(f"  zip                                     {zip_size(built.function_dir) / 1e6:7.2f} MB   (goal < 2 MB)")
        print(f"  cold import lambda_function.handler     {figures.handler_ms:7.1f} ms   (fresh python3.13 -I -S -B)")
        print(f"  cold import boto3, smtplib              {figures.baseline_ms:7.1f} ms")
        print(f"  ratio (median of back-to-back pairs)    {figures.ratio:7.2f} x    (goal <= 1.2 x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=3)
    parser.add_argument("--no-sweep", action="store_true", help="skip the propagation-delay sweep (about a minute)")
    args = parser.parse_args(argv)

    from infra import bench_propagation
    from infra.local_aws import lookup_access_key
    from infra.ses_smtp import SesSmtpStandIn

    with local_stand_ins(), SesSmtpStandIn(lookup_access_key) as ses:
        os.environ["SSL_CERT_FILE"] = ses.ca_path
        from lambda_function.handler import lambda_handler

        boto3.client("iam").create_user(UserName="ses-smtp-bench")
        secrets = boto3.client("secretsmanager")
        document = {"iam_user_name": "ses-smtp-bench", "host": "localhost", "port": ses.starttls_port}
        arn = secrets.create_secret(Name="ses-smtp-bench", SecretString=json.dumps(document))["ARN"]
        os.environ["SMTP_SECRET_BINDINGS"] = json.dumps({arn: "ses-smtp-bench"})

        calls: collections.Counter[str] = collections.Counter()
        current_step = [""]

        def count(model: Any, **_: Any) -> None:
            calls[f"{current_step[0]} {model.service_model.service_name}:{model.name}"] += 1

        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-call", count)
        step_times: dict[str, list[float]] = collections.defaultdict(list)
        for _ in range(args.rotations):
            token = begin_rotation(secrets, arn)
            calls_before = sum(calls.values())
            for step in STEPS:
                current_step[0] = step
                started = time.perf_counter()
                lambda_handler(step_event(step, arn, token, None), LocalContext.with_timeout(300))
                step_times[step].append(time.perf_counter() - started)
            print(f"rotation: {sum(calls.values()) - calls_before} AWS API calls")

    print(f"\nAWS API calls over {args.rotations} rotations (per step and operation):")
    for name, count_ in sorted(calls.items(), key=lambda item: STEPS.index(item[0].split()[0])):
        print(f"  {name:55} {count_ / args.rotations:.1f} per rotation")
    print(f"  {'total':55} {sum(calls.values()) / args.rotations:.1f} per rotation")
    print("\nStep wall time (median, local stand-ins, no propagation delay):")
    for step in STEPS:
        print(f"  {step:15} {statistics.median(step_times[step]) * 1000:7.1f} ms")
    print("\nImport time in a fresh interpreter (median of 5, python -X importtime):")
    for module in ("boto3", "lambda_function.handler"):
        print(f"  {module:25} {import_ms(module):7.1f} ms")
    artifact_figures()
    if not args.no_sweep:
        return bench_propagation.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
