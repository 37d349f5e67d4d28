"""Lambda entry point: Secrets Manager calls `lambda_handler` once per rotation step.

The handler parses the event, reads the settings, sets up logging and metrics, builds the AWS
clients and hands over to `steps.run_step`. It never logs the raw event: it holds the
`RotationToken`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SecretsManagerEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_function.errors import InvalidEventError, RotationError
from lambda_function.secret_versions import SecretVersions
from lambda_function.settings import Settings
from lambda_function.steps import Rotation, run_step

# When the Lambda log level is DEBUG the runtime sets the root logger to DEBUG, and botocore
# would then log request and response bodies: secrets. Hold those libraries back.
for _name in ("botocore", "boto3", "urllib3", "s3transfer"):
    logging.getLogger(_name).setLevel(logging.WARNING)

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "ses-smtp-rotation")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "SesSmtpRotation")

# Stop a step this long before Lambda would kill it, so the failure is ours and explained.
LAMBDA_MARGIN_SECONDS = 5.0


def _parse_event(event: Any) -> SecretsManagerEvent:
    if not isinstance(event, dict):
        raise InvalidEventError("The event is not a JSON object; this function is invoked by Secrets Manager.")
    required = ("Step", "SecretId", "ClientRequestToken")
    missing = [name for name in required if not isinstance(event.get(name), str) or not event[name]]
    if missing:
        raise InvalidEventError(f"The event lacks {', '.join(missing)}; this function is invoked by Secrets Manager.")
    return SecretsManagerEvent(event)


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    """Run one rotation step; raise (so Secrets Manager retries) when it fails."""
    started = time.monotonic()
    try:
        parsed = _parse_event(event)
        logger.append_keys(step=parsed.step, secret_id=parsed.secret_id, version_id=parsed.client_request_token)
        settings = Settings.from_env()
        logger.debug("Settings", **dataclasses.asdict(settings))
        secrets = boto3.client("secretsmanager")
        rotation = Rotation(
            secrets=SecretVersions(secrets, parsed.secret_id),
            iam=boto3.client("iam"),
            token=parsed.client_request_token,
            rotation_token=event.get("RotationToken"),
            settings=settings,
            default_region=secrets.meta.region_name,
            deadline=started + context.get_remaining_time_in_millis() / 1000 - LAMBDA_MARGIN_SECONDS,
            logger=logger,
        )
        run_step(parsed.step, rotation)
    except RotationError as error:
        metrics.add_metric(name="RotationStepFailed", unit=MetricUnit.Count, value=1)
        logger.error("Rotation step failed", error=type(error).__name__, reason=str(error))
        raise
    except Exception:
        metrics.add_metric(name="RotationStepFailed", unit=MetricUnit.Count, value=1)
        logger.exception("Rotation step failed unexpectedly")
        raise
    metrics.add_metric(name=f"{parsed.step}Succeeded", unit=MetricUnit.Count, value=1)
    logger.info("Step done", elapsed=round(time.monotonic() - started, 2))
