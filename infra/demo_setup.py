"""The demo's stand-in wiring: moto, the SES SMTP stand-in, both functions in Lambda-like workers,
and what template.yaml would create (sections 1 and 2 of the demo).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3

from infra.demo_narration import INDENT, say, show_log
from infra.lambda_invoke import LambdaWorker
from infra.local_aws import MotoServer, lookup_access_key, set_fake_aws_env
from infra.local_lambda import register_rotation_function
from infra.rotation_driver import LOCAL_FUNCTION_ARN
from infra.ses_smtp import SesSmtpStandIn

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

HANDLER = "lambda_function.handler.lambda_handler"  # the template's Handler
RETIREMENT_HANDLER = "lambda_function.retire_handler.lambda_handler"  # the RetirementFunction's
RETIREMENT_TIMEOUT_SECONDS = 60
REGION = "us-east-1"  # the stand-in's region: SES checks the password of its own region
USER = "ses-smtp-user"  # the template's default SmtpUserNames
SECRET_NAME = f"ses-smtp/{USER}"  # the template's default secret name
# The template's binding registry: the parameter <path><user> holds the secret's exact ARN.
BINDING_PATH = "/ses-smtp-rotation/ses-smtp-rotation-local/"
STANDIN_HOST = "localhost"  # the SES stand-in, on loopback: the one host the demo's deployment allows
SENDING_GROUP = "AWSSESSendingGroupDoNotRename"
SENDING_POLICY = "AmazonSesSendingAccess"
SENDER = "app@example.com"  # the application field of the secret
VERIFIED_DOMAIN = "example.com"
RECIPIENT = "success@simulator.amazonses.com"
HANDLER_MARGIN_SECONDS = 10  # the function timeout beyond the SMTP budget (the handler keeps 5 s)


class DemoError(Exception):
    """The demo cannot go on; the message names the cause."""


@dataclass(frozen=True)
class Options:
    rotations: int = 3
    delay: float = 5.0
    auth_timeout: float = 25.0
    previous_key_action: str | None = None  # the first release's setting; None = the durations decide
    regions: tuple[str, ...] = ()
    verbose: bool = False

    @property
    def durations(self) -> Durations:
        return Durations.for_delay(self.delay)

    @property
    def policy(self) -> str:
        """How the previous key retires, as the demo names it."""
        return self.previous_key_action or "overlap, then retire"


@dataclass(frozen=True)
class Durations:
    """SPEC §4a's durations, compressed to seconds (on AWS: 24 h, 1 h, 168 h, 7 days).

    The clock of a retiring key starts when the new key is made, before testSecret waits for it
    to propagate, so the grace period is that wait plus a few seconds to watch.
    """

    grace: float  # PREVIOUS_KEY_ACTIVE_HOURS
    idle: float  # PREVIOUS_KEY_IDLE_HOURS
    max_active: float  # PREVIOUS_KEY_MAX_ACTIVE_HOURS
    window: float  # PREVIOUS_KEY_INACTIVE_DAYS

    @classmethod
    def for_delay(cls, delay: float) -> Durations:
        grace = delay + 4
        return cls(grace=grace, idle=1.5, max_active=grace + 3, window=2.5)

    def env(self) -> dict[str, str]:
        return {
            "PREVIOUS_KEY_ACTIVE_HOURS": f"{self.grace / 3600:.8f}",
            "PREVIOUS_KEY_IDLE_HOURS": f"{self.idle / 3600:.8f}",
            "PREVIOUS_KEY_MAX_ACTIVE_HOURS": f"{self.max_active / 3600:.8f}",
            "PREVIOUS_KEY_INACTIVE_DAYS": f"{self.window / 86400:.10f}",
        }


@dataclass(frozen=True)
class Version:
    """One secret version as the demo shows it: IDs and field names, never values."""

    version_id: str
    rotation: int  # 0: the deployer's bootstrap version
    key_id: str | None
    fields: tuple[str, ...]
    password_regions: tuple[str, ...]


@dataclass
class Demo:
    """What the demo started and what it has seen so far."""

    options: Options
    moto: MotoServer
    ses: SesSmtpStandIn
    function: LambdaWorker
    retirement: LambdaWorker
    iam: IAMClient
    secrets: SecretsManagerClient
    alarm_queue_url: str  # an SQS queue subscribed to the alarm topic: what operators would receive
    secret_arn: str = ""
    versions: list[Version] = field(default_factory=list)  # oldest first
    retired_by: dict[str, tuple[int, str]] = field(default_factory=dict)  # key -> (rotation, what)


# -- 1. the local stand-ins --------------------------------------------------------------------------


def start_local_aws(stack: contextlib.ExitStack, options: Options) -> Demo:
    say("1. Local stand-ins (nothing here talks to AWS)")
    set_fake_aws_env(os.environ, region=REGION)  # before any client exists: fake credentials only
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    moto = stack.enter_context(MotoServer())
    set_fake_aws_env(os.environ, moto.endpoint_url, region=REGION)
    say(f"   {'moto (IAM, SecretsManager, SNS)':<32}{moto.endpoint_url}")
    ses = stack.enter_context(
        SesSmtpStandIn(
            lookup_access_key, region=REGION, propagation_delay=options.delay, verified_senders=[VERIFIED_DOMAIN]
        )
    )
    say(f"   {f'SES SMTP stand-in ({REGION})':<32}localhost:{ses.starttls_port} STARTTLS, localhost:{ses.tls_port} TLS")
    say(f"{INDENT}a new key is refused (535) for its first {options.delay:g} s")
    say(f"{INDENT}verified identity: {VERIFIED_DOMAIN}; CA in SSL_CERT_FILE")
    say(f"{INDENT}records each accepted AUTH as the key's last use")
    os.environ["SSL_CERT_FILE"] = ses.ca_path  # the demo's own consumer trusts the stand-in's CA
    timeout = options.auth_timeout + HANDLER_MARGIN_SECONDS
    function = LambdaWorker(HANDLER, env=function_env(options, moto, ses), timeout=timeout)
    stack.callback(function.close)
    function.start()
    if options.verbose:
        show_log(function.read_new_log())
    say(f"   {'rotation function':<32}{HANDLER} in a worker process (INIT {function.init_seconds:.1f} s)")
    say(f"{INDENT}timeout {timeout:g} s, SMTP_AUTH_TIMEOUT_SECONDS={options.auth_timeout:g}")
    say(f"{INDENT}{policy_settings(options)}")
    topic_arn, queue_url = alarm_topic()
    retirement = LambdaWorker(
        RETIREMENT_HANDLER,
        env=retirement_env(options, moto, topic_arn),
        timeout=RETIREMENT_TIMEOUT_SECONDS,
        function_name="ses-smtp-retirement-local",
    )
    stack.callback(retirement.close)
    retirement.start()
    say(f"   {'retirement function':<32}{RETIREMENT_HANDLER} in a worker process")
    say(f"{INDENT}hourly on AWS; here the demo runs it when it wants to look; alarm topic -> an SQS queue")
    return Demo(
        options=options,
        moto=moto,
        ses=ses,
        function=function,
        retirement=retirement,
        iam=boto3.client("iam"),
        secrets=boto3.client("secretsmanager"),
        alarm_queue_url=queue_url,
    )


def policy_settings(options: Options) -> str:
    if options.previous_key_action is not None:
        return f"PREVIOUS_KEY_ACTION={options.previous_key_action}"
    durations = options.durations
    return (
        f"previous key Active {durations.grace:g} s, then Inactive {durations.window:g} s "
        f"(PREVIOUS_KEY_ACTIVE_HOURS, PREVIOUS_KEY_INACTIVE_DAYS compressed)"
    )


def alarm_topic() -> tuple[str, str]:
    """The template's alarm topic, with an SQS queue subscribed to read what it receives."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name="ses-smtp-rotation-alarms")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="ses-smtp-rotation-alarms")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn, queue_url


