"""The package's shape: a light runtime, a dependency-free contract, a layer with only what runs in
Lambda, one version, and no cycle between the constructs that make up a saga."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import saga_kit
from saga_kit.cdk.runtime_asset import staged_runtime
from saga_kit.contract import Env

PACKAGE = Path(saga_kit.__file__).resolve().parent
HEAVY = ("aws_cdk", "constructs", "jsii", "cdk_nag", "moto", "typer", "rich", "pydantic")


def _imported_top_levels(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env}, check=False)


def test_the_runtime_imports_without_the_cdk_or_the_local_cloud() -> None:
    probe = _python(
        "import sys, saga_kit.runtime, saga_kit.runtime.redrive, saga_kit.runtime.api, "
        "saga_kit.runtime.status_events\n"
        f"print(sorted(n for n in {HEAVY!r} if n in sys.modules))")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


def test_the_command_line_starts_without_the_lambda_runtime() -> None:
    # The runtime's handler loggers read POWERTOOLS_LOG_LEVEL when they are created: imported at
    # start-up they would log at INFO over saga demo's first screen, whatever it configures.
    probe = _python("import sys, saga_kit.cli, saga_kit.cli.main\n"
                    "print(sorted(n for n in sys.modules if n.startswith('saga_kit.runtime')))")
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"
    lazy = _python("from saga_kit.cli import StuckSaga, find_stuck\n"
                   "print(find_stuck.__module__, StuckSaga.__module__)")
    assert lazy.stdout.split() == ["saga_kit.runtime.stuck"] * 2, lazy.stderr


def test_the_contract_depends_on_the_standard_library_only() -> None:
    imported = _imported_top_levels(PACKAGE / "contract.py") - {"__future__"}
    assert imported <= set(sys.stdlib_module_names), imported


def test_the_runtime_uses_only_what_lambda_and_the_powertools_layer_provide() -> None:
    allowed = set(sys.stdlib_module_names) | {"__future__", "saga_kit", "boto3", "botocore",
                                              "aws_lambda_powertools", "pydantic"}
    for path in (PACKAGE / "runtime").glob("*.py"):
        assert _imported_top_levels(path) <= allowed, path.name


def test_parking_and_status_events_get_what_they_need_instead_of_the_saga() -> None:
    for name in ("parking.py", "status_events.py", "store.py", "functions.py", "alarms.py"):
        source = (PACKAGE / "cdk" / name).read_text()
        assert "saga_kit.cdk.construct" not in source, name


@pytest.mark.parametrize("as_layer", [True, False])
def test_the_staged_runtime_holds_only_what_runs_in_lambda(as_layer: bool) -> None:
    root = staged_runtime(as_layer=as_layer)
    package = root / "python" / "saga_kit" if as_layer else root / "saga_kit"
    files = {str(p.relative_to(package)) for p in package.rglob("*.py")}
    assert {"__init__.py", "contract.py", "runtime/__init__.py", "runtime/step.py",
            "runtime/redrive.py"} <= files
    assert not [f for f in files if f.startswith(("cdk/", "cli/", "local_cloud/"))]
    assert (package / "__init__.py").read_text() == (PACKAGE / "__init__.py").read_text()
    assert sorted(p.name for p in root.iterdir()) == (["python"] if as_layer else ["saga_kit"])


def test_one_version_for_the_package_the_constructs_and_the_runtime() -> None:
    from importlib.metadata import version

    assert version("saga-kit") == saga_kit.__version__


def test_a_runtime_of_another_version_fails_at_cold_start() -> None:
    cold_start = _python("import saga_kit.runtime", **{Env.KIT_VERSION: "0.0.1"})
    assert cold_start.returncode != 0
    assert "RuntimeVersionMismatch" in cold_start.stderr
    assert f"synthesized by Saga Kit 0.0.1, but its runtime is Saga Kit {saga_kit.__version__}" \
        in cold_start.stderr
    same = _python("import saga_kit.runtime", **{Env.KIT_VERSION: saga_kit.__version__})
    assert same.returncode == 0, same.stderr


def test_a_runtime_of_another_version_refuses_every_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm function whose stamp differs (a process that imported the runtime before) refuses
    to run the step, rather than misreading the state machine's formats."""
    from saga_kit.runtime import RuntimeVersionMismatch, StepContext, saga_step

    ran: list[str] = []

    @saga_step
    def reserve(ctx: StepContext) -> dict[str, str]:
        ran.append(ctx.step)
        return {}

    monkeypatch.setenv(Env.KIT_VERSION, "0.0.1")
    with pytest.raises(RuntimeVersionMismatch, match="Redeploy with one version"):
        reserve({"saga_type": "t", "step": "s", "phase": "action", "execution_name": "e",
                 "execution_arn": "arn", "state": {}}, None)
    assert ran == []
