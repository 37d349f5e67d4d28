"""The errors a rotation raises. Each message tells an operator what is wrong and what to do."""

from botocore.exceptions import BotoCoreError, ClientError

THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
)
# Secrets Manager's own codes when the secret's KMS key cannot be used (the KMS* codes come from
# services that call KMS directly).
KMS_CODES = frozenset({"DecryptionFailure", "EncryptionFailure"})
_ADVICE = {
    "AccessDenied": "the function's role (or the secret's resource policy, or the KMS key policy) does not allow "
    "it: compare the role's policies with the template; a new role takes seconds to reach IAM everywhere.",
    "Throttling": "AWS kept throttling this API until the invocation had to stop; Secrets Manager retries the "
    "rotation. Many rotations at once? Spread their schedules.",
    "KMS": "the secret's KMS key cannot be used: check that it is enabled and that its key policy lets the "
    "function's role use it through Secrets Manager.",
    "Network": "AWS could not be reached: in a VPC, the function needs a NAT gateway or VPC endpoints for "
    "Secrets Manager (and IAM is reachable only through the internet or us-east-1's endpoint).",
}


def aws_error_code(error: ClientError) -> str:
    """The AWS error code of a ClientError (e.g. "NoSuchEntity"), for catching errors by code."""
    return str(error.response.get("Error", {}).get("Code", ""))


def explain_aws_error(error: ClientError | BotoCoreError) -> tuple[str, str]:
    """`(error, reason)` for an AWS error that reached the handler: the code, the API it came
    from, AWS's message (it names actions and ARNs, never secret values) and what to do."""
    if isinstance(error, ClientError):
        code = aws_error_code(error) or "ClientError"
        message = str(error.response.get("Error", {}).get("Message", ""))
        if code in THROTTLING_CODES:
            kind = "Throttling"
        elif "AccessDenied" in code or code in {"UnauthorizedOperation", "AuthorizationError"}:  # SNS: the latter
            kind = "AccessDenied"
        elif code in KMS_CODES or code.startswith("KMS") or "KMS" in message:
            kind = "KMS"
        else:
            kind = ""
        advice = _ADVICE.get(kind, "see the README runbook.")
        return code, f"{error.operation_name} failed with {code}: {message} What to do: {advice}"
    return type(error).__name__, f"{error} What to do: {_ADVICE['Network']}"


class RotationError(Exception):
    """Base of every error this function raises on purpose."""


class InvalidEventError(RotationError):
    """The invocation is not a usable Secrets Manager rotation event."""


class InvalidSettingsError(RotationError):
    """An environment variable of the function has a bad value."""


class InvalidSecretError(RotationError):
    """The secret, its versions or the IAM user it names are not in a state we can rotate."""


class StateChangedError(RotationError):
    """Another actor changed the secret or its keys between a decision and its action; nothing was
    done, and a retry decides again from the new state."""


class EditedDuringRotationError(RotationError):
    """AWSCURRENT was edited after the rotation began; promoting would lose the edit."""


class KeyLimitError(RotationError):
    """The IAM user has no free access-key slot and none can be freed safely."""


class SmtpConfigurationError(RotationError):
    """The SMTP endpoint cannot be used (DNS, TLS, no STARTTLS/AUTH): configuration, not credentials."""


class SmtpAuthenticationError(RotationError):
    """SES did not accept the new credentials within the time budget."""


class SmtpSendError(RotationError):
    """SES accepted the login but refused the test message (permission, sender verification)."""


class RetirementError(RotationError):
    """The retirement function could not finish with one or more secrets (each is logged)."""


class RollbackRefusedError(RotationError):
    """A rollback cannot be done safely; nothing was changed."""
