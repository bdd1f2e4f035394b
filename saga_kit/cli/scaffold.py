"""``saga new``: scaffolds a saga in a team's CDK project.

It writes the declaration and the stack (``stacks/<name>_stack.py``), one handler module per step
on the runtime (``lambdas/<name>/<step>.py``), a pytest module that runs the saga in the local
cloud (``tests/test_<name>.py``), and an ``app.py`` (and ``cdk.json``) when the project has none.

The name and the steps are checked by building the very ``SagaDefinition`` the stack declares, so
``saga new`` refuses exactly what ``cdk synth`` would refuse, with the declaration's own messages.
That needs the CDK side, which is imported only when the command runs: the other ``saga``
commands stay as quick to start as before. Nothing is ever overwritten: if one file to write
exists already, nothing is written at all.
"""

from __future__ import annotations

import keyword
import sys
import textwrap
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

import typer

from saga_kit.contract import Env, pascal_name

#: The longest line ``saga new`` writes (the kit's own ruff line length).
LINE_LENGTH = 110
#: Imports longer than this are wrapped, one name per line with a trailing comma: ruff's and
#: isort's default line length, so the imports read as sorted whatever the project's setting.
IMPORT_LINE_LENGTH = 88

#: Top-level names a saga's handler package must not take: in Lambda (and in the local cloud)
#: ``lambdas/<name>`` is on the path next to these and would shadow them or be shadowed.
RESERVED_PACKAGES = frozenset({
    "saga_kit", "boto3", "botocore", "aws_lambda_powertools", "pydantic", "typing_extensions",
    "aws_cdk", "constructs", "cdk_nag", "moto", "pytest", "stacks", "tests", "lambdas", "app",
})

COMPENSATABLE, PIVOT, RETRIABLE = "compensatable", "pivot", "retriable"


class ScaffoldError(Exception):
    """The saga cannot be scaffolded; the message says why and what to do instead."""


@dataclass(frozen=True)
class StepPlan:
    """One step as ``saga new`` declares it: its name and kind (a ``StepKind`` value)."""

    name: str
    kind: str

    @property
    def has_compensation(self) -> bool:
        """Retriable steps come after the pivot and are never compensated."""
        return self.kind != RETRIABLE

    @property
    def table_env(self) -> str:
        """The environment variable its handlers read its participant table's name from."""
        return f"{self.name.upper()}_TABLE"


@dataclass(frozen=True)
class SagaPlan:
    """The saga to scaffold: its name and its steps in order."""

    name: str
    steps: tuple[StepPlan, ...]

    @property
    def pascal(self) -> str:
        """``loan_disbursement`` -> ``LoanDisbursement`` (the construct and stack ids)."""
        return pascal_name(self.name)

    @property
    def constant(self) -> str:
        """The module constant holding the ``SagaDefinition``."""
        return self.name.upper()

    @property
    def stack_class(self) -> str:
        """The stack's class name."""
        return f"{self.pascal}Stack"

    @property
    def stack_module(self) -> str:
        """The stack's module in the project's ``stacks`` package."""
        return f"{self.name}_stack"

    @property
    def pivot(self) -> StepPlan:
        """The pivot step (``saga new`` always declares one)."""
        return next(step for step in self.steps if step.kind == PIVOT)

    def handler(self, step: StepPlan, function: str) -> str:
        """The dotted handler path of one of the step's functions, as Lambda imports it."""
        return f"{self.name}.{step.name}.{function}"



def _names(value: str | None, option: str) -> list[str]:
    if value is None:
        return []
    names = [name.strip() for name in value.split(",")]
    if not all(names):
        raise ScaffoldError(f"{option} {value!r}: give comma-separated step names, e.g. "
                            f"{option} check_credit,reserve_funds")
    return names


def plan(name: str, steps: str, pivot: str, retriable: str | None = None) -> SagaPlan:
    """The saga ``saga new NAME --steps ... --pivot ... --retriable ...`` describes, validated.

    ``--steps`` lists the steps in order and ``--pivot`` names one of them. ``--retriable``
    marks steps retriable (retried until they succeed, never compensated); those it names that
    ``--steps`` does not are added after them, in order. Every other step is compensatable.

    Raises:
        ScaffoldError: the saga is not valid, with every problem and its fix.
    """
    ordered = _names(steps, "--steps")
    forward = _names(retriable, "--retriable")
    pivot = pivot.strip()
    if pivot not in ordered:
        raise ScaffoldError(f"--pivot {pivot!r} is not one of --steps ({', '.join(ordered)}); "
                            "the pivot is the step after which the saga can only move forward")
    if pivot in forward:
        raise ScaffoldError(f"step {pivot!r} cannot be both the pivot and retriable")
    ordered += [step for step in forward if step not in ordered]
    kinds = {step: RETRIABLE for step in forward} | {pivot: PIVOT}
    saga = SagaPlan(name, tuple(StepPlan(step, kinds.get(step, COMPENSATABLE)) for step in ordered))
    _check_declaration(saga)
    _check_names(saga)
    return saga


