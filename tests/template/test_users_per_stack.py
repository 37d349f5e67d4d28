"""How many users one stack holds (the README's figures, exact): IAM limits a role's inline
policies to 10,240 characters in total (whitespace not counted), and each user adds one policy to
each role. Lambda limits a function's environment to 4 KB; no user adds to it (the binding is a
registry in Parameter Store)."""

from __future__ import annotations

import json
import re

from tests.template.resolver import ACCOUNT, REGION, STACK, Stack, deploy, load_template, walk
from tests.template.support import FUNCTION_ID, KMS_KEY, RETIREMENT_ID, listed_users

ROLE_INLINE_POLICY_LIMIT = 10_240
USERS_PER_STACK = 23  # README: with 64-character names at path "/", a KMS key and a VPC (the most)
# Every optional grant of the roles on: the KMS key and the VPC network interfaces.
LARGEST_ROLES = {
    "KmsKeyArn": KMS_KEY,
    "VpcSubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "VpcSecurityGroupIds": "sg-0123456789abcdef0",
}


def _inline_policy_characters(stack: Stack, role_id: str) -> int:
    """The role's inline policies as IAM counts them, with realistic ARNs in place of references
    (policy names counted too, to be safe)."""
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{STACK}-ses-smtp-retirement:*"
    real = {f"<GetAtt {u.stack_id}/User.Arn>": f"arn:aws:iam::{ACCOUNT}:user/{u.name}" for u in listed_users(stack)}
    real |= {
        "<GetAtt RotationFunctionLogGroup.Arn>": log_group,
        "<GetAtt RetirementFunctionLogGroup.Arn>": log_group,
        "<Ref AlarmTopic>": f"arn:aws:sns:{REGION}:{ACCOUNT}:{STACK}-AlarmTopic-ABCDEFGHIJKL",
    }
    policies = [(p["PolicyName"], p["PolicyDocument"]) for p in stack.properties(role_id).get("Policies", [])]
    policies += [
        (r["Properties"]["PolicyName"], r["Properties"]["PolicyDocument"])
        for r in stack.everything().values()
        if r["Type"] == "AWS::IAM::RolePolicy" and r["Properties"]["RoleName"] == f"<Ref {role_id}>"
    ]
    total = 0
    for name, document in policies:
        text = json.dumps(document, separators=(",", ":"))
        for symbol, arn in real.items():
            text = text.replace(symbol, arn)
        assert "<" not in text, text
        total += len(name) + len(re.sub(r"\s", "", text))
    return total


def _longest_names(count: int) -> str:
    return ",".join(f"{index:02d}".ljust(64, "u") for index in range(count))  # IAM's longest: 64


def test_roles_inline_policies_fit_iams_limit_at_the_documented_number_of_users() -> None:
    stack = deploy({"SmtpUserNames": _longest_names(USERS_PER_STACK), **LARGEST_ROLES})
    assert len(listed_users(stack)) == USERS_PER_STACK
    sizes = {
        role: _inline_policy_characters(stack, role) for role in ("RotationFunctionRole", "RetirementFunctionRole")
    }
    assert max(sizes.values()) <= ROLE_INLINE_POLICY_LIMIT, sizes
    # ... and it is the largest number that does (the README's figure is exact).
    one_more = deploy({"SmtpUserNames": _longest_names(USERS_PER_STACK + 1), **LARGEST_ROLES})
    assert _inline_policy_characters(one_more, "RetirementFunctionRole") > ROLE_INLINE_POLICY_LIMIT


# Lambda allows 4 KB for a function's environment variables together, measured as one JSON object
# (its error "exceeded the 4KB limit. String measured: {"NAME":"value",...}"), so names, values and
# the JSON punctuation count. No user adds to it.
LAMBDA_ENVIRONMENT_LIMIT = 4096
# The longest partition and region names there are (botocore's endpoints.json), for the ARNs.
LONGEST_PARTITION, LONGEST_REGION = "aws-us-gov", "us-isof-south-1"


