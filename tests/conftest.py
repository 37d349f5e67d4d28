"""Shared fixtures: the local stand-ins of SPEC §7, started once per test session.

- ``moto_server``: moto on 127.0.0.1 (IAM, Secrets Manager ...); ``AWS_ENDPOINT_URL`` points at it.
- ``ses_smtp``: the SES SMTP stand-in for us-east-1, checking passwords against moto's IAM keys.
- ``smtp_ca``: ``SSL_CERT_FILE`` set to the stand-in's CA for one test (the default trust store).
- ``iam_client``, ``iam_user``: boto3 IAM against moto, and a fresh, uniquely named user that may
  send (a member of the SES sending group, as template.yaml makes it).

No fixture resets moto between tests: tests use unique names instead, which keeps them fast.
Every session gets fake credentials first, so no test can sign a request for a real account.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from unittest import mock

import boto3
import pytest
from mypy_boto3_iam import IAMClient

from infra.local_aws import MotoServer, add_to_sending_group, lookup_access_key, set_fake_aws_env
from infra.ses_smtp import SesSmtpStandIn
from tests.support import STANDIN_HOST

REGION = "us-east-1"


@pytest.fixture(scope="session", autouse=True)
def _fake_aws_credentials() -> Iterator[None]:
    """Fake credentials and region for the whole session (cheap: starts nothing)."""
    with mock.patch.dict(os.environ):
        set_fake_aws_env(os.environ, region=REGION)
        yield


@pytest.fixture(scope="session")
def moto_server(_fake_aws_credentials: None) -> Iterator[MotoServer]:
    """moto in server mode; from here on every boto3 client of the session talks to it."""
    with MotoServer() as server, mock.patch.dict(os.environ):
        set_fake_aws_env(os.environ, server.endpoint_url, region=REGION)
        # The test deployment allows the stand-in's host and nothing else; each test secret is
        # bound to its user by tests.support.create_secret.
        os.environ["SMTP_ALLOWED_HOSTS"] = STANDIN_HOST
        os.environ["SMTP_SECRET_BINDINGS"] = "{}"
        os.environ["SMTP_BOUND_USERS"] = ""
        yield server


@pytest.fixture(scope="session")
def ses_smtp(moto_server: MotoServer) -> Iterator[SesSmtpStandIn]:
    """The SES SMTP stand-in (us-east-1, no propagation delay, any sender).

    Change its behaviour for one test with ``with ses_smtp.configured(propagation_delay=2): ...``.
    """
    with SesSmtpStandIn(lookup_access_key, region=REGION, propagation_delay=0.0) as standin:
        yield standin


@pytest.fixture
def smtp_ca(ses_smtp: SesSmtpStandIn, monkeypatch: pytest.MonkeyPatch) -> str:
    """Trust the stand-in's CA through the default trust store; returns the CA PEM path."""
    monkeypatch.setenv("SSL_CERT_FILE", ses_smtp.ca_path)
    return ses_smtp.ca_path


@pytest.fixture(scope="session")
def iam_client(moto_server: MotoServer) -> IAMClient:
    return boto3.client("iam", region_name=REGION, endpoint_url=moto_server.endpoint_url)


@pytest.fixture
def iam_user(iam_client: IAMClient) -> str:
    """A new IAM user (no keys yet) in the sending group, with a name no other test uses."""
    name = f"ses-smtp-test-{uuid.uuid4().hex[:12]}"
    iam_client.create_user(UserName=name)
    add_to_sending_group(iam_client, name)
    return name
