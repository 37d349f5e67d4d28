"""testSecret against SMTP servers (and a resolver) that misbehave on purpose (issue 7, SPEC §4).

Each hostile case must end testSecret within SMTP_AUTH_TIMEOUT_SECONDS +
SMTP_CONNECT_TIMEOUT_SECONDS + 2 s, hold no more memory than it needs, and leave no password,
AUTH string or secret key in any output, even at DEBUG everywhere.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from infra.lambda_invoke import LambdaWorker
from infra.local_aws import lookup_access_key
from infra.rotation_driver import STEPS, begin_rotation, run_steps, step_event
from lambda_function.errors import SmtpAuthenticationError, SmtpConfigurationError
from lambda_function.smtp_check import SmtpEndpoint, check_login
from tests.hostile_smtp import FOREIGN_IDENTITY, HostileSmtpServer, Mode
from tests.support import create_secret, invoke, pending_value
from tests.support import secrets_client as sm

AUTH_TIMEOUT = 3.0
CONNECT_TIMEOUT = 2.0
BOUND = AUTH_TIMEOUT + CONNECT_TIMEOUT + 2.0
HANGING_HOST = "resolver-hangs.example"


@pytest.fixture(scope="module")
def hostile_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, str]:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("hostile") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, str(path)


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch, hostile_ca: tuple[trustme.CA, str]) -> None:
    monkeypatch.setenv("SMTP_AUTH_TIMEOUT_SECONDS", str(AUTH_TIMEOUT))
    monkeypatch.setenv("SMTP_CONNECT_TIMEOUT_SECONDS", str(CONNECT_TIMEOUT))
    monkeypatch.setenv("SSL_CERT_FILE", hostile_ca[1])


def pending_rotation(user: str, host: str, port: int) -> tuple[str, str]:
    """A secret pointed at host:port (allowed by the test deployment), rotated up to testSecret."""
    arn = create_secret({"iam_user_name": user, "host": host, "port": port})
    token = begin_rotation(sm(), arn)
    run_steps(invoke, arn, token, steps=STEPS[:2])
    return arn, token


def timed_test_secret(arn: str, token: str) -> tuple[float, BaseException]:
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        invoke(step_event("testSecret", arn, token, None))
    return time.monotonic() - started, raised.value


@pytest.mark.usefixtures("budget")
def test_a_server_that_dribbles_its_greeting_fails_testsecret_within_the_budget(
    iam_user: str, hostile_ca: tuple[trustme.CA, str]
) -> None:
    with HostileSmtpServer("dribble", hostile_ca[0], interval=0.5) as server:
        arn, token = pending_rotation(iam_user, "localhost", server.port)
        elapsed, error = timed_test_secret(arn, token)
    print(f"[hostile] dribble: testSecret failed after {elapsed:.2f} s (bound {BOUND:g} s)")
    assert isinstance(error, SmtpAuthenticationError), error
    assert "no complete answer within the attempt's deadline" in str(error)
    assert elapsed < BOUND
    assert server.connections >= 2  # a timeout is retried on a fresh connection within the budget


@pytest.mark.usefixtures("budget")
def test_a_resolver_that_never_answers_fails_testsecret_within_the_budget(
    iam_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_ALLOWED_HOSTS", f"localhost,{HANGING_HOST}")
    real = socket.getaddrinfo
    released = threading.Event()

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == HANGING_HOST:
            released.wait(120)  # a resolver that never answers (until the test ends)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        arn, token = pending_rotation(iam_user, HANGING_HOST, 587)
        elapsed, error = timed_test_secret(arn, token)
    finally:
        released.set()
    print(f"[hostile] hanging resolver: testSecret failed after {elapsed:.2f} s (bound {BOUND:g} s)")
    assert isinstance(error, SmtpConfigurationError), error
    assert f"Resolving SMTP host {HANGING_HOST} did not finish" in str(error)
    assert elapsed < BOUND


FLOOD_SCRIPT = """
import json, os, sys, threading, time
from lambda_function.handler import lambda_handler
from infra.lambda_invoke import LocalContext

PAGE = os.sysconf("SC_PAGE_SIZE")

