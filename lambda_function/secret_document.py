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
from lambda_function.settings import normalise_host
from lambda_function.smtp_password import SMTP_REGIONS, derive_password

DEFAULT_PORT = 587
# Written by every rotation for its new key; everything else is carried over.
_CREDENTIALS = frozenset({"username", "password", "passwords"})
IMPLICIT_TLS_PORTS = frozenset({465, 2465})
SES_SMTP_PORTS = frozenset({25, 587, 2587, *IMPLICIT_TLS_PORTS})
# Regions whose SES SMTP endpoint has an email-smtp-fips. form (AWS General Reference, SES endpoints).
FIPS_REGIONS = frozenset({"us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "us-gov-west-1"})
# A host of this form is ours to recompute from `region`; any other host must pass `check_endpoint`.
# Both patterns are used with fullmatch: `$` would also match before a final newline.
_DEFAULT_HOST = re.compile(r"email-smtp\.[a-z0-9-]+\.amazonaws\.com")
# An SES SMTP interface VPC endpoint: one DNS label under *.email-smtp.<region>.vpce.amazonaws.com,
# which is exactly what SES's certificate covers.
_VPCE_LABEL = re.compile(r"vpce-[0-9a-z]+-[0-9a-z]+(-[0-9a-z-]+)?")


def default_host(region: str) -> str:
    return f"email-smtp.{region}.amazonaws.com"


def ses_endpoint_of(host: str, region: str) -> bool:
    """Whether `host` is one of SES's own SMTP names for `region` (public, FIPS or VPC endpoint)."""
    if region not in SMTP_REGIONS:
        return False
    if host == default_host(region):
        return True
    if host == f"email-smtp-fips.{region}.amazonaws.com":
        return region in FIPS_REGIONS
    label, _, rest = host.partition(".")
    return rest == f"email-smtp.{region}.vpce.amazonaws.com" and _VPCE_LABEL.fullmatch(label) is not None


@dataclass(frozen=True)
class SecretDocument:
    """One version's `SecretString`, validated. `fields` keeps the whole JSON object as read."""

    iam_user_name: str
    region: str
    regions: tuple[str, ...]  # every region to derive a password for, primary first; () when unset
    host: str
    port: int
    username: str | None
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
        host = normalise_host(host)
        if _DEFAULT_HOST.fullmatch(host):
            host = default_host(region)

        port = fields.get("port", DEFAULT_PORT)
        if isinstance(port, str) and port.strip().isdigit():
            port = int(port)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise invalid(f"has port {port!r}; expected 587, 465, 2587, 2465 or 25.")

        username = fields.get("username")
        return cls(
            iam_user_name=user.strip(),
            region=region,
            regions=regions,
            host=host,
            port=port,
            username=username if isinstance(username, str) and username else None,
            fields=fields,
        )

    def check_endpoint(self, allowed_hosts: frozenset[str], setting: str = "SMTP_ALLOWED_HOSTS") -> None:
        """Refuse a host or port the deployment did not allow (SPEC §3): the secret never decides
        where credentials go, because whoever can write it is not trusted with them.

        Allowed: SES's SMTP endpoint of `region` (or its FIPS form), an SES SMTP VPC endpoint name of
        that region, on one of SES's ports; or a host named in `setting`, on any port.
        """
        if self.host in allowed_hosts:
            return
        unknown = sorted({r for r in (self.region, *self.regions) if r not in SMTP_REGIONS})
        if unknown:
            raise InvalidSecretError(
                f"The secret names region(s) {', '.join(unknown)} without an SES SMTP endpoint (known: "
                f"{', '.join(sorted(SMTP_REGIONS))}). Fix region/regions, or name the endpoint's host in "
                f"host and add it to the deployment's {setting}."
            )
        if not ses_endpoint_of(self.host, self.region):
            raise InvalidSecretError(
                f"The secret's host {self.host!r} is not an SES SMTP endpoint of {self.region} and not in "
                f"the deployment's {setting}; no key was created and no credentials were sent. Remove host "
                f"(the default is {default_host(self.region)}), or add the host to {setting} if you trust it."
            )
        if self.port not in SES_SMTP_PORTS:
            raise InvalidSecretError(
                f"The secret's port {self.port} is not an SES SMTP port "
                f"({', '.join(map(str, sorted(SES_SMTP_PORTS)))}); "
                f"another port is allowed only with a host in the deployment's {setting}."
            )

    def carried(self) -> dict[str, Any]:
        """What a rotation carries into the next version: every field but the credentials, with
        `region`, `host` and `port` written explicitly."""
        document = {k: v for k, v in self.fields.items() if k not in _CREDENTIALS}
        document.update(region=self.region, host=self.host, port=self.port)
        return document

    def carried_differences(self, other: SecretDocument) -> list[str]:
        """The fields, credentials aside, whose values differ between this document and `other`."""
        mine, theirs = self.carried(), other.carried()
        return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))

    def next_version(self, access_key_id: str, secret_access_key: str) -> dict[str, Any]:
        """The document of the next version: every field carried over, credentials for the new key.

        `region`, `host` and `port` are written explicitly; `passwords` is rewritten when
        `regions` is set and dropped otherwise (it would describe a retired key).
        """
        document = self.carried()
        document.update(username=access_key_id, password=derive_password(secret_access_key, self.region))
        if self.regions:
            document["passwords"] = {r: derive_password(secret_access_key, r) for r in self.regions}
        return document
