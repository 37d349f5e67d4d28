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


def test_secret_bindings_bind_by_arn_or_name_and_an_entry_without_a_user_binds_nothing() -> None:
    # What the template gives a deployment of two created users and no adopted one: the empty
    # adopted list arrives as one empty item, i.e. the entry {"ses-smtp/": ""}.
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ses-smtp/app-a-AbCdEf"
    settings = Settings.from_env(
        {"SMTP_SECRET_BINDINGS": '{"ses-smtp/app-a": "app-a", "ses-smtp/app-b": "app-b", "ses-smtp/": ""}'}
    )
    assert settings.secret_bindings == {"ses-smtp/app-a": "app-a", "ses-smtp/app-b": "app-b"}
    assert settings.bound_user(arn, "ses-smtp/app-a") == "app-a"
    assert settings.bound_user("arn:aws:secretsmanager:eu-west-1:123456789012:secret:ses-smtp/-x", "ses-smtp/") is None


@pytest.mark.parametrize(
    "raw", ['["ses-smtp/app-a"]', '{"": "app-a"}', '{"ses-smtp/app-a": 1}', '{"ses-smtp/app-a": null}', "not json"]
)
def test_malformed_secret_bindings_are_a_clear_error(raw: str) -> None:
    with pytest.raises(InvalidSettingsError, match="SMTP_SECRET_BINDINGS must be a JSON object"):
        Settings.from_env({"SMTP_SECRET_BINDINGS": raw})


ARN_OF = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:{}-AbCdEf".format


def test_bound_users_bind_the_secret_named_after_each_user_and_nothing_else() -> None:
    # What the template gives a deployment: created and adopted names joined by spaces; an empty
    # list contributes an empty entry (here the leading and the doubled spaces). IAM names may hold
    # commas and dots.
    settings = Settings.from_env({"SMTP_BOUND_USERS": " app-a  console.user,eu@prod "})
    assert settings.bound_users == {"app-a", "console.user,eu@prod"}
    for user in ("app-a", "console.user,eu@prod"):
        assert settings.bound_user(ARN_OF(f"ses-smtp/{user}"), f"ses-smtp/{user}") == user
    for name in (
        "ses-smtp/other",  # a user the deployment does not list
        "ses-smtp-x/app-a",  # another prefix
        "ses-smtp/app-a/x",
        "app-a",
        "xses-smtp/app-a",
        "ses-smtp/",
        "ses-smtp/console.user",  # part of a listed name
    ):
        assert settings.bound_user(ARN_OF(name), name) is None, name


def test_secret_bindings_and_bound_users_may_both_be_set() -> None:
    hand_made = ARN_OF("mail/legacy-relay")
    settings = Settings.from_env(
        {"SMTP_BOUND_USERS": "app-a", "SMTP_SECRET_BINDINGS": f'{{"{hand_made}": "relay", "ses-smtp/app-a": "app-a"}}'}
    )
    assert settings.bound_user(hand_made, "mail/legacy-relay") == "relay"
    assert settings.bound_user(ARN_OF("ses-smtp/app-a"), "ses-smtp/app-a") == "app-a"
    assert settings.bound_user(ARN_OF("ses-smtp/relay"), "ses-smtp/relay") is None


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SMTP_BOUND_USERS": "app-a ses-smtp/app-b"}, "SMTP_BOUND_USERS names 'ses-smtp/app-b'"),
        ({"SMTP_BOUND_USERS": "x" * 65}, "SMTP_BOUND_USERS names 'xxx"),
        ({"SMTP_BOUND_USERS": "app-a", "SMTP_SECRET_BINDINGS": '{"ses-smtp/app-a": "app-b"}'}, "to different users"),
    ],
)
def test_bad_bound_users_are_a_clear_error(env: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidSettingsError, match=problem):
        Settings.from_env(env)
