"""The ``saga`` command: operate the sagas of any deployed Saga Kit app, or run one locally.

* ``saga dlq list|redrive``, ``saga stuck``, ``saga start``, ``saga status`` act on one saga of
  one deployed stack: ``--stack`` (or ``$SAGA_STACK``) and ``--saga`` (may be left out when the
  stack holds one saga). The stack's outputs are read with one ``DescribeStacks`` call.
* ``saga serve`` synthesizes a CDK app (``--app``, default ``app.py``) or takes a cloud assembly
  (``--assembly``), deploys one of its stacks into the local cloud and serves its saga API.
* ``saga demo`` runs the reference app's order and travel sagas in the local cloud, from a Saga
  Kit checkout.

A name that does not exist (stack, saga, app stack) ends the command with exit status 2 and one
line saying what does exist.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

# Node 20 is the kit's documented prerequisite; jsii's end-of-life banner for it is noise here.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    import boto3

    from saga_kit.cli.api_client import ApiAnswer, SagaApiClient
    from saga_kit.cli.targets import StackSagas

app = typer.Typer(help="Saga Kit: distributed transactions on Step Functions, without 2PC.",
                  no_args_is_help=True, add_completion=False)

#: Exit status of a command given a name that does not exist (as for a usage error).
EXIT_NOT_FOUND = 2


@app.callback()
def _root() -> None:
    """Saga Kit command line. Operator commands take --stack (or $SAGA_STACK) and --saga."""


def _quiet_handlers(ctx: typer.Context) -> None:
    # The handlers log and print EMF metrics to stdout, as they do in Lambda; in a terminal demo
    # that would bury the table. Tests and --verbose keep them.
    quiet = {"POWERTOOLS_LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true"}
    added = [name for name in quiet if name not in os.environ]
    for name in added:
        os.environ[name] = quiet[name]

    def restore() -> None:
        for name in added:
            os.environ.pop(name, None)

    # Undone when the command ends: a command run in-process (a test, an embedding tool) must
    # leave the process's handlers logging and counting as before.
    ctx.call_on_close(restore)


def _fail(message: str, code: int = EXIT_NOT_FOUND) -> NoReturn:
    """Ends the command with ``message`` on stderr (plain text: no markup is interpreted)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


# -- saga demo: the reference app, from a checkout ------------------------------------------------


def _reference_demo() -> ModuleType:
    """The reference app's ``demo.scenarios``, imported from the current directory.

    The demo belongs to the reference app, not to the kit, so it is found the way ``make demo``
    runs it: from the root of a Saga Kit checkout.
    """
    root = Path.cwd()
    if not (root / "demo" / "scenarios.py").is_file():
        _fail(f"saga demo runs the reference app's demo/scenarios.py, which is not in {root}: "
              "run it from the root of a Saga Kit checkout (make demo)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module("demo.scenarios")


@app.command()
def demo(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    verbose: bool = typer.Option(False, "--verbose", help="Show handler logs and metrics."),
) -> None:
    """Run the reference app's order and travel sagas in the local cloud (from a checkout).

    The order saga on the happy path and with a failure at each step; the travel saga on the
    happy path, with a branch failing and with a late car reply; then the books are checked.
    """
    from saga_kit.cli.emulator_log import emulator_notes_to_log

    if not verbose:
        # Before the demo is imported: the handlers' loggers read their level when created.
        _quiet_handlers(ctx)
    scenarios = _reference_demo()
    console = Console(stderr=json_output)
    with emulator_notes_to_log() as notes, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True) as progress:
        total = len(scenarios.SCENARIOS) + len(getattr(scenarios, "TRAVEL_SCENARIOS", []))
        task = progress.add_task("starting", total=total)

        def on_progress(message: str) -> None:
            if message.startswith("finished"):
                progress.advance(task)
            progress.update(task, description=message)

        report = scenarios.run_demo(on_progress)
    if notes.summary():
        Console(stderr=True).print(f"[dim]{notes.summary()}[/dim]")

    if json_output:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_report(console, report)
    if not report.consistent:
        raise typer.Exit(code=1)


