"""Parsing, validating and carrying over the secret document (SPEC §3)."""

from __future__ import annotations

import json

import pytest

from lambda_function.errors import InvalidSecretError
from lambda_function.secret_document import SecretDocument
from tests.reference_script import calculate_key


def parse(document: object, default_region: str = "eu-west-1") -> SecretDocument:
    return SecretDocument.parse(json.dumps(document), default_region)


def test_bootstrap_document_gets_region_host_and_port_made_explicit() -> None:
    new = parse({"iam_user_name": "ses-smtp-app"}).next_version("AKIAEXAMPLE", "secret")
    assert new == {
        "iam_user_name": "ses-smtp-app",
        "region": "eu-west-1",
        "host": "email-smtp.eu-west-1.amazonaws.com",
        "port": 587,
        "username": "AKIAEXAMPLE",
        "password": calculate_key("secret", "eu-west-1"),
    }


def test_unknown_fields_are_carried_over_unchanged() -> None:
    custom = {"sender": "noreply@example.com", "nested": {"a": [1, 2]}, "flag": True}
    new = parse({"iam_user_name": "u", **custom}).next_version("AKIA2", "s2")
    assert {k: new[k] for k in custom} == custom


def test_default_form_host_is_recomputed_from_region_but_override_is_kept() -> None:
    moved = parse({"iam_user_name": "u", "region": "us-west-2", "host": "email-smtp.eu-west-1.amazonaws.com"})
    assert moved.host == "email-smtp.us-west-2.amazonaws.com"
    vpc = parse({"iam_user_name": "u", "host": "vpce-123.email-smtp.eu-west-1.vpce.amazonaws.com"})
    assert vpc.host == "vpce-123.email-smtp.eu-west-1.vpce.amazonaws.com"


def test_regions_add_a_password_per_region_including_the_primary_without_duplicates() -> None:
    doc = parse({"iam_user_name": "u", "region": "us-east-1", "regions": ["eu-west-1", "us-east-1", "eu-west-1"]})
    new = doc.next_version("AKIA3", "s3")
    assert new["passwords"] == {r: calculate_key("s3", r) for r in ("us-east-1", "eu-west-1")}
    assert new["password"] == new["passwords"]["us-east-1"]


def test_stale_passwords_are_dropped_when_regions_is_removed() -> None:
    new = parse({"iam_user_name": "u", "passwords": {"eu-west-1": "old"}}).next_version("AKIA4", "s4")
    assert "passwords" not in new


def test_string_port_is_accepted_and_implicit_tls_ports_are_recognised() -> None:
    assert parse({"iam_user_name": "u", "port": "465"}).port == 465
    assert parse({"iam_user_name": "u", "port": 465}).implicit_tls
    assert not parse({"iam_user_name": "u", "port": 2587}).implicit_tls


def test_unknown_region_is_allowed_only_with_a_host_the_deployment_allows() -> None:
    doc = parse({"iam_user_name": "u", "region": "af-south-1", "host": "smtp.internal.example"})
    doc.check_endpoint(frozenset({"smtp.internal.example"}))
    assert doc.next_version("AKIA5", "s5")["password"] == calculate_key("s5", "af-south-1")
    with pytest.raises(InvalidSecretError, match="af-south-1 without an SES SMTP endpoint"):
        doc.check_endpoint(frozenset())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "is not JSON"),
        ('["iam_user_name"]', "not an object"),
        ("{}", "has no iam_user_name"),
        ('{"iam_user_name": "  "}', "has no iam_user_name"),
        ('{"iam_user_name": "u", "region": "af-south-1"}', "af-south-1 without an SES SMTP endpoint"),
        ('{"iam_user_name": "u", "regions": ["eu-west-1", "me-south-1"]}', "me-south-1 without an SES SMTP endpoint"),
        ('{"iam_user_name": "u", "regions": "eu-west-1"}', "expected a list of region names"),
        ('{"iam_user_name": "u", "port": 0}', "has port 0"),
        ('{"iam_user_name": "u", "port": "smtp"}', "has port 'smtp'"),
    ],
)
def test_bad_document_is_refused_with_a_message_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidSecretError, match=problem):
        SecretDocument.parse(text, "us-east-1").check_endpoint(frozenset())


