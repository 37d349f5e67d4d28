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
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from moto.core.config import default_user_config
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam.models import AccessKey, AccessKeyLastUsed, IAMBackend, ManagedPolicy, User, iam_backends
from moto.secretsmanager.exceptions import InvalidRequestException, ResourceExistsException
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
CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
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


def _versions_dated_to_the_millisecond() -> None:
    """Date each new secret version to the millisecond, as AWS does, not to the second.

    The API reference's examples show ``"CreatedDate": 1523477145.713``; moto 5 stores
    ``int(time.time())``, so a version made just after an access key (moto's IAM dates are precise)
    looked older than the key. The retirement function and createSecret compare the two (a key
    "created since the pending version" belongs to that rotation) and took an older key for one
    made during the rotation.
    """

    def dated(method: Callable[..., Any]) -> Callable[..., Any]:
        if getattr(method, "dates_to_the_millisecond", False):
            return method

        @functools.wraps(method)
        def wrapper(self: SecretsManagerBackend, secret_id: str, *args: Any, **kwargs: Any) -> Any:
            secret = self.secrets.get(secret_id)
            before = {v: id(version) for v, version in secret.versions.items()} if secret else {}
            now = round(time.time(), 3)
            try:
                return method(self, secret_id, *args, **kwargs)
            finally:  # RotateSecret may fail after it made the version (a function moto cannot find)
                secret = self.secrets.get(secret_id)
                for v, version in secret.versions.items() if secret else ():
                    if before.get(v) != id(version) and version.get("createdate") == int(now):
                        version["createdate"] = now

        wrapper.dates_to_the_millisecond = True  # type: ignore[attr-defined]
        return wrapper

    SecretsManagerBackend._add_secret = dated(SecretsManagerBackend._add_secret)  # type: ignore[method-assign]
    SecretsManagerBackend.rotate_secret = dated(SecretsManagerBackend.rotate_secret)  # type: ignore[method-assign]


def _awscurrent_is_the_default_version() -> None:
    """Make moto's "default version" the version labelled AWSCURRENT, and move labels as AWS does.

    AWS has exactly one AWSCURRENT version, and it is what ``GetSecretValue`` without
    ``VersionId``/``VersionStage`` returns (SPEC §7). moto 5 keeps a separate "default version"
    that only PutSecretValue/UpdateSecret move: UpdateSecretVersionStage leaves it behind, and a
    RotateSecret that names a registered function points it at the new, empty AWSPENDING version.
    A later put without stages then labelled AWSPREVIOUS from that stale version and left AWSCURRENT
    on two versions. Here the default version *is* AWSCURRENT's, and a version created with
    AWSCURRENT follows the PutSecretValue/UpdateSecret API reference: "If you specify a staging label
    that's already associated with a different version ... Secrets Manager removes the label from the
    other version" and AWSPREVIOUS moves "to the version that AWSCURRENT was removed from". moto
    instead replaced that version's labels with AWSPREVIOUS alone, dropping e.g. an AWSPENDING left
    on it by a finished rotation.
    """
    if getattr(FakeSecret, "default_is_awscurrent", False):
        return

    def awscurrent_version(self: FakeSecret) -> str | None:
        return next((v for v, version in self.versions.items() if CURRENT in version["version_stages"]), None)

    def reset_default_version(self: FakeSecret, secret_version: dict[str, Any], version_id: str) -> None:
        labels = set(secret_version["version_stages"])  # AWSCURRENT among them: moto calls this only then
        left_current = [
            v for v, version in self.versions.items() if v != version_id and CURRENT in version["version_stages"]
        ]
        moving = labels | ({PREVIOUS} if left_current else set())
        for version in self.versions.values():
            version["version_stages"] = [label for label in version["version_stages"] if label not in moving]
        for v in left_current:
            self.versions[v]["version_stages"].append(PREVIOUS)
        self.versions[version_id] = secret_version

    # moto assigns default_version_id in several places; AWSCURRENT's position is the only truth.
    FakeSecret.default_version_id = property(awscurrent_version, lambda self, value: None)  # type: ignore[assignment]
    FakeSecret.reset_default_version = reset_default_version  # type: ignore[method-assign]
    FakeSecret.default_is_awscurrent = True  # type: ignore[attr-defined]


