"""SMTP servers that misbehave on purpose, on loopback, for the tests of SPEC §4's bounded exchange.

- ``echo``: a proper STARTTLS server that refuses AUTH with ``535`` and echoes the whole AUTH
  exchange (the base64 string and what it decodes to) in the reply text.
- ``echo554``: accepts AUTH, then refuses the test message with SES's ``554`` for an unverified
  sender that also echoes the AUTH exchange: whole, and the password cut into chunks (15 characters
  apart by spaces, 8 apart by ``-``) that no pattern for "a secret" would recognise; and an
  identity the function did not send.
- ``inject``: answers STARTTLS with ``220`` followed, in the same plain-text packet, by what the
  client would read next (an EHLO reply offering AUTH PLAIN, then ``235``); over TLS it refuses
  every AUTH with ``535``. A client that keeps the plain-text bytes believes the login worked.
- ``ehlo``: answers the first (plain-text) EHLO with ``ehlo_reply`` verbatim; otherwise proper,
  and it accepts AUTH.
- ``dribble``: sends its greeting one byte every ``interval`` seconds.
- ``flood``: sends ``220-`` continuation lines for ever.

The dribble and flood happen before STARTTLS, where anyone on the network path could do the same.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import threading
import time
from types import TracebackType
from typing import Literal

import trustme

Mode = Literal["echo", "echo554", "dribble", "flood", "inject", "ehlo"]
INJECTED = b"250-SNUCK-IN\r\n250 AUTH PLAIN\r\n235 Authentication successful.\r\n"
FOREIGN_IDENTITY = "someone-else@attacker.example"


def chunks(text: str, size: int, separator: str) -> str:
    return separator.join(text[i : i + size] for i in range(0, len(text), size))


class HostileSmtpServer:
    def __init__(self, mode: Mode, ca: trustme.CA, *, interval: float = 0.5, ehlo_reply: bytes = b"") -> None:
        self.mode = mode
        self.interval = interval
        self.ehlo_reply = ehlo_reply
        self.connections = 0
        self.auth_lines: list[str] = []
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(self._tls)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"hostile-smtp-{mode}", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def __enter__(self) -> HostileSmtpServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError), connection:
            if self.mode == "dribble":
                for byte in b"220 email-smtp.amazonaws.com ESMTP SimpleEmailService\r\n":
                    if self._stopped.wait(self.interval):
                        return
                    connection.sendall(bytes([byte]))
                return
            if self.mode == "flood":
                line = b"220-" + b"x" * 70 + b"\r\n"
                while not self._stopped.is_set():
                    connection.sendall(line * 100)
                return
            self._converse(connection)

    def _converse(self, connection: socket.socket) -> None:
        stream: socket.socket | ssl.SSLSocket = connection
        reader = stream.makefile("rb")
        stream.sendall(b"220 email-smtp.amazonaws.com ESMTP SimpleEmailService-hostile\r\n")
        auth = sender = ""
        while not self._stopped.is_set():
            line = reader.readline(4096).decode("ascii", "replace").strip()
            if not line:
                return
            verb = line.split(" ", 1)[0].upper()
            tls = isinstance(stream, ssl.SSLSocket)
            if verb == "EHLO" and self.mode == "ehlo" and not tls:
                stream.sendall(self.ehlo_reply)
            elif verb == "EHLO":
                offer = b"" if tls else b"250-STARTTLS\r\n"
                stream.sendall(b"250-email-smtp.amazonaws.com\r\n" + offer + b"250 AUTH PLAIN LOGIN\r\n")
            elif verb == "STARTTLS":
                stream.sendall(b"220 Ready to start TLS\r\n" + (INJECTED if self.mode == "inject" else b""))
                stream = self._tls.wrap_socket(connection, server_side=True)
                reader = stream.makefile("rb")
            elif verb == "AUTH":
                auth = line
                self.auth_lines.append(line)
                decoded = base64.b64decode(line.split()[-1]).replace(b"\0", b" ").decode("ascii", "replace")
                if self.mode == "echo":
                    stream.sendall(
                        f"535-Authentication Credentials Invalid\r\n535 you sent {line} = {decoded}\r\n".encode()
                    )
                elif self.mode == "inject":
                    stream.sendall(b"535 Authentication Credentials Invalid\r\n")
                else:
                    stream.sendall(b"235 Authentication successful.\r\n")
            elif verb in ("MAIL", "RCPT"):
                if verb == "MAIL":
                    sender = line.partition(":")[2].strip().strip("<>")
                stream.sendall(b"250 Ok\r\n")
            elif verb == "DATA":
                stream.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                while reader.readline(4096).strip() != b".":
                    pass
                stream.sendall(self._echoing_554(auth, sender))
            elif verb == "QUIT":
                stream.sendall(b"221 Bye\r\n")
                return
            else:
                stream.sendall(b"502 Command not implemented\r\n")
            time.sleep(0)

    @staticmethod
    def _echoing_554(auth: str, sender: str) -> bytes:
        """SES's 554 for an unverified sender, with the AUTH exchange smuggled into it."""
        encoded = auth.split()[-1]
        password = base64.b64decode(encoded).split(b"\0")[-1].decode("ascii", "replace")
        smuggled = " ".join(
            (auth, password, chunks(encoded, 15, " "), chunks(password, 15, " "), chunks(password, 8, "-"))
        )
        return (
            "554 Message rejected: Email address is not verified. The following identities failed the check "
            f"in region US-EAST-1: {sender}, {FOREIGN_IDENTITY} {smuggled}\r\n"
        ).encode()