ALLOWED = frozenset({"smtp-relay.corp.example"})


@pytest.mark.parametrize(
    ("region", "host", "port"),
    [
        ("eu-west-1", None, 587),
        ("eu-west-1", "email-smtp.eu-west-1.amazonaws.com", 2587),
        ("eu-west-1", "EMAIL-SMTP.EU-WEST-1.AMAZONAWS.COM.", 465),  # case and a trailing dot
        ("us-east-1", "email-smtp-fips.us-east-1.amazonaws.com", 2465),
        ("us-gov-west-1", "email-smtp-fips.us-gov-west-1.amazonaws.com", 587),
        ("eu-west-1", "vpce-0a1b2c3d4e5f60718-abcd1234.email-smtp.eu-west-1.vpce.amazonaws.com", 587),
        ("eu-west-1", "vpce-0a1b2c3d4e5f60718-abcd1234-eu-west-1a.email-smtp.eu-west-1.vpce.amazonaws.com", 25),
        ("eu-west-1", "smtp-relay.corp.example", 10025),  # an allowed host may use any port
        ("eu-west-1", "SMTP-Relay.Corp.Example", 587),
    ],
)
def test_ses_endpoints_of_the_region_and_allowed_hosts_pass(region: str, host: str | None, port: int) -> None:
    fields = {"iam_user_name": "u", "region": region, "port": port, **({"host": host} if host else {})}
    parse(fields).check_endpoint(ALLOWED)


@pytest.mark.parametrize(
    ("region", "host", "port", "problem"),
    [
        ("eu-west-1", "smtp.attacker.example", 587, "'smtp.attacker.example' is not an SES SMTP endpoint"),
        ("eu-west-1", "127.0.0.2", 587, "'127.0.0.2' is not an SES SMTP endpoint"),
        ("eu-west-1", "email-smtp.eu-west-1.amazonaws.com.attacker.example", 587, "not an SES SMTP endpoint"),
        ("eu-west-1", "email-smtp.eu-west-1.amazonaws.com:2525", 587, "not an SES SMTP endpoint"),
        ("eu-west-1", "email-smtp-fips.eu-west-1.amazonaws.com", 587, "not an SES SMTP endpoint"),  # no FIPS there
        ("eu-west-1", "vpce-1-2.email-smtp.us-east-1.vpce.amazonaws.com", 587, "not an SES SMTP endpoint"),
        ("eu-west-1", "x.vpce-1-2.email-smtp.eu-west-1.vpce.amazonaws.com", 587, "not an SES SMTP endpoint"),
        ("eu-west-1", "evil.email-smtp.eu-west-1.vpce.amazonaws.com", 587, "not an SES SMTP endpoint"),
        # `$` would match before a final newline: the label must be all of it.
        ("eu-west-1", "vpce-a-b\n.email-smtp.eu-west-1.vpce.amazonaws.com", 587, "not an SES SMTP endpoint"),
        ("eu-west-1", "smtp-relay.corp.example.attacker.example", 587, "not an SES SMTP endpoint"),
        ("eu-west-1", None, 2525, "port 2525 is not an SES SMTP port"),
        ("eu-west-1", None, 443, "port 443 is not an SES SMTP port"),
    ],
)
def test_any_other_host_or_port_is_refused_naming_it_and_the_setting(
    region: str, host: str | None, port: int, problem: str
) -> None:
    fields = {"iam_user_name": "u", "region": region, "port": port, **({"host": host} if host else {})}
    with pytest.raises(InvalidSecretError, match=problem) as refused:
        parse(fields).check_endpoint(ALLOWED)
    assert "SMTP_ALLOWED_HOSTS" in str(refused.value)


def test_a_previous_key_action_in_the_secret_is_carried_over_but_not_read() -> None:
    doc = parse({"iam_user_name": "u", "previous_key_action": "delete"})
    assert not hasattr(doc, "previous_key_action")
    assert doc.next_version("AKIA6", "s6")["previous_key_action"] == "delete"  # a rotation never loses data
