"""The README's Postfix recipe, run as written against a private Postfix instance and the stand-ins.

A Postfix of its own (config and queue in a temporary directory, SMTP on a free loopback port,
no chroot, nothing of the machine's /etc/postfix touched) gets the README's ``postconf`` lines with
the stand-in's ``[host]:port`` and CA instead of SES's, and ``sasl_passwd`` from the README's
refresh script. It relays a message, then a rotation retires the key it holds: the next message is
deferred with 535 until the refresh script runs again, then it is delivered with the new key.
Needs root and Debian's postfix (``make test`` installs it where it may).
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from mypy_boto3_iam import IAMClient

from infra.local_aws import MotoServer
from infra.ses_smtp import SesSmtpStandIn
from tests.recipes.readme import APP_USER, RECIPIENT, SENDER, app_secret, need, recipe, sent_by
from tests.support import current, rotate

WAIT_SECONDS = 60.0  # for Postfix's queue manager to act; the test polls, it does not sleep it out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Postfix:
    """A private Postfix instance: its config directory, and the port its smtpd listens on."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port

    def postconf(self, *settings: str) -> None:
        subprocess.run(["postconf", "-c", str(self.directory), *settings], check=True, timeout=60)

    def submit(self, subject: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = SENDER, RECIPIENT, subject
        message.set_content("Relayed by Postfix.")
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as smtp:
            smtp.send_message(message)

    def queues(self) -> list[str]:
        """The queue (incoming, active, deferred, ...) of each message Postfix holds."""
        listing = subprocess.run(
            ["postqueue", "-c", str(self.directory), "-j"], check=True, timeout=60, capture_output=True, text=True
        )
        return [json.loads(line)["queue_name"] for line in listing.stdout.splitlines() if line.strip()]

    def log(self) -> str:
        path = self.directory / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


def base_config(directory: Path, port: int) -> str:
    """What makes this Postfix private; the relay settings come from the README."""
    return "\n".join(
        [
            "compatibility_level = 3.6",
            f"queue_directory = {directory}/queue",
            f"data_directory = {directory}/data",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "myhostname = relay.recipe.test",
            "mydestination =",
            "alias_maps =",
            "alias_database =",
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "smtpd_relay_restrictions = permit_mynetworks, reject",
            "smtp_host_lookup = native",  # no DNS here: the relay host comes from /etc/hosts
            f"maillog_file_prefixes = {directory}",  # Postfix logs only under listed prefixes
            f"maillog_file = {directory}/maillog",
            # The refresh script's flush retries the deferred message at once; once in a few
            # dozen loaded runs it did not, leaving the message to the next retry: Postfix's
            # default backoff (300 s) shortened, so that the test does not time out then.
            "minimal_backoff_time = 5s",
            "maximal_backoff_time = 10s",
            "queue_run_delay = 5s",
            "",
        ]
    )


@pytest.fixture
def postfix() -> Iterator[Postfix]:
    need("postfix", "postconf", "postmap", "postqueue", "jq")
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the Postfix recipe test needs root")
        pytest.skip("the Postfix recipe test needs root (Postfix's master runs as root)")
    # Postfix's own user must reach the queue: not under pytest's private tmp directory.
    directory = Path(tempfile.mkdtemp(prefix="postfix-recipe-"))
    directory.chmod(0o755)
    port = free_port()
    try:
        (directory / "main.cf").write_text(base_config(directory, port))
        shutil.copy("/etc/postfix/master.cf", directory / "master.cf")
        (directory / "queue").mkdir()
        (directory / "data").mkdir()
        shutil.chown(directory / "data", user="postfix")
        instance = Postfix(directory, port)
        instance.postconf("-F", "*/*/chroot = n")
        instance.postconf("-M#", "smtp/inet")
        instance.postconf("-M", f"127.0.0.1:{port}/inet=127.0.0.1:{port} inet n - n - - smtpd")
        subprocess.run(["postfix", "-c", str(directory), "start"], check=True, timeout=120, capture_output=True)
        yield instance
    finally:
        subprocess.run(["postfix", "-c", str(directory), "stop"], check=False, timeout=120, capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def eventually(condition: Callable[[], bool], what: str, postfix: Postfix) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {WAIT_SECONDS:g} s; Postfix log:\n{postfix.log()[-3000:]}")
        time.sleep(0.2)


@pytest.mark.usefixtures("smtp_ca")
def test_postfix_recipe_relays_and_the_refresh_script_moves_it_to_the_rotated_key(
    postfix: Postfix, ses_smtp: SesSmtpStandIn, iam_client: IAMClient, moto_server: MotoServer
) -> None:
    arn = app_secret(iam_client, ses_smtp)
    directory = str(postfix.directory)
    bin_dir = Path(sys.executable).parent  # the AWS CLI of requirements-dev.lock
    env = {
        **os.environ,
        "MAIL_CONFIG": directory,  # what `postconf` edits (instead of /etc/postfix)
        "POSTFIX_DIR": directory,  # the refresh script's setting
        "PATH": f"{bin_dir}{os.pathsep}/usr/sbin{os.pathsep}{os.environ['PATH']}",
    }

    def run(block: str) -> None:
        script = recipe(block).replace("/etc/postfix/", f"{directory}/")
        result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, f"{block}:\n{result.stdout}\n{result.stderr}"

    run("postfix-main-cf")
    # The stand-in instead of SES: its [host]:port (the secret's) and its CA.
    secret = current(arn)
    postfix.postconf("-e", f"relayhost = [{secret['host']}]:{secret['port']}", f"smtp_tls_CAfile = {ses_smtp.ca_path}")
    run("postfix-refresh")
    sasl_passwd = postfix.directory / "sasl_passwd"
    assert sasl_passwd.stat().st_mode & 0o077 == 0, "sasl_passwd must be readable by root only"

    since = len(ses_smtp.messages)
    postfix.submit("before the rotation")
    old_key = secret["username"]
    eventually(lambda: len(sent_by(ses_smtp, old_key, since)) == 1, "relaying with the current key", postfix)

    rotate(arn)
    iam_client.update_access_key(UserName=APP_USER, AccessKeyId=old_key, Status="Inactive")  # retired
    new_key = current(arn)["username"]
    attempts = len(ses_smtp.auth_attempts)
    postfix.submit("after the rotation")

    def refused_old_key() -> bool:
        return any(a.username == old_key and a.code == 535 for a in ses_smtp.auth_attempts[attempts:])

    eventually(refused_old_key, "a 535 for the retired key", postfix)
    # What the operator finds: the message waiting in the deferred queue (not still being tried).
    eventually(lambda: postfix.queues() == ["deferred"], "the message deferred", postfix)
    assert sent_by(ses_smtp, new_key, since) == []  # deferred, not lost, not sent

    run("postfix-refresh")

    eventually(lambda: len(sent_by(ses_smtp, new_key, since)) == 1, "the deferred message, with the new key", postfix)
    assert secret["password"] not in postfix.log()
