"""A fleet of SMTP users on local AWS, rotated at once by Lambda-like workers (``make bench-fleet``).

    users = provision(count, ses)                         # N users, 2 keys each, N secrets (steady state)
    tokens = start_rotations(secrets, users)              # Secrets Manager starts them all
    outcomes = rotate_all(workers, list(tokens.items()))  # the four steps, W workers in parallel
    check = check_fleet(iam, secrets)                     # keys per user, orphans (the audit's rules)

Every user starts in the steady state of a rotated deployment: the key ``AWSCURRENT`` names and a
previous key, so each rotation frees a slot, creates a key, checks it and promotes it.
"""

from __future__ import annotations

import collections
import json
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from infra.cli.audit_state import collect_secrets, collect_users
from infra.cli.inventory import audit
from infra.lambda_invoke import LambdaWorker
from infra.rotation_driver import STEPS, begin_rotation, step_event
from lambda_function.smtp_password import derive_password

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from infra.ses_smtp import SesSmtpStandIn


@dataclass(frozen=True)
class FleetUser:
    user: str
    secret_arn: str


@dataclass(frozen=True)
class Outcome:
    """One attempt at one rotation: the four steps, or up to the first that failed."""

    secret_arn: str
    seconds: float
    failed_step: str | None = None
    error: str | None = None  # "ErrorType: message"

    @property
    def completed(self) -> bool:
        return self.failed_step is None


def provision(iam: IAMClient, secrets: SecretsManagerClient, count: int, ses: SesSmtpStandIn) -> list[FleetUser]:
    """`count` users with two keys each and a secret naming the newer one (a rotated deployment)."""
    fleet = []
    for index in range(count):
        user = f"ses-smtp-fleet-{index:04d}"
        iam.create_user(UserName=user)
        iam.create_access_key(UserName=user)  # the previous rotation's key
        key = iam.create_access_key(UserName=user)["AccessKey"]
        document = {
            "iam_user_name": user,
            "region": ses.region,
            "host": "localhost",
            "port": ses.starttls_port,
            "username": key["AccessKeyId"],
            "password": derive_password(key["SecretAccessKey"], ses.region),
        }
        arn = secrets.create_secret(Name=f"ses-smtp/fleet-{index:04d}", SecretString=json.dumps(document))["ARN"]
        fleet.append(FleetUser(user, arn))
    return fleet


def start_rotations(secrets: SecretsManagerClient, fleet: Sequence[FleetUser]) -> dict[str, str]:
    """What Secrets Manager does first for each secret: the empty AWSPENDING version. ARN -> token."""
    return {member.secret_arn: begin_rotation(secrets, member.secret_arn) for member in fleet}


def _rotate_once(worker: LambdaWorker, secret_arn: str, token: str) -> Outcome:
    started = time.monotonic()
    for step in STEPS:
        invocation = worker.invoke(step_event(step, secret_arn, token, None))
        if invocation.failed:
            error = f"{invocation.error_type}: {invocation.error_message}"
            return Outcome(secret_arn, time.monotonic() - started, step, error)
    return Outcome(secret_arn, time.monotonic() - started)


def rotate_all(workers: Sequence[LambdaWorker], jobs: Sequence[tuple[str, str]]) -> list[Outcome]:
    """Run every (secret ARN, token) rotation once; each worker takes the next one when free."""
    pending: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
    for job in jobs:
        pending.put(job)
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def work(worker: LambdaWorker) -> None:
        while True:
            try:
                secret_arn, token = pending.get_nowait()
            except queue.Empty:
                return
            outcome = _rotate_once(worker, secret_arn, token)
            worker.read_new_log()  # keep the log's read position moving; nobody reads it here
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=work, args=(w,), name=f"fleet-{i}") for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def start_workers(handler: str, env: dict[str, str], count: int, timeout: float) -> list[LambdaWorker]:
    """`count` warm workers, started in parallel (INIT imports boto3 and Powertools in each)."""
    workers = [LambdaWorker(handler, env=env, timeout=timeout, function_name=f"fleet-{i}") for i in range(count)]
    threads = [threading.Thread(target=w.start) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return workers


@dataclass(frozen=True)
class FleetCheck:
    keys_per_user: collections.Counter[int]  # number of keys -> how many users
    orphans: int  # keys no labelled secret version names
    unfinished: int  # secrets whose AWSPENDING is still on a version other than AWSCURRENT
    findings: collections.Counter[str]  # every audit finding, by code


def check_fleet(iam: IAMClient, secrets: SecretsManagerClient) -> FleetCheck:
    """Judge the end state with the audit's own collectors and rules."""
    facts, _ = collect_secrets(secrets)
    users, _ = collect_users(iam, bound_users={s.iam_user_name for s in facts})
    report = audit(users, facts, now=datetime.now(UTC))
    return FleetCheck(
        keys_per_user=collections.Counter(len(u.keys) for u in users),
        orphans=sum(1 for f in report.findings if f.code == "key_named_by_no_secret"),
        unfinished=sum(1 for s in report.secrets if s.rotation_state in ("in_progress", "stuck")),
        findings=collections.Counter(f.code for f in report.findings),
    )