def _check_declaration(saga: SagaPlan) -> None:
    """Builds the ``SagaDefinition`` the stack will declare and lets it judge the saga."""
    from saga_kit.cdk.declaration import SagaDeclarationError, SagaDefinition, Step, StepKind

    try:
        SagaDefinition(name=saga.name, steps=[
            Step(step.name, kind=StepKind(step.kind), action=saga.handler(step, "action"),
                 compensation=saga.handler(step, "compensate") if step.has_compensation else None)
            for step in saga.steps
        ])
    except SagaDeclarationError as error:
        message = str(error)
        if "RETRIABLE" in message or "pivot" in message:
            # The declaration speaks of step kinds; say which option sets which kind.
            message += ("\n(with saga new, the steps before --pivot are compensatable; name "
                        "the steps after it in --retriable)")
        raise ScaffoldError(message) from None


def _check_names(saga: SagaPlan) -> None:
    """What the declaration allows but the files ``saga new`` writes cannot use."""
    problems: list[str] = []
    if keyword.iskeyword(saga.name):
        problems.append(f"saga name {saga.name!r} is a Python keyword; its handler package "
                        "could not be imported")
    elif saga.name in RESERVED_PACKAGES or saga.name in sys.stdlib_module_names:
        problems.append(f"saga name {saga.name!r} would be the top-level package lambdas/"
                        f"{saga.name}, which shadows or is shadowed by the module of the same "
                        "name; choose another name")
    kit_variables = {value for key, value in vars(Env).items() if key.isupper()}
    for step in saga.steps:
        if keyword.iskeyword(step.name):
            problems.append(f"step {step.name!r} is a Python keyword; its handler module could "
                            "not be imported")
        if step.table_env in kit_variables:
            problems.append(f"step {step.name!r}: its table's variable {step.table_env} is one "
                            "the kit sets; rename the step")
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ScaffoldError(f"saga '{saga.name}' cannot be scaffolded:\n{listing}")


# -- rendering ---------------------------------------------------------------------------------


def _template(name: str) -> Template:
    source = resources.files("saga_kit.cli").joinpath("templates", "saga", name)
    return Template(source.read_text(encoding="utf-8"))


def _render(name: str, **values: str) -> str:
    return _template(name).substitute(values)


def _import(module: str, names: list[str]) -> str:
    """One ``from module import names`` statement, wrapped (as ruff formats it) when too long."""
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= IMPORT_LINE_LENGTH:
        return line
    inner = "".join(f"    {name},\n" for name in names)
    return f"from {module} import (\n{inner})"


def _call(indent: int, call: str, args: list[str]) -> str:
    """One call statement, its arguments wrapped one per line when it is too long."""
    pad = " " * indent
    line = f"{pad}{call}({', '.join(args)})"
    if len(line) <= LINE_LENGTH:
        return line
    inner = "".join(f"{pad}    {arg},\n" for arg in args)
    return f"{pad}{call}(\n{inner}{pad})"


def _step_declaration(step: StepPlan) -> str:
    lines = [f'        Step(\n            "{step.name}",']
    if step.kind == PIVOT:
        lines.append("            kind=StepKind.PIVOT,")
    elif step.kind == RETRIABLE:
        lines.append("            kind=StepKind.RETRIABLE,")
    lines.append(f'            action=f"{{PACKAGE}}.{step.name}.action",')
    if step.has_compensation:
        lines.append(f'            compensation=f"{{PACKAGE}}.{step.name}.compensate",')
    lines.append("        ),")
    return "\n".join(lines)


def _step_sentence(saga: SagaPlan) -> str:
    names = [f"{step.name} (pivot)" if step.kind == PIVOT else step.name for step in saga.steps]
    return textwrap.fill(f"Steps, in order: {', '.join(names)}.", width=96)


