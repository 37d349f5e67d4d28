"""The SES SMTP stand-in answers like SES: the other suites trust it, so it is proven here."""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme
from mypy_boto3_iam import IAMClient

from infra.local_aws import lookup_access_key
from infra.ses_smtp import AuthAttempt, ListenerKind, SesSmtpStandIn
from lambda_function.smtp_password import smtp_password

Key = tuple[str, str]  # (access key ID, secret access key)


@pytest.fixture
def new_key(iam_client: IAMClient, iam_user: str) -> Callable[[], Key]:
    def create() -> Key:
        key = iam_client.create_access_key(UserName=iam_user)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    return create


def trusting(ses: SesSmtpStandIn) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ses.ca_path)


def connect_tls(ses: SesSmtpStandIn, listener: ListenerKind = "starttls") -> smtplib.SMTP:
    """A client with TLS up and EHLO said, on the STARTTLS or the implicit-TLS listener."""
    smtp: smtplib.SMTP
    if listener == "tls":
        smtp = smtplib.SMTP_SSL(ses.host, ses.tls_port, timeout=5, context=trusting(ses))
    else:
        smtp = smtplib.SMTP(ses.host, ses.starttls_port, timeout=5)
        smtp.starttls(context=trusting(ses))
    # auth() sends no EHLO of its own, and takes the "503 send EHLO first" for a success.
    smtp.ehlo("client.example")
    return smtp


def auth_plain(smtp: smtplib.SMTP, username: str, password: str) -> tuple[int, bytes]:
    """One AUTH PLAIN (``login()`` would retry as LOGIN); returns SES's reply."""
    smtp.user, smtp.password = username, password
    try:
        return smtp.auth("PLAIN", smtp.auth_plain)
    except smtplib.SMTPAuthenticationError as refused:
        error = refused.smtp_error
        return refused.smtp_code, error if isinstance(error, bytes) else error.encode()


def login(ses: SesSmtpStandIn, username: str, password: str, listener: ListenerKind = "starttls") -> tuple[int, bytes]:
    with connect_tls(ses, listener) as smtp:
        return auth_plain(smtp, username, password)


def attempts_by(ses: SesSmtpStandIn, username: str) -> list[AuthAttempt]:
    return [attempt for attempt in ses.auth_attempts if attempt.username == username]


def test_greeting_and_ehlo_before_starttls_look_like_ses(ses_smtp: SesSmtpStandIn) -> None:
    with smtplib.SMTP(ses_smtp.host, ses_smtp.starttls_port, timeout=5) as smtp:
        code, features = smtp.ehlo("client.example")
        assert code == 250
        assert features.splitlines()[0] == b"email-smtp.amazonaws.com"
        assert smtp.has_extn("starttls")
        assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]  # offered before TLS, like SES
        smtp.starttls(context=trusting(ses_smtp))
        smtp.ehlo("client.example")
        assert not smtp.has_extn("starttls")
        assert smtp.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]


def test_greeting_names_simple_email_service(ses_smtp: SesSmtpStandIn) -> None:
    with smtplib.SMTP(timeout=5) as smtp:
        code, greeting = smtp.connect(ses_smtp.host, ses_smtp.starttls_port)
    assert code == 220
    assert greeting.startswith(b"email-smtp.amazonaws.com ESMTP SimpleEmailService-")


@pytest.mark.parametrize("listener", ["starttls", "tls"])
def test_v4_password_of_active_key_is_accepted(
    ses_smtp: SesSmtpStandIn, new_key: Callable[[], Key], listener: ListenerKind
) -> None:
    key_id, secret = new_key()

    assert login(ses_smtp, key_id, smtp_password(secret, "us-east-1"), listener) == (
        235,
        b"Authentication successful.",
    )
    assert attempts_by(ses_smtp, key_id) == [AuthAttempt(listener, key_id, True, 235)]


def test_login_mechanism_is_accepted_too(ses_smtp: SesSmtpStandIn, new_key: Callable[[], Key]) -> None:
    key_id, secret = new_key()
    with connect_tls(ses_smtp) as smtp:
        smtp.user, smtp.password = key_id, smtp_password(secret, "us-east-1")
        assert smtp.auth("LOGIN", smtp.auth_login) == (235, b"Authentication successful.")


