"""The secret document: parse and validate it, and build the next version from the current one.

>>> current = SecretDocument.parse('{"iam_user_name": "ses-smtp-app", "sender": "a@b.c"}', "eu-west-1")
>>> current.host, current.port
('email-smtp.eu-west-1.amazonaws.com', 587)
>>> sorted(current.next_version("AKIA...", "secret").keys())
['host', 'iam_user_name', 'password', 'port', 'region', 'sender', 'username']
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from lambda_function.errors import InvalidSecretError
from lambda_function.settings import parse_previous_key_action
from lambda_function.smtp_password import SMTP_REGIONS, derive_password

DEFAULT_PORT = 587
IMPLICIT_TLS_PORTS = frozenset({465, 2465})
# A host of this form is ours to recompute from `region`; any other host is a deployer's override.
_DEFAULT_HOST = re.compile(r"^email-smtp\.[a-z0-9-]+\.amazonaws\.com$")


def default_host(region: str) -> str:
    return f"email-smtp.{region}.amazonaws.com"


@dataclass(frozen=True)
class SecretDocument:
    """One version's `SecretString`, validated. `fields` keeps the whole JSON object as read."""

    iam_user_name: str
    region: str
    regions: tuple[str, ...]  # every region to derive a password for, primary first; () when unset
    host: str
    port: int
    username: str | None
    previous_key_action: str | None
    fields: dict[str, Any] = field(repr=False)

    @property
    def implicit_tls(self) -> bool:
        return self.port in IMPLICIT_TLS_PORTS

    @property
    def password(self) -> str | None:
        value = self.fields.get("password")
        return value if isinstance(value, str) else None

    @classmethod
    def parse(cls, secret_string: str | None, default_region: str, label: str = "AWSCURRENT") -> SecretDocument:
        """Validate a SecretString; raise InvalidSecretError naming the problem and the version label."""

        def invalid(problem: str) -> InvalidSecretError:
            return InvalidSecretError(f"The {label} secret {problem}")

        if secret_string is None:
            raise invalid("has no SecretString (binary secrets are not supported).")
        try:
            fields = json.loads(secret_string)
        except ValueError:
            raise invalid('is not JSON; expected an object such as {"iam_user_name": "ses-smtp-user"}.') from None
        if not isinstance(fields, dict):
            raise invalid(f"is JSON {type(fields).__name__}, not an object with an iam_user_name field.")

        user = fields.get("iam_user_name")
        if not isinstance(user, str) or not user.strip():
            raise invalid("has no iam_user_name: add the name of the IAM user whose keys it owns.")

        region = fields.get("region") or default_region
        if not isinstance(region, str):
            raise invalid(f"has region {region!r}; expected a region name such as us-east-1.")
        extra = fields.get("regions") or []
        if not isinstance(extra, list) or not all(isinstance(r, str) and r for r in extra):
            raise invalid(f"has regions {extra!r}; expected a list of region names.")
        regions = tuple(dict.fromkeys([region, *extra])) if extra else ()

        host = fields.get("host") or default_host(region)
        if not isinstance(host, str):
            raise invalid(f"has host {host!r}; expected a host name.")
        overridden = not _DEFAULT_HOST.match(host)
        if not overridden:
            host = default_host(region)
        unknown = [r for r in (region, *regions) if r not in SMTP_REGIONS]
        if unknown and not overridden:
            raise invalid(
                f"names region(s) {', '.join(sorted(set(unknown)))} without an SES SMTP endpoint "
                f"(known: {', '.join(sorted(SMTP_REGIONS))}); set host to override the endpoint."
            )

        port = fields.get("port", DEFAULT_PORT)
        if isinstance(port, str) and port.strip().isdigit():
            port = int(port)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise invalid(f"has port {port!r}; expected 587, 465, 2587, 2465 or 25.")

        username = fields.get("username")
        action = fields.get("previous_key_action")
        if action is not None:
            action = parse_previous_key_action(str(action), f"The {label} secret's previous_key_action")

        return cls(
            iam_user_name=user.strip(),
            region=region,
            regions=regions,
            host=host,
            port=port,
            username=username if isinstance(username, str) and username else None,
            previous_key_action=action,
            fields=fields,
        )

    def next_version(self, access_key_id: str, secret_access_key: str) -> dict[str, Any]:
        """The document of the next version: every field carried over, credentials for the new key.

        `region`, `host` and `port` are written explicitly; `passwords` is rewritten when
        `regions` is set and dropped otherwise (it would describe a retired key).
        """
        document = {k: v for k, v in self.fields.items() if k != "passwords"}
        document.update(
            region=self.region,
            host=self.host,
            port=self.port,
            username=access_key_id,
            password=derive_password(secret_access_key, self.region),
        )
        if self.regions:
            document["passwords"] = {r: derive_password(secret_access_key, r) for r in self.regions}
        return document
