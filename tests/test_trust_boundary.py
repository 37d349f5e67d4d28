"""The secret's content cannot steer credentials or keys anywhere (issue 7, SPEC §3, §9).

An attacker who can only write the secret's value points `host` at a server of theirs, with a
certificate the function trusts, or names another IAM user. The function must refuse before it
creates a key, send nothing to that server, and touch no other user's keys.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mypy_boto3_iam import IAMClient

from infra.rotation_driver import STEPS, begin_rotation, run_steps, step_event
from infra.ses_smtp import SesSmtpStandIn
from lambda_function.errors import InvalidSecretError
from tests.support import (
    create_secret,
    current,
    invoke,
    keys_of,
    pending_value,
    rotate,
)
from tests.support import secrets_client as sm

LOOK_ALIKE = "email-smtp.us-east-1.amazonaws.com.attacker.example"
SES_HOST = "email-smtp.us-east-1.amazonaws.com"


@pytest.fixture(scope="module")
def thief(ses_smtp: SesSmtpStandIn) -> Iterator[SesSmtpStandIn]:
    """A second SMTP server on 127.0.0.2 that would accept the stolen password: it checks keys
    against the same IAM, and its certificate is valid for every name it will be reached by."""
    with SesSmtpStandIn(ses_smtp.key_lookup, host="127.0.0.2", tls_names=(LOOK_ALIKE, SES_HOST)) as server:
        yield server


@pytest.fixture
def trust_both(
    ses_smtp: SesSmtpStandIn, thief: SesSmtpStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The function's trust store holds both CAs: the thief's certificate would verify."""
    bundle = tmp_path / "trusted.pem"
    with bundle.open("wb") as out:
        for ca in (ses_smtp.ca_path, thief.ca_path):
            with open(ca, "rb") as pem:
                shutil.copyfileobj(pem, out)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))


@pytest.fixture
def attacker_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names the attacker controls (or spoofs) resolve to the thief's address."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (LOOK_ALIKE, SES_HOST):
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.2", int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.usefixtures("trust_both", "attacker_dns")
@pytest.mark.parametrize(
    ("host", "refusal"),
    [
        ("127.0.0.2", "host '127.0.0.2' is not an SES SMTP endpoint"),
        (LOOK_ALIKE, f"host '{LOOK_ALIKE}' is not an SES SMTP endpoint"),
        (SES_HOST, "is not an SES SMTP port"),  # SES's own name, but the thief's port
    ],
    ids=["other-server", "look-alike-name", "disallowed-port"],
)
def test_secret_pointing_at_another_server_is_refused_before_any_key_is_created(
    host: str, refusal: str, iam_client: IAMClient, iam_user: str, thief: SesSmtpStandIn
) -> None:
    arn = create_secret({"iam_user_name": iam_user, "host": host, "port": thief.starttls_port})
    token = begin_rotation(sm(), arn)
    thief.clear()

    with pytest.raises(InvalidSecretError, match=refusal) as refused:
        run_steps(invoke, arn, token)

    assert "SMTP_ALLOWED_HOSTS" in str(refused.value)
    assert keys_of(iam_client, iam_user) == {}
    assert pending_value(arn, token) is None
    assert thief.auth_attempts == []


@pytest.mark.usefixtures("trust_both")
def test_pending_version_pointed_at_another_server_is_refused_before_testsecret_connects(
    iam_user: str, ses_smtp: SesSmtpStandIn, thief: SesSmtpStandIn
) -> None:
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotate(arn)
    before = current(arn)
    token = begin_rotation(sm(), arn)
    # Someone gives the rotation's empty AWSPENDING version its value before createSecret does: the
    # current document, pointed at their server. (A version takes a value once: once createSecret
    # has stored its own, a put with the token and another value is refused, ResourceExistsException.)
    sm().put_secret_value(
        SecretId=arn,
        ClientRequestToken=token,
        SecretString=json.dumps({**before, "host": "127.0.0.2", "port": thief.starttls_port}),
        VersionStages=["AWSPENDING"],
    )
    run_steps(invoke, arn, token, steps=STEPS[:2])  # createSecret finds a value; setSecret, an Active key
    thief.clear()

    with pytest.raises(InvalidSecretError, match=r"'127\.0\.0\.2' is not an SES SMTP endpoint"):
        invoke(step_event("testSecret", arn, token, None))

    assert thief.auth_attempts == []
    assert current(arn) == before


