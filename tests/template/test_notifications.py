"""Telling someone, for each configuration: the topic accepts messages only from the template's rule
and alarms; a RotationFailed event of the deployment's secrets, either function's errors, a failed
retirement invocation and a current key past the maximum age reach it; the e-mail subscription only
when given."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lambda_function.retire_handler import CURRENT_KEY_AGE_METRIC
from tests.template.resolver import ACCOUNT, REGION, Stack, load_template
from tests.template.support import (
    FUNCTION_ID,
    RETIREMENT_ID,
    SECRET_PREFIX_ARN,
    Configuration,
    listed_users,
    role_grants,
    via_sns_for_the_alarm_topic,
)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def test_topic_accepts_messages_only_from_this_rule_and_these_alarms(stack: Stack) -> None:
    _, policy = stack.only("AWS::SNS::TopicPolicy")
    publishers = {
        (s["Principal"]["Service"], _hashable(s["Condition"]["ArnEquals"]["aws:SourceArn"]))
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    }
    assert publishers == {
        ("events.amazonaws.com", "<GetAtt RotationFailedRule.Arn>"),
        ("cloudwatch.amazonaws.com", "<GetAtt RotationFunctionErrorsAlarm.Arn>"),
        (
            "cloudwatch.amazonaws.com",
            (
                "<GetAtt RetirementFunctionErrorsAlarm.Arn>",
                "<GetAtt CurrentKeyTooOldAlarm.Arn>",
                "<GetAtt BoundSecretUnmanagedAlarm.Arn>",
            ),
        ),
    }
    assert {s["Action"] for s in policy["PolicyDocument"]["Statement"]} == {"sns:Publish"}


def event_matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """EventBridge matching for patterns of exact values and prefixes (all this template uses)."""
    for key, expected in pattern.items():
        if key not in event:
            return False
        if isinstance(expected, dict):
            if not isinstance(event[key], dict) or not event_matches(expected, event[key]):
                return False
        elif not any(_value_matches(item, event[key]) for item in expected):
            return False
    return True


def _value_matches(expected: Any, value: Any) -> bool:
    if isinstance(expected, dict):
        assert set(expected) == {"prefix"}, f"EventBridge {expected} is not understood by this test"
        return isinstance(value, str) and value.startswith(expected["prefix"])
    return bool(expected == value)


def rotation_failed_event(secret_id: str) -> dict[str, Any]:
    """What EventBridge receives from CloudTrail when Secrets Manager records RotationFailed."""
    return {
        "source": "aws.secretsmanager",
        "detail-type": "AWS Service Event via CloudTrail",
        "time": "2024-05-01T03:00:00Z",
        "detail": {
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "RotationFailed",
            "eventType": "AwsServiceEvent",
            "additionalEventData": {"SecretId": secret_id},
        },
    }


def test_rotation_failed_event_of_the_deployments_secrets_notifies_the_topic(stack: Stack) -> None:
    _, rule = stack.only("AWS::Events::Rule")
    pattern = rule["EventPattern"]
    for user in listed_users(stack):
        assert event_matches(pattern, rotation_failed_event(f"{SECRET_PREFIX_ARN}{user.name}-AbCdEf"))
    assert not event_matches(pattern, rotation_failed_event(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:x"))
    other_account = f"arn:aws:secretsmanager:{REGION}:210987654321:secret:ses-smtp/a-AbCdEf"
    assert not event_matches(pattern, rotation_failed_event(other_account))
    succeeded = rotation_failed_event(f"{SECRET_PREFIX_ARN}a-AbCdEf")
    succeeded["detail"]["eventName"] = "RotationSucceeded"
    assert not event_matches(pattern, succeeded)
    assert [target["Arn"] for target in rule["Targets"]] == ["<Ref AlarmTopic>"]


def test_function_errors_raise_an_alarm_on_the_topic(stack: Stack) -> None:
    alarm = stack.properties("RotationFunctionErrorsAlarm")
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": f"<Ref {FUNCTION_ID}>"}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["AlarmActions"] == ["<Ref AlarmTopic>"]


def test_retirement_function_errors_raise_an_alarm_on_the_topic(stack: Stack) -> None:
    alarm = stack.properties("RetirementFunctionErrorsAlarm")
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": f"<Ref {RETIREMENT_ID}>"}]
    assert alarm["AlarmActions"] == ["<Ref AlarmTopic>"]


def test_a_failed_retirement_invocation_reaches_the_topic(stack: Stack, configuration: Configuration) -> None:
    """The hourly schedule invokes the retirement function asynchronously; Lambda publishes the record
    of a failed invocation (its error included) to the on-failure destination with the function's
    own role. So: the destination is the topic; the role may publish to it; the topic's policy denies
    nothing; and when the deployment's key encrypts the topic, the role may use the key for it."""
    (invoke_config,) = [
        r["Properties"]
        for r in stack.of_type("AWS::Lambda::EventInvokeConfig").values()
        if r["Properties"]["FunctionName"] == f"<Ref {RETIREMENT_ID}>"
    ]
    assert invoke_config["DestinationConfig"] == {"OnFailure": {"Destination": "<Ref AlarmTopic>"}}
    assert invoke_config["MaximumRetryAttempts"] == 0  # no retry delays it: the next hourly run is the retry
    assert stack.properties(RETIREMENT_ID)["Role"] == f"<GetAtt {RETIREMENT_ID}Role.Arn>"
    grants = role_grants(stack, RETIREMENT_ID)
    publish = [(g.resources, g.condition) for g in grants if "sns:Publish" in g.actions]
    assert publish == [(("<Ref AlarmTopic>",), {})]
    _, topic_policy = stack.only("AWS::SNS::TopicPolicy")
    assert {s["Effect"] for s in topic_policy["PolicyDocument"]["Statement"]} == {"Allow"}
    key = configuration.kms_key
    assert stack.properties("AlarmTopic").get("KmsMasterKeyId") == key
    topic_key_grants = [
        g
        for g in grants
        if g.condition == via_sns_for_the_alarm_topic() and {"kms:GenerateDataKey", "kms:Decrypt"} <= g.actions
    ]
    assert [g.resources for g in topic_key_grants] == ([(key,)] if key else [])


def test_current_key_age_alarm_watches_the_metric_the_retirement_function_emits(stack: Stack) -> None:
    alarm = stack.properties("CurrentKeyTooOldAlarm")
    env = stack.properties(RETIREMENT_ID)["Environment"]["Variables"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (env["POWERTOOLS_METRICS_NAMESPACE"], CURRENT_KEY_AGE_METRIC)
    assert alarm["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}]
    assert (alarm["Statistic"], alarm["ComparisonOperator"]) == ("Maximum", "GreaterThanThreshold")
    assert str(alarm["Threshold"]) == stack.parameters["MaxKeyAgeDays"] == env["MAX_KEY_AGE_DAYS"]
    assert alarm["AlarmActions"] == ["<Ref AlarmTopic>"]


def test_default_maximum_key_age_is_below_security_hub_iam3() -> None:
    assert int(load_template()["Parameters"]["MaxKeyAgeDays"]["Default"]) < 90


def test_failure_email_is_subscribed_only_when_given(stack: Stack) -> None:
    email = stack.parameters["NotificationEmail"]
    subscriptions = [r["Properties"] for r in stack.of_type("AWS::SNS::Subscription").values()]
    expected = [{"TopicArn": "<Ref AlarmTopic>", "Protocol": "email", "Endpoint": email}] if email else []
    assert subscriptions == expected