def _print_report(console: Console, report: Any) -> None:
    def short(steps: list[str]) -> str:
        return " → ".join(step.split("_")[0] for step in steps) or "-"

    table = Table(title="Order sagas in the local cloud (step names shortened)")
    for column in ("scenario", "saga id", "outcome", "actions run", "compensations run", "ms"):
        table.add_column(column, overflow="fold")
    effects_table = Table(title="What each saga left in the participants")
    for column in ("scenario", "reserved", "net charge", "shipment", "confirmed"):
        effects_table.add_column(column, overflow="fold")
    for run in report.runs:
        o = run.outcome
        style = "green" if run.as_expected else "red"
        status = o.status if o.status == run.final_status else f"{o.status} → {run.final_status}"
        table.add_row(run.scenario.label, o.saga_id[:8], f"[{style}]{status}[/{style}]",
                      short(o.steps_run), short(o.compensations_run), f"{o.duration_ms:.0f}")
        e = run.effects
        effects_table.add_row(run.scenario.label, str(e["reserved"]), str(e["net_charge_cents"]),
                              e["shipment"] or "none", "yes" if e["confirmed"] else "no")
    console.print(table)
    for run in report.runs:
        if run.afterwards:
            console.print(f"[bold]{run.scenario.label}[/bold] (saga {run.outcome.saga_id[:8]}):")
            for line in run.afterwards:
                console.print(f"  • {line}")
            console.print(f"  • saga store status: {run.stored_status}")
    console.print(effects_table)
    _print_books(console, "Order participants' books after all sagas", report.books,
                 report.expected_books)
    if getattr(report, "travel", None) is not None:
        _print_travel(console, report.travel)
    verdict = ("[green]consistent: every saga ended as expected and nothing leaked[/green]"
               if report.consistent else "[red]INCONSISTENT: see the rows marked ✗[/red]")
    console.print(f"{verdict} ({report.seconds:.1f}s)")


def _print_travel(console: Console, travel: Any) -> None:
    def yes_no(value: Any) -> str:
        return "yes" if value else "no"

    table = Table(title="Travel sagas in the local cloud ({…} = the parallel group)")
    for column in ("scenario", "saga id", "outcome", "actions run", "compensations run",
                   "undone", "ms"):
        table.add_column(column, overflow="fold")
    effects_table = Table(title="What each trip left in the participants")
    for column in ("scenario", "flight", "hotel", "car", "net charge", "itinerary", "notified"):
        effects_table.add_column(column, overflow="fold")
    for run in travel.runs:
        o = run.outcome
        style = "green" if run.as_expected else "red"
        table.add_row(run.scenario.label, o.saga_id[:8], f"[{style}]{o.status}[/{style}]",
                      *run.shortened(), f"{o.duration_ms:.0f}")
        e = run.effects
        effects_table.add_row(run.scenario.label, yes_no(e["flight"]), yes_no(e["hotel"]),
                              yes_no(e["car"]), str(e["net_charge_cents"]),
                              e["itinerary"] or "none", yes_no(e["notified"]))
    console.print(table)
    for run in travel.runs:
        if run.late_reply is not None:
            style = "green" if run.late_reply.refused else "red"
            console.print(f"[bold]{run.scenario.label}[/bold] (saga {run.outcome.saga_id[:8]}):")
            for line in travel.late_reply_lines(run):
                console.print(f"  • {line}")
            verdict = "refused" if run.late_reply.refused else "NOT refused"
            console.print(f"  • late car reply: [{style}]{verdict}[/{style}]")
    console.print(effects_table)
    _print_books(console, "Travel participants' books after all trips", travel.books,
                 travel.expected_books)


def _print_books(console: Console, title: str, actual_books: dict[str, Any],
                 expected_books: dict[str, Any]) -> None:
    books = Table(title=title)
    books.add_column("what")
    books.add_column("actual")
    books.add_column("expected from the completed sagas")
    for key, expected in expected_books.items():
        actual = actual_books[key]
        mark = "[green]✓[/green]" if actual == expected else "[red]✗[/red]"
        books.add_row(key, f"{actual} {mark}", str(expected))
    console.print(books)


