"""Prove SMTP credentials against the real protocol: TLS first, then one AUTH per connection.

A new IAM key takes seconds before SES accepts it, and meanwhile SES answers `535
Authentication Credentials Invalid`, exactly as for a wrong password. So `535`, `454` and `421`
(and dropped or timed-out connections) are retried on a fresh connection with exponential backoff
and jitter until a deadline; configuration problems (DNS, certificates, no STARTTLS or AUTH)
fail at once.

    attempts = check_login(SmtpEndpoint("email-smtp.eu-west-1.amazonaws.com", 587, False),
                           "AKIA...", password, deadline=time.monotonic() + 120)
"""

from __future__ import annotations

import random
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

from lambda_function.errors import SmtpAuthenticationError, SmtpConfigurationError, SmtpSendError

SIMULATOR_RECIPIENT = "success@simulator.amazonses.com"
TRANSIENT_CODES = frozenset({421, 454, 535})
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 4.0  # the real propagation delay is seconds: don't oversleep it


@dataclass(frozen=True)
class SmtpEndpoint:
    host: str
    port: int
    implicit_tls: bool  # TLS from the first byte (465, 2465) rather than STARTTLS
    connect_timeout: float = 10.0

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _reply(error: smtplib.SMTPResponseException) -> str:
    text = error.smtp_error
    return f"{error.smtp_code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"


class _Transient(Exception):
    """One attempt failed in a way a later attempt may not."""


def _connect(endpoint: SmtpEndpoint) -> smtplib.SMTP:
    """An EHLO'd connection with verified TLS; raises SmtpConfigurationError if TLS can't be had."""
    # The default context verifies the certificate and host name against the default trust
    # store, which honours SSL_CERT_FILE.
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if endpoint.implicit_tls:
        smtp = smtplib.SMTP_SSL(endpoint.host, endpoint.port, timeout=endpoint.connect_timeout, context=context)
        smtp.ehlo()
    else:
        smtp = smtplib.SMTP(endpoint.host, endpoint.port, timeout=endpoint.connect_timeout)
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            smtp.close()
            raise SmtpConfigurationError(
                f"{endpoint} offers no STARTTLS, so credentials were not sent. This is configuration, "
                "not credentials: check host and port (587, 2587 or 25 for STARTTLS; 465 or 2465 for TLS)."
            )
        smtp.starttls(context=context)
        smtp.ehlo()
    if not smtp.has_extn("auth"):
        smtp.close()
        raise SmtpConfigurationError(f"{endpoint} offers no AUTH after TLS: is it an SES SMTP endpoint?")
    return smtp


def _test_message(sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SIMULATOR_RECIPIENT
    message["Subject"] = "SES SMTP credential rotation test"
    message.set_content("Sent by the SES SMTP rotation function to prove a new password.\n")
    return message


def _attempt(endpoint: SmtpEndpoint, username: str, password: str, sender: str | None) -> None:
    """One connection: TLS, one AUTH, optionally one message, QUIT."""
    try:
        smtp = _connect(endpoint)
    except socket.gaierror as error:
        raise SmtpConfigurationError(f"Cannot resolve SMTP host {endpoint.host}: {error}. Check host.") from None
    except ssl.SSLCertVerificationError as error:
        raise SmtpConfigurationError(
            f"The TLS certificate of {endpoint} does not verify ({error.verify_message}); credentials "
            "were not sent. This is configuration, not credentials: check host."
        ) from None
    except ssl.SSLError as error:
        raise SmtpConfigurationError(f"TLS with {endpoint} failed ({error.reason}); credentials not sent.") from None
    except (OSError, smtplib.SMTPException) as error:
        raise _Transient(f"connection: {type(error).__name__}") from None
    try:
        smtp.user, smtp.password = username, password
        # smtp.login() would retry a refused PLAIN as LOGIN: two failures per attempt.
        code, reply = smtp.auth("PLAIN", smtp.auth_plain, initial_response_ok=True)
        if code != 235:  # smtplib returns 503 ("send EHLO first", "already authenticated") as if fine
            raise SmtpConfigurationError(f"{endpoint} answered AUTH with {code} {reply!r}, not 235.")
        if sender is not None:
            smtp.send_message(_test_message(sender), from_addr=sender, to_addrs=[SIMULATOR_RECIPIENT])
    except smtplib.SMTPResponseException as error:
        if error.smtp_code in TRANSIENT_CODES:
            raise _Transient(_reply(error)) from None
        if isinstance(error, smtplib.SMTPAuthenticationError):
            raise SmtpAuthenticationError(f"{endpoint} refused AUTH with {error.smtp_code}.") from None
        raise SmtpSendError(
            f"SES accepted the new password but refused the test message from {sender}: "
            f"{_reply(error)}. Check ses:SendRawEmail and the sender's verification."
        ) from None
    except smtplib.SMTPRecipientsRefused as error:
        raise SmtpSendError(f"SES refused the test recipient: {error.recipients}.") from None
    except (OSError, smtplib.SMTPException) as error:
        raise _Transient(f"connection: {type(error).__name__}") from None
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


def check_login(
    endpoint: SmtpEndpoint,
    username: str,
    password: str,
    *,
    deadline: float,
    sender: str | None = None,
    on_retry: Callable[[int, str, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Log in (and send to the SES simulator when `sender` is set) until it works or `deadline`.

    Makes at least one attempt and never starts a wait that would end past `deadline` (a
    `clock()` value). Returns the number of attempts. Raises SmtpConfigurationError at once for
    configuration problems, SmtpSendError when SES refuses the message, and
    SmtpAuthenticationError when the deadline passes.
    """
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            _attempt(endpoint, username, password, sender)
            return attempt
        except _Transient as error:
            ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (attempt - 1))
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto
            if clock() + delay >= deadline:
                raise SmtpAuthenticationError(
                    f"{endpoint} did not accept the new credentials after {attempt} attempt(s) in "
                    f"{clock() - started:.1f} s (last reply: {error}). A new IAM key takes seconds to "
                    "propagate; if this persists, check that the key is Active and the SMTP user may "
                    "send (ses:SendRawEmail). AWSCURRENT is unchanged."
                ) from None
            if on_retry is not None:
                on_retry(attempt, str(error), delay)
            sleep(delay)
