"""cfn-lint and `sam validate --lint` find nothing in template.yaml, for each configuration
(the configuration's values as the template's defaults), nor in smtp-user.yaml on its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.local_aws import set_fake_aws_env
from tests.template.resolver import REGION, REPO, TEMPLATE, USER_TEMPLATE, load_template
from tests.template.support import Configuration, tool


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    set_fake_aws_env(env, region=REGION)
    env.pop("AWS_ENDPOINT_URL", None)
    env["SAM_CLI_TELEMETRY"] = "0"
    return env


@pytest.fixture(scope="module")
def template_file(configuration: Configuration, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """template.yaml itself for the defaults; else a copy whose defaults are the configuration's."""
    if not configuration.parameters:
        return TEMPLATE
    template = load_template()
    for name, value in configuration.parameters.items():
        template["Parameters"][name]["Default"] = value
    path = tmp_path_factory.mktemp(configuration.name) / "template.json"
    path.write_text(json.dumps(template, indent=1))
    shutil.copy(USER_TEMPLATE, path.parent / USER_TEMPLATE.name)  # its TemplateURL, beside it
    return path


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    """One of the linters, offline, from the repository root."""
    return subprocess.run(
        [tool(command[0]), *command[1:]],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=tool_env(),
        timeout=300,
        check=False,
    )


def cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    # No rule is disabled; there is no .cfnlintrc.
    return run_tool("cfn-lint", "--format", "parseable", "--", str(template))


def sam_validate(template: Path) -> subprocess.CompletedProcess[str]:
    return run_tool("sam", "validate", "--lint", "--template-file", str(template))


def test_cfn_lint_reports_no_error_and_no_warning(template_file: Path) -> None:
    result = cfn_lint(template_file)
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stdout + result.stderr


def test_sam_validate_lint_passes_offline(template_file: Path) -> None:
    result = sam_validate(template_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout


def test_user_template_lints_clean_on_its_own() -> None:
    lint = cfn_lint(USER_TEMPLATE)
    assert (lint.returncode, lint.stdout.strip()) == (0, ""), lint.stdout + lint.stderr
    validate = sam_validate(USER_TEMPLATE)
    assert validate.returncode == 0, validate.stdout + validate.stderr
