"""Compensations are never lost: parking, the redrive Lambda, DLQ redrive, poison messages.

Everything runs in the local cloud against the participants' real state. The compensation queue
is consumed by the deployed redrive Lambda through ``cloud.pump_event_sources()``, which delivers
like Lambda's SQS poller (receive counts, partial batch failures, DLQ after maxReceiveCount).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from demo.order_demo import OrderParticipants, order_input
from saga_kit.cli import main as cli_main
from saga_kit.cli.dlq import list_parked, redrive
from saga_kit.cli.executions import outcome, start_saga, wait_for_execution

SKU_PARK = "sku-parking"
CUSTOMER_PARK = "customer-parking"
STOCK, BALANCE, PRICE = 500, 1_000_000, 1999
COMPENSATION_ATTEMPTS = 6  # the state machine's 1 + 5 retries
MAX_RECEIVE_COUNT = 3


@pytest.fixture(scope="module")
def env(cloud: Any, participants: OrderParticipants) -> dict[str, Any]:
    participants.seed_stock(STOCK, sku=SKU_PARK)
    participants.open_account(CUSTOMER_PARK, BALANCE)
    outputs = cloud.saga_outputs()
    return {"cloud": cloud, "p": participants, "sfn": cloud.client("stepfunctions"),
            "sqs": cloud.client("sqs"), "db": cloud.client("dynamodb"),
            "machine": outputs["StateMachineArn"], "queue": outputs["CompensationQueueUrl"],
            "dlq": outputs["CompensationDeadLetterQueueUrl"],
            "dlq_arn": outputs["CompensationDeadLetterQueueArn"],
            "store": outputs["StoreTableName"]}


def start(env: dict[str, Any], faults: list[dict[str, Any]], **extra: Any) -> tuple[str, str]:
    body = {**order_input(faults=faults, sku=SKU_PARK, customer=CUSTOMER_PARK), **extra}
    return start_saga(env["sfn"], env["machine"], body)


def finish(env: dict[str, Any], arn: str) -> Any:
    wait_for_execution(env["sfn"], arn, timeout=60)
    return outcome(env["sfn"], arn)


def store_item(env: dict[str, Any], saga_id: str) -> dict[str, str]:
    item = env["db"].get_item(TableName=env["store"], ConsistentRead=True, Key={
        "saga_type": {"S": "order_fulfillment"}, "saga_id": {"S": saga_id}}).get("Item", {})
    return {k: v.get("S", "") for k, v in item.items()}


def in_queue(env: dict[str, Any], queue: str, saga_id: str) -> list[Any]:
    return [p for p in list_parked(env["sqs"], env[queue]) if p.saga_id == saga_id]


def compensation_fault(step: str, times: int | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"step": step, "phase": "compensation", "kind": "transient_error"}
    if times is not None:
        rule["times"] = times
    return rule


SHIPMENT_FAILS = {"step": "create_shipment", "kind": "business_error"}
ROLLED_BACK = {"reserved": 0, "charge": "refunded", "net_charge_cents": 0, "shipment": None,
               "confirmed": False}


def test_permanent_failure_parks_once_then_operator_fix_and_redrive_finish(
    env: dict[str, Any],
) -> None:
    p: OrderParticipants = env["p"]
    stock0, balance0 = p.stock(SKU_PARK), p.books()["balances"][CUSTOMER_PARK]
    saga_id, arn = start(env, [SHIPMENT_FAILS], fault_table=True)
    p.set_fault_rules(saga_id, [compensation_fault("charge_payment")])  # until an operator fixes
    result = finish(env, arn)
    assert result.status == "parked"
    assert result.compensations_run == ["create_shipment", "charge_payment"]
    assert store_item(env, saga_id)["status"] == "parked"
    assert store_item(env, saga_id)["parked_compensation"] == "charge_payment"

    # Exactly one parked message, with everything needed to finish without the execution.
    raw = env["sqs"].receive_message(QueueUrl=env["queue"], MaxNumberOfMessages=10,
                                     VisibilityTimeout=0).get("Messages", [])
    mine = [json.loads(m["Body"]) for m in raw
            if json.loads(m["Body"])["state"].get("saga_id") == saga_id]
    assert len(mine) == 1
    message = mine[0]
    assert message["saga_type"] == "order_fulfillment"
    assert message["execution_arn"] == arn
    assert message["version"] == 2 and message["parked_at"]
    # Each piece of context once: the compensation failure and the original failure live in
    # the state, nowhere else in the message, and the caught raw error is gone.
    failed = message["state"]["compensation_failure"]
    assert failed == {"failed_compensation": "charge_payment",
                      "pending_compensations": ["reserve_inventory"],
                      "error": "TransientStepError", "cause": failed["cause"],
                      "attempts": COMPENSATION_ATTEMPTS}
    assert "injected transient error" in failed["cause"]
    assert json.dumps(message).count("injected transient error at charge_payment") == 1
    assert message["state"]["failure"]["step"] == "create_shipment"
    assert json.dumps(message).count("injected business error at create_shipment") == 1
    assert "compensation_error" not in message["state"]
    assert set(message["state"]["results"]) == {"reserve_inventory", "charge_payment"}

    # The cause is not fixed yet: the redrive Lambda fails it until SQS moves it to the DLQ.
    env["cloud"].pump_event_sources()
    [parked] = in_queue(env, "dlq", saga_id)
    assert (parked.failed_compensation, parked.pending_compensations) == (
        "charge_payment", ["reserve_inventory"])
    assert store_item(env, saga_id)["status"] == "parked"
    assert p.saga_effects(saga_id)["charge"] == "charged"  # nothing undone behind our back

    # The operator fixes the cause and redrives the DLQ (the console's "Start DLQ redrive").
    p.set_fault_rules(saga_id, None)
    task = redrive(env["sqs"], env["dlq_arn"])
    assert task["Status"] == "COMPLETED" and task["ApproximateNumberOfMessagesMoved"] >= 1
    env["cloud"].pump_event_sources()
    assert in_queue(env, "dlq", saga_id) == []
    record = store_item(env, saga_id)
    assert record["status"] == "compensated"
    assert record["finished_by"].startswith("redrive:")
    assert record["finished_at"]
    assert p.saga_effects(saga_id) == ROLLED_BACK
    assert p.stock(SKU_PARK) == stock0
    assert p.books()["balances"][CUSTOMER_PARK] == balance0
    # Each compensation body ran exactly once (create_shipment's action never took effect).
    assert p.compensation_runs(saga_id) == {"charge_payment": 1, "reserve_inventory": 1}


def test_failing_fewer_times_than_max_receive_count_finishes_through_the_queue(
    env: dict[str, Any],
) -> None:
    saga_id, arn = start(env, [SHIPMENT_FAILS, compensation_fault(
        "charge_payment", times=COMPENSATION_ATTEMPTS + MAX_RECEIVE_COUNT - 1)])
    assert finish(env, arn).status == "parked"
    env["cloud"].pump_event_sources()
    assert in_queue(env, "dlq", saga_id) == []
    assert store_item(env, saga_id)["status"] == "compensated"
    assert env["p"].saga_effects(saga_id) == ROLLED_BACK
    assert env["p"].compensation_runs(saga_id) == {"charge_payment": 1, "reserve_inventory": 1}


def test_failing_more_lands_in_the_dlq_and_finishes_after_a_dlq_redrive(
    env: dict[str, Any],
) -> None:
    saga_id, arn = start(env, [SHIPMENT_FAILS, compensation_fault(
        "reserve_inventory", times=COMPENSATION_ATTEMPTS + MAX_RECEIVE_COUNT)])
    assert finish(env, arn).status == "parked"
    env["cloud"].pump_event_sources()
    [parked] = in_queue(env, "dlq", saga_id)
    assert parked.failed_compensation == "reserve_inventory"
    assert parked.pending_compensations == []
    assert env["p"].saga_effects(saga_id)["reserved"] == 1
    redrive(env["sqs"], env["dlq_arn"])
    env["cloud"].pump_event_sources()
    assert store_item(env, saga_id)["status"] == "compensated"
    assert env["p"].saga_effects(saga_id) == ROLLED_BACK
    assert env["p"].compensation_runs(saga_id) == {"charge_payment": 1, "reserve_inventory": 1}


def test_duplicate_delivery_of_a_parked_message_has_one_effect(env: dict[str, Any]) -> None:
    p: OrderParticipants = env["p"]
    stock0, balance0 = p.stock(SKU_PARK), p.books()["balances"][CUSTOMER_PARK]
    saga_id, arn = start(env, [SHIPMENT_FAILS, compensation_fault(
        "charge_payment", times=COMPENSATION_ATTEMPTS)])
    assert finish(env, arn).status == "parked"
    [body] = [m["Body"] for m in env["sqs"].receive_message(
        QueueUrl=env["queue"], MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
        if json.loads(m["Body"])["state"].get("saga_id") == saga_id]
    for _ in range(2):  # SQS is at-least-once: the same parked saga arrives three times
        env["sqs"].send_message(QueueUrl=env["queue"], MessageBody=body)
    env["cloud"].pump_event_sources()
    assert store_item(env, saga_id)["status"] == "compensated"
    assert p.saga_effects(saga_id) == ROLLED_BACK
    assert p.stock(SKU_PARK) == stock0
    assert p.books()["balances"][CUSTOMER_PARK] == balance0
    # Three deliveries, one run of each compensation body.
    assert p.compensation_runs(saga_id) == {"charge_payment": 1, "reserve_inventory": 1}


LATE_STEPS = ["reserve_inventory", "charge_payment", "create_shipment"]


@pytest.fixture(scope="module")
def late_actions(env: dict[str, Any], saga_functions: dict[tuple[str, str], str]) -> dict[str, Any]:
    """One saga per compensatable step, all at once: the action outlives its task timeout, its
    compensation fails in the state machine and is finished by the redrive Lambda while the
    action still sleeps; then the late action wakes up."""
    cloud, p = env["cloud"], env["p"]
    before = {"stock": p.stock(SKU_PARK), "balance": p.books()["balances"][CUSTOMER_PARK]}

    def refused(step: str) -> int:
        return sum(1 for i in cloud.invocations
                   if i.function_name == saga_functions[(step, "action")]
                   and i.error_type == "LateActionRefused")

    refused_before = {step: refused(step) for step in LATE_STEPS}
    started = {step: start(env, [{"step": step, "kind": "timeout"},
                                 compensation_fault(step, times=COMPENSATION_ATTEMPTS)])
               for step in LATE_STEPS}
    results = {step: finish(env, arn) for step, (_, arn) in started.items()}
    ours = {saga_id for saga_id, _ in started.values()}
    parked_bodies = [m["Body"] for m in env["sqs"].receive_message(
        QueueUrl=env["queue"], MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
        if json.loads(m["Body"])["state"].get("saga_id") in ours]
    assert len(parked_bodies) == len(LATE_STEPS)
    cloud.pump_event_sources()
    statuses = {step: store_item(env, saga_id)["status"] for step, (saga_id, _) in started.items()}
    # Redriven twice: the same parked sagas arrive again after they were finished.
    for body in parked_bodies:
        env["sqs"].send_message(QueueUrl=env["queue"], MessageBody=body)
    cloud.pump_event_sources()
    cloud.wait_lambdas_idle(timeout=30)
    return {"results": results, "statuses": statuses, "before": before,
            "refused": {s: refused(s) - refused_before[s] for s in LATE_STEPS},
            "effects": {s: p.saga_effects(saga_id) for s, (saga_id, _) in started.items()}}


@pytest.mark.parametrize("step", LATE_STEPS)
def test_late_action_after_a_redrive_finished_compensation_has_no_effect(
    late_actions: dict[str, Any], step: str,
) -> None:
    result = late_actions["results"][step]
    assert result.status == "parked"
    assert result.cause["failed_compensation"] == step
    # The redrive Lambda finished the compensation before the action woke up...
    assert late_actions["statuses"][step] == "compensated"
    # ...which then really ran, late, and was refused: no effect at all.
    assert late_actions["refused"][step] == 1
    effects = late_actions["effects"][step]
    assert (effects["reserved"], effects["net_charge_cents"], effects["shipment"]) == (0, 0, None)


def test_late_actions_left_the_books_as_they_were(env: dict[str, Any],
                                                  late_actions: dict[str, Any]) -> None:
    assert env["p"].stock(SKU_PARK) == late_actions["before"]["stock"]
    assert env["p"].books()["balances"][CUSTOMER_PARK] == late_actions["before"]["balance"]


def test_poison_messages_reach_the_dlq_and_good_ones_finish(env: dict[str, Any]) -> None:
    saga_id, arn = start(env, [SHIPMENT_FAILS, compensation_fault(
        "charge_payment", times=COMPENSATION_ATTEMPTS)])
    assert finish(env, arn).status == "parked"
    poison = [
        "this is not json",
        json.dumps({"kind": "saga_kit.parked_compensation", "version": 1,
                    "saga_type": "trip_booking", "execution_arn": "a", "execution_name": "b",
                    "failed_compensation": "charge_payment", "pending_compensations": [],
                    "state": {}}),
        json.dumps({"kind": "saga_kit.parked_compensation", "version": 1,
                    "saga_type": "order_fulfillment"}),
        json.dumps(["a", "list"]),
    ]
    for body in poison:
        env["sqs"].send_message(QueueUrl=env["queue"], MessageBody=body)
    env["cloud"].pump_event_sources()
    assert store_item(env, saga_id)["status"] == "compensated"
    assert env["p"].saga_effects(saga_id) == ROLLED_BACK
    bodies = [m["Body"] for m in _drain(env["sqs"], env["dlq"])]
    assert sorted(b for b in bodies if b in poison) == sorted(poison)
    # Nothing was dropped on the way: each poison message made all its deliveries.
    assert all(b in bodies for b in poison)


def _drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Reads and deletes every message (used once, at the end, to inspect the DLQ)."""
    got: list[dict[str, Any]] = []
    while True:
        page = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                   VisibilityTimeout=30).get("Messages", [])
        if not page:
            return got
        for message in page:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        got.extend(page)


def test_cli_lists_and_redrives_the_dlq(env: dict[str, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    saga_id, arn = start(env, [SHIPMENT_FAILS, compensation_fault(
        "charge_payment", times=COMPENSATION_ATTEMPTS + MAX_RECEIVE_COUNT)])
    assert finish(env, arn).status == "parked"
    env["cloud"].pump_event_sources()
    # The stack holds one saga, so --saga may be left out; the stack comes from SAGA_STACK.
    monkeypatch.setenv("SAGA_STACK", env["cloud"].stack_name)
    region = ["--region", env["cloud"].region]
    runner = CliRunner()
    listed = runner.invoke(cli_main.app, ["dlq", "list", "--json", *region])
    assert listed.exit_code == 0, listed.output
    [entry] = [e for e in json.loads(listed.stdout) if e["saga_id"] == saga_id]
    assert entry["failed_compensation"] == "charge_payment"
    assert entry["pending_compensations"] == ["reserve_inventory"]
    assert entry["error"] == "TransientStepError"
    assert entry["age_seconds"] >= 0
    # How long the saga has been parked (through redrives) and how long until SQS drops it.
    assert entry["parked_at"] and 0 <= entry["parked_age_seconds"] < 600
    assert 13 * 86400 < entry["dropped_in_seconds"] <= 14 * 86400
    # Listing consumed nothing.
    assert [p.saga_id for p in in_queue(env, "dlq", saga_id)] == [saga_id]
    table = runner.invoke(cli_main.app, ["dlq", "list", *region], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "charge_payment" in table.output
    assert "saga order_fulfillment of stack SagaKitOrderFulfillment" in table.output

    moved = runner.invoke(cli_main.app, ["dlq", "redrive", "--saga", "order_fulfillment",
                                         *region])
    assert moved.exit_code == 0, moved.output
    assert "moved" in moved.output
    env["cloud"].pump_event_sources()
    assert store_item(env, saga_id)["status"] == "compensated"
    assert env["p"].saga_effects(saga_id) == ROLLED_BACK


def test_cli_takes_the_queue_directly_for_stacks_without_outputs() -> None:
    # No CloudFormation call is made when the queue is given: a stack without the saga
    # outputs works as well.
    target = cli_main.resolve_target("AnyStack", None, "us-east-1", None,
                                     {"CompensationDeadLetterQueueArn": "arn:aws:sqs:x"})
    assert target.outputs == {"CompensationDeadLetterQueueArn": "arn:aws:sqs:x"}
    assert target.stack is None


def test_dlq_redrive_takes_the_dlq_arn_directly(env: dict[str, Any]) -> None:
    saga_id, arn = start(env, [SHIPMENT_FAILS, compensation_fault(
        "charge_payment", times=COMPENSATION_ATTEMPTS + MAX_RECEIVE_COUNT)])
    assert finish(env, arn).status == "parked"
    env["cloud"].pump_event_sources()
    assert in_queue(env, "dlq", saga_id)
    # No stack outputs are read: the stack name is one CloudFormation does not know.
    moved = CliRunner().invoke(cli_main.app, ["dlq", "redrive", "--stack", "NoSuchStack",
                                              "--region", env["cloud"].region,
                                              "--dlq-arn", env["dlq_arn"]])
    assert moved.exit_code == 0, moved.output
    env["cloud"].pump_event_sources()
    assert store_item(env, saga_id)["status"] == "compensated"


def test_move_task_refuses_a_queue_that_is_not_a_dead_letter_queue(env: dict[str, Any]) -> None:
    from botocore.exceptions import ClientError

    queue_arn = env["sqs"].get_queue_attributes(
        QueueUrl=env["queue"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    with pytest.raises(ClientError, match="is not a dead-letter queue"):
        env["sqs"].start_message_move_task(SourceArn=queue_arn)
