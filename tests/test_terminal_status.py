"""The terminal statuses come from what Step Functions decided, never from a handler's guess.

On the two-step saga whose last step is compensatable: an action (or a compensation) that takes
effect and answers after its task timeout. Step Functions gives up on it and compensates; the
saga store, the API and the participants' books must all agree with that ending.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from demo.order_demo import OrderParticipants, OrderTables, order_input
from saga_kit.cli.executions import outcome, start_saga, wait_for_execution
from saga_kit.local_cloud.gateway import LocalRestApi
from saga_kit.runtime import store
from tests.emf import settled_mark

SKU, CUSTOMER, PRICE, BALANCE = "sku-terminal", "customer-terminal", 1999, 1_000_000
UNDONE = {"reserved": 0, "charge": "refunded", "net_charge_cents": 0, "shipment": None,
          "confirmed": False}


@pytest.fixture(scope="module")
def rc(reserve_and_charge: Any) -> dict[str, Any]:
    cloud = reserve_and_charge
    p = OrderParticipants(cloud.client("dynamodb"), OrderTables.from_outputs(cloud.outputs))
    p.seed_stock(100, sku=SKU)
    p.open_account(CUSTOMER, BALANCE)

    def invoke(logical_id: str, event: dict[str, Any]) -> tuple[str, bool]:
        answer = cloud.client("lambda").invoke(
            FunctionName=cloud.resources[logical_id].physical_id, Payload=json.dumps(event))
        return answer["Payload"].read().decode(), "FunctionError" in answer

    return {"cloud": cloud, "p": p, "sfn": cloud.client("stepfunctions"),
            "api": LocalRestApi(cloud.template, invoke)}


def _run(rc: dict[str, Any], faults: list[dict[str, Any]]) -> tuple[str, Any]:
    saga_id, arn = start_saga(rc["sfn"], rc["cloud"].saga_outputs()["StateMachineArn"],
                              order_input(faults=faults, sku=SKU, customer=CUSTOMER))
    wait_for_execution(rc["sfn"], arn, timeout=120)
    rc["cloud"].wait_lambdas_idle(timeout=60)  # the late handler has answered by now
    return saga_id, outcome(rc["sfn"], arn)


def _api_status(rc: dict[str, Any], saga_id: str) -> dict[str, Any]:
    answer = rc["api"].handle("GET", f"/sagas/reserve_and_charge/{saga_id}", {}, b"")
    assert answer.status == 200, answer.body
    return json.loads(answer.body)


def test_last_action_answering_after_its_timeout_is_compensated_everywhere(
    rc: dict[str, Any],
) -> None:
    before = rc["p"].books()
    # The charge is made and its handler succeeds half a second after the task timed out (as
    # after a cold start): its own store write lands before the first compensation's, which
    # starts slowly, so a handler that decided "completed" would have had the last word.
    saga_id, result = _run(rc, [
        {"step": "charge_payment", "kind": "timeout_after_effect", "seconds": 4.5},
        {"step": "charge_payment", "phase": "compensation", "kind": "timeout", "seconds": 1.5},
    ])
    assert result.error == "SagaCompensated.charge_payment"
    assert result.cause["error"] == "States.Timeout"
    assert result.compensations_run == ["charge_payment", "reserve_inventory"]
    item = store.item_to_json(rc["cloud"].client("dynamodb").get_item(
        TableName=rc["cloud"].saga_outputs()["StoreTableName"], ConsistentRead=True,
        Key=store.key("reserve_and_charge", saga_id))["Item"])
    assert item["status"] == "compensated"
    # The late success is in the log, and it moved nothing.
    assert ("charge_payment", "action", "succeeded") in [
        (e["step"], e["phase"], e["outcome"]) for e in item["log"]]
    assert _api_status(rc, saga_id)["status"] == "compensated"
    assert rc["p"].saga_effects(saga_id) == UNDONE
    assert rc["p"].books()["money_total"] == before["money_total"]
    assert rc["p"].stock(SKU) == rc["p"].books()["stock"][SKU]


def test_compensation_answering_after_its_timeout_still_ends_compensated(
    rc: dict[str, Any],
) -> None:
    before = rc["p"].books()
    stock_before = rc["p"].stock(SKU)
    saga_id, result = _run(rc, [
        {"step": "charge_payment", "kind": "crash_after_effect"},
        {"step": "charge_payment", "phase": "compensation", "kind": "timeout_after_effect",
         "times": 1},
    ])
    assert result.error == "SagaCompensated.charge_payment"
    assert _api_status(rc, saga_id)["status"] == "compensated"
    assert rc["p"].saga_effects(saga_id) == UNDONE
    books = rc["p"].books()
    assert books["money_total"] == before["money_total"]
    assert books["balances"][CUSTOMER] == before["balances"][CUSTOMER]
    assert rc["p"].stock(SKU) == stock_before


def _status_event(rc: dict[str, Any], saga_id: str, status: str, **detail: Any) -> Any:
    cloud = rc["cloud"]
    [function] = [r.physical_id for r in cloud.resources.values()
                  if r.resource_type == "AWS::Lambda::Function" and "StatusEvents" in r.logical_id]
    machine = cloud.saga_outputs()["StateMachineArn"]
    event = {"version": "0", "id": f"event-{saga_id}-{status}", "source": "aws.states",
             "detail-type": "Step Functions Execution Status Change", "account": "123456789012",
             "time": datetime.now(UTC).isoformat(), "region": cloud.region,
             "resources": [f"{machine}:{saga_id}"],
             "detail": {"executionArn": f"{machine}:{saga_id}", "stateMachineArn": machine,
                        "name": saga_id, "status": status, **detail}}
    answer = cloud.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event))
    assert "FunctionError" not in answer
    return json.loads(answer["Payload"].read())


def test_an_aborted_execution_is_failed_until_step_functions_redrives_it(
    rc: dict[str, Any],
) -> None:
    cloud = rc["cloud"]
    dynamodb, table = cloud.client("dynamodb"), cloud.saga_outputs()["StoreTableName"]
    saga_id = "aborted-then-redriven"
    store.move(dynamodb, table, "reserve_and_charge", saga_id, store.RUNNING)
    mark = settled_mark(cloud)
    assert _status_event(rc, saga_id, "ABORTED")["recorded"] == "failed"
    cloud.wait_for_stream_delivery()
    metrics = [m for m in cloud.metrics.documents()[mark:] if m.get("SagaType") == "reserve_and_charge"]
    assert [m["SagaFailedUnexpectedly"] for m in metrics if "SagaFailedUnexpectedly" in m] == [[1.0]]
    item = store.item_to_json(dynamodb.get_item(TableName=table, ConsistentRead=True,
                                                Key=store.key("reserve_and_charge", saga_id))["Item"])
    assert (item["status"], item["unexpected_ending"]) == ("failed", "ABORTED")
    assert "expires_at" in item
    # RedriveExecution resumes it: the store leaves "failed", and loses the finished TTL.
    assert _status_event(rc, saga_id, "RUNNING", redriveCount=1)["recorded"] == "running"
    item = store.item_to_json(dynamodb.get_item(TableName=table, ConsistentRead=True,
                                                Key=store.key("reserve_and_charge", saga_id))["Item"])
    assert item["status"] == "running" and item["redrive_count"] == 1
    assert "expires_at" not in item and "finished_at" not in item
    # A plain start is no redrive: nothing to record.
    assert _status_event(rc, "just-started", "RUNNING")["recorded"] is None
    # A redriven execution that compensates ends compensated, like any other.
    assert _status_event(rc, saga_id, "FAILED", error="SagaCompensated.charge_payment",
                         cause="{}")["recorded"] == "compensated"
