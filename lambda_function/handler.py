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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from lambda_function import aws_clients
from lambda_function.binding import Bindings
from lambda_function.errors import InvalidEventError, RotationError, explain_aws_error
from lambda_function.secret_versions import SecretVersions
from lambda_function.settings import Settings
from lambda_function.steps import Rotation, run_step

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# When the Lambda log level is DEBUG the runtime sets the root logger to DEBUG, and botocore
# would then log request and response bodies: secrets. Hold those libraries back.
for _name in ("botocore", "boto3", "urllib3", "s3transfer"):
    logging.getLogger(_name).setLevel(logging.WARNING)

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "ses-smtp-rotation")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "SesSmtpRotation")

# Stop a step this long before Lambda would kill it, so the failure is ours and explained.
LAMBDA_MARGIN_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class StepEvent:
    """What Secrets Manager sends (the RotationToken is read apart: it must never be logged).

    Not Powertools' ``SecretsManagerEvent``: importing ``utilities.data_classes`` loads every
    event class, a tenth of the function's cold start.
    """

    step: str
    secret_id: str
    client_request_token: str


def _parse_event(event: Any) -> StepEvent:
    if not isinstance(event, dict):
        raise InvalidEventError("The event is not a JSON object; this function is invoked by Secrets Manager.")
    required = ("Step", "SecretId", "ClientRequestToken")
    missing = [name for name in required if not isinstance(event.get(name), str) or not event[name]]
    if missing:
        raise InvalidEventError(f"The event lacks {', '.join(missing)}; this function is invoked by Secrets Manager.")
    return StepEvent(event["Step"], event["SecretId"], event["ClientRequestToken"])


@metrics.log_metrics(raise_on_empty_metrics=False)
@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    """Run one rotation step; raise (so Secrets Manager retries) when it fails."""
    started = time.monotonic()
    deadline = started + context.get_remaining_time_in_millis() / 1000 - LAMBDA_MARGIN_SECONDS
    try:
        parsed = _parse_event(event)
        logger.append_keys(step=parsed.step, secret_id=parsed.secret_id, version_id=parsed.client_request_token)
        settings = Settings.from_env()
        logger.debug("Settings", **dataclasses.asdict(settings))
        secrets = aws_clients.client("secretsmanager", deadline=deadline)
        ssm = aws_clients.client("ssm", deadline=deadline) if settings.binding_path else None
        rotation = Rotation(
            secrets=SecretVersions(secrets, parsed.secret_id),
            iam=aws_clients.client("iam", deadline=deadline),
            bindings=Bindings(settings, ssm),
            token=parsed.client_request_token,
            rotation_token=event.get("RotationToken"),
            settings=settings,
            default_region=secrets.meta.region_name,
            deadline=deadline,
            logger=logger,
            now=datetime.now(UTC),
        )
        run_step(parsed.step, rotation)
    except RotationError as error:
        _failed(type(error).__name__, str(error))
        raise
    except (ClientError, BotoCoreError) as error:
        _failed(*explain_aws_error(error))
        raise
    except Exception as error:
        # Not an AWS error and not ours: say what it is (its message is ours or Python's, never
        # a server's reply, which smtp_check never raises) and keep the traceback.
        _failed(type(error).__name__, f"Unexpected error: {error}", exc_info=True)
        raise
    metrics.add_metric(name=f"{parsed.step}Succeeded", unit=MetricUnit.Count, value=1)
    logger.info("Step done", elapsed=round(time.monotonic() - started, 2))


def _failed(error: str, reason: str, exc_info: bool = False) -> None:
    """The one line an operator reads: `error` (what kind) and `reason` (what to do)."""
    metrics.add_metric(name="RotationStepFailed", unit=MetricUnit.Count, value=1)
    logger.error("Rotation step failed", error=error, reason=reason, exc_info=exc_info)
