"""Prove SMTP credentials against the real protocol: TLS first, then one AUTH per connection.

A new IAM key takes seconds before SES accepts it, and meanwhile SES answers `535
Authentication Credentials Invalid`, exactly as for a wrong password. So `535`, `454` and `421`
(and dropped or timed-out connections) are retried on a fresh connection about once a second
until a deadline; configuration problems (DNS, certificates, no STARTTLS or AUTH) fail at once.

The exchange is bounded as a whole, not per socket read (SPEC §4): each attempt has one hard
deadline covering name resolution, connect, greeting, TLS and AUTH; reply lines and their number
are capped, so a server that dribbles or floods cannot hold the step or its memory. A server's
reply text is never logged or raised: only its code and a fixed reason of ours (for SES's known
`554` reasons, our own copy of that reason and which of our identities it names).

    attempts = check_login(SmtpEndpoint("email-smtp.eu-west-1.amazonaws.com", 587, False),
                           "AKIA...", password, deadline=time.monotonic() + 120)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

from lambda_function.errors import SmtpAuthenticationError, SmtpConfigurationError, SmtpSendError
from lambda_function.smtp_session import (
    MAX_LINE_BYTES,
    TRANSIENT_REPLIES,
    Session,
    Transient,
    send_refusal_reason,
    unread_bytes,
)

SIMULATOR_RECIPIENT = "success@simulator.amazonses.com"
# Attempts start about once a second once the first quick ones failed: SES accepts a new key
# within seconds, and the wait past that moment is half an interval on average.
FIRST_INTERVALS = (0.25, 0.25, 0.5)
RETRY_INTERVAL_SECONDS = 1.0


@dataclass(frozen=True)
class SmtpEndpoint:
    host: str
    port: int
    implicit_tls: bool  # TLS from the first byte (465, 2465) rather than STARTTLS
    connect_timeout: float = 10.0  # the hard deadline of one attempt

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _resolve(endpoint: SmtpEndpoint, timeout: float) -> list[str]:
    """The host's addresses, within `timeout`. A resolver that hangs must not hold the step, so
    the lookup runs in a daemon thread we stop waiting for."""
    found: list[str] = []
    failure: list[OSError] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
            found.extend(dict.fromkeys(str(info[4][0]) for info in infos))
        except OSError as error:
            failure.append(error)

    thread = threading.Thread(target=lookup, name="smtp-resolve", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if thread.is_alive():
        raise SmtpConfigurationError(
            f"Resolving SMTP host {endpoint.host} did not finish within {timeout:.1f} s; credentials were not "
            "sent. This is configuration, not credentials: check the function's DNS (in a VPC, its resolver)."
        )
    if failure or not found:
        reason = type(failure[0]).__name__ if failure else "no address"
        raise SmtpConfigurationError(f"Cannot resolve SMTP host {endpoint.host} ({reason}). Check host.")
    return found


def _tls_context() -> ssl.SSLContext:
    # Verifies the certificate and host name against the default trust store (honours SSL_CERT_FILE).
    return ssl.create_default_context()


async def _open(endpoint: SmtpEndpoint, addresses: list[str]) -> Session:
    context = _tls_context() if endpoint.implicit_tls else None
    last: OSError | None = None
    for address in addresses:
        try:
            reader, writer = await asyncio.open_connection(
                address,
                endpoint.port,
                ssl=context,
                server_hostname=endpoint.host if context else None,
                limit=MAX_LINE_BYTES,
            )
        except ssl.SSLError:
            raise
        except OSError as error:
            last = error
            continue
        return Session(str(endpoint), reader, writer)
    raise Transient(f"connection: {type(last).__name__}")


async def _exchange(
    endpoint: SmtpEndpoint, addresses: list[str], username: str, password: str, sender: str | None
) -> None:
    """One connection: greeting, EHLO, TLS, one AUTH, optionally one message, QUIT."""
    session = await _open(endpoint, addresses)
    try:
        await session.expect(None, 220, "the greeting")
        extensions = await session.ehlo()
        if not endpoint.implicit_tls:
            if "STARTTLS" not in extensions:
                raise SmtpConfigurationError(
                    f"{endpoint} offers no STARTTLS, so credentials were not sent. This is configuration, "
                    "not credentials: check host and port (587, 2587 or 25 for STARTTLS; 465 or 2465 for TLS)."
                )
            await session.expect(b"STARTTLS", 220, "STARTTLS")
            await session.writer.start_tls(_tls_context(), server_hostname=endpoint.host)
            if unread_bytes(session.reader):
                raise SmtpConfigurationError(
                    f"{endpoint} sent data after its 220 to STARTTLS, before TLS began: replies injected in "
                    "plain text would be read as if they came over TLS, so credentials were not sent. Check "
                    "host and the network path (a proxy or middlebox that rewrites SMTP?)."
                )
            extensions = await session.ehlo()
        if "PLAIN" not in extensions.get("AUTH", set()):
            raise SmtpConfigurationError(f"{endpoint} offers no AUTH PLAIN after TLS: is it an SES SMTP endpoint?")
        # TLS is up: from the first byte, or STARTTLS with a verified certificate.
        auth = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
        reply = await session.command(f"AUTH PLAIN {auth}".encode())
        if reply.code in TRANSIENT_REPLIES:
            raise Transient(f"AUTH: {TRANSIENT_REPLIES[reply.code]}")
        if reply.code >= 500:
            raise SmtpAuthenticationError(f"{endpoint} refused AUTH with {reply.code}.")
        if reply.code != 235:
            raise SmtpConfigurationError(f"{endpoint} answered AUTH with {reply.code}, not 235.")
        if sender is not None:
            await _send_test_message(session, sender)
        with contextlib.suppress(OSError, Transient):  # proven already: a rude goodbye changes nothing
            await session.command(b"QUIT")
    finally:
        session.writer.close()


async def _send_test_message(session: Session, sender: str) -> None:
    """MAIL, RCPT, DATA to SES's simulator: only a send proves ses:SendRawEmail and the identity."""
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = sender
    message["To"] = SIMULATOR_RECIPIENT
    message["Subject"] = "SES SMTP credential rotation test"
    message.set_content("Sent by the SES SMTP rotation function to prove a new password.\n")
    body = re.sub(rb"(?m)^\.", b"..", message.as_bytes())  # dot-stuffing (RFC 5321 §4.5.2)
    for line, code in ((f"MAIL FROM:<{sender}>".encode(), 250), (f"RCPT TO:<{SIMULATOR_RECIPIENT}>".encode(), 250)):
        await _expect_for_send(session, line, code, sender)
    await _expect_for_send(session, b"DATA", 354, sender)
    await _expect_for_send(session, body.rstrip(b"\r\n") + b"\r\n.", 250, sender)