def function_env(options: Options, moto: MotoServer, ses: SesSmtpStandIn) -> dict[str, str]:
    """The function's environment: what the template sets, pointed at the stand-ins."""
    env = dict(os.environ)
    set_fake_aws_env(env, moto.endpoint_url, region=REGION)
    env.pop("SMTP_TEST_SENDER", None)
    env.update(
        {
            "SSL_CERT_FILE": ses.ca_path,
            # As the template does: the stand-in is the one host credentials may go to, and the
            # secret may rotate USER's keys only (bound by its exact ARN in the registry).
            "SMTP_ALLOWED_HOSTS": STANDIN_HOST,
            "SMTP_BINDING_PATH": BINDING_PATH,
            **previous_key_env(options),
            "SMTP_AUTH_TIMEOUT_SECONDS": f"{options.auth_timeout:g}",
            "SMTP_CONNECT_TIMEOUT_SECONDS": "10",
            "POWERTOOLS_SERVICE_NAME": "ses-smtp-rotation",
            "POWERTOOLS_METRICS_NAMESPACE": "SesSmtpRotation",
            "POWERTOOLS_LOG_LEVEL": "INFO" if options.verbose else "WARNING",
        }
    )
    return env


def previous_key_env(options: Options) -> dict[str, str]:
    """PREVIOUS_KEY_ACTION (the first release's setting) when given, else the compressed durations."""
    if options.previous_key_action is not None:
        return {"PREVIOUS_KEY_ACTION": options.previous_key_action}
    return options.durations.env()