# -- which stack and saga: shared by the operator commands ---------------------------------------

STACK_OPTION = typer.Option(
    None, "--stack", envvar="SAGA_STACK", show_envvar=True,
    help="The deployed stack (its CloudFormation name).")
SAGA_OPTION = typer.Option(
    None, "--saga",
    help="The saga, by its declared name (order_fulfillment). Optional when the stack holds "
         "one saga; otherwise the error lists the stack's sagas.")
REGION_OPTION = typer.Option(None, "--region", help="AWS region (default: your profile's).")
ENDPOINT_OPTION = typer.Option(None, "--endpoint-url",
                               help="Talk to this AWS-compatible endpoint instead of AWS "
                                    "(saga serve's moto endpoint, for one).")
DLQ_URL_OPTION = typer.Option(None, "--dlq-url",
                               help="The compensation DLQ's URL: skips reading the stack "
                                    "(for a stack without the saga outputs).")
DLQ_ARN_OPTION = typer.Option(None, "--dlq-arn",
                               help="The compensation DLQ's ARN: skips reading the stack "
                                    "(for a stack without the saga outputs).")


@dataclass(frozen=True)
class Target:
    """What a command acts on: a saga of a stack, or what the overrides name directly.

    Attributes:
        session: The boto3 session to call AWS with.
        stack: The stack's sagas and outputs (``None`` when the overrides named everything).
        saga: The saga's declared name (``None`` likewise, unless ``--saga`` was given).
        outputs: The saga's outputs by :data:`saga_kit.contract.OUTPUT_KEYS` name, overrides
            applied.
    """

    session: boto3.session.Session
    stack: StackSagas | None
    saga: str | None
    outputs: dict[str, str]

    def label(self) -> str:
        """``saga <name> of stack <stack>``, or what is known of it."""
        if self.stack is None:
            return f"saga {self.saga}" if self.saga else "the given queue"
        return f"saga {self.saga} of stack {self.stack.stack}"