@pytest.mark.parametrize(
    "wrong_password",
    [
        pytest.param(lambda secret: smtp_password(secret, "eu-west-1"), id="other-region"),
        pytest.param(lambda secret: secret, id="raw-secret-key"),
        pytest.param(lambda secret: smtp_password(secret + "x", "us-east-1"), id="other-secret"),
    ],
)
def test_wrong_password_is_refused(
    ses_smtp: SesSmtpStandIn, new_key: Callable[[], Key], wrong_password: Callable[[str], str]
) -> None:
    key_id, secret = new_key()
    assert login(ses_smtp, key_id, wrong_password(secret)) == (535, b"Authentication Credentials Invalid")


def test_inactive_key_is_refused(
    ses_smtp: SesSmtpStandIn, new_key: Callable[[], Key], iam_client: IAMClient, iam_user: str
) -> None:
    key_id, secret = new_key()
    password = smtp_password(secret, "us-east-1")
    assert login(ses_smtp, key_id, password)[0] == 235

    iam_client.update_access_key(UserName=iam_user, AccessKeyId=key_id, Status="Inactive")

    assert login(ses_smtp, key_id, password)[0] == 535


def test_deleted_key_is_refused(
    ses_smtp: SesSmtpStandIn, new_key: Callable[[], Key], iam_client: IAMClient, iam_user: str
) -> None:
    key_id, secret = new_key()
    password = smtp_password(secret, "us-east-1")
    assert login(ses_smtp, key_id, password)[0] == 235

    iam_client.delete_access_key(UserName=iam_user, AccessKeyId=key_id)

    assert lookup_access_key(key_id) is None
    assert login(ses_smtp, key_id, password)[0] == 535


def test_key_of_deleted_user_is_refused(
    ses_smtp: SesSmtpStandIn, new_key: Callable[[], Key], iam_client: IAMClient, iam_user: str
) -> None:
    # Real IAM refuses to delete a user with keys; moto does not, and keeps the key indexed.
    key_id, secret = new_key()
    iam_client.delete_user(UserName=iam_user)
    assert login(ses_smtp, key_id, smtp_password(secret, "us-east-1"))[0] == 535


def test_new_key_is_refused_until_propagation_delay_has_passed(
    ses_smtp: SesSmtpStandIn, new_key: Callable[[], Key]
) -> None:
    delay = 0.5
    with ses_smtp.configured(propagation_delay=delay):
        key_id, secret = new_key()
        created = time.monotonic()
        password = smtp_password(secret, "us-east-1")

        assert login(ses_smtp, key_id, password)[0] == 535
        time.sleep(max(0.0, delay - (time.monotonic() - created)) + 0.05)
        assert login(ses_smtp, key_id, password)[0] == 235
    assert ses_smtp.propagation_delay == 0.0


def test_key_lookup_reports_status_and_aware_creation_time(new_key: Callable[[], Key], iam_user: str) -> None:
    key_id, secret = new_key()
    key = lookup_access_key(key_id)
    assert key is not None
    assert (key.user_name, key.secret_access_key, key.status) == (iam_user, secret, "Active")
    assert key.create_date.tzinfo is not None
    assert secret not in repr(key)
    assert lookup_access_key("AKIANOSUCHKEY0000000") is None


def test_auth_before_starttls_is_refused_and_recorded(ses_smtp: SesSmtpStandIn, new_key: Callable[[], Key]) -> None:
    key_id, secret = new_key()
    with smtplib.SMTP(ses_smtp.host, ses_smtp.starttls_port, timeout=5) as smtp:
        smtp.ehlo("client.example")
        reply = auth_plain(smtp, key_id, smtp_password(secret, "us-east-1"))

    assert reply == (530, b"Must issue a STARTTLS command first")
    assert attempts_by(ses_smtp, key_id) == [AuthAttempt("starttls", key_id, False, 530)]


def test_auth_without_ehlo_after_starttls_is_not_a_success(
    ses_smtp: SesSmtpStandIn, new_key: Callable[[], Key]
) -> None:
    # STARTTLS resets the session (RFC 3207). smtplib's auth() returns this 503 without raising,
    # as if it meant "already authenticated": a client must check for 235 itself.
    key_id, secret = new_key()
    with smtplib.SMTP(ses_smtp.host, ses_smtp.starttls_port, timeout=5) as smtp:
        smtp.starttls(context=trusting(ses_smtp))
        code, _ = auth_plain(smtp, key_id, smtp_password(secret, "us-east-1"))
    assert code == 503
    assert attempts_by(ses_smtp, key_id) == []