def retirement_env(options: Options, moto: MotoServer, topic_arn: str) -> dict[str, str]:
    """The retirement function's environment, as the template sets it, pointed at the stand-ins."""
    env = dict(os.environ)
    set_fake_aws_env(env, moto.endpoint_url, region=REGION)
    env.update(
        {
            "ROTATION_FUNCTION_ARN": LOCAL_FUNCTION_ARN,  # what the demo's rotations name
            "SMTP_BINDING_PATH": BINDING_PATH,
            "ALARM_TOPIC_ARN": topic_arn,
            **previous_key_env(options),
            "POWERTOOLS_SERVICE_NAME": "ses-smtp-retirement",
            "POWERTOOLS_METRICS_NAMESPACE": "SesSmtpRotation",
            "POWERTOOLS_LOG_LEVEL": "INFO",  # the demo reads its decisions from the log
        }
    )
    return env


# -- 2. what template.yaml creates -----------------------------------------------------------------


def provision(demo: Demo) -> None:
    say()
    say("2. Provision what template.yaml creates")
    iam = demo.iam
    iam.create_user(UserName=USER)
    iam.create_group(GroupName=SENDING_GROUP)
    allow_send = {"Sid": "SendThroughSesSmtp", "Effect": "Allow", "Action": "ses:SendRawEmail", "Resource": "*"}
    policy = {"Version": "2012-10-17", "Statement": [allow_send]}
    iam.put_group_policy(GroupName=SENDING_GROUP, PolicyName=SENDING_POLICY, PolicyDocument=json.dumps(policy))
    iam.add_user_to_group(GroupName=SENDING_GROUP, UserName=USER)
    say(f"   IAM user {USER} (no access key yet) in group {SENDING_GROUP} ({SENDING_POLICY}: ses:SendRawEmail)")
    # Its code runs in the worker above; Lambda holds its settings, where `rollback` reads whose
    # keys the secret may touch and where it may send.
    function_name = LOCAL_FUNCTION_ARN.rsplit(":", 1)[1]
    register_rotation_function(iam, function_name, function_env(demo.options, demo.moto, demo.ses))
    say(f"   rotation function {function_name}: its settings in Lambda, where operator tools read them")

    bootstrap: dict[str, Any] = {
        "iam_user_name": USER,
        "region": REGION,
        "host": STANDIN_HOST,  # the stand-in, instead of email-smtp.us-east-1.amazonaws.com
        "port": demo.ses.starttls_port,
        "sender": SENDER,
    }
    if demo.options.regions:
        bootstrap["regions"] = list(demo.options.regions)
    description = f"SES SMTP credentials of IAM user {USER} (username, password, host, port), rotated locally."
    created = demo.secrets.create_secret(Name=SECRET_NAME, Description=description, SecretString=json.dumps(bootstrap))
    demo.secret_arn = created["ARN"]
    demo.versions.append(Version(created["VersionId"], 0, None, tuple(sorted(bootstrap)), ()))
    say(f"   secret {SECRET_NAME}: {json.dumps(bootstrap)}")
    boto3.client("ssm").put_parameter(Name=f"{BINDING_PATH}{USER}", Value=created["ARN"], Type="String")
    say(f"   binding {BINDING_PATH}{USER} = {created['ARN']} (the secret's exact ARN: a re-created one binds nothing)")
    say("   rotation: every 30 days with the function above; deploying rotates at once (rotation 1)")
