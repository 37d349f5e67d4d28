"""What an application does with the rotated secret: read it, then send an e-mail over SMTP + TLS.

    python -m infra.consumer --secret-id ses-smtp/ses-smtp-user --to success@simulator.amazonses.com

1. ``GetSecretValue(VersionStage="AWSCURRENT")``: read the secret when you send (or cache it
   briefly). After a rotation the previous password keeps working only as long as the rotation's
   previous-key action allows (``keep``: until the next rotation).
2. Connect to the secret's ``host``/``port``; STARTTLS (implicit TLS on 465/2465) with
   ``ssl.create_default_context()``, which verifies the certificate and host name. Without TLS,
   never send the password.
3. Log in with ``username``/``password`` and send. The sender (``--from``, else the secret's
   ``sender`` field) must be a verified SES identity.

A refused login (``535``) exits non-zero with a message that names the access key (never the
password). ``--version-id`` reads an older version instead of AWSCURRENT, to check a retired key.

A long-running application caches the secret instead (``CachedSecret``): it keeps sending with
the credentials it read, and on a ``535`` it reads the secret again, once, and retries — the
convention that lets a rotation retire the previous key without breaking it.
"""

from __future__ import annotations

import argparse
import json
import smtplib
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

IMPLICIT_TLS_PORTS = frozenset({465, 2465})
TIMEOUT_SECONDS = 10.0


class ConsumerError(Exception):
    """Reading the secret or sending failed; the message says why (never a password)."""


class CredentialsRefused(ConsumerError):
    """SES answered ``535``: the key was retired (or is still propagating)."""


@dataclass(frozen=True)
class SmtpCredentials:
    """The fields of the secret an application needs."""

    host: str
    port: int
    username: str  # the IAM access key ID
    password: str = field(repr=False)
    sender: str | None = None  # an application field the rotation carries over

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


def read_credentials(client: SecretsManagerClient, secret_id: str, *, version_id: str | None = None) -> SmtpCredentials:
    """Read AWSCURRENT (or one version by ID) and pick out the SMTP fields."""
    request: dict[str, Any] = {"SecretId": secret_id}
    if version_id is None:
        request["VersionStage"] = "AWSCURRENT"
    else:
        request["VersionId"] = version_id
    which = f"version {version_id}" if version_id else "AWSCURRENT"
    try:
        text = client.get_secret_value(**request).get("SecretString") or ""
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise ConsumerError(f"Cannot read {which} of secret {secret_id}: {code}.") from None
    except BotoCoreError as error:
        raise ConsumerError(f"Cannot reach Secrets Manager: {error}") from None
    try:
        document = json.loads(text)
    except ValueError:
        raise ConsumerError(f"{which} of secret {secret_id} is not JSON.") from None
    if not isinstance(document, dict):
        raise ConsumerError(f"{which} of secret {secret_id} is not a JSON object.")
    missing = [name for name in ("username", "password") if not isinstance(document.get(name), str)]
    if missing:
        raise ConsumerError(
            f"{which} of secret {secret_id} has no {' or '.join(missing)}: has it been rotated at least once?"
        )
    region = document.get("region", "us-east-1")
    return SmtpCredentials(
        host=str(document.get("host") or f"email-smtp.{region}.amazonaws.com"),
        port=int(document.get("port") or 587),
        username=document["username"],
        password=document["password"],
        sender=document.get("sender"),
    )