def _description(saga: SagaPlan) -> str:
    """The state machine's comment, as a Python string literal that fits on its line."""
    # Names are lower-case letters, digits and '_': nothing to escape.
    literal = f'"Saga {saga.name}: {" -> ".join(step.name for step in saga.steps)}."'
    return literal if len(f"    description={literal},") <= LINE_LENGTH else f'"Saga {saga.name}."'


def _stack(saga: SagaPlan) -> str:
    cdk_names = ["Saga", "SagaDefinition", "Step", "StepKind", "durable_table"]
    return _render(
        "stack.py.tmpl",
        saga=saga.name,
        saga_pascal=saga.pascal,
        constant=saga.constant,
        stack_class=saga.stack_class,
        pivot=saga.pivot.name,
        step_sentence=_step_sentence(saga),
        description=_description(saga),
        cdk_import=_import("saga_kit.cdk", cdk_names),
        steps="\n".join(_step_declaration(step) for step in saga.steps),
        tables="\n".join(
            _call(8, f"{step.name}_table = durable_table",
                  ["self", f'"{pascal_name(step.name)}Table"', 'partition_key="pk"'])
            for step in saga.steps),
        participants="\n".join(f'            "{step.name}": {step.name}_table,'
                               for step in saga.steps),
        grants="\n".join(
            _call(8, "self.saga.grant", [f'"{step.name}"', f"{step.name}_table.grant_read_write_data"])
            for step in saga.steps),
    )


def _step_module(saga: SagaPlan, step: StepPlan) -> str:
    if not step.has_compensation:
        return _render("retriable_step.py.tmpl", saga=saga.name, step=step.name,
                       table_env=step.table_env)
    if step.kind == PIVOT:
        role = ("It is the pivot, the saga's point of no return: once its action has succeeded the\n"
                "saga only moves forward. Its compensation runs only if the pivot itself fails or\n"
                "times out, when its effect may exist all the same.")
    else:
        role = ("It is compensatable: if it or a later step fails before the pivot has succeeded,\n"
                "``compensate`` undoes what ``action`` did.")
    return _render("step.py.tmpl", saga=saga.name, step=step.name, table_env=step.table_env,
                   role=role)


def _stack_imports(saga: SagaPlan, *names: str) -> str:
    # isort's order: CONSTANTS, then Classes, then functions.
    ordered = sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    return _import(f"stacks.{saga.stack_module}", ordered)


def _blocks(*blocks: str) -> str:
    """Import blocks that isort and ruff sort each on its own: ``saga_kit`` is first-party in
    some configurations and third-party in others, and either way the order stays valid."""
    return "\n\n".join(f"# isort: split\n{block}" for block in blocks)


def _test(saga: SagaPlan) -> str:
    imports = _blocks(
        "from saga_kit.cdk import enable_cdk_nag\nfrom saga_kit.local_cloud import LocalCloud",
        _stack_imports(saga, saga.constant, saga.stack_class, "participant_table_output"),
    )
    return _render("test_saga.py.tmpl", saga=saga.name, constant=saga.constant,
                   stack_class=saga.stack_class, stack_id=saga.pascal, imports=imports)


def _app(saga: SagaPlan) -> str:
    imports = _blocks("from saga_kit.cdk import enable_cdk_nag", _stack_imports(saga, saga.stack_class))
    return _render("app.py.tmpl", imports=imports, stack_class=saga.stack_class,
                   stack_id=saga.pascal)


@dataclass(frozen=True)
class Scaffold:
    """What ``saga new`` writes: each file's path (relative to the project) and content, and
    what each is for."""

    files: dict[Path, str]
    purposes: dict[Path, str]
    #: Paths that must not exist either: modules the new packages would shadow.
    guards: tuple[Path, ...]
    wrote_app: bool


