"""What the retirement function tells an operator (SPEC §4a compliance signals): the metrics it
prints (CloudWatch embedded metric format, read from stdout) against what the template's alarm
watches. End to end against moto; time passes by backdating moto's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from mypy_boto3_iam import IAMClient
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]

from infra.ses_smtp import SesSmtpStandIn
from tests.retirement_support import Deployment, deploy, emitted_metrics, rotated_twice, secret_metrics

pytestmark = pytest.mark.usefixtures("smtp_ca")

H = timedelta(hours=1)
D = timedelta(days=1)
TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


@pytest.fixture
def deployment(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    yield deploy(iam_client, iam_user, ses_smtp, monkeypatch)


def test_active_access_keys_counts_the_keys_the_run_leaves_active(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    rotated_twice(deployment)
    counts = []
    for step in (23 * H, 2 * H):  # in the grace period (two Active keys), then the run deactivates one
        deployment.time_passes(step)
        capsys.readouterr()
        deployment.retire()
        counts.append(secret_metrics(capsys.readouterr().out, deployment.name())["ActiveAccessKeys"])
    assert counts == [2, 1]


def current_key_alarm() -> dict[str, Any]:
    properties: dict[str, Any] = yaml_parse(TEMPLATE.read_text())["Resources"]["CurrentKeyTooOldAlarm"]["Properties"]
    return properties


@pytest.mark.parametrize(("age", "fires"), [(10 * D, False), (100 * D, True)])
def test_the_current_key_age_series_is_the_one_the_alarm_watches(
    age: timedelta, fires: bool, deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.rotate()
    deployment.time_passes(age)
    capsys.readouterr()
    deployment.retire()

    alarm = current_key_alarm()
    watched = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    values = [
        value
        for record in emitted_metrics(capsys.readouterr().out)
        for directive in record["_aws"]["CloudWatchMetrics"]
        if directive["Namespace"] == alarm["Namespace"]
        and [sorted(names) for names in directive["Dimensions"]] == [sorted(watched)]
        and all(record.get(name) == value for name, value in watched.items())
        for metric in directive["Metrics"]
        if metric["Name"] == alarm["MetricName"]
        for value in record[metric["Name"]]
    ]
    threshold = float(yaml_parse(TEMPLATE.read_text())["Parameters"]["MaxKeyAgeDays"]["Default"])
    assert alarm["Statistic"] == "Maximum" and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert len(values) == 1, "one value per secret in the series the alarm watches"
    assert values[0] == pytest.approx(age / D, abs=0.01)
    assert (max(values) > threshold) is fires