def _longest_environment_parameters() -> dict[str, str]:
    """The parameters the functions' environment carries, each at the longest value the template
    accepts: free text at its MaxLength, a choice at its longest choice."""
    declared = load_template()["Parameters"]

    def most(name: str) -> int:
        return int(declared[name]["MaxLength"])

    def longest_choice(name: str) -> str:
        return max((str(value) for value in declared[name]["AllowedValues"]), key=len)

    durations = (
        "PreviousKeyActiveHours",
        "PreviousKeyInactiveDays",
        "PreviousKeyIdleHours",
        "PreviousKeyMaxActiveHours",
    )
    domain = "@example.com"
    return {
        **{name: "9" * most(name) for name in durations},
        # DNS's longest names (253 characters), comma-separated, up to the most the template accepts.
        "SmtpAllowedHosts": "".join("," if i % 254 == 253 else "a" for i in range(most("SmtpAllowedHosts"))),
        "SmtpTestSender": "a" * (most("SmtpTestSender") - len(domain)) + domain,
        "PreviousKeyAction": longest_choice("PreviousKeyAction"),
        "SmtpAuthTimeoutSeconds": longest_choice("SmtpAuthTimeoutSeconds"),
        "LogLevel": longest_choice("LogLevel"),
        "MaxKeyAgeDays": str(declared["MaxKeyAgeDays"]["MaxValue"]),
        "KmsKeyArn": (key := f"arn:{LONGEST_PARTITION}:kms:{LONGEST_REGION}:{ACCOUNT}:key/")
        + "k" * (most("KmsKeyArn") - len(key)),
    }


def _environment_bytes(stack: Stack, function_id: str) -> int:
    """The function's environment as Lambda measures it, with the longest ARNs in place of
    references: a 64-character function name (CloudFormation's generated names are cut there) and
    a topic named after a stack name of 128 characters (CloudFormation's longest)."""
    arn = f"arn:{LONGEST_PARTITION}:{{}}:{LONGEST_REGION}:{ACCOUNT}:{{}}".format
    real = {
        f"<GetAtt {FUNCTION_ID}.Arn>": arn("lambda", "function:" + "f" * 64),
        "<Ref AlarmTopic>": arn("sns", "s" * 128 + "-AlarmTopic-ABCDEFGHIJKL"),
    }
    variables = {
        name: real.get(str(value), str(value))
        for name, value in stack.properties(function_id)["Environment"]["Variables"].items()
    }
    assert not [value for value in variables.values() if value.startswith("<")], variables
    return len(json.dumps(variables, separators=(",", ":"), ensure_ascii=False).encode())


def _environment_sizes(users: int) -> dict[str, int]:
    stack = deploy({"SmtpUserNames": _longest_names(users), **LARGEST_ROLES, **_longest_environment_parameters()})
    assert len(listed_users(stack)) == users
    return {function_id: _environment_bytes(stack, function_id) for function_id in (FUNCTION_ID, RETIREMENT_ID)}


def test_every_parameter_in_a_functions_environment_has_a_longest_value() -> None:
    # Otherwise a long value could push the environment past Lambda's 4 KB whatever the users.
    template = load_template()
    declared = template["Parameters"]
    for function_id in (FUNCTION_ID, RETIREMENT_ID):
        variables = template["Resources"][function_id]["Properties"]["Environment"]["Variables"]
        for node in walk(variables):
            if isinstance(node, dict) and set(node) == {"Ref"} and node["Ref"] in declared:
                spec = declared[node["Ref"]]
                bounded = "AllowedValues" in spec or "MaxLength" in spec or "MaxValue" in spec
                assert bounded, node["Ref"]


def test_functions_environment_fits_lambdas_limit_and_does_not_grow_with_users() -> None:
    sizes = _environment_sizes(USERS_PER_STACK)
    assert max(sizes.values()) <= LAMBDA_ENVIRONMENT_LIMIT, sizes
    assert _environment_sizes(1) == sizes  # the binding costs no byte per user