def render(saga: SagaPlan, project: Path) -> Scaffold:
    """Every file of the saga's scaffold; ``app.py``, ``cdk.json`` and ``stacks/__init__.py``
    only when the project has none."""
    files: dict[Path, str] = {}
    purposes: dict[Path, str] = {}

    def add(path: str, content: str, purpose: str) -> None:
        files[Path(path)] = content
        purposes[Path(path)] = purpose

    if not (project / "stacks").exists():
        add("stacks/__init__.py", _render("stacks_init.py.tmpl"), "the project's stacks package")
    add(f"stacks/{saga.stack_module}.py", _stack(saga),
        "the declaration and the stack: a participant table per step, granted and passed on")
    add(f"lambdas/{saga.name}/__init__.py",
        _render("package_init.py.tmpl", saga=saga.name, stack_module=saga.stack_module),
        "the saga's handler package")
    for step in saga.steps:
        kind = {PIVOT: "pivot: action and compensation",
                RETRIABLE: "retriable: action only",
                COMPENSATABLE: "action and compensation"}[step.kind]
        add(f"lambdas/{saga.name}/{step.name}.py", _step_module(saga, step),
            f"step {step.name} ({kind})")
    add(f"tests/test_{saga.name}.py", _test(saga),
        "the saga in the local cloud: happy path, a failure at each step")
    wrote_app = not (project / "app.py").exists()
    if wrote_app:
        add("app.py", _app(saga), "the CDK app, cdk-nag on")
    if not (project / "cdk.json").exists():
        add("cdk.json", _render("cdk.json.tmpl"), "tells the CDK CLI to run app.py")
    guards = (Path(f"lambdas/{saga.name}.py"), Path("stacks.py"))
    return Scaffold(files, purposes, guards, wrote_app)


def write(project: Path, scaffold: Scaffold) -> None:
    """Writes every file, or none if one of them exists already (or a module exists that a new
    package would shadow)."""
    clashes = [path for path in [*scaffold.files, *scaffold.guards] if (project / path).exists()]
    if clashes:
        listing = "\n".join(f"  - {path}" for path in sorted(clashes))
        raise ScaffoldError(f"refusing to overwrite (or shadow) what is in {project}:\n{listing}\n"
                            "Choose another saga name, or move those files away first.")
    for path, content in scaffold.files.items():
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        if content.startswith("#!"):
            target.chmod(0o755)  # app.py: runnable as ./app.py, as its shebang says


def next_steps(saga: SagaPlan, project: Path, scaffold: Scaffold) -> str:
    """What to run once the files are written."""
    lines = ["", "Next:"]
    if project.resolve() != Path.cwd().resolve():
        lines.append(f"  cd {project}")
    lines += [
        f"  python -m pytest tests/test_{saga.name}.py   # the saga in the local cloud",
        "  CDK_OUTDIR=cdk.out python app.py   # synthesize, cdk-nag on",
        f"  npx aws-cdk@2 deploy {saga.pascal}   # deploy to your AWS account",
    ]
    if not scaffold.wrote_app:
        lines += [
            "",
            "app.py exists and was left as it is; add the stack to it:",
            f"  {_stack_imports(saga, saga.stack_class)}",
            f'  {saga.stack_class}(app, "{saga.pascal}")',
            "and call saga_kit.cdk.enable_cdk_nag(app) before app.synth(), so findings fail synth.",
        ]
    return "\n".join(lines)


DIR_OPTION = typer.Option(Path("."), "--dir", help="The CDK project's root directory "
                          "(default: the current directory).")


def new(
    name: str = typer.Argument(..., help="The saga's name: lower-case letters, digits and '_', "
                               "e.g. loan_disbursement."),
    steps: str = typer.Option(..., "--steps", help="The steps in order, comma-separated, e.g. "
                              "check_credit,reserve_funds,open_account."),
    pivot: str = typer.Option(..., "--pivot", help="The point of no return: one of --steps. "
                              "The steps before it are compensatable."),
    retriable: str | None = typer.Option(
        None, "--retriable", help="Steps after the pivot, comma-separated: retried until they "
        "succeed, never compensated. Those not in --steps are added after them."),
    directory: Path = DIR_OPTION,
) -> None:
    """Scaffold a saga in a CDK project: declaration, stack, handler stubs and local-cloud tests."""
    try:
        saga = plan(name, steps, pivot, retriable)
        if not directory.is_dir():
            raise ScaffoldError(f"--dir {directory}: no such directory; give the CDK project's "
                                "root (it may be empty)")
        scaffold = render(saga, directory)
        write(directory, scaffold)
    except ScaffoldError as error:
        typer.echo(f"saga new: {error}", err=True)
        raise typer.Exit(code=2) from None
    width = max(len(str(path)) for path in scaffold.files)
    typer.echo(f"Scaffolded saga '{saga.name}' in {directory.resolve()}:")
    for path in scaffold.files:
        typer.echo(f"  {path!s:<{width}}  {scaffold.purposes[path]}")
    typer.echo(next_steps(saga, directory, scaffold))


def register(app: typer.Typer) -> None:
    """Adds ``saga new`` to the ``saga`` command."""
    app.command("new")(new)
