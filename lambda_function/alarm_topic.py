"""The deployment's alarm topic (SNS): the only code that publishes to it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

SUBJECT_LIMIT = 100  # SNS refuses longer subjects


class AlarmTopic:
    """Publish operator messages (never a secret) to `topic_arn`."""

    def __init__(self, sns: SNSClient, topic_arn: str) -> None:
        self._sns = sns
        self.topic_arn = topic_arn

    def publish(self, subject: str, message: str) -> None:
        self._sns.publish(TopicArn=self.topic_arn, Subject=subject[:SUBJECT_LIMIT], Message=message)
