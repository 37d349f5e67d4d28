"""``adopt USER``: seed 000's migration from the console's inline policy to the sending group.

Plans by default and changes nothing; ``--apply`` makes the changes, in seed 000's order, so the
user can send at every moment (the inline policy goes only after a fresh check that the group
grants sending). Every step is idempotent and each run plans from what it reads: after any
failure, run the same command again. ``infra.cli.adoption`` has the rules::

    ses-smtp-rotation adopt ses-smtp-user-20190101              # the plan, and the user's keys
    ses-smtp-rotation adopt ses-smtp-user-20190101 --apply

The plan shows the IAM policy documents the group will grant the user: its own, or the
``AmazonSesSendingAccess`` to be attached. Values read from AWS are printed escaped
(``infra.cli.printable``).

Exit status: 0 planned, applied, or nothing to do; 1 refused (unknown user, a group that does
not grant sending, or an existing AmazonSesSendingAccess that grants more than SES sending):
nothing changed; 2 bad arguments; 3 stopped part-way by an AWS error or a failed check (the
group's, or the policy's re-read just before it is attached): the steps before it stay done, run
the same command again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from infra.cli.adoption import (
    AdoptionRefused,
    AdoptionState,
    Plan,
    PolicyFacts,
    Step,
    join_instructions,
    plan_adoption,
    refuse_unless_only_sending,
)
from infra.cli.adoption_state import group_grants_sending_to, read_state, sending_policy_facts
from infra.cli.printable import printable
from infra.cli.sending_policy import CONSOLE_TAG, SENDING_GROUP, SENDING_POLICY, SENDING_POLICY_DOCUMENT
from lambda_function.errors import aws_error_code

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_AWS_ERROR = 3  # also: the group check failed part-way
CHECK_WAITS = (1.0, 2.0, 4.0)  # seconds between reads of the group check


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "adopt",
        help="move a console-made SMTP user from its inline policy to the sending group (seed 000)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("user", help="the IAM user to adopt")
    parser.add_argument("--apply", action="store_true", help="make the changes (default: only show the plan)")
    parser.add_argument("--group", default=SENDING_GROUP, help=f"the sending group (default {SENDING_GROUP})")
    parser.add_argument(
        "--allow-narrower",
        action="store_true",
        help="delete the inline policy even when the group grants sending only for some identities or conditions",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def _ignoring(code: str, call: Callable[[], object]) -> None:
    """Run an IAM call whose `code` error means the change is already made (a rerun)."""
    try:
        call()
    except ClientError as error:
        if aws_error_code(error) != code:
            raise


def check_still_only_sending(iam: IAMClient, arn: str) -> None:
    """Re-read the policy right before it is attached: someone may have made or changed it since the
    plan (``create_policy`` takes an existing one as done), and the group gets whatever it allows."""
    policy = sending_policy_facts(iam, arn)
    if policy is None or not policy.grants_sending:
        raise AdoptionRefused(
            f"Policy {arn} does not exist or does not allow ses:SendRawEmail (read just now): not attached. "
            "Run adopt again to see the plan."
        )
    refuse_unless_only_sending(policy)


def apply_step(iam: IAMClient, state: AdoptionState, step: Step) -> None:
    """Make one step's change; each is idempotent."""
    user, group = state.user, state.group
    if step.action == "create_policy":
        _ignoring(
            "EntityAlreadyExists",
            lambda: iam.create_policy(
                PolicyName=SENDING_POLICY,
                PolicyDocument=json.dumps(SENDING_POLICY_DOCUMENT),
                Description="Allows ses:SendRawEmail (SES SMTP), as the SES console creates it",
            ),
        )
    elif step.action == "create_group":
        _ignoring("EntityAlreadyExists", lambda: iam.create_group(GroupName=group))
    elif step.action == "attach_policy":
        check_still_only_sending(iam, step.target)
        iam.attach_group_policy(GroupName=group, PolicyArn=step.target)
    elif step.action == "add_user_to_group":
        iam.add_user_to_group(GroupName=group, UserName=user)
    elif step.action == "check_group_grants_sending":
        # IAM is eventually consistent: a membership just added may take a moment to be read back.
        for wait in (*CHECK_WAITS, None):
            if group_grants_sending_to(iam, user, group):
                break
            if wait is None:
                raise AdoptionRefused(
                    f"{user} is not in {group} or the group does not allow ses:SendRawEmail (checked just now): "
                    "the inline policy stays. Run adopt again to see the plan."
                )
            time.sleep(wait)
    elif step.action == "delete_inline_policy":
        _ignoring("NoSuchEntity", lambda: iam.delete_user_policy(UserName=user, PolicyName=step.target))
    elif step.action == "remove_console_tag":
        iam.untag_user(UserName=user, TagKeys=[CONSOLE_TAG[0]])
    else:
        raise ValueError(f"unknown adoption step {step.action!r}")


