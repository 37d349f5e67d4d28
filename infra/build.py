"""`make build`: the way to build the function for `sam deploy`.

    .venv/bin/python -m infra.build [--build-dir DIR]

1. Refuses an SAM CLI older than 1.161, loudly: 1.120 cannot build python3.13; 1.128 to 1.144
   report "Build Succeeded" but ignore the template's ``ParentPackageMode``, so the deployed
   handler cannot import and every rotation fails; before 1.160 ``sam build`` cannot expand the
   template's ``Fn::ForEach`` loops, and before 1.161 it has no ``--language-extensions`` (which
   samconfig.toml turns on).
2. Runs ``sam build`` from the repository root (samconfig.toml: the manifest is requirements.txt,
   the hashed lock of what the function needs beyond the runtime, which ships boto3) with
   Python 3.13, the runtime's, first on PATH.
3. Precompiles the bytecode each function's handler runs (``infra.artifact.precompile``) and
   prints the rotation function's artifact size.

Then ``sam deploy`` uploads ``.aws-sam/build``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infra.artifact import precompile, runtime_sdk_dir, unzipped_size, zip_size

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTION_ID = "RotationFunction"
SAM_FLOOR = (1, 161, 0)


class BuildError(Exception):
    """The build cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Built:
    python: Path  # the Python 3.13 that built (and precompiled) the artifact
    template: Path  # the built template
    function_dir: Path  # <build dir>/RotationFunction (the retirement function's is beside it)
    precompiled: int  # how many modules got bytecode, all functions together


def parse_sam_version(text: str) -> tuple[int, int, int]:
    """``SAM CLI, version 1.161.0`` -> (1, 161, 0)."""
    found = re.search(r"\bversion\s+(\d+)\.(\d+)\.(\d+)", text)
    if found is None:
        raise BuildError(f"Cannot tell the SAM CLI version from `sam --version` ({text.strip()[:80]!r}).")
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


def check_sam_version(text: str) -> tuple[int, int, int]:
    """The version in `text` when it is at least 1.161; else BuildError saying why it matters."""
    version = parse_sam_version(text)
    if version < SAM_FLOOR:
        shown, floor = ".".join(map(str, version)), ".".join(map(str, SAM_FLOOR))
        raise BuildError(
            f"SAM CLI {shown} is too old: this template needs {floor} or later. Versions before 1.128 "
            "cannot build python3.13, and 1.128 to 1.144 report 'Build Succeeded' but ignore "
            "ParentPackageMode, so the deployed handler cannot import and every rotation fails; "
            "before 1.161 sam build cannot expand the template's Fn::ForEach loops "
            "(--language-extensions, which samconfig.toml turns on). "
            f"Upgrade (`pip install 'aws-sam-cli>={floor}'`, or `make setup` for the project's "
            "pinned version) and build again."
        )
    return version


def find_tool(name: str) -> str:
    """A tool of this environment (next to this interpreter), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise BuildError(f"{name} is not installed: run `make setup` (requirements-dev.lock has it).")
    return found


def find_python313() -> Path | None:
    """The Lambda runtime's Python (3.13): pyenv's interpreter, else a working python3.13 on PATH.

    pyenv's `python3.13` shim on PATH fails unless a version is selected, so the interpreter is
    looked up under `pyenv root` first, and every candidate must actually run and be 3.13.
    """
    candidates: list[Path] = []
    pyenv_root = os.environ.get("PYENV_ROOT")
    if not pyenv_root and shutil.which("pyenv"):
        found = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False, timeout=30)
        pyenv_root = found.stdout.strip() if found.returncode == 0 else None
    if pyenv_root:
        candidates += sorted(Path(pyenv_root).glob("versions/3.13*/bin/python3.13"), reverse=True)
    on_path = shutil.which("python3.13")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "3.13":
            return candidate
    return None


def build(build_dir: Path, *, sam: str | None = None, env: dict[str, str] | None = None) -> Built:
    """Check the SAM CLI, `sam build` into `build_dir`, precompile. Raises BuildError."""
    sam = sam or find_tool("sam")
    python = find_python313()
    if python is None:
        raise BuildError("No Python 3.13 found (the runtime's): install it (pyenv install 3.13) and build again.")
    environment = dict(os.environ if env is None else env)
    # sam build looks for a python3.13 on PATH that matches the runtime.
    environment.update(PATH=f"{python.parent}{os.pathsep}{environment.get('PATH', '')}", SAM_CLI_TELEMETRY="0")
    version = subprocess.run([sam, "--version"], capture_output=True, text=True, env=environment, check=False)
    check_sam_version(version.stdout + version.stderr)
    result = subprocess.run(
        [sam, "build", "--build-dir", str(build_dir)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(f"sam build failed:\n{result.stdout}\n{result.stderr}")
    template = build_dir / "template.yaml"
    precompiled = 0
    with tempfile.TemporaryDirectory() as sdk:
        sdk_dir = runtime_sdk_dir(Path(sdk) / "sdk")
        for function_id, handler_module in handler_modules(template).items():
            precompiled += precompile(python, build_dir / function_id, sdk_dir, handler_module)
    return Built(python, template, build_dir / FUNCTION_ID, precompiled)


def handler_modules(template: Path) -> dict[str, str]:
    """{logical ID: the module of its Handler} for each function of a built template."""
    from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-untyped]  # (SAM CLI's)

    resources = yaml_parse(template.read_text())["Resources"]
    return {
        name: str(resource["Properties"]["Handler"]).rpartition(".")[0]
        for name, resource in resources.items()
        # A Fn::ForEach loop (a list; the built template keeps them) holds the SMTP users' stacks.
        if isinstance(resource, dict) and resource.get("Type") in {"AWS::Serverless::Function", "AWS::Lambda::Function"}
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.build", description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT / ".aws-sam" / "build")
    args = parser.parse_args(argv)
    try:
        built = build(args.build_dir)
    except BuildError as error:
        print(f"\nBUILD FAILED: {error}", file=sys.stderr)
        return 1
    print(f"Built {built.function_dir} with {built.python}: {built.precompiled} modules precompiled")
    zipped, unzipped = zip_size(built.function_dir), unzipped_size(built.function_dir)
    print(f"  zip {zipped / 1e6:.2f} MB, unzipped {unzipped / 1e6:.2f} MB (boto3 comes from the runtime)")
    print("Next: sam deploy --guided (first time) or sam deploy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
