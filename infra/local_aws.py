"""Local AWS for tests and the demo: moto in server mode on loopback, and the env that points at it.

    with MotoServer() as moto:
        set_fake_aws_env(os.environ, moto.endpoint_url)   # boto3 now talks only to moto
        ...
        key = lookup_access_key("AKIA...")                # what the SES SMTP stand-in checks
                                                          # (password, sending permission, last use)

moto runs in a thread of this process, so ``lookup_access_key`` reads IAM's state straight from
moto's backend: a key deleted or deactivated through the API is seen at once.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import MutableMapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

from moto.core.config import default_user_config
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam.models import AccessKey, AccessKeyLastUsed, IAMBackend, ManagedPolicy, User, iam_backends
from moto.secretsmanager.models import FakeSecret, SecretsManagerBackend
from moto.server import ThreadedMotoServer

from infra.iam_policy import Statement, statements_of
from infra.ses_smtp import IamAccessKey

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

# The SES console's sending group and its policy (template.yaml's defaults).
SENDING_GROUP = "AWSSESSendingGroupDoNotRename"
SENDING_POLICY = "AmazonSesSendingAccess"
SENDING_POLICY_DOCUMENT = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "SendThroughSesSmtp", "Effect": "Allow", "Action": "ses:SendRawEmail", "Resource": "*"}],
}
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Anything that could route a client elsewhere than the endpoint we set, or load real credentials.
_UNSET = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


def _list_real_version_dates() -> None:
    """Make moto's ListSecretVersionIds report when each version was created, as AWS does.

    moto 5 stores a version's creation time but lists every version as created *now*. createSecret
    relies on the real value to tell the orphan key of a crashed attempt (created after the
    pending version) from an older key that applications may still use.
    """
    original = SecretsManagerBackend.list_secret_version_ids
    if getattr(original, "lists_real_dates", False):
        return

    def list_secret_version_ids(self: SecretsManagerBackend, secret_id: str) -> str:
        listing = json.loads(original(self, secret_id))
        versions = self.secrets[secret_id].versions
        for version in listing["Versions"]:
            version["CreatedDate"] = versions[version["VersionId"]].get("createdate", version["CreatedDate"])
        return json.dumps(listing)

    list_secret_version_ids.lists_real_dates = True  # type: ignore[attr-defined]
    SecretsManagerBackend.list_secret_version_ids = list_secret_version_ids  # type: ignore[method-assign]


def _default_version_follows_awscurrent() -> None:
    """Make moto's default version follow AWSCURRENT when UpdateSecretVersionStage moves it, as AWS does.

    moto 5 answers ``GetSecretValue`` without ``VersionId``/``VersionStage`` from a "default
    version" that only PutSecretValue moves: after a rotation (which moves AWSCURRENT with
    UpdateSecretVersionStage) it returns the *previous* value, and a later PutSecretValue without
    stages labels AWSPREVIOUS from that stale version. On AWS both mean AWSCURRENT. Applications
    that read without a stage (the default of most SDK helpers) must see what they would see on AWS.
    """
    original = SecretsManagerBackend.update_secret_version_stage
    if getattr(original, "follows_awscurrent", False):
        return

    def update_secret_version_stage(
        self: SecretsManagerBackend,
        secret_id: str,
        version_stage: str,
        remove_from_version_id: str,
        move_to_version_id: str,
    ) -> tuple[str, str]:
        result = original(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
        secret = self.secrets[secret_id]
        current = [v for v, version in secret.versions.items() if "AWSCURRENT" in version["version_stages"]]
        if version_stage == "AWSCURRENT" and len(current) == 1 and isinstance(secret, FakeSecret):
            secret.set_default_version_id(current[0])
        return result

    update_secret_version_stage.follows_awscurrent = True  # type: ignore[attr-defined]
    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage  # type: ignore[method-assign]


def _functions_never_run() -> None:
    """Keep moto's Lambda to configurations: a function there is never run.

    Local rotations drive the steps in-process (``infra.rotation_driver``); a Lambda function in
    moto only carries the deployment's configuration (operator tools read its environment). moto
    would otherwise run it in Docker whenever ``RotateSecret`` names it: pulling images where Docker
    exists, printing errors where it does not. Its Docker-free backend answers invocations at once.
    """
    default_user_config.setdefault("lambda", {})["use_docker"] = False


class MotoServer:
    """moto's HTTP server on 127.0.0.1, on a random free port (``endpoint_url`` once started)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._server: ThreadedMotoServer | None = None
        self._port = 0

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("moto is already running")
        _list_real_version_dates()
        _default_version_follows_awscurrent()
        _functions_never_run()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        server = ThreadedMotoServer(ip_address=self._host, port=0, verbose=False)
        server.start()
        self._port = server.get_host_and_port()[1]  # the port the kernel chose for port 0
        self._server = server

    def stop(self) -> None:
        """Stop the server. moto's state (in this process) survives until the process ends."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("moto is not running")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{self._host}:{self.port}"


def set_fake_aws_env(env: MutableMapping[str, str], endpoint_url: str | None = None, region: str = "us-east-1") -> None:
    """Give `env` fake credentials and `region`, and point AWS SDK clients at `endpoint_url`.

    Use it on ``os.environ`` or on a copy passed to a subprocess. Nothing configured this way can
    sign for a real AWS account: the credentials are fake, profiles and config files are out of
    the way, and no service-specific endpoint (``AWS_ENDPOINT_URL_IAM`` ...) can override ours.
    Without `endpoint_url`, an ``AWS_ENDPOINT_URL`` already in `env` is kept.
    """
    for name in _UNSET:
        env.pop(name, None)
    for name in [name for name in env if name.startswith("AWS_ENDPOINT_URL_")]:
        del env[name]
    env.update(FAKE_CREDENTIALS)
    env.update(
        {
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    if endpoint_url is not None:
        env["AWS_ENDPOINT_URL"] = endpoint_url


def lookup_access_key(
    access_key_id: str, *, account_id: str | None = None, partition: str = "aws"
) -> IamAccessKey | None:
    """Read an IAM access key from moto's state; None when it does not exist (or was deleted).

    The account is ``MOTO_ACCOUNT_ID`` when set, else moto's default 123456789012 (what moto
    answers requests signed with the fake credentials). IAM is global: moto keys its backend by
    partition, not region. Fits ``infra.ses_smtp.KeyLookup``.
    """
    account = account_id or os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
    backend = iam_backends[account][partition]
    key = backend.access_keys.get(access_key_id)
    if key is None or key.user_name is None:  # None: a temporary (ASIA...) key, never SMTP
        return None
    # moto's DeleteUser leaves the user's keys in the backend's index: ask the user too.
    user = backend.users.get(key.user_name)
    if user is None or key not in user.access_keys:
        return None
    return IamAccessKey(
        user_name=key.user_name,
        user_arn=user.arn,
        secret_access_key=key.secret_access_key,
        status=key.status,
        create_date=key.create_date.replace(tzinfo=UTC),  # moto stores naive UTC
        policy_statements=tuple(_identity_statements(backend, user)),
        record_use=functools.partial(_record_smtp_use, key),
    )


def _identity_statements(backend: IAMBackend, user: User) -> list[Statement]:
    """Every statement of the user's identity policies: inline and managed, its own and its groups'."""
    documents: list[str] = list(user.policies.values())
    documents += [_default_document(policy) for policy in user.managed_policies.values()]
    for group in backend.get_groups_for_user(user.name):
        documents += list(group.policies.values())
        documents += [_default_document(policy) for policy in group.managed_policies.values()]
    return [statement for document in documents for statement in statements_of(document)]


def _default_document(policy: ManagedPolicy) -> str:
    return next((v.document for v in policy.versions if v.is_default), "{}")


def _record_smtp_use(key: AccessKey, when: datetime, region: str) -> None:
    """What GetAccessKeyLastUsed shows after SES accepted the key (moto keeps naive UTC, like utcnow())."""
    key.last_used = AccessKeyLastUsed(timestamp=when.astimezone(UTC).replace(tzinfo=None), service="ses", region=region)


def add_to_sending_group(iam: IAMClient, user_name: str, group: str = SENDING_GROUP) -> None:
    """Let `user_name` send, as template.yaml does: membership of the sending group (made if missing)."""
    try:
        iam.create_group(GroupName=group)
    except iam.exceptions.EntityAlreadyExistsException:
        pass  # made by an earlier call, or by the SES console in a real account
    else:
        document = json.dumps(SENDING_POLICY_DOCUMENT)
        iam.put_group_policy(GroupName=group, PolicyName=SENDING_POLICY, PolicyDocument=document)
    iam.add_user_to_group(GroupName=group, UserName=user_name)
