"""The function's configuration, read from its environment at the start of every invocation.

The deployment, not the secret, decides where credentials may go, whose keys a secret may rotate
and which KMS key encrypts it (SPEC §3): ``SMTP_ALLOWED_HOSTS``, ``SMTP_BINDING_PATH``,
``SMTP_SECRET_BINDINGS`` and ``KMS_KEY_ARN`` are read here.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from lambda_function.errors import InvalidSettingsError

PREVIOUS_KEY_ACTIONS: Final = ("keep", "deactivate", "delete")
_IAM_USER_NAME: Final = re.compile(r"[A-Za-z0-9_+=,.@-]{1,64}")
_SECRET_ARN: Final = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}")
_PARAMETER_PATH: Final = re.compile(r"/([A-Za-z0-9_.-]+/)+")
_KMS_KEY_ARN: Final = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+")


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
    """SMTP_SECRET_BINDINGS: {"<exact secret ARN>": "<IAM user>"}, for secrets made by hand.

    ARNs only: a name binds nothing, because a secret deleted and created again under its name gets
    a new ARN (its random suffix changes), and whoever did that must not inherit the binding.
    """
    raw = env.get("SMTP_SECRET_BINDINGS", "").strip()
    if not raw:
        return {}
    try:
        bindings = json.loads(raw)
    except ValueError:
        bindings = None
    if not isinstance(bindings, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _IAM_USER_NAME.fullmatch(v) for k, v in bindings.items()
    ):
        raise InvalidSettingsError(
            'SMTP_SECRET_BINDINGS must be a JSON object {"<secret ARN>": "<IAM user name>", ...}.'
        )
    users = [user.lower() for user in bindings.values()]  # IAM user names are case-insensitive
    twice = sorted({user for user in users if users.count(user) > 1})
    if twice:
        raise InvalidSettingsError(
            f"SMTP_SECRET_BINDINGS binds IAM user(s) {', '.join(twice)} to more than one secret; each user's keys "
            "belong to one secret (another secret's live key would look like a failed rotation's)."
        )
    names = sorted(k for k in bindings if not _SECRET_ARN.fullmatch(k))
    if names:
        raise InvalidSettingsError(
            f"SMTP_SECRET_BINDINGS names {', '.join(repr(n) for n in names)}; it takes exact secret ARNs "
            "(arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>), because a name also "
            "matches a secret deleted and created again by someone else."
        )
    return dict(bindings)


def _binding_path(env: Mapping[str, str]) -> str | None:
    """SMTP_BINDING_PATH: the Parameter Store path of the deployment's binding registry."""
    path = env.get("SMTP_BINDING_PATH", "").strip()
    if not path:
        return None
    if not _PARAMETER_PATH.fullmatch(path):
        raise InvalidSettingsError(
            f"SMTP_BINDING_PATH is {path!r}; it must be a Parameter Store path that starts and ends with / "
            "(letters, digits and _.-/), e.g. /ses-smtp-rotation/my-stack/."
        )
    return path


def _kms_key_arn(env: Mapping[str, str]) -> str | None:
    key = env.get("KMS_KEY_ARN", "").strip()
    if key and not _KMS_KEY_ARN.fullmatch(key):
        raise InvalidSettingsError(
            f"KMS_KEY_ARN is {key!r}; set it to the ARN of the secrets' KMS key (arn:aws:kms:...:key/...), "
            "or leave it empty for aws/secretsmanager."
        )
    return key or None