def _keys(state: AdoptionState, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "access_key_id": k.access_key_id,
            "status": k.status,
            "created": k.created.isoformat(),
            "age_days": round((now - k.created).total_seconds() / 86400, 2),
            "last_used": k.last_used.isoformat() if k.last_used else None,
            "last_used_service": k.last_used_service,
        }
        for k in state.keys
    ]


def _policies(plan: Plan) -> list[dict[str, Any]]:
    """What the group grants its members after the plan, and how each policy gets there."""
    created = {s.target for s in plan.steps if s.action == "create_policy"}
    attached = {s.target for s in plan.steps if s.action == "attach_policy"}

    def change(policy: PolicyFacts) -> str:
        if policy.arn in created:
            return "create_and_attach"
        return "attach" if policy.arn in attached else "none"

    return [
        {
            "name": p.name,
            "kind": p.kind,
            "arn": p.arn,
            "change": change(p),
            "grants_only_sending": p.grants_only_sending,
            "document": p.document,
        }
        for p in plan.group_policies
    ]


# How each of the group's policies gets there, as the table says it.
CHANGES = {
    "create_and_attach": "to be created and attached",
    "attach": "existing, to be attached",
    "none": "in the group already",
}


def _print_table(report: dict[str, Any]) -> None:
    """Every value is escaped (`printable`): names, documents and AWS's answers may hold terminal controls."""
    p = printable
    mode = "applied" if report["applied"] else "plan only: nothing changed; run with --apply to make these changes"
    print(f"adopt {p(report['user'])} into {p(report['group'])} ({mode})")
    print("\nAccess keys (pre-flight: applications using them keep working; adopt changes no key)")
    if not report["keys"]:
        print("  none")
    for key in report["keys"]:
        used = p(key["last_used"][:10]) if key["last_used"] else "never"
        service = f" ({p(key['last_used_service'])})" if key["last_used_service"] else ""
        print(
            f"  {p(key['access_key_id'])}  {p(key['status']):<8}  created {p(key['created'][:10])}  "
            f"{key['age_days']:.0f} days old  last used {used}{service}"
        )
    print(f"\nWhat group {p(report['group'])} grants its members, {p(report['user'])} included, after the plan")
    for policy in report["group_policies"]:
        arn = f", {p(policy['arn'])}" if policy["arn"] else ""
        print(f"  {p(policy['name'])} ({p(policy['kind'])}{arn}; {CHANGES[policy['change']]})")
        # Non-ASCII text stays readable; `printable` escapes what json.dumps leaves (C1, bidi controls).
        for line in json.dumps(policy["document"], indent=2, ensure_ascii=False).split("\n"):
            print(f"    {p(line)}")
    print("\nSteps (seed 000's order)" if report["steps"] else "\nNothing to do: the user is adopted already.")
    for number, step in enumerate(report["steps"], 1):
        done = "done  " if step["done"] else ("failed" if step.get("failed") else "to do ")
        print(f"  {number}. [{done}] {p(step['description'])}")
    for note in report["notes"]:
        print(f"\nNote: {p(note)}")
    print(f"\n{p(report['next'])}")


def _report(state: AdoptionState, plan: Plan, now: datetime) -> dict[str, Any]:
    return {
        "user": state.user,
        "group": state.group,
        "applied": False,
        "keys": _keys(state, now),
        "group_policies": _policies(plan),
        "steps": [
            {"action": s.action, "target": s.target, "description": s.description, "done": False} for s in plan.steps
        ],
        "notes": list(plan.notes),
        "next": join_instructions(state.user),
    }


def run(args: argparse.Namespace) -> int:
    iam = boto3.client("iam")
    try:
        state = read_state(iam, args.user, args.group)
        plan = plan_adoption(state, allow_narrower=args.allow_narrower)
    except AdoptionRefused as refusal:
        print(f"adopt: {printable(refusal)}", file=sys.stderr)
        return EXIT_REFUSED
    except (ClientError, BotoCoreError) as error:
        print(f"adopt: could not read {printable(args.user)}'s state: {printable(error)}", file=sys.stderr)
        return EXIT_AWS_ERROR
    report = _report(state, plan, datetime.now(UTC))
    status = EXIT_OK
    if args.apply:
        report["applied"] = True
        for step, entry in zip(plan.steps, report["steps"], strict=True):
            try:
                apply_step(iam, state, step)
            except (AdoptionRefused, ClientError, BotoCoreError) as error:
                entry["failed"] = True
                print(
                    f"adopt: {printable(step.description)}: {printable(error)}. Nothing after it was done; "
                    "run adopt again.",
                    file=sys.stderr,
                )
                status = EXIT_AWS_ERROR
                break
            entry["done"] = True
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return status