def another_user_with_a_key(iam: IAMClient, iam_user: str) -> tuple[str, dict[str, str]]:
    """A second user of the account, with an access key its own application uses."""
    victim = f"{iam_user}-victim"
    iam.create_user(UserName=victim)
    iam.create_access_key(UserName=victim)
    return victim, keys_of(iam, victim)


def test_secret_naming_another_user_is_refused_and_that_users_keys_are_untouched(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    victim, victims_keys = another_user_with_a_key(iam_client, iam_user)
    arn = create_secret({"iam_user_name": victim}, ses_smtp, bound_to=iam_user)
    token = begin_rotation(sm(), arn)

    with pytest.raises(InvalidSecretError) as refused:
        run_steps(invoke, arn, token)

    message = str(refused.value)
    assert f"bound to IAM user {iam_user}" in message
    assert f"names IAM user {victim}" in message
    assert arn in message
    assert keys_of(iam_client, victim) == victims_keys
    assert keys_of(iam_client, iam_user) == {}
    assert pending_value(arn, token) is None


@pytest.mark.usefixtures("smtp_ca")
def test_a_rewritten_current_version_cannot_redirect_the_next_rotation_to_another_user(
    iam_client: IAMClient, iam_user: str, ses_smtp: SesSmtpStandIn
) -> None:
    victim, victims_keys = another_user_with_a_key(iam_client, iam_user)
    arn = create_secret({"iam_user_name": iam_user}, ses_smtp)
    rotate(arn)
    users_keys = keys_of(iam_client, iam_user)
    # Someone who can write the secret makes a new AWSCURRENT that names the victim. They carry along
    # the AWSPENDING that the rotation left on AWSCURRENT's version: a put without stages would leave
    # it behind, and Secrets Manager would refuse the next rotation ("A previous rotation isn't
    # complete") and reattempt the rotated version instead of starting from theirs.
    sm().put_secret_value(
        SecretId=arn,
        SecretString=json.dumps({**current(arn), "iam_user_name": victim}),
        VersionStages=["AWSCURRENT", "AWSPENDING"],
    )
    assert current(arn)["iam_user_name"] == victim

    with pytest.raises(InvalidSecretError, match=f"names IAM user {victim}"):
        rotate(arn)

    assert keys_of(iam_client, victim) == victims_keys
    assert keys_of(iam_client, iam_user) == users_keys


def test_a_secret_the_deployment_did_not_bind_is_refused(iam_client: IAMClient, iam_user: str) -> None:
    arn = sm().create_secret(Name=f"unbound-{iam_user}", SecretString=json.dumps({"iam_user_name": iam_user}))["ARN"]
    token = begin_rotation(sm(), arn)
    with pytest.raises(InvalidSecretError, match="not bound to an IAM user in this deployment"):
        invoke(step_event("createSecret", arn, token, None))
    assert keys_of(iam_client, iam_user) == {}


@pytest.mark.usefixtures("smtp_ca")
def test_a_previous_key_action_in_the_secret_changes_nothing_and_is_named_in_a_warning(
    iam_client: IAMClient,
    iam_user: str,
    ses_smtp: SesSmtpStandIn,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PREVIOUS_KEY_ACTION", "keep")
    arn = create_secret({"iam_user_name": iam_user, "previous_key_action": "delete"}, ses_smtp)
    rotate(arn)
    first = current(arn)["username"]
    rotate(arn)

    keys = keys_of(iam_client, iam_user)
    assert keys == {first: "Active", current(arn)["username"]: "Active"}  # keep: the deployer's choice
    warned = [r for r in caplog.records if r.levelname == "WARNING" and getattr(r, "ignored_field", None)]
    assert warned and all("previous_key_action" in r.getMessage() for r in warned)
    assert current(arn)["previous_key_action"] == "delete"  # carried over: a rotation never loses data
