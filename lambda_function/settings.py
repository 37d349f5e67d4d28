"""The function's configuration, read from its environment at the start of every invocation.

The deployment, not the secret, decides where credentials may go and whose keys a secret may
rotate (SPEC §3): ``SMTP_ALLOWED_HOSTS`` and ``SMTP_SECRET_BINDINGS`` are read here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from lambda_function.errors import InvalidSettingsError

PREVIOUS_KEY_ACTIONS: Final = ("keep", "deactivate", "delete")


def parse_previous_key_action(value: str, source: str) -> str:
    """Return the action in lower case, or raise naming `source` when it is not one we know."""
    action = value.strip().lower()
    if action not in PREVIOUS_KEY_ACTIONS:
        raise InvalidSettingsError(f"{source} is {value!r}; use one of {', '.join(PREVIOUS_KEY_ACTIONS)}.")
    return action


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidSettingsError(f"{name} is {raw!r}; it must be a number of seconds.") from None
    if not 0 < value <= 900:
        raise InvalidSettingsError(f"{name} is {raw!r}; it must be more than 0 and at most 900 seconds.")
    return value


def normalise_host(host: str) -> str:
    """Host names compare case-insensitively and without a trailing dot."""
    return host.strip().rstrip(".").lower()


def _allowed_hosts(env: Mapping[str, str]) -> frozenset[str]:
    hosts = [normalise_host(h) for h in env.get("SMTP_ALLOWED_HOSTS", "").split(",") if h.strip()]
    bad = [h for h in hosts if not h or any(c in h for c in " /:*@")]
    if bad:
        raise InvalidSettingsError(
            f"SMTP_ALLOWED_HOSTS names {', '.join(repr(h) for h in bad)}; it takes exact host names, comma-separated "
            "(no ports, schemes or wildcards)."
        )
    return frozenset(hosts)


def _secret_bindings(env: Mapping[str, str]) -> dict[str, str]:
    raw = env.get("SMTP_SECRET_BINDINGS", "").strip()
    if not raw:
        return {}
    try:
        bindings = json.loads(raw)
    except ValueError:
        bindings = None
    if not isinstance(bindings, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in bindings.items()
    ):
        raise InvalidSettingsError(
            'SMTP_SECRET_BINDINGS must be a JSON object {"<secret ARN or name>": "<IAM user name>", ...}.'
        )
    return dict(bindings)


@dataclass(frozen=True)
class Settings:
    """Validated configuration; see the README's configuration table."""

    previous_key_action: str = "keep"
    smtp_auth_timeout: float = 120.0
    smtp_connect_timeout: float = 10.0
    smtp_test_sender: str | None = None
    smtp_allowed_hosts: frozenset[str] = frozenset()
    # secret ARN or name -> the one IAM user whose keys that secret may rotate
    secret_bindings: Mapping[str, str] = field(default_factory=dict)

    def bound_user(self, secret_arn: str, secret_name: str) -> str | None:
        """The IAM user the deployment binds this secret to (by ARN, else by name); None if unbound."""
        return self.secret_bindings.get(secret_arn) or self.secret_bindings.get(secret_name)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raise InvalidSettingsError before anything changes."""
        env = os.environ if env is None else env
        sender = env.get("SMTP_TEST_SENDER", "").strip() or None
        if sender is not None and "@" not in sender:
            raise InvalidSettingsError(f"SMTP_TEST_SENDER is {sender!r}; it must be an e-mail address.")
        return cls(
            previous_key_action=parse_previous_key_action(
                env.get("PREVIOUS_KEY_ACTION", "") or "keep", "PREVIOUS_KEY_ACTION"
            ),
            smtp_auth_timeout=_seconds(env, "SMTP_AUTH_TIMEOUT_SECONDS", 120.0),
            smtp_connect_timeout=_seconds(env, "SMTP_CONNECT_TIMEOUT_SECONDS", 10.0),
            smtp_test_sender=sender,
            smtp_allowed_hosts=_allowed_hosts(env),
            secret_bindings=_secret_bindings(env),
        )