@dataclass(frozen=True)
class Settings:
    """Validated configuration; see the README's configuration table."""

    previous_key_action: str = "keep"
    smtp_auth_timeout: float = 120.0
    smtp_connect_timeout: float = 10.0
    smtp_test_sender: str | None = None
    smtp_allowed_hosts: frozenset[str] = frozenset()
    # exact secret ARN -> the one IAM user whose keys that secret may rotate (hand-made secrets)
    secret_bindings: Mapping[str, str] = field(default_factory=dict)
    # the deployment's binding registry in Parameter Store (`lambda_function.binding`)
    binding_path: str | None = None
    # the KMS key the deployment's secrets must be encrypted with; None = aws/secretsmanager
    kms_key_arn: str | None = None
    retirement: RetirementPolicy = field(default_factory=lambda: RetirementPolicy())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raise InvalidSettingsError before anything changes."""
        env = os.environ if env is None else env
        sender = env.get("SMTP_TEST_SENDER", "").strip() or None
        bindings = _secret_bindings(env)
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
            secret_bindings=bindings,
            binding_path=_binding_path(env),
            kms_key_arn=_kms_key_arn(env),
            retirement=retirement_policy(env),
        )


# -- Retiring the previous key (SPEC §4a, §5) ----------------------------------------------------
# Durations are floats in hours or days so that tests and the demo can compress them honestly
# (PREVIOUS_KEY_ACTIVE_HOURS=0.002 is about 7 seconds).


@dataclass(frozen=True)
class RetirementPolicy:
    """How long a retiring key stays Active, then Inactive, and how evidence of use holds it."""

    active_hours: float = 24.0  # math.inf: Active until the next rotation (PREVIOUS_KEY_ACTION=keep)
    inactive_days: float = 7.0  # the rollback window; 0 = delete when deactivated
    idle_hours: float = 1.0  # a key used within this long (after the rotation) is in use
    max_active_hours: float = 168.0  # the longest a key in use is held Active after the rotation
    max_key_age_days: float = 80.0  # compliance alarm on the current key's age

    @property
    def immediate(self) -> bool:
        """True when finishSecret itself retires the previous key (incident response)."""
        return self.active_hours == 0


def _duration(env: Mapping[str, str], name: str, unit: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidSettingsError(f"{name} is {raw!r}; it must be a number of {unit}, 0 or more (e.g. 24 or 0.5).")
    return value


def retirement_policy(env: Mapping[str, str]) -> RetirementPolicy:
    """The §4a durations; PREVIOUS_KEY_ACTION (the first release's setting) fills in what is unset.

    keep = Active until the next rotation, deactivate = PREVIOUS_KEY_ACTIVE_HOURS=0, delete = both
    0. A new variable that is set wins over PREVIOUS_KEY_ACTION.
    """
    defaults = RetirementPolicy()
    active = _duration(env, "PREVIOUS_KEY_ACTIVE_HOURS", "hours")
    inactive = _duration(env, "PREVIOUS_KEY_INACTIVE_DAYS", "days")
    legacy = env.get("PREVIOUS_KEY_ACTION", "").strip()
    if legacy:
        action = parse_previous_key_action(legacy, "PREVIOUS_KEY_ACTION")
        legacy_active = {"keep": math.inf, "deactivate": 0.0, "delete": 0.0}[action]
        legacy_inactive = 0.0 if action == "delete" else defaults.inactive_days
        active = legacy_active if active is None else active
        inactive = legacy_inactive if inactive is None else inactive
    max_age = _duration(env, "MAX_KEY_AGE_DAYS", "days")
    if max_age == 0:
        raise InvalidSettingsError("MAX_KEY_AGE_DAYS is 0; it must be more than 0 days (default 80).")

    def pick(value: float | None, default: float) -> float:
        return default if value is None else value

    return RetirementPolicy(
        active_hours=pick(active, defaults.active_hours),
        inactive_days=pick(inactive, defaults.inactive_days),
        idle_hours=pick(_duration(env, "PREVIOUS_KEY_IDLE_HOURS", "hours"), defaults.idle_hours),
        max_active_hours=pick(_duration(env, "PREVIOUS_KEY_MAX_ACTIVE_HOURS", "hours"), defaults.max_active_hours),
        max_key_age_days=pick(max_age, defaults.max_key_age_days),
    )
