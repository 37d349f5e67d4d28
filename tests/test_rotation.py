"""Whole rotations through the handler, as Secrets Manager drives them, against moto and the
SES SMTP stand-in (SPEC §3, §4)."""

from __future__ import annotations

import pytest
from mypy_boto3_iam import IAMClient

from infra.local_aws import lookup_access_key
from infra.ses_smtp import SesSmtpStandIn
from tests.reference_script import calculate_key
from tests.support import create_secret, current, keys_of, rotate, smtp_login_code, stages


@pytest.mark.usefixtures("smtp_ca")
def test_first_rotation_fills_the_secret_keeps_custom_fields_and_the_password_logs_in(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    arn = create_secret({"iam_user_name": iam_user, "sender": "noreply@example.com"}, ses_smtp)

    token = rotate(arn)

    secret = current(arn)
    assert stages(arn)[token] == ["AWSCURRENT"] or "AWSCURRENT" in stages(arn)[token]
    assert secret["sender"] == "noreply@example.com"
    assert secret["iam_user_name"] == iam_user
    assert (secret["host"], secret["port"], secret["region"]) == ("localhost", ses_smtp.starttls_port, "us-east-1")
    assert list(keys_of(iam_client, iam_user)) == [secret["username"]]
    key = lookup_access_key(secret["username"])
    assert key is not None
    assert secret["password"] == calculate_key(key.secret_access_key, "us-east-1")
    assert smtp_login_code(ses_smtp, secret["username"], secret["password"]) == 235


# After rotations 1, 2, 3 (keys k1, k2, k3): the user's keys and their status, per action.
EXPECTED_KEYS = {
    "keep": [{"k1": "Active"}, {"k1": "Active", "k2": "Active"}, {"k2": "Active", "k3": "Active"}],
    "deactivate": [{"k1": "Active"}, {"k1": "Inactive", "k2": "Active"}, {"k2": "Inactive", "k3": "Active"}],
    "delete": [{"k1": "Active"}, {"k2": "Active"}, {"k3": "Active"}],
}


@pytest.mark.usefixtures("smtp_ca")
@pytest.mark.parametrize("action", ["keep", "deactivate", "delete"])
def test_three_rotations_leave_exactly_the_keys_the_previous_key_action_promises(
    action: str, iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREVIOUS_KEY_ACTION", action)
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    names: dict[str, str] = {}
    passwords: list[tuple[str, str]] = []
    for expected in EXPECTED_KEYS[action]:
        rotate(arn)
        secret = current(arn)
        names[secret["username"]] = f"k{len(names) + 1}"
        passwords.append((secret["username"], secret["password"]))
        assert {names.get(k, k): s for k, s in keys_of(iam_client, iam_user).items()} == expected
        assert len(keys_of(iam_client, iam_user)) <= 2
    # The current password works; a retired one does not (kept ones still do, as a grace period).
    assert smtp_login_code(ses_smtp, *passwords[-1]) == 235
    assert smtp_login_code(ses_smtp, *passwords[-2]) == (235 if action == "keep" else 535)
    assert smtp_login_code(ses_smtp, *passwords[0]) == 535


@pytest.mark.usefixtures("smtp_ca")
def test_regions_get_a_password_each_from_the_same_key(iam_user: str, ses_smtp: SesSmtpStandIn) -> None:
    arn = create_secret({"iam_user_name": iam_user, "regions": ["eu-west-1", "ap-southeast-2"]}, ses_smtp)
    rotate(arn)
    rotate(arn)
    secret = current(arn)
    key = lookup_access_key(secret["username"])
    assert key is not None
    assert secret["passwords"] == {
        region: calculate_key(key.secret_access_key, region) for region in ("us-east-1", "eu-west-1", "ap-southeast-2")
    }
    assert secret["password"] == secret["passwords"]["us-east-1"]
    assert smtp_login_code(ses_smtp, secret["username"], secret["password"]) == 235