@contextmanager
def _aws_errors() -> Iterator[None]:
    """Turns the AWS configuration errors an operator can fix into one line and exit 2."""
    from botocore.exceptions import (
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    try:
        yield
    except NoRegionError:
        _fail("no AWS region: pass --region, or set AWS_REGION or a profile's region")
    except (NoCredentialsError, PartialCredentialsError):
        _fail("no AWS credentials: set AWS_PROFILE or the AWS_* key variables")
    except EndpointConnectionError as error:
        _fail(f"cannot reach AWS: {error}")


def _session(region: str | None) -> boto3.session.Session:
    import boto3

    return boto3.session.Session(region_name=region)


def _read_stack(session: boto3.session.Session, stack: str | None,
                endpoint_url: str | None) -> StackSagas:
    """The stack's sagas, or the command ends with a one-line reason."""
    from botocore.exceptions import BotoCoreError, ClientError

    from saga_kit.cli.targets import TargetError, read_stack

    if not stack:
        _fail("name the stack: --stack NAME (or set SAGA_STACK)")
    with _aws_errors():
        try:
            return read_stack(session.client("cloudformation", endpoint_url=endpoint_url), stack)
        except TargetError as error:
            _fail(str(error))
        except (ClientError, BotoCoreError) as error:
            _fail(f"cannot read stack {stack}: {error}", code=1)


def resolve_target(stack: str | None, saga: str | None, region: str | None,
                   endpoint_url: str | None, given: dict[str, str | None]) -> Target:
    """The saga a command acts on, with the outputs it needs.

    ``given`` maps the outputs the command needs (by ``OUTPUT_KEYS`` name) to what the operator
    gave on the command line; when every one was given the stack is not read at all, so a
    stack without the saga outputs (or another account's queue) works too. Otherwise the stack
    is described once and the saga picked from it; the given values still win.
    """
    from saga_kit.cli.targets import TargetError

    session = _session(region)
    overrides = {key: value for key, value in given.items() if value}
    if given and len(overrides) == len(given):
        return Target(session, None, saga, overrides)
    sagas = _read_stack(session, stack, endpoint_url)
    try:
        name, outputs = sagas.saga_outputs(saga)
    except TargetError as error:
        _fail(str(error))
    missing = [key for key in given if key not in outputs and key not in overrides]
    if missing:
        _fail(f"saga {name} of stack {sagas.stack} has no {', '.join(missing)} output: "
              "redeploy it with this Saga Kit, or pass the value as an option")
    return Target(session, sagas, name, {**outputs, **overrides})


# -- saga dlq -----------------------------------------------------------------------------------

dlq_app = typer.Typer(help="Parked compensations of one saga: list and redrive its "
                           "compensation DLQ.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(
    stack: str | None = STACK_OPTION,
    saga: str | None = SAGA_OPTION,
    region: str | None = REGION_OPTION,
    endpoint_url: str | None = ENDPOINT_OPTION,
    dlq_url: str | None = DLQ_URL_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the saga's parked compensations, without consuming them.

    Each saga has its own DLQ, so only that saga's messages are listed: saga id, failed
    compensation, error, how long ago it was parked and when SQS drops it.
    """
    from saga_kit.cli.dlq import list_parked

    target = resolve_target(stack, saga, region, endpoint_url,
                            {"CompensationDeadLetterQueueUrl": dlq_url})
    with _aws_errors():
        sqs = target.session.client("sqs", endpoint_url=endpoint_url)
        parked = list_parked(sqs, target.outputs["CompensationDeadLetterQueueUrl"])
    if json_output:
        print(json.dumps([p.to_dict() for p in parked], indent=2))
        return
    table = Table(title=f"Parked compensations of {target.label()}: {len(parked)}")
    for column in ("saga id", "failed compensation", "still pending", "error",
                   "parked (days ago)", "SQS drops it in (days)", "receives"):
        table.add_column(column, overflow="fold")
    for p in parked:
        parked_days = "-" if p.parked_age_seconds is None else f"{p.parked_age_seconds / 86400:.1f}"
        table.add_row(p.saga_id or f"[red]{p.malformed}[/red]", p.failed_compensation or "-",
                      " → ".join(p.pending_compensations) or "-", p.error or "-",
                      parked_days, f"{p.dropped_in_seconds / 86400:.1f}", str(p.receive_count))
    Console().print(table)
    Console().print("A DLQ redrive gives each message a new enqueue time, so SQS's 14 days "
                    "restart; 'parked' counts from the park itself, the redrive's deadline too.")


@dlq_app.command("redrive")
def dlq_redrive(
    stack: str | None = STACK_OPTION,
    saga: str | None = SAGA_OPTION,
    region: str | None = REGION_OPTION,
    endpoint_url: str | None = ENDPOINT_OPTION,
    dlq_arn: str | None = DLQ_ARN_OPTION,
) -> None:
    """Move the saga's DLQ messages back to its compensation queue (fix the cause first).

    StartMessageMoveTask, as the SQS console's "Start DLQ redrive"; the redrive Lambda then
    finishes each saga's compensations.
    """
    from saga_kit.cli.dlq import RedriveError, redrive

    target = resolve_target(stack, saga, region, endpoint_url,
                            {"CompensationDeadLetterQueueArn": dlq_arn})
    with _aws_errors():
        sqs = target.session.client("sqs", endpoint_url=endpoint_url)
        try:
            task = redrive(sqs, target.outputs["CompensationDeadLetterQueueArn"])
        except RedriveError as error:
            Console(stderr=True).print(f"[red]{error}[/red]")
            raise typer.Exit(code=1) from None
    moved = task.get("ApproximateNumberOfMessagesMoved", 0)
    if task.get("Status") != "COMPLETED":
        Console(stderr=True).print(f"[red]redrive ended {task.get('Status')} after moving {moved} "
                                   f"message(s): {task.get('FailureReason', '')}[/red]")
        raise typer.Exit(code=1)
    Console().print(f"moved {moved} message(s) of {target.label()} back to the compensation "
                    "queue; the redrive Lambda finishes them (check: saga dlq list, and saga "
                    "status).")


# -- saga serve ---------------------------------------------------------------------------------

APP_OPTION = typer.Option(
    Path("app.py"), "--app",
    help="The CDK app to serve: a Python file, synthesized as the cdk CLI does (python APP "
         "with CDK_OUTDIR set, cdk.json's context applied).")
ASSEMBLY_OPTION = typer.Option(
    None, "--assembly", help="Serve this synthesized cloud assembly (a cdk.out directory) "
                             "instead of synthesizing --app.")
SEED_OPTION = typer.Option(
    None, "--seed", help='A JSON file of items to put into the stack\'s tables before '
                         'serving: {"<stack output naming the table>": <list of items>}.')


@app.command()
def serve(
    ctx: typer.Context,
    app_file: Path = APP_OPTION,
    assembly: Path | None = ASSEMBLY_OPTION,
    stack: str | None = typer.Option(
        None, "--stack", help="The stack to serve (default: the app's only stack)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="Port of the saga API."),
    aws_port: int = typer.Option(5000, "--aws-port",
                                 help="Port of the moto endpoint for boto3 / the AWS CLI "
                                      "(0: none)."),
    real_retry_delays: bool = typer.Option(
        False, "--real-retry-delays", help="Wait out Step Functions retry backoff for real."),
    seed: Path | None = SEED_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print the ready line as JSON."),
    verbose: bool = typer.Option(False, "--verbose", help="Show handler logs and metrics."),
) -> None:
    """Serve a CDK app's stack in the local cloud: its saga API, plus a moto endpoint.

    The API answers as the deployed one does; point boto3 or the AWS CLI at the moto endpoint
    to look at the tables, queues and executions. Ctrl-C stops it.
    """
    from saga_kit.cli.emulator_log import emulator_notes_to_log
    from saga_kit.cli.serve import ServeError, SynthError, announce_json
    from saga_kit.cli.serve import serve as run_server
    from saga_kit.local_cloud.errors import LocalCloudError

    if not verbose:
        _quiet_handlers(ctx)
    progress = Console(stderr=True)

    def announce(info: dict[str, Any]) -> None:
        if json_output:
            announce_json(info)
            return
        console = Console()
        console.print(f"[green]saga API[/green]      {info['api_url']}  (POST /sagas/<saga>, "
                      "GET /sagas/<saga>/<id>)")
        if info["endpoint_url"]:
            console.print(f"[green]AWS endpoint[/green]  {info['endpoint_url']}  (boto3 "
                          "endpoint_url / aws --endpoint-url, region "
                          f"{info['region']}, any credentials)")
        console.print(f"stack {info['stack']}, sagas: {', '.join(info['sagas']) or 'none'}")
        if info["seeded"]:
            console.print("seeded: " + ", ".join(f"{count} item(s) into {output}"
                                                  for output, count in info["seeded"].items()))
        first = next(iter(info["sagas"]), "<saga>")
        console.print(f"try: saga start --saga {first} --api-url {info['api_url']} "
                      "--idempotency-key key-1 --input @input.json   (Ctrl-C stops)")

    with emulator_notes_to_log() as notes:
        def announce_with_summary(info: dict[str, Any]) -> None:
            if notes.summary() and not json_output:
                Console().print(f"[dim]{notes.summary()}[/dim]")
            announce(info)

        try:
            run_server(app=app_file, assembly=assembly, stack=stack, host=host, api_port=port,
                       aws_port=aws_port or None, instant_retries=not real_retry_delays,
                       seed=seed, announce=announce_with_summary,
                       on_progress=lambda message: progress.print(f"[dim]{message}…[/dim]"))
        except SynthError as error:
            _fail(str(error), code=1)
        except ServeError as error:
            _fail(str(error))
        except LocalCloudError as error:
            _fail(f"the local cloud could not deploy the stack: {error}", code=1)
        except OSError as error:
            _fail(f"cannot listen on {host}: {error}", code=1)


# -- saga start / status: through the saga API ----------------------------------------------------

API_URL_OPTION = typer.Option(None, "--api-url", envvar="SAGA_API_URL", show_envvar=True,
                              help="The API's base URL (saga serve's, or a deployed stage's). "
                                   "Default: the stack's ApiUrl output.")
API_KEY_OPTION = typer.Option(None, "--api-key", envvar="SAGA_API_KEY",
                              help="x-api-key for APIs deployed with API keys.")


def _one_saga(positional: str | None, option: str | None) -> str | None:
    if positional and option and positional != option:
        _fail(f"the saga is named twice, differently: {positional} and --saga {option}")
    return option or positional


def resolve_api(saga: str | None, stack: str | None, api_url: str | None, region: str | None,
                endpoint_url: str | None, api_key: str | None) -> tuple[SagaApiClient, str]:
    """A client of the saga API and the saga's declared name.

    With ``--api-url`` and ``--saga`` the stack is not read. Otherwise the stack names the saga
    (the only one, or the one given) and, without ``--api-url``, the API: its ``ApiUrl``
    output, which must serve that saga.
    """
    from saga_kit.cli.api_client import SagaApiClient
    from saga_kit.cli.targets import TargetError

    session = _session(region)
    if api_url and saga:
        return SagaApiClient(api_url, session=session, api_key=api_key), saga
    if api_url and not stack:
        _fail("name the saga: --saga NAME (with --api-url and no --stack there is no stack to "
              "read the sagas from)")
    sagas = _read_stack(session, stack, endpoint_url)
    try:
        name = sagas.resolve(saga)
    except TargetError as error:
        _fail(str(error))
    url = api_url or sagas.api_url
    if not url:
        _fail(f"stack {sagas.stack} has no ApiUrl output (no SagaApi in it): pass --api-url")
    routes = sagas.api_routes
    if not api_url and routes is not None and name not in routes:
        _fail(f"the API of stack {sagas.stack} does not serve saga {name}; it serves: "
              f"{', '.join(routes) or 'none'}")
    return SagaApiClient(url, session=session, api_key=api_key), name


def _print_answer(answer: ApiAnswer) -> None:
    print(json.dumps(answer.body, indent=2))
    if not answer.ok:
        Console(stderr=True).print(f"[red]HTTP {answer.status}[/red]")
        raise typer.Exit(code=1)


@app.command()
def start(
    saga_argument: str | None = typer.Argument(
        None, metavar="[SAGA]", help="The saga to start; the same as --saga."),
    input_json: str = typer.Option(..., "--input",
                                   help="The saga input as JSON, or @file to read it from a file."),
    idempotency_key: str | None = typer.Option(
        None, "--idempotency-key", help="The saga id; the same key again returns the same saga."),
    saga: str | None = SAGA_OPTION,
    stack: str | None = STACK_OPTION,
    api_url: str | None = API_URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
    region: str | None = REGION_OPTION,
    endpoint_url: str | None = ENDPOINT_OPTION,
) -> None:
    """Start a saga through the saga API and print the API's answer.

    The API is the stack's (its ApiUrl output) or, with --api-url, saga serve's.
    """
    if input_json.startswith("@"):
        try:
            body = Path(input_json[1:]).read_text(encoding="utf-8")
        except OSError as error:
            _fail(f"cannot read the input file: {error}")
    else:
        body = input_json
    client, name = resolve_api(_one_saga(saga_argument, saga), stack, api_url, region,
                               endpoint_url, api_key)
    with _aws_errors():
        _print_answer(client.start(name, body, idempotency_key=idempotency_key))


STATUS_IDS_ARGUMENT = typer.Argument(
    ..., metavar="[SAGA] SAGA_ID",
    help="The saga id (its Idempotency-Key), after the saga when --saga is not used.")


@app.command()
def status(
    ids: list[str] = STATUS_IDS_ARGUMENT,
    saga: str | None = SAGA_OPTION,
    stack: str | None = STACK_OPTION,
    api_url: str | None = API_URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
    region: str | None = REGION_OPTION,
    endpoint_url: str | None = ENDPOINT_OPTION,
) -> None:
    """Show a saga's status and step log (from the saga store, through the saga API)."""
    if len(ids) > 2:
        _fail(f"expected the saga id (optionally after the saga), got {len(ids)} arguments")
    saga_argument = ids[0] if len(ids) == 2 else None
    client, name = resolve_api(_one_saga(saga_argument, saga), stack, api_url, region,
                               endpoint_url, api_key)
    with _aws_errors():
        _print_answer(client.status(name, ids[-1]))


# -- saga stuck ---------------------------------------------------------------------------------


@app.command()
def stuck(
    older_than: str = typer.Option(
        "15m", "--older-than",
        help="No progress for at least this long: 90s, 15m, 2h, 1d (a callback step waiting "
             "for its reply counts from when it started waiting)."),
    status_name: str | None = typer.Option(
        None, "--status", help="running, compensating or parked (default: running and "
                               "compensating, where a saga can be stuck)."),
    older_than_minutes: float | None = typer.Option(None, "--older-than-minutes", hidden=True),
    stack: str | None = STACK_OPTION,
    saga: str | None = SAGA_OPTION,
    region: str | None = REGION_OPTION,
    endpoint_url: str | None = ENDPOINT_OPTION,
    store_table: str | None = typer.Option(
        None, "--store-table", help="The saga store table's name: skips reading the stack."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List stuck sagas: no progress for longer than --older-than, where they are and since when
    (one query on the saga store's status index, then each execution's history)."""
    from saga_kit.contract import STUCK_STATUSES, StuckThresholds
    from saga_kit.runtime.stuck import find_stuck

    seconds = older_than_minutes * 60 if older_than_minutes is not None else _duration(older_than)
    statuses = (status_name,) if status_name else STUCK_STATUSES
    target = resolve_target(stack, saga, region, endpoint_url, {"StoreTableName": store_table})
    with _aws_errors():
        found = find_stuck(
            target.session.client("dynamodb", endpoint_url=endpoint_url),
            target.session.client("stepfunctions", endpoint_url=endpoint_url),
            target.outputs["StoreTableName"], StuckThresholds(saga_seconds=max(0, round(seconds))),
            statuses=statuses)
    if json_output:
        print(json.dumps([s.to_json() for s in found], indent=2))
        return
    table = Table(title=f"Sagas of {target.label()} {' or '.join(statuses)} with no progress for "
                        f"over {older_than if older_than_minutes is None else f'{seconds:g}s'}: "
                        f"{len(found)}")
    for column in ("saga type", "saga id", "status", "step", "since", "idle", "execution"):
        table.add_column(column, overflow="fold")
    for item in found:
        step = item.step + (" (waiting for its reply)" if item.waiting_for_callback else "")
        table.add_row(item.saga_type, item.saga_id, item.status, step or "-", item.since,
                      f"{item.idle_seconds:.0f}s", item.execution_arn)
    Console().print(table)
    if found:
        Console().print(f"Next: saga inspect {found[0].saga_type} {found[0].saga_id}"
                        f"{' --stack ' + stack if stack else ''}")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``1d`` (a bare number is minutes) in seconds."""
    value = text.strip().lower()
    unit = _DURATION_UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit else value
    try:
        amount = float(number)
    except ValueError:
        _fail(f"--older-than {text!r}: give a duration like 90s, 15m, 2h or 1d")
    if amount < 0:
        _fail(f"--older-than {text!r}: a duration cannot be negative")
    return amount * (unit or 60)


def _register_scaffold() -> None:
    """``saga new`` (saga_kit/cli/scaffold.py); it imports the CDK side only when it runs."""
    from saga_kit.cli.scaffold import register

    register(app)


_register_scaffold()


def _register_prometheus() -> None:
    """``saga prometheus`` (saga_kit/cli/prometheus.py); it imports its generators only when it
    runs."""
    from saga_kit.cli.prometheus import register

    register(app)


_register_prometheus()


def _register_inspect() -> None:
    from saga_kit.cli.inspect import register

    register(app)


_register_inspect()


def main() -> None:
    """Entry point of the ``saga`` console script."""
    app()


if __name__ == "__main__":
    main()
