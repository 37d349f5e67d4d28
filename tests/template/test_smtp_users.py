"""The SMTP users, for each configuration: each created or adopted and in the sending group, the
group allowed ses:SendRawEmail only in the requested scope, and the credentials outliving the stack."""

from __future__ import annotations

from tests.template.resolver import ACCOUNT, STACK, Stack, as_list
from tests.template.support import listed_users


def test_each_smtp_user_is_created_or_adopted_and_joins_the_sending_group(stack: Stack) -> None:
    group = (
        stack.parameters["SendingGroupName"]
        if stack.parameters["SendingGroupExists"] == "true"
        else "<Ref SendingGroup>"
    )
    for user in listed_users(stack):
        nested = stack.nested[user.stack_id]
        assert nested.parameters["CreateUser"] == str(user.created).lower()
        if user.created:
            _, iam_user = nested.only("AWS::IAM::User")
            assert (iam_user["UserName"], iam_user["Path"]) == (user.name, stack.parameters["SmtpUserPath"])
            assert iam_user["Tags"] == [{"Key": "ses-smtp-rotation:stack", "Value": STACK}]
        else:
            assert nested.of_type("AWS::IAM::User") == {}
        _, membership = nested.only("AWS::IAM::UserToGroupAddition")
        assert membership["GroupName"] == group
        assert nested.outputs["UserName"] == (f"<Ref {user.stack_id}/User>" if user.created else user.name)


def test_sending_group_holds_only_ses_send_raw_email_in_the_requested_scope(stack: Stack) -> None:
    params = stack.parameters
    if params["SendingGroupExists"] == "true":
        assert stack.of_type("AWS::IAM::Group") == {}, "an existing group must be used as it is"
        return
    _, group = stack.only("AWS::IAM::Group")
    assert group["GroupName"] == params["SendingGroupName"]
    ((policy_name, actions, resources),) = [
        (p["PolicyName"], as_list(s["Action"]), as_list(s["Resource"]))
        for p in group["Policies"]
        for s in p["PolicyDocument"]["Statement"]
    ]
    assert (policy_name, actions) == ("AmazonSesSendingAccess", ["ses:SendRawEmail"])
    (statement,) = group["Policies"][0]["PolicyDocument"]["Statement"]
    if params["SendingFromAddresses"]:
        assert statement["Condition"] == {"StringLike": {"ses:FromAddress": params["SendingFromAddresses"].split(",")}}
    else:
        assert "Condition" not in statement
    if params["SendingIdentityArn"] == params["SendingConfigurationSetArn"] == "":
        assert resources == ["*"]
    else:
        assert resources == [
            params["SendingIdentityArn"] or f"arn:aws:ses:*:{ACCOUNT}:identity/*",
            params["SendingConfigurationSetArn"] or f"arn:aws:ses:*:{ACCOUNT}:configuration-set/*",
        ]


def test_credentials_outlive_the_stack_and_the_rotation_does_not(stack: Stack) -> None:
    everything = stack.everything()
    kept = {lid for lid, r in everything.items() if r.get("DeletionPolicy") == "Retain"}
    expected = {"SendingGroup"} if "SendingGroup" in stack.resources else set()
    for user in listed_users(stack):
        expected |= {f"{user.stack_id}/Secret", f"{user.stack_id}/SendingGroupMembership"}
        expected |= {f"{user.stack_id}/User"} if user.created else set()
    assert kept == expected
    assert all(everything[lid].get("UpdateReplacePolicy") == "Retain" for lid in kept)