def rss():  # resident memory now (not the peak so far, which the imports have already set)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE

event = json.loads(sys.stdin.read())
done = threading.Event()
before = peak = rss()

def sample():
    global peak
    while not done.wait(0.002):
        peak = max(peak, rss())

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
started = time.monotonic()
try:
    lambda_handler(event, LocalContext.with_timeout(300))
    error = None
except Exception as caught:
    error = type(caught).__name__
seconds = time.monotonic() - started
done.set()
sampler.join()
peak = max(peak, rss())
print(json.dumps({"error": error, "seconds": seconds, "grew_kib": (peak - before) // 1024}))
"""


@pytest.mark.usefixtures("budget")
def test_a_server_that_floods_continuation_lines_fails_testsecret_fast_with_bounded_memory(
    iam_user: str, hostile_ca: tuple[trustme.CA, str]
) -> None:
    with HostileSmtpServer("flood", hostile_ca[0]) as server:
        arn, token = pending_rotation(iam_user, "localhost", server.port)
        # A process of its own, whose resident memory is sampled every 2 ms during testSecret: the
        # growth is testSecret's peak over what the process held before it started.
        result = subprocess.run(
            [sys.executable, "-c", FLOOD_SCRIPT],
            input=json.dumps(step_event("testSecret", arn, token, None)),
            env=dict(os.environ),
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"[hostile] flood: testSecret failed after {outcome['seconds']:.2f} s, RSS grew {outcome['grew_kib']} KiB")
    assert outcome["grew_kib"] < 64 * 1024
    assert outcome["seconds"] < BOUND
    assert outcome["error"] == "SmtpConfigurationError"
    assert "not an SES SMTP endpoint" in result.stdout


@pytest.mark.usefixtures("budget")
def test_plain_text_injected_after_the_starttls_reply_fails_testsecret_before_any_auth(
    iam_user: str, hostile_ca: tuple[trustme.CA, str]
) -> None:
    with HostileSmtpServer("inject", hostile_ca[0]) as server:
        arn, token = pending_rotation(iam_user, "localhost", server.port)
        elapsed, error = timed_test_secret(arn, token)
    print(f"[hostile] inject: testSecret failed after {elapsed:.2f} s (bound {BOUND:g} s)")
    assert isinstance(error, SmtpConfigurationError), error
    assert "sent data after its 220 to STARTTLS, before TLS began" in str(error)
    assert "SNUCK-IN" not in str(error)  # none of the server's text
    assert server.auth_lines == []  # not even over TLS: the injected 235 would have answered it
    assert elapsed < BOUND


EHLO_HEAD = b"250-email-smtp.amazonaws.com\r\n"


@pytest.mark.usefixtures("budget")
@pytest.mark.parametrize(
    "ehlo_reply",
    [
        pytest.param(EHLO_HEAD + b"250-\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n", id="an empty line"),
        pytest.param(EHLO_HEAD + b"250-   \r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n", id="a line of blanks"),
        pytest.param(EHLO_HEAD + b"250-\xff\x00\xfe\r\n250 STARTTLS\r\n", id="bytes that are not ASCII"),
    ],
)
def test_odd_but_harmless_ehlo_lines_are_ignored(ehlo_reply: bytes, hostile_ca: tuple[trustme.CA, str]) -> None:
    with HostileSmtpServer("ehlo", hostile_ca[0], ehlo_reply=ehlo_reply) as server:
        endpoint = SmtpEndpoint("localhost", server.port, implicit_tls=False, connect_timeout=CONNECT_TIMEOUT)
        assert check_login(endpoint, "AKIAEXAMPLE", "pw", deadline=time.monotonic() + AUTH_TIMEOUT) == 1
        assert len(server.auth_lines) == 1  # STARTTLS was found and TLS came up


@pytest.mark.usefixtures("budget")
@pytest.mark.parametrize(
    "ehlo_reply",
    [
        pytest.param(EHLO_HEAD + b"25x-STARTTLS\r\n250 AUTH PLAIN\r\n", id="a code that is not a number"),
        pytest.param(EHLO_HEAD + b"250STARTTLS\r\n250 AUTH PLAIN\r\n", id="no separator after the code"),
        pytest.param(EHLO_HEAD + b"554-STARTTLS\r\n250 AUTH PLAIN\r\n", id="codes that differ within a reply"),
    ],
)
def test_a_malformed_ehlo_reply_fails_cleanly_with_a_fixed_reason(
    ehlo_reply: bytes, hostile_ca: tuple[trustme.CA, str]
) -> None:
    with HostileSmtpServer("ehlo", hostile_ca[0], ehlo_reply=ehlo_reply) as server:
        endpoint = SmtpEndpoint("localhost", server.port, implicit_tls=False, connect_timeout=CONNECT_TIMEOUT)
        with pytest.raises(SmtpConfigurationError, match="sent a reply that is not SMTP") as raised:
            check_login(endpoint, "AKIAEXAMPLE", "pw", deadline=time.monotonic() + AUTH_TIMEOUT)
        assert server.auth_lines == []
    assert "email-smtp.amazonaws.com" not in str(raised.value)  # none of the server's text


def secrets_of(arn: str, token: str) -> set[str]:
    """The pending password, its key's secret, and the AUTH PLAIN string the function sends."""
    value = json.loads(pending_value(arn, token) or "{}")
    key = lookup_access_key(value["username"])
    assert key is not None
    auth = base64.b64encode(f"\0{value['username']}\0{value['password']}".encode()).decode()
    return {value["password"], key.secret_access_key, auth}


@pytest.fixture
def debug_worker(
    hostile_ca: tuple[trustme.CA, str],
) -> Iterator[Any]:
    """Run steps in a Lambda-like worker at DEBUG everywhere; yields a function that runs them."""

    def run(arn: str, token: str, **env: str) -> tuple[str, str]:
        worker_env = {
            **os.environ,
            "POWERTOOLS_LOG_LEVEL": "DEBUG",
            "AWS_LAMBDA_LOG_LEVEL": "DEBUG",
            "SSL_CERT_FILE": hostile_ca[1],
            "SMTP_AUTH_TIMEOUT_SECONDS": "2",
            **env,
        }
        with LambdaWorker("lambda_function.handler.lambda_handler", env=worker_env, timeout=60) as function:
            output, error = "", ""
            for step in STEPS:
                invocation = function.invoke(step_event(step, arn, token, None))
                output += invocation.log
                if invocation.failed:
                    error = f"{invocation.error_type}: {invocation.error_message}"
                    break
        return output, error

    yield run


@pytest.mark.parametrize(
    ("mode", "env", "expected"),
    [
        ("echo", {}, "SmtpAuthenticationError: "),
        ("echo554", {"SMTP_TEST_SENDER": "ops@example.com"}, "554 Message rejected: Email address is not verified"),
    ],
)
def test_an_endpoint_that_echoes_the_auth_exchange_leaks_nothing_at_debug(
    mode: Mode,
    env: dict[str, str],
    expected: str,
    iam_user: str,
    hostile_ca: tuple[trustme.CA, str],
    debug_worker: Any,
) -> None:
    with HostileSmtpServer(mode, hostile_ca[0]) as server:
        arn = create_secret({"iam_user_name": iam_user, "host": "localhost", "port": server.port})
        token = begin_rotation(sm(), arn)
        output, error = debug_worker(arn, token, **env)
        assert server.auth_lines, "the server never saw AUTH: the test proves nothing"
    assert '"level":"DEBUG"' in output  # DEBUG really was on
    assert expected in error
    assert expected in output  # the operator's one line says what happened
    everything = output + error
    # Any 8 characters in a row of a secret (the server also sends the password in 8-character chunks).
    leaked = [
        secret[:4] + "..." for secret in secrets_of(arn, token) for piece in windows(secret, 8) if piece in everything
    ]
    assert leaked == [], "secret material in the function's output or error"
    assert "you sent" not in everything  # no server text beyond SES's 554 reason
    assert FOREIGN_IDENTITY not in everything  # an identity we did not send is server text too
    if mode == "echo554":
        assert "ops@example.com" in error  # the operator learns which of our identities failed


def windows(text: str, size: int) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}
