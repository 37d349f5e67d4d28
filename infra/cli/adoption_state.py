"""Read what `plan_adoption` decides from (read-only IAM calls), and the group check of step 13."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from infra.cli.adoption import AdoptionState, PolicyFacts
from infra.cli.audit_state import has_console_tag, key_facts
from infra.cli.sending_policy import SENDING_POLICY, as_document
from lambda_function.errors import aws_error_code

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


def _missing(error: ClientError) -> bool:
    return aws_error_code(error) == "NoSuchEntity"


def managed_policy_document(iam: IAMClient, arn: str) -> Mapping[str, Any] | None:
    """The default version's document of a managed policy; None when the policy does not exist."""
    try:
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    except ClientError as error:
        if _missing(error):
            return None
        raise
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    return as_document(document)


def sending_policy_facts(iam: IAMClient, arn: str) -> PolicyFacts | None:
    """The managed policy AmazonSesSendingAccess at `arn` as it is now; None when it does not exist."""
    document = managed_policy_document(iam, arn)
    return None if document is None else PolicyFacts(SENDING_POLICY, "managed", document, arn)


def group_facts(iam: IAMClient, group: str) -> tuple[bool, frozenset[str], tuple[PolicyFacts, ...]]:
    """(exists, member user names, attached and inline policies) of `group`."""
    try:
        members = frozenset(
            user["UserName"]
            for page in iam.get_paginator("get_group").paginate(GroupName=group)
            for user in page["Users"]
        )
    except ClientError as error:
        if _missing(error):
            return False, frozenset(), ()
        raise
    policies: list[PolicyFacts] = []
    for attached_page in iam.get_paginator("list_attached_group_policies").paginate(GroupName=group):
        for attached in attached_page["AttachedPolicies"]:
            managed = managed_policy_document(iam, attached["PolicyArn"]) or {}
            policies.append(PolicyFacts(attached["PolicyName"], "managed", managed, attached["PolicyArn"]))
    for inline_page in iam.get_paginator("list_group_policies").paginate(GroupName=group):
        for name in inline_page["PolicyNames"]:
            inline = iam.get_group_policy(GroupName=group, PolicyName=name)["PolicyDocument"]
            policies.append(PolicyFacts(name, "inline", as_document(inline)))
    return True, members, tuple(policies)


def inline_policies(iam: IAMClient, user: str) -> tuple[PolicyFacts, ...]:
    names = [n for page in iam.get_paginator("list_user_policies").paginate(UserName=user) for n in page["PolicyNames"]]
    return tuple(
        PolicyFacts(name, "inline", as_document(iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"]))
        for name in names
    )


def user_arn(iam: IAMClient, user: str) -> str | None:
    try:
        return iam.get_user(UserName=user)["User"]["Arn"]
    except ClientError as error:
        if _missing(error):
            return None
        raise


def read_state(iam: IAMClient, user: str, group: str) -> AdoptionState:
    arn = user_arn(iam, user)
    if arn is None:
        return AdoptionState(user, False, "", None, group, False, frozenset(), (), (), False, ())
    partition, account = arn.split(":")[1], arn.split(":")[4]
    policy_arn = f"arn:{partition}:iam::{account}:policy/{SENDING_POLICY}"
    exists, members, group_policies = group_facts(iam, group)
    # The managed policy only matters when the group does not grant sending yet.
    sending_policy = None if any(p.grants_sending for p in group_policies) else sending_policy_facts(iam, policy_arn)
    return AdoptionState(
        user=user,
        user_exists=True,
        sending_policy_arn=policy_arn,
        sending_policy=sending_policy,
        group=group,
        group_exists=exists,
        group_members=members,
        group_policies=group_policies,
        inline_policies=inline_policies(iam, user),
        console_tag=has_console_tag(iam, user),
        keys=key_facts(iam, user),
    )


def group_grants_sending_to(iam: IAMClient, user: str, group: str) -> bool:
    """Step 13, read afresh: `user` is in `group` and the group allows ses:SendRawEmail."""
    exists, members, policies = group_facts(iam, group)
    return exists and user in members and any(p.grants_sending for p in policies)
