"""The fleet benchmark's IAM rate limit answers like IAM does when throttling."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.iam_throttle import IamThrottle, TokenBucket
from infra.local_aws import MotoServer


def test_the_bucket_allows_the_rate_and_the_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=2.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]  # the burst, then empty
    now[0] += 0.5  # one token back at 2/s
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 10  # saved up to the burst, no more
    assert [bucket.take() for _ in range(3)] == [True, True, False]


@pytest.fixture
def throttle(moto_server: MotoServer) -> Iterator[IamThrottle]:
    with IamThrottle(moto_server.endpoint_url, rate=0.01, burst=1) as proxy:
        yield proxy


def test_calls_over_the_rate_get_iams_throttling_error(throttle: IamThrottle) -> None:
    iam = boto3.client("iam", endpoint_url=throttle.endpoint_url, config=Config(retries={"total_max_attempts": 1}))
    iam.list_users()  # the burst
    with pytest.raises(ClientError) as raised:
        iam.list_users()
    error = raised.value.response
    assert error["Error"]["Code"] == "Throttling"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert (throttle.accepted["ListUsers"], throttle.throttled["ListUsers"]) == (1, 1)


def test_botocore_retries_it_as_throttling(throttle: IamThrottle) -> None:
    iam = boto3.client(
        "iam", endpoint_url=throttle.endpoint_url, config=Config(retries={"mode": "standard", "total_max_attempts": 3})
    )
    iam.list_users()
    with pytest.raises(ClientError) as raised:
        iam.list_users()
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert throttle.throttled["ListUsers"] == 3
