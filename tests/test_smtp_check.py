"""testSecret proves the password over real SMTP with TLS, through SES's propagation delay, and
refuses to send credentials where TLS is missing or untrusted (SPEC §4 testSecret, item 4)."""

from __future__ import annotations

import time
import uuid

import pytest
import trustme
from mypy_boto3_iam import IAMClient

from infra.rotation_driver import STEPS, begin_rotation, run_steps, step_event
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import SmtpAuthenticationError, SmtpConfigurationError, SmtpSendError
from lambda_function.smtp_check import SmtpEndpoint, check_login
from lambda_function.smtp_password import smtp_password
from tests.support import create_secret, current, invoke, keys_of, rotate, stages
from tests.support import secrets_client as sm


def new_key(iam: IAMClient, user: str) -> tuple[str, str]:
    """A fresh key of `user` and its SMTP password for the stand-in's region."""
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], smtp_password(key["SecretAccessKey"], "us-east-1")


@pytest.mark.usefixtures("smtp_ca")
def test_rotation_succeeds_through_a_propagation_delay_of_a_few_seconds(
    iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    ses_smtp.clear()
    with ses_smtp.configured(propagation_delay=3.0):
        rotate(arn)
    codes = [a.code for a in ses_smtp.auth_attempts if a.username == current(arn)["username"]]
    assert codes[-1] == 235
    assert 535 in codes  # it really waited through refusals, one AUTH per attempt
    assert len(codes) <= 8


@pytest.mark.usefixtures("smtp_ca")
def test_test_secret_gives_up_after_its_budget_and_leaves_awscurrent_untouched(
    iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_AUTH_TIMEOUT_SECONDS", "2")
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotate(arn)
    before = current(arn), stages(arn)
    token = begin_rotation(sm(), arn)
    run_steps(invoke, arn, token, steps=STEPS[:2])

    started = time.monotonic()
    with ses_smtp.configured(propagation_delay=60), pytest.raises(SmtpAuthenticationError) as raised:
        invoke(step_event("testSecret", arn, token, None))

    assert time.monotonic() - started < 6
    assert "did not accept the new credentials" in str(raised.value)
    assert "AWSCURRENT is unchanged" in str(raised.value)
    assert current(arn) == before[0]
    assert stages(arn)[token] == ["AWSPENDING"]


@pytest.mark.usefixtures("smtp_ca")
def test_no_credentials_are_sent_to_a_server_that_offers_no_starttls(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp, port=ses_smtp.plain_port)
    token = begin_rotation(sm(), arn)
    run_steps(invoke, arn, token, steps=STEPS[:2])
    ses_smtp.clear()

    with pytest.raises(SmtpConfigurationError, match="offers no STARTTLS, so credentials were not sent"):
        invoke(step_event("testSecret", arn, token, None))

    assert [a for a in ses_smtp.auth_attempts if a.listener == "plain"] == []
    assert "AWSCURRENT" not in stages(arn)[token]


def test_no_credentials_are_sent_when_the_certificate_is_not_trusted(
    iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    other_ca = f"{tmp_path}/other-ca.pem"
    trustme.CA().cert_pem.write_to_path(other_ca)
    monkeypatch.setenv("SSL_CERT_FILE", other_ca)  # a trust store without the stand-in's CA
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    token = begin_rotation(sm(), arn)
    run_steps(invoke, arn, token, steps=STEPS[:2])
    ses_smtp.clear()

    with pytest.raises(SmtpConfigurationError, match=r"certificate of .* does not verify"):
        invoke(step_event("testSecret", arn, token, None))

    assert ses_smtp.auth_attempts == []


@pytest.mark.usefixtures("smtp_ca")
def test_implicit_tls_endpoint_logs_in(iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn) -> None:
    username, password = new_key(iam_client, iam_user)
    endpoint = SmtpEndpoint("localhost", ses_smtp.tls_port, implicit_tls=True, connect_timeout=5)
    assert check_login(endpoint, username, password, deadline=time.monotonic() + 10) == 1
    assert ses_smtp.auth_attempts[-1].listener == "tls"


@pytest.mark.usefixtures("smtp_ca")
def test_a_wrong_password_is_retried_until_the_deadline_then_reported(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    username, _ = new_key(iam_client, iam_user)
    endpoint = SmtpEndpoint("localhost", ses_smtp.starttls_port, implicit_tls=False, connect_timeout=5)
    with pytest.raises(SmtpAuthenticationError, match=r"after \d attempt"):
        check_login(endpoint, username, "B" + "x" * 43, deadline=time.monotonic() + 1.5)
    assert [a.code for a in ses_smtp.auth_attempts if a.username == username][:2] == [535, 535]


def test_an_unresolvable_host_fails_at_once_as_configuration() -> None:
    endpoint = SmtpEndpoint("email-smtp.invalid", 587, implicit_tls=False, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(SmtpConfigurationError, match="Cannot resolve SMTP host"):
        check_login(endpoint, "AKIA", "pw", deadline=time.monotonic() + 120)
    assert time.monotonic() - started < 60  # one lookup, not retries until the deadline


@pytest.mark.usefixtures("smtp_ca")
def test_test_sender_sends_one_message_to_the_ses_simulator(
    iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_TEST_SENDER", "ops@verified.example")
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    ses_smtp.clear()
    with ses_smtp.configured(verified_senders=["verified.example"]):
        rotate(arn)
    assert [(m.mail_from, m.rcpt_tos) for m in ses_smtp.messages] == [
        ("ops@verified.example", ("success@simulator.amazonses.com",))
    ]


@pytest.mark.usefixtures("smtp_ca")
def test_an_unverified_test_sender_fails_the_step_with_ses_reason(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_TEST_SENDER", "ops@unverified.example")
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    token = begin_rotation(sm(), arn)
    run_steps(invoke, arn, token, steps=STEPS[:2])
    with (
        ses_smtp.configured(verified_senders=["verified.example"]),
        pytest.raises(SmtpSendError, match="554 Message rejected: Email address is not verified") as refused,
    ):
        invoke(step_event("testSecret", arn, token, None))
    assert "identities named: ops@unverified.example." in str(refused.value)  # which of ours SES named
    assert "US-EAST-1" not in str(refused.value)  # our copy of SES's reason, not SES's text
    assert len(keys_of(iam_client, iam_user)) == 1


@pytest.mark.usefixtures("smtp_ca")
def test_a_user_who_may_not_send_fails_the_send_check_with_access_denied(
    iam_client: IAMClient, ses_smtp: SesSmtpStandIn
) -> None:
    user = f"ses-smtp-nosend-{uuid.uuid4().hex[:12]}"
    iam_client.create_user(UserName=user)  # outside the sending group: it may sign in, not send
    username, password = new_key(iam_client, user)
    endpoint = SmtpEndpoint("localhost", ses_smtp.starttls_port, implicit_tls=False, connect_timeout=5)
    with ses_smtp.configured(verified_senders=["verified.example"]), pytest.raises(SmtpSendError) as refused:
        check_login(endpoint, username, password, deadline=time.monotonic() + 10, sender="ops@verified.example")
    assert "554 Access denied: the SMTP user may not send as this identity" in str(refused.value)
    assert user not in str(refused.value)  # SES's text (it names the user's ARN) is not passed on
