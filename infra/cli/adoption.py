"""Seed 000's migration of a console-made SMTP user, decided in pure code: state in, plan out.

The SES console made SMTP users before September 2024 with an inline policy granting
``ses:SendRawEmail`` and the tag ``InvokedBy=SESConsole``; AWS now recommends the group
``AWSSESSendingGroupDoNotRename`` holding the policy ``AmazonSesSendingAccess``. The plan follows
seed 000's order, so the user can send at every moment:

1. the managed policy ``AmazonSesSendingAccess`` (seed steps 2-5), when the group needs it;
2. the group (steps 6-7) and the policy attached to it (step 9);
3. the user added to the group (steps 8, 10-12);
4. a fresh check that the group grants sending (step 13);
5. only then the inline sending policies deleted (step 14);
6. the ``InvokedBy=SESConsole`` tag removed (steps 15-16).

Each run plans from the state it reads, so a run interrupted at any point is finished by the
next one. ``plan_adoption`` raises ``AdoptionRefused`` (nothing changed) when the user does not
exist, when the group exists but does not grant sending and is not an empty shell this tool
left behind (its members would gain nothing, or something else, by our changes), or when an
existing ``AmazonSesSendingAccess`` would be attached although it grants more than SES sending
(``sending_policy.grants_only_sending``: whoever created it would choose what the group grants).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.cli.inventory import KeyFacts
from infra.cli.sending_policy import (
    CONSOLE_TAG,
    SENDING_POLICY,
    SENDING_POLICY_DOCUMENT,
    grants_only_sending,
    grants_sending,
    grants_sending_everywhere,
    only_ses,
)


class AdoptionRefused(Exception):
    """Adopting the user would be wrong or impossible; nothing was changed."""


@dataclass(frozen=True)
class PolicyFacts:
    """An IAM policy as read (a managed policy: its default version), and what it allows."""

    name: str
    kind: str  # "managed" (attached) or "inline"
    document: Mapping[str, Any]
    arn: str | None = None  # managed policies

    @property
    def grants_sending(self) -> bool:
        return grants_sending(self.document)

    @property
    def only_ses(self) -> bool:
        """Deleting it takes away nothing but SES actions."""
        return only_ses(self.document)

    @property
    def grants_everywhere(self) -> bool:
        """ses:SendRawEmail on "*" with no condition."""
        return grants_sending_everywhere(self.document)

    @property
    def grants_only_sending(self) -> bool:
        """It allows nothing beyond ses:SendRawEmail and ses:SendEmail."""
        return grants_only_sending(self.document)


@dataclass(frozen=True)
class AdoptionState:
    user: str
    user_exists: bool
    sending_policy_arn: str  # AmazonSesSendingAccess in the user's account
    # That policy as it exists; None when it does not, or was not read (the group grants sending already).
    sending_policy: PolicyFacts | None
    group: str
    group_exists: bool
    group_members: frozenset[str]
    group_policies: tuple[PolicyFacts, ...]
    inline_policies: tuple[PolicyFacts, ...]  # the user's inline policies
    console_tag: bool
    keys: tuple[KeyFacts, ...]  # for the pre-flight report

    @property
    def group_grants_everywhere(self) -> bool:
        """Whether the group, once the plan is applied, lets its members send from every identity."""
        if self.group_grants_sending:
            return any(p.grants_sending and p.grants_everywhere for p in self.group_policies)
        return self.sending_policy is None or self.sending_policy.grants_everywhere

    @property
    def group_grants_sending(self) -> bool:
        return any(p.grants_sending for p in self.group_policies)


@dataclass(frozen=True)
class Step:
    action: str  # one of ACTIONS
    target: str  # what it acts on (policy ARN, group, inline policy name, tag)
    description: str


ACTIONS = (
    "create_policy",
    "create_group",
    "attach_policy",
    "add_user_to_group",
    "check_group_grants_sending",
    "delete_inline_policy",
    "remove_console_tag",
)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    notes: tuple[str, ...]  # what the plan leaves alone, and why
    # What the group grants its members once the plan is applied: its policies, or the
    # AmazonSesSendingAccess to be attached (as it exists, or as the plan creates it).
    group_policies: tuple[PolicyFacts, ...] = ()

    @property
    def changes(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.action != "check_group_grants_sending")


def _group_steps(state: AdoptionState) -> tuple[list[Step], tuple[PolicyFacts, ...]]:
    """Make the group grant sending, or refuse when it is someone else's group that does not, or
    when the AmazonSesSendingAccess to be attached grants more than sending.

    Returns the steps, and the group's policies once they are made."""
    if state.group_exists and state.group_grants_sending:
        return [], state.group_policies
    if state.group_exists and (state.group_members or state.group_policies):
        members = ", ".join(sorted(state.group_members)) or "none"
        policies = ", ".join(f"{p.name} ({p.kind})" for p in state.group_policies) or "none"
        raise AdoptionRefused(
            f"Group {state.group} exists but grants no ses:SendRawEmail (members: {members}; policies: "
            f"{policies}), so {state.user}'s inline policy cannot be replaced by it. Attach {SENDING_POLICY} "
            "(ses:SendRawEmail) to the group, or name another group with --group, then run adopt again."
        )
    steps: list[Step] = []
    arn = state.sending_policy_arn
    policy = state.sending_policy
    if policy is None:
        steps.append(Step("create_policy", arn, f"create managed policy {SENDING_POLICY} allowing ses:SendRawEmail"))
        policy = PolicyFacts(SENDING_POLICY, "managed", SENDING_POLICY_DOCUMENT, arn)
    elif not policy.grants_sending:
        raise AdoptionRefused(
            f"Policy {arn} exists but does not allow ses:SendRawEmail; fix its default version "
            "(seed 000: Allow ses:SendRawEmail on *), then run adopt again."
        )
    else:
        refuse_unless_only_sending(policy)
    if not state.group_exists:
        steps.append(Step("create_group", state.group, f"create group {state.group}"))
    steps.append(Step("attach_policy", arn, f"attach {SENDING_POLICY} to group {state.group}"))
    return steps, (policy,)


