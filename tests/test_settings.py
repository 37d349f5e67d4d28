"""Settings are read from the environment and validated before anything changes."""

from __future__ import annotations

import json

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


ARN_OF = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:{}-AbCdEf".format


def test_secret_bindings_take_exact_arns() -> None:
    hand_made = ARN_OF("mail/legacy-relay")
    settings = Settings.from_env({"SMTP_SECRET_BINDINGS": f'{{"{hand_made}": "relay"}}'})
    assert settings.secret_bindings == {hand_made: "relay"}


@pytest.mark.parametrize("key", ["ses-smtp/app-a", "mail/legacy-relay", "arn:aws:secretsmanager:::secret:x"])
def test_a_name_in_secret_bindings_is_refused_because_a_recreated_secret_has_the_same_name(key: str) -> None:
    with pytest.raises(InvalidSettingsError, match="it takes exact secret ARNs"):
        Settings.from_env({"SMTP_SECRET_BINDINGS": f'{{"{key}": "app-a"}}'})


@pytest.mark.parametrize(
    "raw", ['["ses-smtp/app-a"]', '{"x": ""}', '{"ses-smtp/app-a": 1}', '{"ses-smtp/app-a": null}', "not json"]
)
def test_malformed_secret_bindings_are_a_clear_error(raw: str) -> None:
    with pytest.raises(InvalidSettingsError, match="SMTP_SECRET_BINDINGS must be a JSON object"):
        Settings.from_env({"SMTP_SECRET_BINDINGS": raw})


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SMTP_BINDING_PATH": "ses-smtp-rotation/stack/"}, "SMTP_BINDING_PATH is"),
        ({"SMTP_BINDING_PATH": "/ses-smtp-rotation/stack"}, "SMTP_BINDING_PATH is"),
        ({"SMTP_BINDING_PATH": "/ses smtp/"}, "SMTP_BINDING_PATH is"),
        ({"KMS_KEY_ARN": "alias/my-key"}, "KMS_KEY_ARN is 'alias/my-key'"),
    ],
)
def test_bad_binding_path_or_kms_key_is_a_clear_error(env: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidSettingsError, match=problem):
        Settings.from_env(env)


@pytest.mark.parametrize("second", ["app-a", "APP-A"])  # IAM user names are case-insensitive
def test_a_user_bound_to_two_secrets_is_refused(second: str) -> None:
    bindings = {ARN_OF("mail/one"): "app-a", ARN_OF("mail/two"): second}
    with pytest.raises(InvalidSettingsError, match="more than one secret"):
        Settings.from_env({"SMTP_SECRET_BINDINGS": json.dumps(bindings)})
