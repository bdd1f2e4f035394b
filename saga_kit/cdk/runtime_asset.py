"""The handler runtime as Lambda code: staged from the installed ``saga_kit`` at synth, no Docker.

A team's functions get it as a layer (``/opt/python/saga_kit``), so their own code asset holds
only their participants; the kit's own functions (redrive, status events, API) run from the same
files as their code asset. Only what runs in Lambda is staged: ``saga_kit/__init__.py``,
``saga_kit/contract.py`` and ``saga_kit/runtime``. Their third-party needs (Powertools, boto3)
come from the Powertools layer and the Lambda runtime.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import saga_kit

#: What of the package runs in Lambda, relative to the package directory.
RUNTIME_FILES = ("__init__.py", "contract.py", "runtime")


def _package_dir() -> Path:
    return Path(saga_kit.__file__).resolve().parent


def _runtime_sources() -> list[Path]:
    root = _package_dir()
    found: list[Path] = []
    for entry in RUNTIME_FILES:
        path = root / entry
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts))
        else:
            found.append(path)
    return found


def _digest(sources: list[Path]) -> str:
    root = _package_dir()
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def staged_runtime(*, as_layer: bool) -> Path:
    """A directory holding the runtime, laid out for a layer (``python/saga_kit/...``) or for a
    function's own code (``saga_kit/...``).

    The directory is named after the files' hash, so a synth reuses it while the package is
    unchanged and CDK's asset hash (of the contents) stays stable.
    """
    sources = _runtime_sources()
    kind = "layer" if as_layer else "code"
    name = f"{saga_kit.__version__}-{kind}-{_digest(sources)}"
    target = Path(tempfile.gettempdir()) / "saga-kit-runtime" / name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    package_root = staging / ("python" if as_layer else "") / "saga_kit"
    root = _package_dir()
    for path in sources:
        destination = package_root / path.relative_to(root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    try:
        staging.rename(target)
    except OSError:  # another synth staged the same files first
        shutil.rmtree(staging, ignore_errors=True)
    return target
