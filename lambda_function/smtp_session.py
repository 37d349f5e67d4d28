"""One SMTP connection, read defensively: capped reply lines and counts, one code per reply, and
the only words of a server's we ever pass on (SES's known 554 reasons, as our own text).

Used by `smtp_check`, which bounds the whole exchange in time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass

from lambda_function.errors import SmtpConfigurationError

EHLO_NAME = "ses-smtp-rotation.invalid"  # fixed: socket.getfqdn() would be an unbounded DNS lookup
# RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets. SES's longest reply has ~10 lines.
MAX_LINE_BYTES = 1024
MAX_REPLY_LINES = 32
TRANSIENT_REPLIES = {
    421: "421: service not available, try again",
    454: "454: temporary authentication failure",
    535: "535: credentials not accepted (yet)",
}
# SES's 554 reasons an operator can act on, by how SES's text begins, and the text we show instead
# (SES Developer Guide, "SMTP response codes returned by Amazon SES", for the first two; the pauses
# as SES words them in the wild). Anything else is shown as its code alone.
SES_554_REASONS = (
    ("Message rejected: Email address is not verified", "Message rejected: Email address is not verified"),
    ("Access denied", "Access denied: the SMTP user may not send as this identity, see ses:SendRawEmail"),
    ("Message rejected: Sending paused for this account", "Message rejected: Sending paused for this account"),
    ("Message rejected: Sending suspended for this account", "Message rejected: Sending suspended for this account"),
)


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]  # the text after each code; never logged or raised as is


class Transient(Exception):
    """One attempt failed in a way a later attempt may not. The message is fixed text of ours."""


def send_refusal_reason(code: int, lines: Iterable[str], identities: Iterable[str]) -> str:
    """What we may say about a refused message: for one of SES's known 554 reasons, our copy of it and
    which of `identities` (addresses of ours: sender, recipient) its text names; else the code alone.
    An allow-list, not a filter: no text of the server's is ever passed on, however it is cut up."""
    text = " ".join(lines)
    for prefix, reason in SES_554_REASONS:
        if code == 554 and text.lower().startswith(prefix.lower()):
            words = {w.rstrip(".").lower() for w in re.split(r"[\s,;:<>`'/]+", text)}
            named = [i for i in dict.fromkeys(identities) if i.lower() in words]
            return f"554 {reason}" + (f"; identities named: {', '.join(named)}" if named else "")
    return f"{code}, a reason SES is not known to give (the server's text is not shown)"


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    lines: list[str] = []
    first = b""  # the code of the reply's first line
    while True:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise SmtpConfigurationError(
                f"The SMTP server sent a reply line longer than {MAX_LINE_BYTES} bytes: not an SES SMTP endpoint."
            ) from None
        except asyncio.IncompleteReadError:
            raise Transient("connection closed by the server") from None
        code = raw[:3]
        if (
            len(lines) == MAX_REPLY_LINES
            or not code.isdigit()
            or raw[3:4] not in (b" ", b"-", b"\r", b"\n")
            or code != (first or code)  # RFC 5321 §4.2.1: every line of a reply has the same code
        ):
            raise SmtpConfigurationError(
                "The SMTP server sent a reply that is not SMTP (or over "
                f"{MAX_REPLY_LINES} lines): not an SES SMTP endpoint."
            )
        first = first or code
        lines.append(raw[4:].decode("ascii", "replace").strip())
        if raw[3:4] != b"-":
            return Reply(int(code), tuple(lines))


class Session:
    """One SMTP connection: commands out, replies in."""

    def __init__(self, peer: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peer = peer  # host:port, for messages
        self.reader = reader
        self.writer = writer

    async def command(self, line: bytes) -> Reply:
        self.writer.write(line + b"\r\n")
        await self.writer.drain()
        return await read_reply(self.reader)

    async def expect(self, line: bytes | None, code: int, what: str) -> Reply:
        """Send `line` (None: read the greeting) and require `code`; a temporary reply is transient."""
        reply = await (read_reply(self.reader) if line is None else self.command(line))
        if reply.code == code:
            return reply
        if reply.code in TRANSIENT_REPLIES:
            raise Transient(f"{what}: {TRANSIENT_REPLIES[reply.code]}")
        raise SmtpConfigurationError(f"{self.peer} answered {what} with {reply.code}, not {code}.")

    async def ehlo(self) -> dict[str, set[str]]:
        reply = await self.expect(b"EHLO " + EHLO_NAME.encode(), 250, "EHLO")
        extensions: dict[str, set[str]] = {}
        for words in (line.upper().split() for line in reply.lines[1:]):
            if words:  # an empty or blank line offers nothing
                extensions[words[0]] = set(words[1:])
        return extensions


def unread_bytes(reader: asyncio.StreamReader) -> int:
    """How many received bytes `reader` holds that nobody has read yet.

    asyncio has no public call for this. StreamReader keeps them in a bytearray `_buffer` (checked
    on CPython 3.12 and 3.13, the runtime's version). If that ever changes, fail closed: answer
    "some", so that STARTTLS is refused, not trusted. (smtplib discards such bytes; we refuse.)
    """
    buffer = getattr(reader, "_buffer", None)
    return len(buffer) if isinstance(buffer, bytearray) else 1
