"""The CLI against a stack with two sagas: every command picks the saga named, and only that one.

The stack (``tests/stacks/two_sagas.py``) is synthesized the way ``saga serve --app`` does it,
deployed into the local cloud and served over HTTP in this process; the commands run in-process
through typer's runner and reach moto through boto3 like any AWS client. What they did is
checked where it lands: the sagas' stores, their DLQs, the participants' tables.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from demo.order_demo import OrderParticipants, OrderTables
from saga_kit.cli.main import app
from saga_kit.cli.serve import synthesize
from saga_kit.contract import PARKED, TERMINAL_STATUSES
from saga_kit.local_cloud import LocalCloud
from saga_kit.local_cloud.server import LocalSagaServer
from tests.polling import poll
from tests.stacks.two_sagas import STACK_NAME

ROOT = Path(__file__).resolve().parent.parent
SAGAS = ("checkout", "reservation")
SKU, CUSTOMER, PRICE = "sku-two-sagas", "customer-two-sagas", 1999
#: A compensation that keeps failing until its rule is removed from the fault table.
RELEASE_FAILS = {"step": "reserve_inventory", "phase": "compensation", "kind": "transient_error"}
SETTLE_SECONDS = 60


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-saga app, synthesized as ``saga serve --app`` does (``python <app>``)."""
    return synthesize(ROOT / "tests" / "stacks" / "two_sagas.py",
                      tmp_path_factory.mktemp("two-sagas.out"), cwd=ROOT)


@pytest.fixture(scope="module")
def cloud(assembly: Path) -> Iterator[LocalCloud]:
    with LocalCloud(assembly, STACK_NAME) as running:
        participants = OrderParticipants(running.client("dynamodb"),
                                         OrderTables.from_outputs(running.outputs))
        participants.seed_stock(100, sku=SKU)
        participants.open_account(CUSTOMER, 1_000_000)
        yield running


@pytest.fixture(scope="module")
def participants(cloud: LocalCloud) -> OrderParticipants:
    return OrderParticipants(cloud.client("dynamodb"), OrderTables.from_outputs(cloud.outputs))


@pytest.fixture(scope="module")
def api_url(cloud: LocalCloud) -> Iterator[str]:
    """The stack's API served on loopback (its deployed URL answers nowhere); the server also
    delivers the compensation queues' messages to the redrive Lambdas, as Lambda's poller would."""
    with LocalSagaServer(cloud, api_port=0, aws_port=None) as server:
        yield server.api_url


def saga(cloud: LocalCloud, *args: str, env: dict[str, str | None] | None = None) -> Result:
    """Runs ``saga <args> --region <the cloud's>`` in-process."""
    return CliRunner().invoke(app, [*args, "--region", cloud.region],
                              env={"SAGA_STACK": None, **(env or {})})


def ok(result: Result) -> Any:
    """The command's JSON output (``None`` if it printed none), once it succeeded.

    The handlers run in this process and print their one-line EMF metrics and logs to the same
    stdout; the CLI's JSON is the indented document among them.
    """
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for index, line in enumerate(lines):
        if line in ("{", "[", "[]"):
            return json.JSONDecoder().raw_decode("\n".join(lines[index:]))[0]
    return None


def refused(result: Result) -> str:
    """The one-line reason of a command refused for a name that does not exist."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def order(**extra: Any) -> str:
    return json.dumps({"order_id": f"order-{uuid.uuid4().hex[:8]}", "customer_id": CUSTOMER,
                       "sku": SKU, "quantity": 1, "amount_cents": PRICE, **extra})


def start(cloud: LocalCloud, api_url: str, saga_name: str, key: str, body: str) -> None:
    answer = ok(saga(cloud, "start", "--stack", STACK_NAME, "--saga", saga_name,
                     "--api-url", api_url, "--idempotency-key", key, "--input", body))
    assert answer["saga_id"] == key


def status(cloud: LocalCloud, api_url: str, saga_name: str, key: str) -> dict[str, Any]:
    return ok(saga(cloud, "status", key, "--stack", STACK_NAME, "--saga", saga_name,
                   "--api-url", api_url))


def stored(cloud: LocalCloud, saga_name: str, key: str) -> str | None:
    """The saga store's status, read from the saga's own store table."""
    item = cloud.client("dynamodb").get_item(
        TableName=cloud.saga_outputs(saga_name)["StoreTableName"], ConsistentRead=True,
        Key={"saga_type": {"S": saga_name}, "saga_id": {"S": key}}).get("Item")
    return item["status"]["S"] if item else None


def wait_until(what: str, check: Any) -> Any:
    return poll(check, what, SETTLE_SECONDS, interval_seconds=0.2)


def ended(shown: dict[str, Any], statuses: Collection[str]) -> dict[str, Any] | None:
    """The saga's status answer once its status is one of ``statuses``."""
    return shown if shown.get("status") in statuses else None


def dlq_ids(cloud: LocalCloud, saga_name: str) -> list[str]:
    listed = ok(saga(cloud, "dlq", "list", "--stack", STACK_NAME, "--saga", saga_name, "--json"))
    return [entry["saga_id"] for entry in listed]


def test_start_and_status_of_each_saga(cloud: LocalCloud, api_url: str,
                                       participants: OrderParticipants) -> None:
    keys = {name: f"{name}-ok-{uuid.uuid4().hex[:8]}" for name in SAGAS}
    for name, key in keys.items():
        start(cloud, api_url, name, key, order())
    for name, key in keys.items():
        shown = wait_until(f"{name} to end", lambda name=name, key=key: ended(
            status(cloud, api_url, name, key), TERMINAL_STATUSES))
        assert shown["status"] == "completed", shown
        # Each saga ran on its own state machine and wrote its own store only.
        assert stored(cloud, name, key) == "completed"
        other = next(n for n in SAGAS if n != name)
        assert stored(cloud, other, key) is None
    # The older form, the saga before the id, still works.
    shown = ok(saga(cloud, "status", "reservation", keys["reservation"], "--stack", STACK_NAME,
                    "--api-url", api_url))
    assert shown["status"] == "completed"
    # What each saga did to the participants: checkout shipped and confirmed, reservation not.
    checkout, reservation = (participants.saga_effects(keys[n]) for n in SAGAS)
    assert checkout["net_charge_cents"] == PRICE and checkout["shipment"] == "created"
    assert checkout["confirmed"]
    assert reservation == {"reserved": 1, "charge": "charged", "net_charge_cents": PRICE,
                           "shipment": None, "confirmed": False}


@pytest.fixture(scope="module")
def parked(cloud: LocalCloud, api_url: str, participants: OrderParticipants) -> dict[str, str]:
    """One saga of each type parked in its saga's DLQ: the charge is declined, then releasing
    the stock keeps failing, in the state machine and in the redrive Lambda."""
    keys = {name: f"{name}-parked-{uuid.uuid4().hex[:8]}" for name in SAGAS}
    for name, key in keys.items():
        participants.set_fault_rules(key, [RELEASE_FAILS])
        start(cloud, api_url, name, key, order(
            fault_table=True, faults=[{"step": "charge_payment", "kind": "business_error"}]))
    for name, key in keys.items():
        shown = wait_until(f"{name} to be parked", lambda name=name, key=key: ended(
            status(cloud, api_url, name, key), {PARKED, *TERMINAL_STATUSES}))
        assert shown["status"] == PARKED, shown
        wait_until(f"{name} {key} in its DLQ", lambda name=name, key=key: key in dlq_ids(cloud, name))
    return keys


def test_dlq_list_shows_only_the_named_sagas_parked_messages(
        cloud: LocalCloud, api_url: str, parked: dict[str, str]) -> None:
    for name, key in parked.items():
        other = next(n for n in SAGAS if n != name)
        listed = ok(saga(cloud, "dlq", "list", "--stack", STACK_NAME, "--saga", name, "--json"))
        [entry] = [e for e in listed if e["saga_id"] == key]
        assert entry["saga_type"] == name
        assert entry["failed_compensation"] == "reserve_inventory"
        assert {e["saga_type"] for e in listed} == {name}
        assert parked[other] not in [e["saga_id"] for e in listed]
        assert status(cloud, api_url, name, key)["status"] == "parked"
        assert stored(cloud, name, key) == "parked"
    table = saga(cloud, "dlq", "list", "--stack", STACK_NAME, "--saga", "reservation",
                 env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert parked["reservation"] in table.output
    assert parked["checkout"] not in table.output
    assert "reservation of stack SagaKitTestTwoSagas" in table.output


def test_stuck_reads_the_named_sagas_store(cloud: LocalCloud, parked: dict[str, str]) -> None:
    found = ok(saga(cloud, "stuck", "--stack", STACK_NAME, "--saga", "reservation",
                    "--status", "parked", "--older-than-minutes", "0", "--json"))
    ids = [s["saga_id"] for s in found]
    assert parked["reservation"] in ids and parked["checkout"] not in ids
    assert {s["saga_type"] for s in found} == {"reservation"}


def test_saga_stack_comes_from_the_environment(cloud: LocalCloud, parked: dict[str, str]) -> None:
    listed = ok(saga(cloud, "dlq", "list", "--saga", "checkout", "--json",
                     env={"SAGA_STACK": STACK_NAME}))
    assert parked["checkout"] in [e["saga_id"] for e in listed]


def test_redrive_moves_the_named_sagas_dlq_only(cloud: LocalCloud, api_url: str,
                                                participants: OrderParticipants,
                                                parked: dict[str, str]) -> None:
    participants.set_fault_rules(parked["checkout"], None)  # the operator fixes the cause
    moved = saga(cloud, "dlq", "redrive", "--stack", STACK_NAME, "--saga", "checkout")
    assert moved.exit_code == 0, moved.output
    assert "checkout of stack SagaKitTestTwoSagas" in moved.output
    wait_until("checkout's parked saga to be compensated",
               lambda: stored(cloud, "checkout", parked["checkout"]) == "compensated")
    assert parked["checkout"] not in dlq_ids(cloud, "checkout")
    assert participants.saga_effects(parked["checkout"])["reserved"] == 0
    # The other saga's DLQ was not touched: its saga is still parked there, stock still held.
    assert parked["reservation"] in dlq_ids(cloud, "reservation")
    assert stored(cloud, "reservation", parked["reservation"]) == "parked"
    assert participants.saga_effects(parked["reservation"])["reserved"] == 1


def test_a_two_saga_stack_needs_the_saga_named(cloud: LocalCloud, api_url: str) -> None:
    for command in (["dlq", "list"], ["dlq", "redrive"], ["stuck"], ["status", "some-id"],
                    ["start", "--input", order(), "--api-url", api_url]):
        reason = refused(saga(cloud, *command, "--stack", STACK_NAME))
        assert "holds 2 sagas (checkout, reservation)" in reason and "--saga" in reason


def test_unknown_names_are_refused_with_what_exists(cloud: LocalCloud) -> None:
    reason = refused(saga(cloud, "dlq", "list", "--stack", STACK_NAME, "--saga", "refund"))
    assert "no saga 'refund'" in reason and "checkout, reservation" in reason
    reason = refused(saga(cloud, "start", "--stack", STACK_NAME, "--saga", "refund",
                          "--input", order()))
    assert "no saga 'refund'" in reason
    reason = refused(saga(cloud, "stuck", "--stack", "NoSuchStack", "--saga", "checkout"))
    assert "stack NoSuchStack does not exist" in reason
    assert "--stack" in refused(saga(cloud, "dlq", "list", "--saga", "checkout"))


def test_a_stack_without_saga_outputs_is_refused(cloud: LocalCloud) -> None:
    cloudformation = cloud.client("cloudformation")
    template = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {"QueueUrl": {"Value": {"Ref": "Queue"}}}}
    cloudformation.create_stack(StackName="SagaKitTestNoSagas", TemplateBody=json.dumps(template))
    try:
        reason = refused(saga(cloud, "dlq", "list", "--stack", "SagaKitTestNoSagas"))
        assert "stack SagaKitTestNoSagas has no saga outputs" in reason
    finally:
        cloudformation.delete_stack(StackName="SagaKitTestNoSagas")


def test_serve_and_demo_refuse_what_is_not_there(assembly: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    reason = refused(runner.invoke(app, ["serve", "--assembly", str(assembly),
                                         "--stack", "Elsewhere"]))
    assert f"no stack Elsewhere; its stacks: {STACK_NAME}" in reason
    monkeypatch.chdir(tmp_path)
    assert "no CDK app at app.py" in refused(runner.invoke(app, ["serve"]))
    assert "Saga Kit checkout" in refused(runner.invoke(app, ["demo"]))