def build_message(sender: str, recipient: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(body)
    return message


def _connect(credentials: SmtpCredentials) -> smtplib.SMTP:
    """A connection with verified TLS, ready for AUTH."""
    context = ssl.create_default_context()  # verifies; honours SSL_CERT_FILE
    if credentials.port in IMPLICIT_TLS_PORTS:
        return smtplib.SMTP_SSL(credentials.host, credentials.port, timeout=TIMEOUT_SECONDS, context=context)
    smtp = smtplib.SMTP(credentials.host, credentials.port, timeout=TIMEOUT_SECONDS)
    smtp.ehlo()
    if not smtp.has_extn("starttls"):
        smtp.close()
        raise ConsumerError(f"{credentials.endpoint} offers no STARTTLS; not sending the password in clear text.")
    smtp.starttls(context=context)
    return smtp


def send_email(credentials: SmtpCredentials, message: EmailMessage) -> None:
    """Log in and send `message`; raise ConsumerError saying what SES refused."""
    where = credentials.endpoint
    try:
        with _connect(credentials) as smtp:
            smtp.login(credentials.username, credentials.password)
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as error:
        raise CredentialsRefused(
            f"{where} refused the credentials of access key {credentials.username} ({_reply(error)}). "
            "The key was deleted or deactivated (a rotation retired it) or is brand new and still "
            "propagating: read AWSCURRENT again and retry."
        ) from None
    except smtplib.SMTPResponseException as error:
        raise ConsumerError(f"{where} refused the message: {_reply(error)}") from None
    except smtplib.SMTPRecipientsRefused as error:
        raise ConsumerError(f"{where} refused the recipients {sorted(error.recipients)}.") from None
    except ssl.SSLCertVerificationError as error:
        raise ConsumerError(
            f"The TLS certificate of {where} does not verify ({error.verify_message}); nothing was sent."
        ) from None
    except (OSError, smtplib.SMTPException) as error:
        raise ConsumerError(f"Cannot talk SMTP with {where}: {type(error).__name__}: {error}") from None


def _reply(error: smtplib.SMTPResponseException) -> str:
    text = error.smtp_error
    return f"{error.smtp_code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"


@dataclass
class Delivery:
    """How one `CachedSecret.send` went: the key it signed in with, and whether it re-read first."""

    access_key_id: str
    refused_key: str | None = None  # the cached key SES refused (535) before the re-read


class CachedSecret:
    """The secret as a long-running application holds it: read once, reused for `ttl` seconds.

    Like the caching clients (``aws-secretsmanager-caching``: one hour by default), it does not
    notice a rotation until its copy expires. On a ``535`` it re-reads the secret once and retries.
    """

    def __init__(
        self,
        client: SecretsManagerClient,
        secret_id: str,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.secret_id = secret_id
        self.ttl = ttl
        self._clock = clock
        self._credentials: SmtpCredentials | None = None
        self._read_at = 0.0

    @property
    def credentials(self) -> SmtpCredentials:
        if self._credentials is None or self._clock() - self._read_at >= self.ttl:
            self.refresh()
        assert self._credentials is not None
        return self._credentials

    def refresh(self) -> SmtpCredentials:
        self._credentials = read_credentials(self._client, self.secret_id)
        self._read_at = self._clock()
        return self._credentials

    def send(self, message: EmailMessage) -> Delivery:
        """Send with the cached credentials; on 535, read the secret again and retry once."""
        credentials = self.credentials
        try:
            send_email(credentials, message)
            return Delivery(credentials.username)
        except CredentialsRefused:
            fresh = self.refresh()
            send_email(fresh, message)
            return Delivery(fresh.username, refused_key=credentials.username)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.consumer",
        description="Send one e-mail with the SES SMTP credentials stored in a Secrets Manager secret.",
    )
    parser.add_argument("--secret-id", required=True, help="name or ARN of the secret")
    parser.add_argument("--to", required=True, help="recipient (success@simulator.amazonses.com in the sandbox)")
    parser.add_argument("--from", dest="sender", help="verified sender (default: the secret's sender field)")
    parser.add_argument("--subject", default="Hello from rotated SES SMTP credentials")
    parser.add_argument("--version-id", help="read this version instead of AWSCURRENT (to check an old key)")
    args = parser.parse_args(argv)
    try:
        credentials = read_credentials(boto3.client("secretsmanager"), args.secret_id, version_id=args.version_id)
        sender = args.sender or credentials.sender
        if not sender:
            raise ConsumerError("No sender: pass --from or add a sender field to the secret.")
        body = "Sent with the SMTP credentials read from Secrets Manager.\n"
        send_email(credentials, build_message(sender, args.to, args.subject, body))
    except ConsumerError as error:
        print(f"consumer: error: {error}", file=sys.stderr)
        return 1
    tls = "TLS" if credentials.port in IMPLICIT_TLS_PORTS else "STARTTLS"
    print(f"consumer: sent from {sender} to {args.to} via {credentials.endpoint} ({tls}) as {credentials.username}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
