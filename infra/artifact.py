"""The deployable artifact (what `sam build` makes) as Lambda sees it: lean, precompiled, measured.

- ``runtime_sdk_dir``: a directory holding only what Lambda's python3.13 runtime adds to the path
  (boto3 and its dependencies), taken from this environment, so a fresh ``python3.13 -I -S`` whose
  path is the artifact plus that directory sees what a deployed function sees.
- ``precompile``: bytecode for every module the handler imports (all of ``lambda_function/``, and
  the dependencies' modules that importing it loads), as unchecked-hash ``.pyc`` files: Lambda's
  ``/var/task`` is read-only, so a missing or stale ``.pyc`` would be recompiled at every cold start,
  and the zip's 2-second timestamps would make timestamp-based ones look stale. Modules nothing
  imports stay source only, which keeps the zip small.
- ``zip_size`` and ``cold_import``: the figures ``make build`` and ``make bench`` print.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

HANDLER_MODULE = "lambda_function.handler"
PACKAGE = "lambda_function"
# What the python3.13 runtime puts on sys.path besides /var/task: the AWS SDK for Python and the
# packages it needs (importable names).
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")

# Runs in the fresh interpreter: import `module` with `paths` first on sys.path, print which files
# of the artifact that loaded.
_IMPORTED_FILES = """
import json, sys
artifact, module, paths = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path[:0] = paths
__import__(module)
files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
print(json.dumps(sorted(f for f in files if f and f.startswith(artifact + "/") and f.endswith(".py"))))
"""

_TIME_IMPORT = """
import json, sys, time
sys.path[:0] = json.loads(sys.argv[1])
started = time.perf_counter()
for name in sys.argv[2].split(","):
    __import__(name.strip())
print((time.perf_counter() - started) * 1000)
"""


def runtime_sdk_dir(destination: Path, python: Path | None = None) -> Path:
    """`destination` with links to this environment's boto3 and its dependencies, and nothing else.

    With `python`, their bytecode is compiled for it too, as the runtime's own copy is (a fair
    baseline for ``cold_import``).
    """
    destination.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_SDK:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{name} is not installed here; the artifact's runtime SDK needs it (make setup)")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        link = destination / source.name
        if not link.exists():
            link.symlink_to(source)
    if python is not None:
        fresh_python(python, "-m", "compileall", "-q", str(destination))
    return destination


def fresh_python(python: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `python -I -S` (no site-packages, no PYTHON* variables, no user site); its stdout."""
    environment = env if env is not None else {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    result = subprocess.run(
        [str(python), "-I", "-S", *args], capture_output=True, text=True, check=False, env=environment, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"{python} {' '.join(args[:1])} failed:\n{result.stderr}")
    return result.stdout


def imported_files(python: Path, function_dir: Path, sdk_dir: Path, module: str = HANDLER_MODULE) -> list[Path]:
    """The artifact's source files that importing `module` loads, as the runtime would."""
    paths = json.dumps([str(function_dir), str(sdk_dir)])
    out = fresh_python(python, "-B", "-c", _IMPORTED_FILES, str(function_dir), module, paths)  # -B: write no .pyc
    return [Path(name) for name in json.loads(out)]


def precompile(python: Path, function_dir: Path, sdk_dir: Path, handler_module: str = HANDLER_MODULE) -> int:
    """Write unchecked-hash bytecode for the modules `handler_module` loads; returns how many files."""
    files = {path.resolve() for path in (function_dir / PACKAGE).rglob("*.py")}
    files |= {path.resolve() for path in imported_files(python, function_dir.resolve(), sdk_dir, handler_module)}
    compiled = sorted(str(path) for path in files)
    fresh_python(python, "-m", "compileall", "-q", "-f", "--invalidation-mode", "unchecked-hash", *compiled)
    return len(compiled)


def is_unchecked_hash_pyc(path: Path) -> bool:
    """A .pyc Python uses without looking at the source (PEP 552 flags: hash-based, no check)."""
    header = path.read_bytes()[:8]
    return len(header) == 8 and int.from_bytes(header[4:8], "little") == 0b01


def zip_size(function_dir: Path) -> int:
    """Bytes of the deployment zip (deflated, as `sam deploy` uploads it)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "function.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(function_dir.rglob("*")):
                if path.is_file():
                    zipped.write(path, path.relative_to(function_dir))
        return archive.stat().st_size


def unzipped_size(function_dir: Path) -> int:
    return sum(path.stat().st_size for path in function_dir.rglob("*") if path.is_file())


@dataclass(frozen=True)
class ColdImport:
    handler_ms: float  # median cold `import lambda_function.handler` from the artifact
    baseline_ms: float  # median cold `import boto3, smtplib` from the runtime SDK alone
    ratio: float  # median of the ratios of back-to-back pairs (robust to a busy machine)


def cold_import(python: Path, function_dir: Path, sdk_dir: Path, runs: int = 11) -> ColdImport:
    """Time both imports in alternating fresh processes, `runs` pairs."""
    artifact_path = json.dumps([str(function_dir), str(sdk_dir)])
    sdk_path = json.dumps([str(sdk_dir)])
    handler, baseline = [], []
    for _ in range(runs):
        # -B: like Lambda's read-only /var/task, a module without bytecode is compiled at every start
        handler.append(float(fresh_python(python, "-B", "-c", _TIME_IMPORT, artifact_path, HANDLER_MODULE)))
        baseline.append(float(fresh_python(python, "-B", "-c", _TIME_IMPORT, sdk_path, "boto3, smtplib")))
    ratios = [h / b for h, b in zip(handler, baseline, strict=True)]
    return ColdImport(statistics.median(handler), statistics.median(baseline), statistics.median(ratios))
