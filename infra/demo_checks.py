"""What the demo checks and reads back: key statuses, version labels, the guarantees of SPEC §9."""

from __future__ import annotations

import json

from infra.demo_narration import say, short
from infra.demo_setup import USER, Demo, DemoError, Version

VERSIONS_SHOWN = 4


def read_version(demo: Demo, version_id: str, rotation: int) -> Version:
    """The key ID and field names of a version (its values stay here)."""
    try:
        text = demo.secrets.get_secret_value(SecretId=demo.secret_arn, VersionId=version_id).get("SecretString")
    except demo.secrets.exceptions.ResourceNotFoundException:
        text = None  # a pending version that createSecret did not fill
    document = json.loads(text or "{}")
    passwords = document.get("passwords")
    return Version(
        version_id=version_id,
        rotation=rotation,
        key_id=document.get("username"),
        fields=tuple(sorted(document)),
        password_regions=tuple(passwords) if isinstance(passwords, dict) else (),
    )


def key_statuses(demo: Demo) -> dict[str, str]:
    """Every key the user has or any version named: Active, Inactive or deleted."""
    listed = demo.iam.list_access_keys(UserName=USER)["AccessKeyMetadata"]
    statuses: dict[str, str] = {key["AccessKeyId"]: key["Status"] for key in listed}
    for version in demo.versions:
        if version.key_id is not None:
            statuses.setdefault(version.key_id, "deleted")
    return statuses


def labels_by_version(demo: Demo) -> dict[str, list[str]]:
    return dict(demo.secrets.describe_secret(SecretId=demo.secret_arn).get("VersionIdsToStages", {}))


def check_invariants(demo: Demo, number: int, keys: dict[str, str]) -> None:
    """What a successful rotation guarantees (SPEC §9); the demo refuses to go on without it."""
    labels = labels_by_version(demo)
    current = demo.versions[-1]
    problems = []
    if "AWSCURRENT" not in labels.get(current.version_id, []):
        problems.append(f"AWSCURRENT is not on the new version {short(current.version_id)}")
    if current.key_id is None or keys.get(current.key_id) != "Active":
        problems.append(f"the AWSCURRENT key {current.key_id} is not Active")
    existing = [key for key, status in keys.items() if status != "deleted"]
    if len(existing) > 2:
        problems.append(f"IAM user {USER} has {len(existing)} access keys")
    named = {version.key_id for version in demo.versions}
    orphans = [key for key in existing if key not in named]
    if orphans:
        problems.append(f"no version names access key(s) {', '.join(orphans)}")
    stuck = [v for v, stages in labels.items() if "AWSPENDING" in stages and "AWSCURRENT" not in stages]
    if stuck:
        problems.append(f"AWSPENDING is left on version {short(stuck[0])}")
    if problems:
        raise DemoError(f"Rotation {number} reported success, but {'; '.join(problems)}.")


def show_versions(demo: Demo, keys: dict[str, str]) -> None:
    labels = labels_by_version(demo)
    say(f"   version   {'labels':<24} {'access key':<22} key status")
    newest_first = list(reversed(demo.versions))
    for version in newest_first[:VERSIONS_SHOWN]:
        label = ", ".join(sorted(labels.get(version.version_id, []))) or "-"
        key = version.key_id or ("(bootstrap: no key)" if version.rotation == 0 else "(no value)")
        status = keys.get(version.key_id, "") if version.key_id else ""
        say(f"   {short(version.version_id)}  {label:<24} {key:<22} {status}".rstrip())
    if len(newest_first) > VERSIONS_SHOWN:
        say(f"   ... and {len(newest_first) - VERSIONS_SHOWN} older version(s) without labels")
    current = next(v for v in demo.versions if "AWSCURRENT" in labels.get(v.version_id, []))
    fields = ", ".join(current.fields)
    regions = f"; passwords for {', '.join(current.password_regions)}" if current.password_regions else ""
    say(f"   AWSCURRENT holds {fields} (values not shown){regions}")