def test_listener_without_starttls_offers_no_starttls(ses_smtp: SesSmtpStandIn) -> None:
    before = [attempt for attempt in ses_smtp.auth_attempts if attempt.listener == "plain"]
    with smtplib.SMTP(ses_smtp.host, ses_smtp.plain_port, timeout=5) as smtp:
        smtp.ehlo("client.example")
        assert not smtp.has_extn("starttls")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.starttls(context=trusting(ses_smtp))
        # An AUTH sent anyway is refused and recorded, so client tests can prove they sent none.
        assert auth_plain(smtp, "AKIAEXAMPLE", "not-a-password")[0] == 530
    after = [attempt for attempt in ses_smtp.auth_attempts if attempt.listener == "plain"]
    assert after[len(before) :] == [AuthAttempt("plain", "AKIAEXAMPLE", False, 530)]


def test_mail_before_auth_is_refused(ses_smtp: SesSmtpStandIn) -> None:
    with connect_tls(ses_smtp) as smtp:
        smtp.ehlo("client.example")
        assert smtp.mail("sender@example.com") == (530, b"Authentication required")


def message(sender: str, subject: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, "success@simulator.amazonses.com", subject
    mail.set_content("Sent through the SES SMTP stand-in.")
    return mail


def test_unverified_sender_is_rejected_after_data(ses_smtp: SesSmtpStandIn, new_key: Callable[[], Key]) -> None:
    key_id, secret = new_key()
    with ses_smtp.configured(verified_senders={"verified@example.com"}), connect_tls(ses_smtp) as smtp:
        auth_plain(smtp, key_id, smtp_password(secret, "us-east-1"))
        # MAIL and RCPT pass (smtplib raises otherwise); SES refuses only once it has the message.
        with pytest.raises(smtplib.SMTPDataError) as rejected:
            smtp.send_message(message("stranger@example.org", "unverified"))

    assert rejected.value.smtp_code == 554
    assert rejected.value.smtp_error == (
        b"Message rejected: Email address is not verified. The following identities failed "
        b"the check in region US-EAST-1: stranger@example.org"
    )
    assert not [mail for mail in ses_smtp.messages if mail.username == key_id]


@pytest.mark.parametrize("identity", ["verified@example.com", "example.com"])
def test_verified_sender_is_accepted_and_stored(
    ses_smtp: SesSmtpStandIn, new_key: Callable[[], Key], identity: str
) -> None:
    key_id, secret = new_key()
    with ses_smtp.configured(verified_senders={identity}), connect_tls(ses_smtp, "tls") as smtp:
        auth_plain(smtp, key_id, smtp_password(secret, "us-east-1"))
        assert smtp.send_message(message("Verified@example.com", f"hello {key_id}")) == {}

    [stored] = [mail for mail in ses_smtp.messages if mail.username == key_id]
    assert (stored.listener, stored.mail_from) == ("tls", "Verified@example.com")
    assert stored.rcpt_tos == ("success@simulator.amazonses.com",)
    assert f"Subject: hello {key_id}".encode() in stored.content


def test_default_trust_store_trusts_the_stand_in_through_ssl_cert_file(ses_smtp: SesSmtpStandIn, smtp_ca: str) -> None:
    with smtplib.SMTP(ses_smtp.host, ses_smtp.starttls_port, timeout=5) as smtp:
        assert smtp.starttls(context=ssl.create_default_context())[0] == 220
    with smtplib.SMTP_SSL("localhost", ses_smtp.tls_port, timeout=5, context=ssl.create_default_context()):
        pass


@pytest.mark.parametrize("listener", ["starttls", "tls"])
def test_client_that_does_not_trust_the_ca_fails_verification(
    ses_smtp: SesSmtpStandIn, tmp_path: Path, listener: str
) -> None:
    stranger_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger_ca))
    context = ssl.create_default_context(cafile=str(stranger_ca))

    with pytest.raises(ssl.SSLCertVerificationError):
        if listener == "tls":
            smtplib.SMTP_SSL(ses_smtp.host, ses_smtp.tls_port, timeout=5, context=context)
        else:
            with smtplib.SMTP(ses_smtp.host, ses_smtp.starttls_port, timeout=5) as smtp:
                smtp.starttls(context=context)
