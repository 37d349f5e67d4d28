"""The fleet benchmark runs end to end (a small fleet; the figures come from `make bench-fleet`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from infra.bench_fleet import template_timeout
from infra.lambda_invoke import REPO_ROOT
from infra.local_aws import set_fake_aws_env
from tests.template.resolver import deploy
from tests.template.support import FUNCTION_ID


def bench_fleet(*args: str) -> str:
    env = dict(os.environ)
    set_fake_aws_env(env)  # fake credentials; the benchmark starts its own moto
    env.pop("AWS_ENDPOINT_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "infra.bench_fleet", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_a_small_fleet_rotates_and_the_report_has_every_figure() -> None:
    out = bench_fleet("--users", "3", "--workers", "2")
    assert re.search(r"first attempt\s+3 completed\s+0 failed", out), out
    assert re.search(r"after one retry\s+3 completed\s+0 failed", out), out
    assert re.search(r"rotation time .*: p50 [\d.]+ s, p95 [\d.]+ s", out), out
    assert re.search(r"IAM calls per rotation: 4\.00 answered", out), out
    assert "keys per user: 2 key(s): 3 users; max 2" in out
    assert "orphans (keys no secret version names): 0" in out


def test_a_small_fleet_rotates_through_iam_throttling() -> None:
    # 3 rotations at once, IAM answering 4 calls/s with no burst: some calls are throttled and retried.
    out = bench_fleet("--users", "3", "--workers", "3", "--iam-rate", "4", "--burst", "1")
    assert re.search(r"first attempt\s+3 completed\s+0 failed", out), out
    throttled = re.search(r"IAM calls per rotation: 4\.00 answered \+ ([\d.]+) throttled", out)
    assert throttled is not None and float(throttled.group(1)) > 0, out
    assert "orphans (keys no secret version names): 0" in out


def test_the_benchmarks_workers_get_the_timeout_a_default_deployment_has() -> None:
    # The template resolved as CloudFormation would, with its default parameters.
    assert template_timeout() == float(deploy().properties(FUNCTION_ID)["Timeout"])
