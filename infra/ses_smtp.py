"""A local stand-in for the Amazon SES SMTP endpoint (tests and the local demo).

A real SMTP server on loopback, built on aiosmtpd, that answers like SES does:

- greets as ``email-smtp.amazonaws.com`` and advertises ``AUTH PLAIN LOGIN`` even before STARTTLS;
- refuses AUTH without TLS (``530 Must issue a STARTTLS command first``);
- accepts a password only when it is the v4 SMTP password of an *Active* IAM access key for this
  endpoint's region, and only once the key is older than ``propagation_delay`` (a new key is
  refused with ``535 Authentication Credentials Invalid`` for a few seconds on real SES too);
- records each accepted AUTH as the key's last use (``GetAccessKeyLastUsed`` shows it);
- refuses a message *after* DATA, like SES: ``554 Access denied`` when the key's user is not allowed
  ``ses:SendRawEmail`` on the sending identity (its group, inline and managed policies, evaluated
  by ``infra.iam_policy``), and ``554 Message rejected`` for an unverified sender.

It knows the IAM keys through ``key_lookup`` (``infra.local_aws.lookup_access_key`` reads moto's
state), so a key deleted or deactivated, or a sending permission taken away, through the IAM API
counts at once.

Three listeners share that behaviour: ``starttls_port`` (like 587), ``tls_port`` (implicit TLS,
like 465) and ``plain_port``, which offers no STARTTLS at all, for testing that a client never
sends credentials over it. The TLS certificate comes from a throwaway CA; clients trust it through
``ca_path`` (e.g. ``SSL_CERT_FILE``)::

    with SesSmtpStandIn(lookup_access_key, region="us-east-1") as ses:
        context = ssl.create_default_context(cafile=ses.ca_path)
        with smtplib.SMTP(ses.host, ses.starttls_port) as smtp:
            smtp.starttls(context=context)
            smtp.auth("PLAIN", ...)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import hmac
import logging
import shutil
import ssl
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from infra.iam_policy import Statement, allowed
from lambda_function.smtp_password import SMTP_REGIONS, smtp_password

SES_HOSTNAME = "email-smtp.amazonaws.com"
SES_IDENT = "ESMTP SimpleEmailService-d-LOCALSTANDIN"
TLS_NAMES = ("localhost", "127.0.0.1")

AUTH_SUCCESS = "235 Authentication successful."
AUTH_INVALID = "535 Authentication Credentials Invalid"
TLS_REQUIRED = "530 Must issue a STARTTLS command first"
AUTH_REQUIRED = "530 Authentication required"

ListenerKind = Literal["starttls", "tls", "plain"]


class _Unchanged(enum.Enum):
    UNCHANGED = enum.auto()  # `None` already means "any sender"


SEND_ACTION = "ses:SendRawEmail"  # what SES authorizes for a message sent over SMTP


@dataclass(frozen=True)
class IamAccessKey:
    """What SES knows about an access key: its SMTP password, and whether its user may send.

    `policy_statements` are every identity-policy statement that applies to the user (its inline
    and managed policies and those of its groups); none means the user may not send.
    `record_use`, when given, is told when SES accepted the key (its last use).
    """

    user_name: str
    user_arn: str
    secret_access_key: str
    status: str  # "Active" or "Inactive"
    create_date: datetime  # timezone-aware
    policy_statements: tuple[Statement, ...] = field(default=(), compare=False)
    record_use: Callable[[datetime, str], None] | None = field(default=None, compare=False)  # (when, region)

    def __repr__(self) -> str:  # keep the secret out of reprs, tracebacks and logs
        return f"IamAccessKey(user_name={self.user_name!r}, status={self.status!r}, create_date={self.create_date})"


KeyLookup = Callable[[str], IamAccessKey | None]
"""Access key ID -> the key, or None when no such key exists (never created, or deleted)."""


@dataclass(frozen=True)
class AuthAttempt:
    """One AUTH command as the server saw it (never the password)."""

    listener: ListenerKind
    username: str | None  # None when the client sent none before being refused
    tls: bool
    code: int


@dataclass(frozen=True)
class ReceivedMessage:
    """A message SES accepted (``250``) after DATA."""

    listener: ListenerKind
    username: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes


class SesSmtpStandIn:
    """The SES SMTP endpoint of one region, on loopback with three random free ports.

    ``propagation_delay`` (seconds) and ``verified_senders`` (addresses or domains; ``None``
    accepts any sender) may be changed while it runs; ``configured()`` does it temporarily.
    ``auth_attempts`` and ``messages`` record what clients did.
    """

    def __init__(
        self,
        key_lookup: KeyLookup,
        *,
        region: str = "us-east-1",
        propagation_delay: float = 0.0,
        verified_senders: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        tls_names: Iterable[str] = (),
    ) -> None:
        if region not in SMTP_REGIONS:
            raise ValueError(f"SES has no SMTP endpoint in {region}")
        self.key_lookup = key_lookup
        self.propagation_delay = propagation_delay
        self.verified_senders: set[str] | None = None
        if verified_senders is not None:
            self.verified_senders = {sender.lower() for sender in verified_senders}
        self.auth_attempts: list[AuthAttempt] = []
        self.messages: list[ReceivedMessage] = []
        self._region = region
        self._host = host
        # The certificate's names: loopback, the listening address, and any the caller adds (a
        # test can make a server whose certificate is valid for a name it claims).
        self._tls_names = tuple(dict.fromkeys((*TLS_NAMES, host, *tls_names)))
        self._listeners: dict[ListenerKind, _Listener] = {}
        self._tmpdir: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Make the CA and certificate, then start the three listeners."""
        if self._listeners:
            raise RuntimeError("the SES SMTP stand-in is already running")
        # aiosmtpd logs command lines (AUTH masked, but not a password a broken client sends as
        # a line of its own) and warns on every AUTH about its own deprecated login_data.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="ses-smtp-standin-"))
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self._tmpdir / "ca.pem"))
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*self._tls_names).configure_cert(server_tls)
        try:
            for kind in ("starttls", "tls", "plain"):
                listener = _Listener(_SesHandler(self, kind), kind, self._host, server_tls)
                listener.start()
                self._listeners[kind] = listener
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every listener and delete the CA files. Safe to call twice."""
        for listener in self._listeners.values():
            listener.stop()
        self._listeners.clear()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> SesSmtpStandIn:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @contextlib.contextmanager
    def configured(
        self,
        *,
        propagation_delay: float | None = None,
        verified_senders: Iterable[str] | _Unchanged | None = _Unchanged.UNCHANGED,
    ) -> Iterator[SesSmtpStandIn]:
        """Change the delay and/or the verified senders for the ``with`` block only."""
        saved = (self.propagation_delay, self.verified_senders)
        if propagation_delay is not None:
            self.propagation_delay = propagation_delay
        if not isinstance(verified_senders, _Unchanged):
            self.verified_senders = (
                None if verified_senders is None else {sender.lower() for sender in verified_senders}
            )
        try:
            yield self
        finally:
            self.propagation_delay, self.verified_senders = saved

    def clear(self) -> None:
        """Forget the recorded AUTH attempts and messages."""
        self.auth_attempts.clear()
        self.messages.clear()

    # -- where clients connect -------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def region(self) -> str:
        return self._region

    @property
    def starttls_port(self) -> int:
        """Plain SMTP that offers STARTTLS (like ports 25, 587, 2587)."""
        return self._port("starttls")

    @property
    def tls_port(self) -> int:
        """Implicit TLS from the first byte (like ports 465, 2465)."""
        return self._port("tls")

    @property
    def plain_port(self) -> int:
        """Plain SMTP that offers no STARTTLS: a client must not send credentials here."""
        return self._port("plain")

    @property
    def ca_path(self) -> str:
        """PEM file of the CA that signed the certificate (for ``SSL_CERT_FILE`` or ``cafile=``)."""
        if self._tmpdir is None:
            raise RuntimeError("the SES SMTP stand-in is not running")
        return str(self._tmpdir / "ca.pem")

    def _port(self, kind: ListenerKind) -> int:
        if kind not in self._listeners:
            raise RuntimeError("the SES SMTP stand-in is not running")
        return self._listeners[kind].port

    # -- what SES decides ------------------------------------------------------------------------

    def password_is_valid(self, username: str, password: str) -> bool:
        """True when `password` is the SMTP password of an Active, propagated key `username`."""
        key = self.key_lookup(username)
        if key is None or key.status != "Active":
            return False
        now = datetime.now(UTC)
        if now - key.create_date < timedelta(seconds=self.propagation_delay):
            return False
        expected = smtp_password(key.secret_access_key, self._region)
        if not hmac.compare_digest(password.encode(), expected.encode()):
            return False
        if key.record_use is not None:
            key.record_use(now, self._region)
        return True

    def send_refusal(self, username: str, sender: str) -> str | None:
        """SES's ``554`` when user `username` may not send as `sender`; None when it may.

        SES authorizes ``ses:SendRawEmail`` on the identity the message is sent from: the address
        when it is verified as such, else its domain.
        """
        key = self.key_lookup(username)
        if key is None:  # deleted since it signed in
            return "554 Access denied: The security token included in the request is invalid."
        account = key.user_arn.split(":")[4]
        address = sender.lower()
        verified_address = self.verified_senders is not None and address in self.verified_senders
        identity = address if verified_address else address.rpartition("@")[2]
        resource = f"arn:aws:ses:{self._region}:{account}:identity/{identity}"
        if allowed(key.policy_statements, SEND_ACTION, resource):
            return None
        return (
            f"554 Access denied: User `{key.user_arn}' is not authorized to perform `{SEND_ACTION}' "
            f"on resource `{resource}'"
        )

    def sender_is_verified(self, address: str) -> bool:
        """SES accepts a sender whose address or domain is a verified identity."""
        if self.verified_senders is None:
            return True
        address = address.lower()
        return address in self.verified_senders or address.rpartition("@")[2] in self.verified_senders


class _SesHandler:
    """aiosmtpd hooks and authenticator for one listener; the decisions are the stand-in's."""

    def __init__(self, standin: SesSmtpStandIn, kind: ListenerKind) -> None:
        self.standin = standin
        self.kind = kind

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to a custom EHLO hook
        lines = [f"250-{SES_HOSTNAME}", "250-8BITMIME"]
        if server.tls_context is not None and not _tls_active(server):
            lines.append("250-STARTTLS")
        lines += ["250-AUTH PLAIN LOGIN", "250 Ok"]
        return lines

    async def handle_AUTH(self, server: SMTP, session: Session, envelope: Envelope, args: list[str]) -> Any:
        if _tls_active(server):
            return MISSING  # go on to the PLAIN/LOGIN exchange, then authenticate()
        self._record(_initial_username(args), tls=False, status=TLS_REQUIRED)
        return TLS_REQUIRED

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        username = auth_data.login.decode("utf-8", "replace")
        try:
            ok = self.standin.password_is_valid(username, auth_data.password.decode("utf-8"))
        except UnicodeDecodeError:
            ok = False
        self._record(username, tls=True, status=AUTH_SUCCESS if ok else AUTH_INVALID)
        if ok:
            return AuthResult(success=True, message=AUTH_SUCCESS, auth_data=username)
        # handled=False: let aiosmtpd send our message; with handled=True it sends nothing.
        return AuthResult(success=False, handled=False, message=AUTH_INVALID)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> Any:
        # RCPT and DATA need a MAIL first, so this one check guards all three.
        return MISSING if session.authenticated else AUTH_REQUIRED

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        sender = envelope.mail_from or ""
        refusal = self.standin.send_refusal(str(session.auth_data), sender)
        if refusal is not None:
            return refusal
        if not self.standin.sender_is_verified(sender):
            return (
                "554 Message rejected: Email address is not verified. The following identities "
                f"failed the check in region {self.standin.region.upper()}: {sender}"
            )
        content = envelope.original_content or b""
        self.standin.messages.append(
            ReceivedMessage(self.kind, str(session.auth_data), sender, tuple(envelope.rcpt_tos), content)
        )
        return f"250 Ok {uuid.uuid4().hex}-000000"

    def _record(self, username: str | None, *, tls: bool, status: str) -> None:
        self.standin.auth_attempts.append(AuthAttempt(self.kind, username, tls, int(status[:3])))