def refuse_unless_only_sending(policy: PolicyFacts) -> None:
    """Raise ``AdoptionRefused`` when the existing managed policy to be attached grants more than sending."""
    if policy.grants_only_sending:
        return
    raise AdoptionRefused(
        f"Policy {policy.arn} exists but grants more than SES sending: its default version allows more than "
        "ses:SendRawEmail and ses:SendEmail (a wildcard action, NotAction or NotResource counts as more), so "
        "attaching it would give the group's members that too. Its document: "
        f"{json.dumps(policy.document, separators=(',', ':'))}. Find out who made it "
        "(CloudTrail: CreatePolicy, CreatePolicyVersion); then delete it, or make its default version allow only "
        "ses:SendRawEmail, or name another group with --group; then run adopt again."
    )


def plan_adoption(state: AdoptionState, *, allow_narrower: bool = False) -> Plan:
    """The steps that take `state` to the end state of seed 000, in its order.

    Refused when the group grants sending only for some identities or under a condition while an
    inline policy to be deleted grants it for all: the user would silently lose sending rights,
    unless the operator says that is the point (`allow_narrower`)."""
    if not state.user_exists:
        raise AdoptionRefused(
            f"IAM user {state.user} does not exist; check the name (ses-smtp-rotation audit lists the SMTP users)."
        )
    steps, group_policies = _group_steps(state)
    notes: list[str] = []
    if state.user not in state.group_members:
        steps.append(Step("add_user_to_group", state.group, f"add {state.user} to group {state.group}"))
        notes += [
            f"Group {state.group}'s {p.kind} policy {p.name} grants more than SES sending; {state.user} gets "
            "that too (its document is shown above)."
            for p in group_policies
            if not p.grants_only_sending
        ]
    deletable = []
    for policy in state.inline_policies:
        if not policy.grants_sending:
            continue
        if policy.only_ses:
            deletable.append(policy)
        else:
            notes.append(
                f"Inline policy {policy.name} also grants more than SES actions: kept. Remove its "
                "ses:SendRawEmail statement by hand once the user is in the group."
            )
    broader = [p.name for p in deletable if p.grants_everywhere]
    if broader and not state.group_grants_everywhere and not allow_narrower:
        raise AdoptionRefused(
            f"Group {state.group} allows ses:SendRawEmail only for some resources or under a condition, while "
            f"{state.user}'s inline policy {', '.join(broader)} allows it from every identity: deleting it would "
            f'narrow what {state.user} may send. Name a group that grants it on "*" with --group, or run '
            "again with --allow-narrower if that narrowing is what you want."
        )
    if deletable:
        steps.append(
            Step(
                "check_group_grants_sending",
                state.group,
                f"check that {state.user} is in {state.group} and that the group allows ses:SendRawEmail",
            )
        )
        steps += [
            Step("delete_inline_policy", p.name, f"delete inline policy {p.name} of {state.user}") for p in deletable
        ]
    if state.console_tag:
        key, value = CONSOLE_TAG
        steps.append(Step("remove_console_tag", key, f"remove tag {key}={value} from {state.user}"))
    return Plan(tuple(steps), tuple(notes), group_policies)


def join_instructions(user: str) -> str:
    """How the adopted user joins a deployment: its name added to AdoptedSmtpUserNames."""
    return (
        f"To rotate its key, add {user} to the deployment's AdoptedSmtpUserNames and deploy again, e.g. "
        f"sam deploy --parameter-overrides AdoptedSmtpUserNames=<names already listed>,{user} "
        f"(keep every other parameter, SendingGroupExists included, as the deployment has it; the user keeps "
        f"at most one access key; see the README, 'Adopting an existing user')."
    )
