"""The function's configuration, read from its environment at the start of every invocation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Settings:
    """Validated configuration; see the README's configuration table."""

    previous_key_action: str = "keep"
    smtp_auth_timeout: float = 120.0
    smtp_connect_timeout: float = 10.0
    smtp_test_sender: str | None = None

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
        )