def _tls_active(server: SMTP) -> bool:
    """True on an implicit-TLS connection and after STARTTLS."""
    return server.transport is not None and server.transport.get_extra_info("ssl_object") is not None


def _initial_username(args: list[str]) -> str | None:
    """The user name in ``AUTH PLAIN <b64>`` / ``AUTH LOGIN <b64>``, if the client sent one."""
    if len(args) != 2:
        return None
    try:
        decoded = base64.b64decode(args[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    if args[0].upper() == "PLAIN":
        parts = decoded.split(b"\0")
        return parts[1].decode("utf-8", "replace") if len(parts) == 3 else None
    return decoded.decode("utf-8", "replace")


class _Listener(Controller):
    """An aiosmtpd Controller that binds a random free port.

    As shipped it connects to ``self.port`` right after binding to warm the server up, so port 0
    fails; here the port the kernel chose is stored before that.
    """

    def __init__(self, handler: _SesHandler, kind: ListenerKind, host: str, tls: ssl.SSLContext) -> None:
        super().__init__(
            handler,
            hostname=host,
            port=0,
            ssl_context=tls if kind == "tls" else None,  # implicit TLS: the listener wraps sockets
            server_hostname=SES_HOSTNAME,
            ident=SES_IDENT,
            tls_context=tls if kind == "starttls" else None,  # what STARTTLS upgrades with
            # We refuse AUTH without TLS ourselves (handle_AUTH) so that, like SES, EHLO offers
            # AUTH before STARTTLS, and so that implicit TLS (which aiosmtpd does not count as
            # TLS) offers it at all.
            auth_require_tls=False,
            authenticator=handler.authenticate,
        )

    def _create_server(self) -> Coroutine[Any, Any, asyncio.AbstractServer]:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
        )
        self.port = int(server.sockets[0].getsockname()[1])
        return server
