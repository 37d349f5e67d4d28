"""What CloudFormation accepts and refuses: each configuration's values, and the Rules and
parameter constraints that refuse what would widen or break the stack."""

from __future__ import annotations

import pytest

from tests.template.resolver import ACCOUNT, REGION, TemplateRejected, deploy
from tests.template.support import CONSOLE_GROUP, IDENTITY, Configuration, listed_users


def test_configuration_values_are_accepted_by_the_template(configuration: Configuration) -> None:
    stack = deploy(configuration.parameters)  # raises TemplateRejected otherwise
    assert sorted(stack.nested) == sorted(user.stack_id for user in listed_users(stack))


@pytest.mark.parametrize(
    "parameters",
    [
        pytest.param(
            {"SendingIdentityArn": IDENTITY, "SendingGroupName": CONSOLE_GROUP}, id="scope-on-the-console-group"
        ),
        pytest.param(
            {"SendingIdentityArn": IDENTITY, "SendingGroupName": "mine", "SendingGroupExists": "true"},
            id="scope-on-an-existing-group",
        ),
        pytest.param(
            {"SendingConfigurationSetArn": f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/tx"},
            id="configuration-set-on-the-console-group",
        ),
    ],
)
def test_sending_scope_is_refused_on_a_group_this_stack_does_not_own(parameters: dict[str, str]) -> None:
    with pytest.raises(TemplateRejected, match="SendingGroup"):
        deploy(parameters)


def test_configuration_set_scope_leaves_identities_of_this_account_open() -> None:
    config_set = f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/transactional"
    stack = deploy({"SendingConfigurationSetArn": config_set, "SendingGroupName": "ses-transactional"})
    _, group = stack.only("AWS::IAM::Group")
    assert group["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"] == [
        f"arn:aws:ses:*:{ACCOUNT}:identity/*",
        config_set,
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KmsKeyArn", f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/aws/secretsmanager"),  # an alias grants nothing
        ("SendingIdentityArn", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/*"),
        ("SmtpUserPath", "/*/"),
        ("AdoptedSmtpUserPath", "/*/"),
        ("SmtpUserNames", "a*"),
        ("SmtpUserNames", "app-a,b/c"),  # each name is checked
        ("AdoptedSmtpUserNames", "x" * 65),
        ("PreviousKeyAction", "Delete"),
        ("RotationWindow", "25h"),
        ("LogRetentionDays", "10"),
        ("SmtpAllowedHosts", "smtp.example:2525"),  # hosts only: no ports, schemes or wildcards
        ("SmtpAllowedHosts", "*.example.com"),
        ("SecretWriterArns", "*"),
        ("SendingFromAddresses", "anyone"),
        ("PreviousKeyActiveHours", "-1"),
        ("PreviousKeyInactiveDays", "7d"),
        ("PreviousKeyIdleHours", "1h"),
        ("PreviousKeyMaxActiveHours", "inf"),
        ("PreviousKeyActiveHours", "1" * 13),
        ("SmtpAllowedHosts", "relay.example," * 73 + "relay"),  # 1,027 characters: the most is 1,024
        ("SmtpTestSender", "a" * 243 + "@example.com"),
    ],
)
def test_parameter_values_that_would_widen_or_break_the_stack_are_refused(name: str, value: str) -> None:
    with pytest.raises(TemplateRejected, match=name):
        deploy({name: value})


def test_a_deployment_of_no_user_is_refused() -> None:
    with pytest.raises(TemplateRejected, match="at least one user"):
        deploy({"SmtpUserNames": ""})
    with pytest.raises(TemplateRejected, match="at least one user"):
        deploy({"SmtpUserNames": ",", "AdoptedSmtpUserNames": ""})
    assert [u.name for u in listed_users(deploy({"SmtpUserNames": "", "AdoptedSmtpUserNames": "x"}))] == ["x"]
