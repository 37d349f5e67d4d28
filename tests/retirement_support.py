"""What the retirement tests share: one secret, its IAM user, the alarm topic, both handlers.

``Deployment`` stands for one deployment of the template against moto: a secret bound to its user
(``SMTP_SECRET_BINDINGS``), rotated by a rotation function of its own ARN (so that the retirement
function, which finds its secrets by that ARN, sees this test's secret only), and an alarm topic
with an SQS queue subscribed to read what the retirement function published.

With ``rotation_function=True`` that rotation function also exists in moto's Lambda, configured
with the environment the template gives it (the settings this test's handler runs with): what
operator tools read to learn the deployment's binding (``rollback``). moto never runs it; the
steps are driven in-process, as everywhere.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from mypy_boto3_iam import IAMClient

from infra.lambda_invoke import LocalContext
from infra.local_lambda import register_rotation_function
from infra.rotation_driver import STEPS, begin_rotation, run_steps
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.retire_handler import lambda_handler as retire_handler
from tests.moto_clock import key_used, time_passes
from tests.support import create_secret, current, invoke, keys_of, secrets_client


@dataclass
class Deployment:
    arn: str
    user: str
    function_arn: str
    topic_arn: str
    queue_url: str
    iam: IAMClient

    def rotate(self, steps: tuple[str, ...] = STEPS) -> str:
        """A rotation through the rotation handler, as Secrets Manager runs it; returns the token."""
        token = begin_rotation(secrets_client(), self.arn, function_arn=self.function_arn)
        run_steps(invoke, self.arn, token, steps=steps)
        return token

    def retire(self, *, check: bool = True) -> dict[str, list[str]]:
        """One run of the retirement handler, as EventBridge Scheduler invokes it.

        Then (unless `check` is False) AWSCURRENT's key must be Active and the user hold <= 2 keys.
        """
        event = {"source": "aws.scheduler"}  # ignored by the function
        result: dict[str, list[str]] = retire_handler(event, LocalContext.with_timeout(120))
        if check:
            self.check_invariants()
        return result

    def keys(self) -> dict[str, str]:
        return keys_of(self.iam, self.user)

    def current_key(self) -> str:
        return str(current(self.arn)["username"])

    def name(self) -> str:
        return secrets_client().describe_secret(SecretId=self.arn)["Name"]

    def time_passes(self, delta: timedelta) -> None:
        time_passes(self.arn, self.user, delta)

    def key_used(self, access_key_id: str, ago: timedelta = timedelta(minutes=5)) -> None:
        key_used(self.user, access_key_id, datetime.now(UTC) - ago)

    def messages(self) -> list[dict[str, Any]]:
        """What the alarm topic delivered since the last call (SNS envelopes: Subject, Message)."""
        sqs = boto3.client("sqs")
        received = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = [json.loads(m["Body"]) for m in received.get("Messages", [])]
        for m in received.get("Messages", []):
            sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return messages

    def check_invariants(self) -> None:
        """SPEC §9: AWSCURRENT's key is Active and the user never holds more than two keys."""
        keys = self.keys()
        assert len(keys) <= 2, keys
        key = current(self.arn).get("username")
        if key is not None:
            assert keys.get(key) == "Active", (key, keys)


def deploy(
    iam: IAMClient,
    user: str,
    ses: SesSmtpStandIn,
    monkeypatch: pytest.MonkeyPatch,
    *,
    rotation_function: bool = False,
) -> Deployment:
    arn = create_secret({"iam_user_name": user}, ses)
    function_name = f"ses-smtp-rotation-{uuid.uuid4().hex[:8]}"
    function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name=f"alarms-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"alarms-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("ROTATION_FUNCTION_ARN", function_arn)
    monkeypatch.setenv("ALARM_TOPIC_ARN", topic_arn)
    monkeypatch.setenv("SMTP_SECRET_BINDINGS", json.dumps({arn: user}))
    for name in ("PREVIOUS_KEY_ACTION", "PREVIOUS_KEY_ACTIVE_HOURS", "PREVIOUS_KEY_INACTIVE_DAYS"):
        monkeypatch.delenv(name, raising=False)
    if rotation_function:
        function_arn = register_rotation_function(iam, function_name, os.environ)
        monkeypatch.setenv("ROTATION_FUNCTION_ARN", function_arn)
    return Deployment(arn, user, function_arn, topic_arn, queue_url, iam)


def rotated_twice(deployment: Deployment) -> tuple[str, str]:
    """Two rotations: returns (previous key, current key)."""
    deployment.rotate()
    old = deployment.current_key()
    deployment.rotate()
    return old, deployment.current_key()


def another_secret(deployment: Deployment, user: str, ses: SesSmtpStandIn) -> Deployment:
    """A second secret of the same deployment (its rotation function, its alarm topic), bound to `user`."""
    return replace(deployment, arn=create_secret({"iam_user_name": user}, ses), user=user)


def emitted_metrics(stdout: str) -> list[dict[str, Any]]:
    """The CloudWatch embedded-metric-format records a run printed."""
    return [json.loads(line) for line in stdout.splitlines() if '"_aws"' in line]


def secret_metrics(stdout: str, secret_name: str) -> dict[str, float]:
    """{metric name: value} of the records a run printed for one secret (dimension SecretName)."""
    return {
        metric["Name"]: record[metric["Name"]][0]
        for record in emitted_metrics(stdout)
        if record.get("SecretName") == secret_name
        for directive in record["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }
