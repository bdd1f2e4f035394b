"""A parallel group whose branches are chains of two steps, in the local cloud.

The saga (``tests/stacks/group_chains.py``)::

    prepare_order: [reserve_inventory -> reserve_packaging] | [charge_payment -> charge_shipping]
    create_shipment (pivot) -> send_confirmation (retriable)

A step that fails anywhere in the group compensates every step of the group, each exactly
once, and leaves the participants (two stock shelves, two ledgers) as they were. A group
compensation that keeps failing parks the saga with the compensations still to run in the
declaration's one order (:meth:`SagaDefinition.undo_plan`), and the redrive Lambda finishes it
once the cause is fixed.

What ran is read from the saga store's log (one entry per handler invocation) and the
participants' run counters, not from the execution history: when a branch fails while its
sibling is in the middle of a task, moto may record an event it cannot serialize, and
``GetExecutionHistory`` then fails for that execution (a moto race, not the saga's doing).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from demo.order_demo import PRICE_CENTS, OrderParticipants, OrderTables, order_input
from saga_kit.cli import new_saga_id
from saga_kit.cli.executions import STATUS_BY_ERROR, outcome, start_saga, wait_for_execution
from saga_kit.runtime.step import idempotency_data, idempotency_key_prefix
from saga_kit.runtime.store import item_to_json
from tests.stacks.group_chains import BRANCHES, GROUP_CHAINS, SAGA_NAME

SKU = "sku-group-chains"
CUSTOMER = "customer-group-chains"
MERCHANT = "merchant"
STOCK, BALANCE = 1_000, 10_000_000
GROUP_STEPS = [step for branch in BRANCHES for step in branch]
PIVOT = "create_shipment"
COMPENSATION_ATTEMPTS = 6  # the state machine's 1 + 5 retries


@dataclass
class Env:
    cloud: Any
    sfn: Any
    sqs: Any
    db: Any
    outputs: dict[str, str]
    #: Inventory shelf and payments ledger (reserve_inventory, charge_payment), shipments.
    order: OrderParticipants
    #: Packaging shelf and shipping-fees ledger (reserve_packaging, charge_shipping).
    extras: OrderParticipants
    #: The stack's handler function names by (step, phase).
    functions: dict[tuple[str, str], str]

    def books(self) -> dict[str, int]:
        """What every saga of this module must leave as it found it, once compensated."""
        return {
            "stock": self.order.stock(SKU),
            "packaging": self.extras.stock(SKU),
            "customer": self.order.balance(CUSTOMER),
            "merchant": self.order.balance(MERCHANT),
            "customer_shipping": self.extras.balance(CUSTOMER),
            "merchant_shipping": self.extras.balance(MERCHANT),
        }

    def effects(self, saga_id: str) -> dict[str, Any]:
        """What the participants hold for one saga, per step."""
        order, extras = self.order.saga_effects(saga_id), self.extras.saga_effects(saga_id)
        return {
            "reserve_inventory": order["reserved"],
            "charge_payment": order["charge"],
            "reserve_packaging": extras["reserved"],
            "charge_shipping": extras["charge"],
            "create_shipment": order["shipment"],
            "send_confirmation": order["confirmed"],
        }

    def runs(self, saga_id: str) -> dict[str, int]:
        """How many times each compensation's body ran (``fault_injection.count_run``)."""
        return {step: self.order.runs(saga_id, step, "compensation")
                for step in [*GROUP_STEPS, PIVOT]}

    def store(self, saga_id: str) -> dict[str, Any]:
        """The saga's store item, as plain JSON."""
        item = self.db.get_item(
            TableName=self.outputs["StoreTableName"], ConsistentRead=True,
            Key={"saga_type": {"S": SAGA_NAME}, "saga_id": {"S": saga_id}}).get("Item", {})
        return item_to_json(item)

    def invocations(self, saga_id: str, phase: str) -> Counter[tuple[str, str]]:
        """How many handler invocations of ``phase`` the store logged, by (step, outcome)."""
        return Counter((entry["step"], entry["outcome"]) for entry in self.store(saga_id)["log"]
                       if entry["phase"] == phase)


