"""Settings are read from the environment and validated before anything changes."""

from __future__ import annotations

import pytest

from lambda_function.errors import InvalidSettingsError
from lambda_function.settings import RetirementPolicy, Settings


def test_defaults_are_safe() -> None:
    assert Settings.from_env({}) == Settings("keep", 120.0, 10.0, None)


def test_values_are_read_and_normalised() -> None:
    settings = Settings.from_env(
        {
            "PREVIOUS_KEY_ACTION": "Deactivate",
            "SMTP_AUTH_TIMEOUT_SECONDS": "30",
            "SMTP_CONNECT_TIMEOUT_SECONDS": "2.5",
            "SMTP_TEST_SENDER": "ops@example.com",
        }
    )
    assert settings == Settings("deactivate", 30.0, 2.5, "ops@example.com", retirement=RetirementPolicy(active_hours=0))


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"PREVIOUS_KEY_ACTION": "remove"}, "PREVIOUS_KEY_ACTION is 'remove'"),
        ({"SMTP_AUTH_TIMEOUT_SECONDS": "two minutes"}, "SMTP_AUTH_TIMEOUT_SECONDS is 'two minutes'"),
        ({"SMTP_AUTH_TIMEOUT_SECONDS": "0"}, "more than 0"),
        ({"SMTP_CONNECT_TIMEOUT_SECONDS": "-1"}, "SMTP_CONNECT_TIMEOUT_SECONDS"),
        ({"SMTP_TEST_SENDER": "nobody"}, "SMTP_TEST_SENDER is 'nobody'"),
    ],
)
def test_bad_value_is_a_clear_error(env: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidSettingsError, match=problem):
        Settings.from_env(env)
