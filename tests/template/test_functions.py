"""The two functions, for each configuration: runtime and logs, a timeout that covers the SMTP
wait, and the environment the parameters give them (the retirement function's: its rotation
function, its binding registry, its durations)."""

from __future__ import annotations

import pytest

from tests.template.resolver import Stack, deploy, load_template
from tests.template.support import FUNCTION_ID, RETIREMENT_ID

FUNCTION_ENVIRONMENT = {
    "PREVIOUS_KEY_ACTION",
    "PREVIOUS_KEY_ACTIVE_HOURS",
    "PREVIOUS_KEY_INACTIVE_DAYS",
    "SMTP_ALLOWED_HOSTS",
    "SMTP_BINDING_PATH",
    "KMS_KEY_ARN",
    "SMTP_AUTH_TIMEOUT_SECONDS",
    "SMTP_CONNECT_TIMEOUT_SECONDS",
    "SMTP_TEST_SENDER",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}


def test_function_runs_python313_on_arm64_with_structured_json_logs(stack: Stack) -> None:
    function = stack.properties(FUNCTION_ID)
    assert (function["Runtime"], function["Architectures"]) == ("python3.13", ["arm64"])
    assert function["Handler"] == "lambda_function.handler.lambda_handler"
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    assert function["LoggingConfig"]["ApplicationLogLevel"] == stack.parameters["LogLevel"]
    log_groups = stack.of_type("AWS::Logs::LogGroup")
    assert set(log_groups) == {"RotationFunctionLogGroup", "RetirementFunctionLogGroup"}
    for log_group in log_groups.values():
        assert log_group["Properties"]["RetentionInDays"] == stack.parameters["LogRetentionDays"]


def test_function_timeout_covers_the_wait_for_a_new_key(stack: Stack) -> None:
    function = stack.properties(FUNCTION_ID)
    env = function["Environment"]["Variables"]
    assert set(env) == FUNCTION_ENVIRONMENT
    # The longest step: the auth wait, a connection or two, and the AWS calls around them.
    needed = int(env["SMTP_AUTH_TIMEOUT_SECONDS"]) + 2 * int(env["SMTP_CONNECT_TIMEOUT_SECONDS"]) + 60
    assert int(function["Timeout"]) >= needed
    assert int(function["Timeout"]) <= 900


@pytest.mark.parametrize("auth_timeout", ["30", "60", "120", "300", "600"])
def test_every_allowed_smtp_auth_timeout_gets_a_function_timeout_that_covers_it(auth_timeout: str) -> None:
    function = deploy({"SmtpAuthTimeoutSeconds": auth_timeout}).properties(FUNCTION_ID)
    env = function["Environment"]["Variables"]
    assert env["SMTP_AUTH_TIMEOUT_SECONDS"] == auth_timeout
    needed = int(auth_timeout) + 2 * int(env["SMTP_CONNECT_TIMEOUT_SECONDS"]) + 60
    assert needed <= int(function["Timeout"]) <= 900


def test_function_environment_carries_the_parameters(stack: Stack) -> None:
    env = stack.properties(FUNCTION_ID)["Environment"]["Variables"]
    assert env["PREVIOUS_KEY_ACTION"] == stack.parameters["PreviousKeyAction"]
    assert env["SMTP_TEST_SENDER"] == stack.parameters["SmtpTestSender"]
    assert env["POWERTOOLS_LOG_LEVEL"] == stack.parameters["LogLevel"]


def test_the_function_is_told_its_allowed_hosts(stack: Stack) -> None:
    env = stack.properties(FUNCTION_ID)["Environment"]["Variables"]
    assert env["SMTP_ALLOWED_HOSTS"] == stack.parameters["SmtpAllowedHosts"]


def test_retirement_function_looks_after_this_rotation_functions_secrets_with_their_bound_user(stack: Stack) -> None:
    rotation, retirement = stack.properties(FUNCTION_ID), stack.properties(RETIREMENT_ID)
    env = retirement["Environment"]["Variables"]
    assert env["ROTATION_FUNCTION_ARN"] == f"<GetAtt {FUNCTION_ID}.Arn>"
    for name in ("SMTP_BINDING_PATH", "KMS_KEY_ARN"):  # the same registry, the same key
        assert env[name] == rotation["Environment"]["Variables"][name], name
    assert env["ALARM_TOPIC_ARN"] == "<Ref AlarmTopic>"
    assert retirement["Handler"] == "lambda_function.retire_handler.lambda_handler"
    for name in ("Code", "Runtime", "Architectures"):
        assert retirement[name] == rotation[name], name
    source = load_template()["Resources"]  # what sam build reads: the same package, built the same way
    assert source[RETIREMENT_ID]["Properties"]["CodeUri"] == source[FUNCTION_ID]["Properties"]["CodeUri"]
    build = "BuildProperties"  # (their Metadata differ in what they tell the scanner: test_scanner.py)
    assert source[RETIREMENT_ID]["Metadata"][build] == source[FUNCTION_ID]["Metadata"][build]
    assert retirement["LoggingConfig"] == {
        "LogFormat": "JSON",
        "LogGroup": "<Ref RetirementFunctionLogGroup>",
        "ApplicationLogLevel": stack.parameters["LogLevel"],
    }
    (invoke_config,) = stack.of_type("AWS::Lambda::EventInvokeConfig").values()
    assert invoke_config["Properties"]["MaximumRetryAttempts"] == 0  # the next hourly run is the retry


def test_both_functions_get_the_retirement_durations(stack: Stack) -> None:
    parameters = stack.parameters
    durations = {
        "PREVIOUS_KEY_ACTION": parameters["PreviousKeyAction"],
        "PREVIOUS_KEY_ACTIVE_HOURS": parameters["PreviousKeyActiveHours"],
        "PREVIOUS_KEY_INACTIVE_DAYS": parameters["PreviousKeyInactiveDays"],
    }
    rotation = stack.properties(FUNCTION_ID)["Environment"]["Variables"]
    retirement = stack.properties(RETIREMENT_ID)["Environment"]["Variables"]
    assert {name: rotation[name] for name in durations} == durations  # the immediate policies
    assert {name: retirement[name] for name in durations} == durations
    assert retirement["PREVIOUS_KEY_IDLE_HOURS"] == parameters["PreviousKeyIdleHours"]
    assert retirement["PREVIOUS_KEY_MAX_ACTIVE_HOURS"] == parameters["PreviousKeyMaxActiveHours"]
    assert retirement["MAX_KEY_AGE_DAYS"] == parameters["MaxKeyAgeDays"]
