"""The errors a rotation raises. Each message tells an operator what is wrong and what to do."""

from botocore.exceptions import ClientError


def aws_error_code(error: ClientError) -> str:
    """The AWS error code of a ClientError (e.g. "NoSuchEntity"), for catching errors by code."""
    return str(error.response.get("Error", {}).get("Code", ""))


class RotationError(Exception):
    """Base of every error this function raises on purpose."""


class InvalidEventError(RotationError):
    """The invocation is not a usable Secrets Manager rotation event."""


class InvalidSettingsError(RotationError):
    """An environment variable of the function has a bad value."""


class InvalidSecretError(RotationError):
    """The secret, its versions or the IAM user it names are not in a state we can rotate."""


class KeyLimitError(RotationError):
    """The IAM user has no free access-key slot and none can be freed safely."""


class SmtpConfigurationError(RotationError):
    """The SMTP endpoint cannot be used (DNS, TLS, no STARTTLS/AUTH): configuration, not credentials."""


class SmtpAuthenticationError(RotationError):
    """SES did not accept the new credentials within the time budget."""


class SmtpSendError(RotationError):
    """SES accepted the login but refused the test message (permission, sender verification)."""