async def _expect_for_send(session: Session, line: bytes, code: int, sender: str) -> None:
    reply = await session.command(line)
    if reply.code == code:
        return
    if reply.code in TRANSIENT_REPLIES:
        raise Transient(f"sending: {TRANSIENT_REPLIES[reply.code]}")
    raise SmtpSendError(
        f"SES accepted the new password but refused the test message from {sender}: "
        f"{send_refusal_reason(reply.code, reply.lines, (sender, SIMULATOR_RECIPIENT))}. Check ses:SendRawEmail "
        "and the sender's verification."
    )


def _attempt(endpoint: SmtpEndpoint, username: str, password: str, sender: str | None, timeout: float) -> None:
    """One attempt, all of it (resolution included) within `timeout` seconds."""
    started = time.monotonic()
    addresses = _resolve(endpoint, timeout)
    remaining = timeout - (time.monotonic() - started)
    try:
        asyncio.run(
            asyncio.wait_for(_exchange(endpoint, addresses, username, password, sender), timeout=max(remaining, 0.01))
        )
    except TimeoutError:
        raise Transient("no complete answer within the attempt's deadline") from None
    except ssl.SSLCertVerificationError as error:
        raise SmtpConfigurationError(
            f"The TLS certificate of {endpoint} does not verify ({error.verify_message}); credentials "
            "were not sent. This is configuration, not credentials: check host."
        ) from None
    except ssl.SSLError as error:
        raise SmtpConfigurationError(f"TLS with {endpoint} failed ({error.reason}); credentials not sent.") from None
    except OSError as error:
        raise Transient(f"connection: {type(error).__name__}") from None


def _pause(attempt: int, attempt_seconds: float) -> float:
    """How long to wait after a failed attempt so that attempts start about once a second.

    Attempts start at 0, 0.25, 0.5 and 1 s (many keys are accepted within a second or two); then
    the interval is 1 s +- 20 %: on average one attempt a second, and the wide jitter spreads the
    moment of the attempt after SES starts accepting evenly, so the wait past it is ~0.5 s.
    """
    if attempt <= len(FIRST_INTERVALS):
        interval = FIRST_INTERVALS[attempt - 1]
    else:
        interval = RETRY_INTERVAL_SECONDS * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
    return max(0.0, interval - attempt_seconds)


def check_login(
    endpoint: SmtpEndpoint,
    username: str,
    password: str,
    *,
    deadline: float,
    hard_deadline: float | None = None,
    sender: str | None = None,
    on_retry: Callable[[int, str, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Log in (and send to the SES simulator when `sender` is set) until it works or `deadline`.

    Makes at least one attempt and starts none after `deadline` (a `clock()` value). Each attempt
    ends by `endpoint.connect_timeout` after it started, and never after `hard_deadline` (the
    Lambda's own limit). Returns the number of attempts. Raises SmtpConfigurationError at once
    for configuration problems, SmtpSendError when SES refuses the message, and
    SmtpAuthenticationError when the deadline passes.
    """
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        attempt_started = clock()
        attempt_deadline = attempt_started + endpoint.connect_timeout
        if hard_deadline is not None:
            attempt_deadline = min(attempt_deadline, hard_deadline)
        try:
            _attempt(endpoint, username, password, sender, attempt_deadline - attempt_started)
            return attempt
        except Transient as error:
            delay = _pause(attempt, clock() - attempt_started)
            if clock() + delay >= deadline:
                raise SmtpAuthenticationError(
                    f"{endpoint} did not accept the new credentials after {attempt} attempt(s) in "
                    f"{clock() - started:.1f} s (last: {error}). A new IAM key takes seconds to "
                    "propagate; if this persists, check that the key is Active and the SMTP user may "
                    "send (ses:SendRawEmail). AWSCURRENT is unchanged."
                ) from None
            if on_retry is not None:
                on_retry(attempt, str(error), delay)
            sleep(delay)
