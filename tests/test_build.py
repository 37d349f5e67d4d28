"""`make build` refuses an SAM CLI older than 1.161 before building (infra/build.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from infra.build import BuildError, build, check_sam_version, find_python313, parse_sam_version


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("SAM CLI, version 1.161.0\n", (1, 161, 0)),
        ("SAM CLI, version 1.170.0", (1, 170, 0)),
        ("SAM CLI, version 2.0.0", (2, 0, 0)),
    ],
)
def test_supported_versions_pass(output: str, version: tuple[int, int, int]) -> None:
    assert check_sam_version(output) == version


@pytest.mark.parametrize(
    "output",
    [
        "SAM CLI, version 1.160.1",  # no --language-extensions: cannot expand Fn::ForEach as configured
        "SAM CLI, version 1.145.0",  # cannot expand Fn::ForEach at all
        "SAM CLI, version 1.144.9",  # says "Build Succeeded" but ignores ParentPackageMode
        "SAM CLI, version 1.128.0",
        "SAM CLI, version 1.120.0",  # cannot build python3.13 at all
        "SAM CLI, version 0.999.999",
    ],
)
def test_older_versions_are_refused_saying_why_and_what_to_do(output: str) -> None:
    with pytest.raises(BuildError) as refused:
        check_sam_version(output)
    message = str(refused.value)
    assert output.split()[-1] in message
    assert "1.161.0 or later" in message
    assert "ParentPackageMode" in message and "Fn::ForEach" in message
    assert "pip install 'aws-sam-cli>=1.161.0'" in message


@pytest.mark.parametrize("output", ["", "command not found", "SAM CLI, version unknown"])
def test_unreadable_version_is_refused(output: str) -> None:
    with pytest.raises(BuildError, match="Cannot tell the SAM CLI version"):
        parse_sam_version(output)


def test_build_stops_before_sam_build_with_an_old_sam(tmp_path: Path) -> None:
    if find_python313() is None:
        pytest.skip("no Python 3.13 here")
    calls = tmp_path / "calls"
    fake_sam = tmp_path / "sam"
    fake_sam.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "SAM CLI, version 1.140.0"\n')
    fake_sam.chmod(fake_sam.stat().st_mode | stat.S_IXUSR)

    with pytest.raises(BuildError, match=r"SAM CLI 1\.140\.0 is too old"):
        build(tmp_path / "build", sam=str(fake_sam), env=dict(os.environ))

    assert calls.read_text().split() == ["--version"]  # never `sam build`
    assert not (tmp_path / "build").exists()
