"""A consumer project, end to end: the kit as a team gets it, in a project of its own.

A wheel is built from this checkout and installed, alone, into a fresh venv; the third-party
packages come from the suite's own environment through one path line in a ``.pth`` file (so
nothing is downloaded, and the suite's editable install of ``saga_kit`` does not leak in: a
path line does not run the ``.pth`` files of the directory it adds). The project lives outside
the repo and has its own ``stacks`` package, which the kit must not clash with. In it, the
venv's ``saga new`` scaffolds a saga; then the project's app is synthesized with cdk-nag on and
the scaffold's own tests run, unmodified, with the venv's python.

The quick checks of ``saga new`` itself (refusals, exit status, lint of the longest names) run
in this process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).with_name("ruff")
SAGA = "loan_disbursement"
STEPS = ["check_credit", "reserve_funds", "open_account"]
NEW_SAGA = ["new", SAGA, "--steps", ",".join(STEPS), "--pivot", "open_account"]
#: The scaffold's tests: the happy path, then a business and a transient error at each step.
EXPECTED_PASSES = 1 + 2 * len(STEPS)
#: What the build reads from the checkout; everything else is left behind.
NOT_BUILT = shutil.ignore_patterns(".git", ".venv", ".cache", "build", "*.egg-info", "__pycache__",
                                   ".pytest_cache", ".ruff_cache", "cdk.out", "node_modules")


@dataclass
class Consumer:
    """The consumer's venv and project, and how to run things in them."""

    base: Path
    wheel: Path
    venv: Path
    project: Path
    site_packages: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def env(self) -> dict[str, str]:
        """The environment of a team's shell with the venv activated: nothing of this suite's
        interpreter, pytest run or mocked AWS."""
        kept = {k: v for k, v in os.environ.items()
                if not k.startswith(("AWS_", "PYTEST_", "PYTHON", "CDK_", "VIRTUAL_ENV"))}
        return {**kept, "VIRTUAL_ENV": str(self.venv),
                "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}

    def run(self, *args: str | Path, timeout: float = 120,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Runs a command in the project directory, as the team would."""
        return subprocess.run([str(a) for a in args], cwd=self.project, capture_output=True,
                              text=True, timeout=timeout, check=False,
                              env={**self.env, **(extra_env or {})})

    def start(self, *args: str | Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Like :meth:`run`, without waiting."""
        return subprocess.Popen([str(a) for a in args], cwd=self.project, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**self.env, **(extra_env or {})})


def _checked(run: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert run.returncode == 0, f"{run.args} exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    return run


def _write_existing_project(project: Path) -> None:
    """A team's project before ``saga new``: its own ``stacks`` package and an empty tests dir."""
    (project / "stacks").mkdir(parents=True)
    (project / "stacks" / "__init__.py").write_text('"""The lending team\'s stacks."""\n')
    (project / "stacks" / "other.py").write_text(
        '"""A stack the team had before its first saga."""\n\n'
        "from aws_cdk import Stack\n\n"
        "OWNER = \"lending\"\n\n\n"
        "class OtherStack(Stack):\n"
        '    """Nothing in it yet."""\n')
    (project / "tests").mkdir()


@pytest.fixture(scope="module")
def consumer(tmp_path_factory: pytest.TempPathFactory) -> Consumer:
    """The kit's wheel installed in a fresh venv, and a project that has just run ``saga new``."""
    base = tmp_path_factory.mktemp("consumer")
    assert not base.resolve().is_relative_to(REPO)
    source = base / "checkout"
    shutil.copytree(REPO, source, ignore=NOT_BUILT)  # build/ of an in-place build keeps stale files
    _checked(subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(base / "dist"), str(source)],
        capture_output=True, text=True, timeout=300, check=False))
    [wheel] = (base / "dist").glob("saga_kit-*.whl")

    venv = base / "venv"
    _checked(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                            capture_output=True, text=True, timeout=120, check=False))
    python = venv / "bin" / "python"
    site_packages = Path(_checked(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, timeout=60, check=False)).stdout.strip())
    (site_packages / "suite_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _checked(subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300, check=False))

    project = base / "project"
    _write_existing_project(project)
    found = Consumer(base=base, wheel=wheel, venv=venv, project=project,
                     site_packages=site_packages)
    scaffolded = _checked(found.run(venv / "bin" / "saga", *NEW_SAGA))
    (base / "saga-new.out").write_text(scaffolded.stdout)
    return found


@dataclass
class Outcome:
    """How one command in the consumer's project ended."""

    returncode: int
    output: str


@pytest.fixture(scope="module")
def synth_and_tests(consumer: Consumer) -> Iterator[dict[str, Outcome]]:
    """The project's synth (``python app.py``, cdk-nag on) and the scaffold's tests, run side by
    side: two processes, each mostly waiting on its own node (jsii) or handlers."""
    outdir = consumer.base / "cdk.out"
    processes = {
        "synth": consumer.start(consumer.python, "app.py", extra_env={"CDK_OUTDIR": str(outdir)}),
        "tests": consumer.start(consumer.python, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                                f"tests/test_{SAGA}.py"),
    }
    outcomes: dict[str, Outcome] = {}
    try:
        for name, process in processes.items():
            output, _ = process.communicate(timeout=600)
            outcomes[name] = Outcome(process.returncode, output)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    yield outcomes


def test_the_wheel_ships_saga_kit_alone_with_its_templates(consumer: Consumer) -> None:
    names = zipfile.ZipFile(consumer.wheel).namelist()
    top_levels = {name.split("/")[0] for name in names}
    assert {t for t in top_levels if not t.endswith(".dist-info")} == {"saga_kit"}
    assert "saga_kit/cli/templates/saga/test_saga.py.tmpl" in names
    assert "saga_kit/runtime/step.py" in names


def test_the_consumer_imports_the_installed_kit_and_its_own_stacks(consumer: Consumer) -> None:
    probe = _checked(consumer.run(consumer.python, "-c", (
        "import saga_kit, saga_kit.cdk, stacks, stacks.other, stacks.loan_disbursement_stack\n"
        "print(saga_kit.__file__)\nprint(stacks.__file__)\nprint(stacks.other.OWNER)")))
    kit_file, stacks_file, owner = probe.stdout.split()
    assert Path(kit_file).is_relative_to(consumer.site_packages), kit_file
    assert Path(stacks_file) == consumer.project / "stacks" / "__init__.py"
    assert owner == "lending"


def test_saga_new_writes_the_scaffold_and_says_what_next(consumer: Consumer) -> None:
    written = {str(p.relative_to(consumer.project)) for p in consumer.project.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    expected = {
        "stacks/__init__.py", "stacks/other.py", f"stacks/{SAGA}_stack.py",
        f"lambdas/{SAGA}/__init__.py", *(f"lambdas/{SAGA}/{step}.py" for step in STEPS),
        f"tests/test_{SAGA}.py", "app.py", "cdk.json",
    }
    assert expected <= written
    assert (consumer.project / "stacks" / "__init__.py").read_text() == (
        '"""The lending team\'s stacks."""\n')  # the team's own, untouched
    out = (consumer.base / "saga-new.out").read_text()
    assert f"stacks/{SAGA}_stack.py" in out
    assert f"python -m pytest tests/test_{SAGA}.py" in out


def test_the_scaffold_is_ruff_clean(consumer: Consumer) -> None:
    for config in (["--config", str(REPO / "pyproject.toml")], ["--isolated"]):
        lint = subprocess.run([str(RUFF), "check", "--no-cache", *config, str(consumer.project)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert lint.returncode == 0, f"ruff {config}:\n{lint.stdout}{lint.stderr}"


def test_the_app_synthesizes_with_cdk_nag(consumer: Consumer,
                                          synth_and_tests: dict[str, Outcome]) -> None:
    synth = synth_and_tests["synth"]
    assert synth.returncode == 0, synth.output
    outdir = consumer.base / "cdk.out"
    assert (outdir / "LoanDisbursement.template.json").is_file()
    report = json.loads((outdir / "validation-report.json").read_text())
    [nag] = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []


def test_the_scaffold_tests_pass_unmodified(synth_and_tests: dict[str, Outcome]) -> None:
    tests = synth_and_tests["tests"]
    assert tests.returncode == 0, tests.output
    assert re.search(rf"\b{EXPECTED_PASSES} passed\b", tests.output), tests.output
    assert not re.search(r"\b\d+ (failed|errors?|skipped|xfailed|xpassed)\b", tests.output), tests.output


# -- saga new itself, in this process ------------------------------------------------------------


def _saga(*args: str) -> tuple[int, str]:
    from saga_kit.cli.main import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_an_invalid_saga_is_refused_with_the_declarations_message(tmp_path: Path) -> None:
    code, output = _saga("new", "loan", "--steps", "check,open,notify", "--pivot", "open",
                         "--dir", str(tmp_path))
    assert code == 2
    assert "step 'notify': compensatable step after the pivot 'open'" in output
    assert "--retriable" in output
    code, output = _saga("new", "Loan-Disbursement", "--steps", "a,b", "--pivot", "b",
                         "--dir", str(tmp_path))
    assert code == 2
    assert "saga name 'Loan-Disbursement'" in output
    code, output = _saga("new", "loan", "--steps", "a,b", "--pivot", "c", "--dir", str(tmp_path))
    assert code == 2
    assert "--pivot 'c' is not one of --steps" in output
    assert list(tmp_path.iterdir()) == []


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_loan.py").write_text("# the team's\n")
    code, output = _saga("new", "loan", "--steps", "a,b", "--pivot", "b", "--dir", str(tmp_path))
    assert code == 2
    assert "refusing to overwrite" in output and "tests/test_loan.py" in output
    assert (tmp_path / "tests" / "test_loan.py").read_text() == "# the team's\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["test_loan.py", "tests"]


def test_an_existing_app_is_left_alone_with_what_to_add(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("# the team's app\n")
    code, output = _saga("new", "loan", "--steps", "a,b", "--pivot", "b", "--dir", str(tmp_path))
    assert code == 0, output
    assert (tmp_path / "app.py").read_text() == "# the team's app\n"
    assert "app.py exists and was left as it is" in output
    assert "from stacks.loan_stack import LoanStack" in output
    assert 'LoanStack(app, "Loan")' in output


def test_the_longest_names_and_retriable_steps_scaffold_ruff_clean(tmp_path: Path) -> None:
    name = "a" * 15 + "_" + "b" * 24
    steps = [f"{letter}{'x' * 39}" for letter in "cdef"]
    code, output = _saga("new", name, "--steps", ",".join(steps[:3]), "--pivot", steps[1],
                         "--retriable", f"{steps[2]},{steps[3]}", "--dir", str(tmp_path))
    assert code == 0, output
    stack = (tmp_path / "stacks" / f"{name}_stack.py").read_text()
    assert stack.count("kind=StepKind.RETRIABLE") == 2
    assert stack.count("kind=StepKind.PIVOT") == 1
    assert not (tmp_path / "lambdas" / name / f"{steps[3]}.py").read_text().count("def compensate")
    for config in (["--config", str(REPO / "pyproject.toml")], ["--isolated"]):
        lint = subprocess.run([str(RUFF), "check", "--no-cache", *config, str(tmp_path)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert lint.returncode == 0, f"ruff {config}:\n{lint.stdout}{lint.stderr}"


def test_the_cli_starts_without_the_cdk() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, saga_kit.cli.main\n"
         "print(sorted(m for m in ('aws_cdk', 'jsii', 'constructs') if m in sys.modules))"],
        capture_output=True, text=True, timeout=120, check=False)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"
