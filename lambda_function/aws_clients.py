"""boto3 clients whose retries are bounded by the invocation's deadline, not by an attempt count.

botocore's default (`legacy`, 5 attempts) gives up on IAM throttling long before a Lambda has to,
and a fixed count of `standard` retries either gives up early or sleeps past the Lambda's end. So
botocore's own retries are off, and one `needs-retry` handler decides instead: it retries what
botocore's `standard` mode retries (throttling, transient errors, connection errors), with capped
exponential backoff and full jitter, for as long as a retry can start before `deadline`. After that
the error reaches the handler, which names the API in its log line.

    iam = client("iam", deadline=time.monotonic() + 30)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.retries.standard import RetryEventAdapter, StandardRetryConditions

BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 5.0
LAST_ATTEMPT_SECONDS = 0.5  # no retry starts later than this before the deadline
# Per HTTP attempt: a hung connection must not use up the step (IAM and Secrets Manager answer
# in well under a second).
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 15


class DeadlineRetries:
    """A `needs-retry` handler: botocore's standard-mode conditions, bounded by time."""

    def __init__(self, deadline: float, clock: Callable[[], float] = time.monotonic, max_attempts: int = 1000) -> None:
        self.deadline = deadline
        self._clock = clock
        self._adapter = RetryEventAdapter()
        self._conditions = StandardRetryConditions(max_attempts=max_attempts)

    def __call__(self, **kwargs: Any) -> float | None:
        context = self._adapter.create_retry_context(**kwargs)
        if not self._conditions.is_retryable(context):
            return None
        left = self.deadline - self._clock() - LAST_ATTEMPT_SECONDS
        if left <= 0:
            return None  # the error goes up now, while there is time to report it
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (context.attempt_number - 1))
        return min(random.uniform(0, ceiling), left)  # noqa: S311 - jitter, not crypto


def client(service: str, *, deadline: float, region: str | None = None) -> Any:
    """A boto3 client of `service` that retries throttling and transient errors until `deadline`
    (a time.monotonic() value). Typed as Any: callers annotate it with the mypy_boto3 client type."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},  # botocore never retries; we do
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
    )
    made = boto3.client(service, region_name=region, config=config)  # type: ignore[call-overload]
    event = f"needs-retry.{made.meta.service_model.service_id.hyphenize()}"
    made.meta.events.register(event, DeadlineRetries(deadline), unique_id=f"deadline-retries-{service}")
    return made