def _versions_are_immutable() -> None:
    """Refuse a second PutSecretValue with a version's token and another value, as AWS does.

    PutSecretValue API reference: with a ClientRequestToken that matches an existing version "and
    you specify the same secret data, the operation succeeds but does nothing. However, if the
    secret data is different, then the operation fails because you can't modify an existing version"
    (``ResourceExistsException``). moto lets any write through to a version labelled AWSPENDING, so
    a late or duplicate createSecret silently replaced the pending credentials. Only the empty
    version that RotateSecret creates may still receive its value.
    """
    original = SecretsManagerBackend._check_with_existing_secrets_and_versions
    if getattr(original, "immutable_versions", False):
        return

    def check(
        self: SecretsManagerBackend,
        secret_name: str,
        client_request_token: str | None,
        secret_string: str | None,
        secret_binary: str | None,
        on_create: bool = False,
    ) -> FakeSecret | None:
        secret = self.secrets.get(secret_name)
        version = secret.versions.get(client_request_token) if secret and client_request_token else None
        if isinstance(secret, FakeSecret) and version is not None and _has_value(version):
            if version.get("secret_string") == secret_string and version.get("secret_binary") == secret_binary:
                return secret  # the same data: succeeds and does nothing
            raise ResourceExistsException(
                f"You can't use ClientRequestToken {client_request_token} because that value is already in use "
                f"for a version of secret {secret.arn}."
            )
        return original(self, secret_name, client_request_token, secret_string, secret_binary, on_create)

    check.immutable_versions = True  # type: ignore[attr-defined]
    SecretsManagerBackend._check_with_existing_secrets_and_versions = check  # type: ignore[method-assign]


def _has_value(version: dict[str, Any]) -> bool:
    return "secret_string" in version or "secret_binary" in version


def _one_rotation_at_a_time() -> None:
    """Refuse RotateSecret while a previous rotation is incomplete, and allow it after one, as AWS does.

    RotateSecret API reference: "If the AWSPENDING staging label is present but not attached to the
    same version as AWSCURRENT, then any later invocation of RotateSecret assumes that a previous
    rotation request is still in progress and returns an error" (InvalidRequestException: "A
    previous rotation isn't complete. That rotation will be reattempted."). moto 5's check is
    inverted: it refuses exactly when AWSPENDING is on AWSCURRENT's version (a finished rotation) and
    starts a second rotation beside an unfinished one. Also, like AWS, the response's VersionId is
    the new (AWSPENDING) version's, not AWSCURRENT's.
    """
    original = SecretsManagerBackend.rotate_secret
    if getattr(original, "one_at_a_time", False):
        return

    def rotate_secret(
        self: SecretsManagerBackend,
        secret_id: str,
        client_request_token: str | None = None,
        rotation_lambda_arn: str | None = None,
        rotation_rules: dict[str, Any] | None = None,
        rotate_immediately: bool = True,
    ) -> str:
        secret = self.secrets.get(secret_id)
        versions = secret.versions if isinstance(secret, FakeSecret) and not secret.is_deleted() else {}
        pending = [v for v, version in versions.items() if PENDING in version["version_stages"]]
        if any(CURRENT not in versions[v]["version_stages"] for v in pending):
            raise InvalidRequestException("A previous rotation isn't complete. That rotation will be reattempted.")
        # AWSPENDING on AWSCURRENT's version: moto would refuse; AWS moves the label to the new version
        # (as moto does itself once past its check). Put back if the call fails before that.
        for v in pending:
            versions[v]["version_stages"].remove(PENDING)
        try:
            result = json.loads(
                original(self, secret_id, client_request_token, rotation_lambda_arn, rotation_rules, rotate_immediately)
            )
        except Exception:
            if not any(PENDING in version["version_stages"] for version in versions.values()):
                for v in pending:
                    versions[v]["version_stages"].append(PENDING)
            raise
        new = next((v for v, version in versions.items() if PENDING in version["version_stages"]), None)
        if new is not None:
            result["VersionId"] = new
        return json.dumps(result)

    rotate_secret.one_at_a_time = True  # type: ignore[attr-defined]
    SecretsManagerBackend.rotate_secret = rotate_secret  # type: ignore[method-assign]


def _aws_managed_key_is_not_reported() -> None:
    """Omit DescribeSecret's KmsKeyId for a secret under ``aws/secretsmanager``, as AWS does.

    UpdateSecret API reference: "If you set this [KmsKeyId] to an empty string, Secrets Manager uses
    the Amazon Web Services managed key aws/secretsmanager"; DescribeSecret: "If the secret is
    encrypted with the Amazon Web Services managed key aws/secretsmanager, this field is omitted."
    moto reported ``KmsKeyId: ""`` after ``UpdateSecret(KmsKeyId="")`` (and null when never set).
    """
    original = FakeSecret.to_dict
    if getattr(original, "omits_aws_managed_key", False):
        return

    def to_dict(self: FakeSecret) -> dict[str, Any]:
        described = original(self)
        if not described.get("KmsKeyId"):
            described.pop("KmsKeyId", None)
        return described

    to_dict.omits_aws_managed_key = True  # type: ignore[attr-defined]
    FakeSecret.to_dict = to_dict  # type: ignore[method-assign]


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
        _awscurrent_is_the_default_version()
        _versions_are_immutable()
        _one_rotation_at_a_time()
        _versions_dated_to_the_millisecond()
        _aws_managed_key_is_not_reported()
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