@pytest.fixture(scope="module")
def env(group_chains_cloud: Any) -> Env:
    cloud = group_chains_cloud
    db, outputs = cloud.client("dynamodb"), cloud.outputs
    order_tables = OrderTables.from_outputs(outputs)
    order = OrderParticipants(db, order_tables)
    extras = OrderParticipants(db, OrderTables(
        inventory=outputs["PackagingTableName"], payments=outputs["ShippingFeesTableName"],
        shipments=order_tables.shipments, confirmations=order_tables.confirmations,
        faults=order_tables.faults))
    for participants in (order, extras):
        participants.seed_stock(STOCK, sku=SKU)
        participants.open_account(CUSTOMER, BALANCE)
        participants.open_account(MERCHANT, 0)
    own = {r.physical_id for r in cloud.resources.values()
           if r.resource_type == "AWS::Lambda::Function"}
    functions = {}
    for page in cloud.client("lambda").get_paginator("list_functions").paginate():
        for fn in page["Functions"]:
            variables = fn.get("Environment", {}).get("Variables", {})
            if fn["FunctionName"] in own and "SAGA_STEP" in variables:
                functions[(variables["SAGA_STEP"], variables["SAGA_PHASE"])] = fn["FunctionName"]
    return Env(cloud=cloud, sfn=cloud.client("stepfunctions"), sqs=cloud.client("sqs"), db=db,
               outputs=cloud.saga_outputs(), order=order, extras=extras, functions=functions)


def start(env: Env, faults: list[dict[str, Any]], **extra: Any) -> tuple[str, str]:
    body = {**order_input(faults=faults, sku=SKU, customer=CUSTOMER), **extra}
    return start_saga(env.sfn, env.outputs["StateMachineArn"], body)


@dataclass
class Ending:
    """How an execution ended, from ``DescribeExecution`` (see the module docstring)."""

    status: str
    error: str
    cause: dict[str, Any]


def finish(env: Env, arn: str) -> Ending:
    described = wait_for_execution(env.sfn, arn, timeout=60)
    # A branch Step Functions stopped may still have a handler running: let it answer first.
    env.cloud.wait_lambdas_idle(timeout=30)
    error = described.get("error") or ""
    status = ("completed" if described["status"] == "SUCCEEDED"
              else STATUS_BY_ERROR.get(error.split(".", 1)[0], described["status"].lower()))
    return Ending(status, error, json.loads(described.get("cause") or "{}"))


def test_a_group_of_chains_runs_every_step_once_and_the_pivot_reads_its_results(
    env: Env,
) -> None:
    before = env.books()
    saga_id, arn = start(env, [])
    wait_for_execution(env.sfn, arn, timeout=60)
    result = outcome(env.sfn, arn)  # nothing failed, no branch was stopped: history is whole
    assert result.status == "completed"
    assert sorted(result.steps_run) == sorted([*GROUP_STEPS, PIVOT, "send_confirmation"])
    assert result.steps_run[-2:] == [PIVOT, "send_confirmation"]
    for first, second in BRANCHES:  # each branch in its order
        assert result.steps_run.index(first) < result.steps_run.index(second)
    assert env.effects(saga_id) == {
        "reserve_inventory": 1, "charge_payment": "charged", "reserve_packaging": 1,
        "charge_shipping": "charged", "create_shipment": "created", "send_confirmation": True}
    assert env.books() == {**before, "stock": before["stock"] - 1,
                           "packaging": before["packaging"] - 1,
                           "customer": before["customer"] - PRICE_CENTS,
                           "merchant": before["merchant"] + PRICE_CENTS,
                           "customer_shipping": before["customer_shipping"] - PRICE_CENTS,
                           "merchant_shipping": before["merchant_shipping"] + PRICE_CENTS}


def _position(step: str) -> str:
    for number, branch in enumerate(BRANCHES, start=1):
        if step in branch:
            return f"branch{number}-step{branch.index(step) + 1}-{step}"
    return f"after-the-group-{step}"


@pytest.mark.parametrize("failing", [*GROUP_STEPS, PIVOT], ids=_position)
def test_a_business_error_anywhere_compensates_the_whole_group_once(
    env: Env, failing: str,
) -> None:
    before = env.books()
    saga_id, arn = start(env, [{"step": failing, "kind": "business_error"}])
    result = finish(env, arn)

    assert result.status == "compensated"
    assert result.error == f"SagaCompensated.{failing}"
    assert result.cause["step"] == failing
    assert result.cause["error"] == "InjectedBusinessError"
    assert f"injected business error at {failing} action" in result.cause["cause"]
    assert env.store(saga_id)["status"] == "compensated"
    assert env.store(saga_id)["failure"]["step"] == failing

    actions = env.invocations(saga_id, "action")
    took_effect = {step for (step, how), _ in actions.items() if how == "succeeded"}
    # (The injected error strikes before the saga runtime, as a broken dependency would: the
    # failed action itself is not in the store's log.)
    assert failing not in {step for step, _ in actions}
    # The failed step's branch ran up to it and stopped there. (How far the sibling branch got
    # before Step Functions stopped it is a matter of timing.)
    for branch in BRANCHES:
        if failing in branch:
            index = branch.index(failing)
            assert set(branch[:index]) <= took_effect
            assert not {step for step, _ in actions} & set(branch[index + 1:])
    if failing == PIVOT:
        assert took_effect == set(GROUP_STEPS)
    assert "send_confirmation" not in {step for step, _ in actions}

    # Every compensation of the group ran exactly once and succeeded (and the pivot's own, when
    # the pivot failed) ...
    compensations = env.invocations(saga_id, "compensation")
    expected = GROUP_STEPS + ([PIVOT] if failing == PIVOT else [])
    assert compensations == Counter({(step, "succeeded"): 1 for step in expected})
    # ... and its body undid something exactly where the action had taken effect: the barrier
    # told the others (the failed step, steps never reached, a stopped action refused late).
    assert env.runs(saga_id) == {step: int(step in took_effect) for step in [*GROUP_STEPS, PIVOT]}

    # The participants are back where they were.
    assert env.effects(saga_id) == {
        "reserve_inventory": 0,
        "charge_payment": "refunded" if "charge_payment" in took_effect else None,
        "reserve_packaging": 0,
        "charge_shipping": "refunded" if "charge_shipping" in took_effect else None,
        "create_shipment": None, "send_confirmation": False}
    assert env.books() == before


def _parked_message(env: Env, saga_id: str) -> dict[str, Any]:
    messages = env.sqs.receive_message(QueueUrl=env.outputs["CompensationQueueUrl"],
                                       MaxNumberOfMessages=10, VisibilityTimeout=0)
    mine = [json.loads(m["Body"]) for m in messages.get("Messages", [])
            if json.loads(m["Body"])["state"].get("saga_id") == saga_id]
    assert len(mine) == 1, mine
    return mine[0]


def failed_attempts(env: Env, step: str) -> int:
    """Invocations of the step's compensation function that failed with TransientStepError."""
    function = env.functions[(step, "compensation")]
    return sum(1 for i in env.cloud.invocations
               if i.function_name == function and i.error_type == "TransientStepError")


@pytest.mark.parametrize("failing_compensation", [*GROUP_STEPS, PIVOT], ids=_position)
def test_a_group_compensation_that_keeps_failing_parks_in_the_declared_order_then_redrives(
    env: Env, failing_compensation: str,
) -> None:
    before = env.books()
    failed_before = failed_attempts(env, failing_compensation)
    # The pivot after the group fails: every step of the group took effect and is compensated.
    saga_id, arn = start(env, [{"step": PIVOT, "kind": "business_error"}], fault_table=True)
    env.order.set_fault_rules(saga_id, [  # until the operator fixes the cause
        {"step": failing_compensation, "phase": "compensation", "kind": "transient_error"}])
    result = finish(env, arn)

    assert result.status == "parked"
    assert result.error == "CompensationFailed"
    plan = GROUP_CHAINS.undo_plan(failing_compensation)
    assert result.cause["failed_compensation"] == failing_compensation
    assert result.cause["pending_compensations"] == plan[1:]
    assert result.cause["attempts"] == COMPENSATION_ATTEMPTS
    assert result.cause["failure"]["step"] == PIVOT
    assert env.store(saga_id)["status"] == "parked"
    assert env.store(saga_id)["parked_compensation"] == failing_compensation

    # One parked message: the failed compensation first, then the rest in the one declared
    # order (see test_the_undo_plans_of_this_shape).
    message = _parked_message(env, saga_id)
    failure = message["state"]["compensation_failure"]
    assert [failure["failed_compensation"], *failure["pending_compensations"]] == plan
    assert failure["error"] == "TransientStepError"
    assert message["execution_arn"] == arn and message["saga_type"] == SAGA_NAME
    # What failed is still in effect: nothing was undone behind the saga's back.
    if failing_compensation in GROUP_STEPS:
        assert env.effects(saga_id)[failing_compensation] in (1, "charged")
    assert env.runs(saga_id)[failing_compensation] == 0
    # (The injected error strikes before the saga runtime, so the Lambda journal counts them.)
    assert failed_attempts(env, failing_compensation) - failed_before == COMPENSATION_ATTEMPTS

    # The operator fixes the cause; the redrive Lambda finishes the saga from the queue.
    env.order.set_fault_rules(saga_id, None)
    env.cloud.pump_event_sources()
    record = env.store(saga_id)
    assert record["status"] == "compensated"
    assert record["finished_by"].startswith("redrive:")
    assert env.effects(saga_id) == {
        "reserve_inventory": 0, "charge_payment": "refunded", "reserve_packaging": 0,
        "charge_shipping": "refunded", "create_shipment": None, "send_confirmation": False}
    assert env.books() == before
    # Each compensation's body ran exactly once, whether the state machine or the redrive ran
    # it (the redrive re-invokes the ones already done; they answer from their stored result).
    # The pivot's action never took effect: nothing to undo there.
    assert env.runs(saga_id) == {**dict.fromkeys(GROUP_STEPS, 1), PIVOT: 0}
    for queue in ("CompensationQueueUrl", "CompensationDeadLetterQueueUrl"):
        left = env.sqs.receive_message(QueueUrl=env.outputs[queue], MaxNumberOfMessages=10,
                                       VisibilityTimeout=0).get("Messages", [])
        assert not [m for m in left if saga_id in m["Body"]]


def test_the_undo_plans_of_this_shape() -> None:
    """The one order the redrive accepts, spelled out: a group step's own branch nearest first,
    then the other branch last step first; the pivot after the group, then the whole group."""
    assert GROUP_CHAINS.undo_plan("reserve_packaging") == [
        "reserve_packaging", "reserve_inventory", "charge_shipping", "charge_payment"]
    assert GROUP_CHAINS.undo_plan("reserve_inventory") == [
        "reserve_inventory", "charge_shipping", "charge_payment"]
    assert GROUP_CHAINS.undo_plan("charge_shipping") == [
        "charge_shipping", "charge_payment", "reserve_packaging", "reserve_inventory"]
    assert GROUP_CHAINS.undo_plan("charge_payment") == [
        "charge_payment", "reserve_packaging", "reserve_inventory"]
    assert GROUP_CHAINS.undo_plan(PIVOT) == [
        PIVOT, "charge_shipping", "charge_payment", "reserve_packaging", "reserve_inventory"]


def record_id(step: str, saga_id: str, data_of: str | None = None) -> str:
    """The Powertools idempotency record id of a step's action (``<prefix>#<md5 of its key>``);
    ``data_of`` hashes another step's key under this step's prefix."""
    data = idempotency_data(SAGA_NAME, saga_id, data_of or step, "action")
    digest = hashlib.md5(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return f"{idempotency_key_prefix(SAGA_NAME, step, 'action')}#{digest}"


def test_one_handler_serving_two_steps_at_once_keeps_their_idempotency_records_apart(
    env: Env,
) -> None:
    """charge_payment and charge_shipping run the same payments handler; on AWS they are two
    functions (two processes), in the local cloud one process. Run them at the same time for a
    few sagas, then deliver each invocation again, as a Step Functions retry would."""
    lambda_client = env.cloud.client("lambda")
    steps = ("charge_payment", "charge_shipping")

    def invoke(step: str, saga_id: str) -> tuple[str | None, Any]:
        event = {"saga_type": SAGA_NAME, "step": step, "phase": "action",
                 "execution_name": saga_id, "execution_arn": f"arn:test:{saga_id}",
                 "state": order_input(saga_id=saga_id, sku=SKU, customer=CUSTOMER)}
        answer = lambda_client.invoke(FunctionName=env.functions[(step, "action")],
                                      Payload=json.dumps(event).encode())
        return answer.get("FunctionError"), json.loads(answer["Payload"].read())

    calls = [(step, f"same-handler-{n}-{new_saga_id()}"[:80]) for n in range(8) for step in steps]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        first = list(pool.map(lambda call: invoke(*call), calls))
    assert all(error is None for error, _ in first), first
    env.cloud.wait_lambdas_idle(timeout=30)

    # Every invocation finished: each has its own record, under its own step, COMPLETED.
    records = {r["id"]["S"]: r["status"]["S"] for r in env.db.scan(
        TableName=env.outputs["IdempotencyTableName"])["Items"]}
    expected = {record_id(step, saga_id): "COMPLETED" for step, saga_id in calls}
    misplaced = {record_id(other, saga_id, data_of=step) for step, saga_id in calls
                 for other in steps if other != step}
    assert {i: records.get(i) for i in expected} == expected
    assert misplaced & set(records) == set()
    # ... and a second delivery of each answers from its stored result.
    assert [invoke(*call) for call in calls] == first
