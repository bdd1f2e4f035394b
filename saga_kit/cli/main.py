"""The ``saga`` command.

``saga demo`` runs the order-fulfillment saga in the local cloud (no AWS account needed): once on
the happy path and once failing at each step, then prints what each saga did and the participants'
books, proving that nothing leaked.
"""

from __future__ import annotations

import json
import os

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

app = typer.Typer(help="Saga Kit: distributed transactions on Step Functions, without 2PC.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def _root() -> None:
    """Saga Kit command line."""


def _quiet_handlers() -> None:
    # The handlers log and print EMF metrics to stdout, as they do in Lambda; in a terminal demo
    # that would bury the table. Tests and --verbose keep them.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")


@app.command()
def demo(
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    verbose: bool = typer.Option(False, "--verbose", help="Show handler logs and metrics."),
) -> None:
    """Run the order saga in the local cloud: happy path and a failure at each step."""
    from demo.scenarios import SCENARIOS, run_demo
    from saga_kit.cli.emulator_log import emulator_notes_to_log

    if not verbose:
        _quiet_handlers()
    console = Console(stderr=json_output)
    with emulator_notes_to_log() as notes, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("starting", total=len(SCENARIOS))

        def on_progress(message: str) -> None:
            if message.startswith("finished"):
                progress.advance(task)
            progress.update(task, description=message)

        report = run_demo(on_progress)
    if notes.summary():
        Console(stderr=True).print(f"[dim]{notes.summary()}[/dim]")

    if json_output:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_report(console, report)
    if not report.consistent:
        raise typer.Exit(code=1)


def _print_report(console: Console, report: object) -> None:
    from demo.scenarios import DemoReport

    assert isinstance(report, DemoReport)
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

    books = Table(title="Participants' books after all sagas")
    books.add_column("what")
    books.add_column("actual")
    books.add_column("expected from the completed sagas")
    for key, expected in report.expected_books.items():
        actual = report.books[key]
        mark = "[green]✓[/green]" if actual == expected else "[red]✗[/red]"
        books.add_row(key, f"{actual} {mark}", str(expected))
    console.print(books)
    verdict = ("[green]consistent: every saga ended as expected and nothing leaked[/green]"
               if report.consistent else "[red]INCONSISTENT: see the rows marked ✗[/red]")
    console.print(f"{verdict} ({report.seconds:.1f}s)")


dlq_app = typer.Typer(help="Parked compensations: list and redrive the compensation DLQ.",
                      no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

STACK_OPTION = typer.Option("SagaKitOrderFulfillment", "--stack", help="Deployed stack name.")
REGION_OPTION = typer.Option(None, "--region", help="AWS region (default: your profile's).")
ENDPOINT_OPTION = typer.Option(None, "--endpoint-url",
                               help="Talk to this AWS-compatible endpoint instead of AWS.")


DLQ_URL_OPTION = typer.Option(None, "--dlq-url",
                               help="The compensation DLQ's URL, for a stack without the outputs.")
DLQ_ARN_OPTION = typer.Option(None, "--dlq-arn",
                               help="The compensation DLQ's ARN, for a stack without the outputs.")


def _stack_outputs(stack: str, region: str | None, endpoint_url: str | None,
                   overrides: dict[str, str | None] | None = None) -> tuple[object, dict]:
    import boto3

    session = boto3.session.Session(region_name=region)
    given = {k: v for k, v in (overrides or {}).items() if v}
    outputs: dict[str, str] = {}
    if len(given) < len(overrides or {}) or not overrides:
        cloudformation = session.client("cloudformation", endpoint_url=endpoint_url)
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return session.client("sqs", endpoint_url=endpoint_url), {**outputs, **given}


@dlq_app.command("list")
def dlq_list(
    stack: str = STACK_OPTION,
    region: str | None = REGION_OPTION,
    endpoint_url: str | None = ENDPOINT_OPTION,
    dlq_url: str | None = DLQ_URL_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show each parked saga in the DLQ (failed compensation, error, age) without consuming it."""
    from saga_kit.cli.dlq import list_parked

    sqs, outputs = _stack_outputs(stack, region, endpoint_url,
                                  {"CompensationDeadLetterQueueUrl": dlq_url})
    parked = list_parked(sqs, outputs["CompensationDeadLetterQueueUrl"])
    if json_output:
        print(json.dumps([p.to_dict() for p in parked], indent=2))
        return
    table = Table(title=f"Parked compensations in the DLQ of {stack}: {len(parked)}")
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
    stack: str = STACK_OPTION,
    region: str | None = REGION_OPTION,
    endpoint_url: str | None = ENDPOINT_OPTION,
    dlq_arn: str | None = DLQ_ARN_OPTION,
) -> None:
    """Move every DLQ message back to the compensation queue (StartMessageMoveTask)."""
    from saga_kit.cli.dlq import RedriveError, redrive

    sqs, outputs = _stack_outputs(stack, region, endpoint_url,
                                  {"CompensationDeadLetterQueueArn": dlq_arn})
    try:
        task = redrive(sqs, outputs["CompensationDeadLetterQueueArn"])
    except RedriveError as error:
        Console(stderr=True).print(f"[red]{error}[/red]")
        raise typer.Exit(code=1) from None
    moved = task.get("ApproximateNumberOfMessagesMoved", 0)
    if task.get("Status") != "COMPLETED":
        Console(stderr=True).print(f"[red]redrive ended {task.get('Status')} after moving {moved} "
                                   f"message(s): {task.get('FailureReason', '')}[/red]")
        raise typer.Exit(code=1)
    Console().print(f"moved {moved} message(s) back to the compensation queue; the redrive Lambda "
                    "finishes them (check: saga dlq list, and the saga store's status).")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="Port of the saga API."),
    aws_port: int = typer.Option(5000, "--aws-port",
                                 help="Port of the moto endpoint for boto3 / the AWS CLI."),
    real_retry_delays: bool = typer.Option(
        False, "--real-retry-delays", help="Wait out Step Functions retry backoff for real."),
    seed: bool = typer.Option(True, "--seed/--no-seed",
                              help="Give the demo participants stock and money."),
    json_output: bool = typer.Option(False, "--json", help="Print the ready line as JSON."),
    verbose: bool = typer.Option(False, "--verbose", help="Show handler logs and metrics."),
) -> None:
    """Serve the local cloud: the saga API over HTTP, plus a moto endpoint for boto3."""
    from saga_kit.cli.serve import announce_json
    from saga_kit.cli.serve import serve as run_server

    if not verbose:
        _quiet_handlers()

    def announce(info: dict) -> None:
        if json_output:
            announce_json(info)
            return
        console = Console()
        console.print(f"[green]saga API[/green]      {info['api_url']}  (POST /sagas/<type>, "
                      "GET /sagas/<type>/<id>)")
        if info["endpoint_url"]:
            console.print(f"[green]AWS endpoint[/green]  {info['endpoint_url']}  (boto3 "
                          "endpoint_url / aws --endpoint-url, region "
                          f"{info['region']}, any credentials)")
        if info["seeded"]:
            seeded = info["seeded"]
            console.print(f"seeded: {seeded['stock']} x {seeded['sku']}, "
                          f"{seeded['customer_id']} with {seeded['balance_cents']} cents")
        console.print(f"try: saga start order_fulfillment --api-url {info['api_url']} "
                      "--idempotency-key order-1 --input @order.json   (Ctrl-C stops)")

    from saga_kit.cli.emulator_log import emulator_notes_to_log

    with emulator_notes_to_log() as notes:
        def announce_with_summary(info: dict) -> None:
            if notes.summary() and not json_output:
                Console().print(f"[dim]{notes.summary()}[/dim]")
            announce(info)

        run_server(host=host, api_port=port, aws_port=aws_port or None,
                   instant_retries=not real_retry_delays, seed=seed,
                   announce=announce_with_summary)


API_URL_OPTION = typer.Option(None, "--api-url", envvar="SAGA_API_URL",
                              help="The API's base URL (saga serve's, or a deployed stage's). "
                                   "Default: the stack's ApiUrl output.")
API_KEY_OPTION = typer.Option(None, "--api-key", envvar="SAGA_API_KEY",
                              help="x-api-key for APIs deployed with API keys.")


def _api_client(api_url: str | None, stack: str, region: str | None, endpoint_url: str | None,
                api_key: str | None) -> object:
    from saga_kit.cli.api_client import SagaApiClient

    if api_url:
        import boto3

        return SagaApiClient(api_url, session=boto3.session.Session(region_name=region),
                             api_key=api_key)
    return SagaApiClient.for_stack(stack, region=region, endpoint_url=endpoint_url,
                                   api_key=api_key)


def _print_answer(answer: object) -> None:
    from saga_kit.cli.api_client import ApiAnswer

    assert isinstance(answer, ApiAnswer)
    print(json.dumps(answer.body, indent=2))
    if not answer.ok:
        Console(stderr=True).print(f"[red]HTTP {answer.status}[/red]")
        raise typer.Exit(code=1)


@app.command()
def start(
    saga_type: str = typer.Argument(..., help="The saga type, e.g. order_fulfillment."),
    input_json: str = typer.Option(..., "--input",
                                   help="The saga input as JSON, or @file to read it from a file."),
    idempotency_key: str | None = typer.Option(
        None, "--idempotency-key", help="The saga id; the same key again returns the same saga."),
    api_url: str | None = API_URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
    stack: str = STACK_OPTION,
    region: str | None = REGION_OPTION,
    endpoint_url: str | None = ENDPOINT_OPTION,
) -> None:
    """Start a saga through the API (deployed stack, or saga serve with --api-url)."""
    from pathlib import Path

    body = Path(input_json[1:]).read_text() if input_json.startswith("@") else input_json
    client = _api_client(api_url, stack, region, endpoint_url, api_key)
    _print_answer(client.start(saga_type, body, idempotency_key=idempotency_key))  # type: ignore[attr-defined]


@app.command()
def status(
    saga_type: str = typer.Argument(..., help="The saga type, e.g. order_fulfillment."),
    saga_id: str = typer.Argument(..., help="The saga id (its Idempotency-Key)."),
    api_url: str | None = API_URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
    stack: str = STACK_OPTION,
    region: str | None = REGION_OPTION,
    endpoint_url: str | None = ENDPOINT_OPTION,
) -> None:
    """Show a saga's status and step log."""
    client = _api_client(api_url, stack, region, endpoint_url, api_key)
    _print_answer(client.status(saga_type, saga_id))  # type: ignore[attr-defined]


@app.command()
def stuck(
    status_name: str = typer.Option("compensating", "--status",
                                    help="running, compensating or parked."),
    older_than_minutes: float = typer.Option(15, "--older-than-minutes",
                                             help="Not updated for at least this long."),
    stack: str = STACK_OPTION,
    region: str | None = REGION_OPTION,
    endpoint_url: str | None = ENDPOINT_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List sagas stuck in a status (one query on the saga store's status index)."""
    from datetime import timedelta

    import boto3

    from saga_kit.cli.stuck import find_stuck

    session = boto3.session.Session(region_name=region)
    described = session.client("cloudformation", endpoint_url=endpoint_url).describe_stacks(
        StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    found = find_stuck(session.client("dynamodb", endpoint_url=endpoint_url),
                       outputs["SagaStoreTableName"], status=status_name,
                       older_than=timedelta(minutes=older_than_minutes))
    if json_output:
        print(json.dumps(found, indent=2))
        return
    table = Table(title=f"Sagas {status_name} for over {older_than_minutes:g} min: {len(found)}")
    for column in ("saga type", "saga id", "current step", "phase", "updated at", "execution"):
        table.add_column(column, overflow="fold")
    for saga in found:
        table.add_row(saga.get("saga_type", ""), saga.get("saga_id", ""),
                      saga.get("current_step", "-"), saga.get("current_phase", "-"),
                      saga.get("updated_at", ""), saga.get("execution_arn", ""))
    Console().print(table)


def _register_scaffold() -> None:
    """``saga new`` (saga_kit/cli/scaffold.py); it imports the CDK side only when it runs."""
    from saga_kit.cli.scaffold import register

    register(app)


_register_scaffold()


def main() -> None:
    """Entry point of the ``saga`` console script."""
    app()


if __name__ == "__main__":
    main()
