"""What organisations require (issue 10), for each configuration: the functions in a VPC (and
the network-interface grants only then), a permissions boundary on every role and created user,
more memory."""

from __future__ import annotations

import pytest

from tests.template.resolver import ACCOUNT, REGION, Stack, TemplateRejected, deploy
from tests.template.support import (
    DESCRIBE_NETWORK_INTERFACES,
    FUNCTION_ID,
    NETWORK_INTERFACE_ACTIONS,
    RETIREMENT_ID,
    SECURITY_GROUPS,
    SUBNETS,
    in_order,
    listed_users,
    role_grants,
)


def _items(value: str) -> list[str]:
    return [item for item in value.split(",") if item]


def test_both_functions_run_in_the_vpc_only_when_given_one(stack: Stack) -> None:
    subnets, groups = _items(stack.parameters["VpcSubnetIds"]), _items(stack.parameters["VpcSecurityGroupIds"])
    expected = {"SubnetIds": subnets, "SecurityGroupIds": groups} if subnets else None
    for function_id in (FUNCTION_ID, RETIREMENT_ID):
        assert stack.properties(function_id).get("VpcConfig") == expected, function_id


def test_roles_manage_network_interfaces_only_in_a_vpc_and_only_in_this_account(stack: Stack) -> None:
    in_vpc = bool(stack.parameters["VpcSubnetIds"])
    scoped = tuple(
        f"arn:aws:ec2:{REGION}:{ACCOUNT}:{kind}/*" for kind in ("network-interface", "subnet", "security-group")
    )
    for function_id in (FUNCTION_ID, RETIREMENT_ID):
        grants = [
            (g.actions, g.resources)
            for g in role_grants(stack, function_id)
            if any(a.startswith("ec2:") for a in g.actions)
        ]
        expected = [(DESCRIBE_NETWORK_INTERFACES, ("*",)), (NETWORK_INTERFACE_ACTIONS, scoped)] if in_vpc else []
        assert in_order(grants) == in_order(expected), function_id


@pytest.mark.parametrize(
    "parameters",
    [{"VpcSubnetIds": ",".join(SUBNETS)}, {"VpcSecurityGroupIds": ",".join(SECURITY_GROUPS)}],
    ids=["subnets-only", "security-groups-only"],
)
def test_a_vpc_needs_both_subnets_and_security_groups(parameters: dict[str, str]) -> None:
    with pytest.raises(TemplateRejected, match="Set both VpcSubnetIds and VpcSecurityGroupIds, or neither"):
        deploy(parameters)


def test_every_role_and_created_user_gets_the_permissions_boundary_when_given(stack: Stack) -> None:
    boundary = stack.parameters["PermissionsBoundaryArn"] or None
    principals = {
        logical_id: resource["Properties"]
        for logical_id, resource in stack.everything().items()
        if resource["Type"] in {"AWS::IAM::Role", "AWS::IAM::User"}
    }
    created_users = {f"{user.stack_id}/User" for user in listed_users(stack) if user.created}
    assert {"RotationFunctionRole", "RetirementFunctionRole", "RetirementScheduleRole"} | created_users <= set(
        principals
    )
    assert {lid: p.get("PermissionsBoundary") for lid, p in principals.items()} == dict.fromkeys(principals, boundary)


def test_both_functions_get_the_memory_size(stack: Stack) -> None:
    for function_id in (FUNCTION_ID, RETIREMENT_ID):
        assert str(stack.properties(function_id)["MemorySize"]) == stack.parameters["FunctionMemorySize"], function_id
