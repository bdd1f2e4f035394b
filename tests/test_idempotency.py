"""Each action and compensation, invoked twice with the same input, has one effect.

The handlers are invoked through the local cloud's Lambda API with the very event the state
machine sends, so the Powertools idempotency records and the barrier are the deployed ones.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from demo.order_demo import OrderParticipants, order_input
from saga_kit.cli.executions import new_saga_id

SKU_IDEM = "sku-idempotency"
CUSTOMER_IDEM = "customer-idempotency"


@pytest.fixture(scope="module")
def world(cloud: Any, participants: OrderParticipants,
          saga_functions: dict[tuple[str, str], str]) -> dict[str, Any]:
    participants.seed_stock(50, sku=SKU_IDEM)
    participants.open_account(CUSTOMER_IDEM, 100_000)
    assert len(saga_functions) == 7
    return {"participants": participants, "functions": saga_functions,
            "lambda": cloud.client("lambda")}


def invoke(world: dict[str, Any], step: str, phase: str, state: dict[str, Any]) -> dict[str, Any]:
    event = {"saga_type": "order_fulfillment", "step": step, "phase": phase,
             "execution_name": state["saga_id"], "execution_arn": "arn:test", "state": state}
    answer = world["lambda"].invoke(FunctionName=world["functions"][(step, phase)],
                                    Payload=json.dumps(event))
    payload = json.loads(answer["Payload"].read())
    if answer.get("FunctionError"):
        return {"error": payload["errorType"]}
    return payload


def fresh_state(**extra: Any) -> dict[str, Any]:
    return {**order_input(sku=SKU_IDEM, customer=CUSTOMER_IDEM), **extra}


def test_every_action_and_compensation_twice_has_one_effect(world: dict[str, Any]) -> None:
    participants: OrderParticipants = world["participants"]
    state = fresh_state()
    saga = state["saga_id"]
    stock0 = participants.stock(SKU_IDEM)
    balance0 = participants.books()["balances"][CUSTOMER_IDEM]

    results: dict[str, Any] = {}
    for step in ("reserve_inventory", "charge_payment", "create_shipment", "send_confirmation"):
        first = invoke(world, step, "action", {**state, "results": results})
        second = invoke(world, step, "action", {**state, "results": results})
        assert "error" not in first, first
        assert first == second
        results[step] = first
    assert participants.stock(SKU_IDEM) == stock0 - 1
    assert participants.books()["balances"][CUSTOMER_IDEM] == balance0 - 1999
    assert participants.saga_effects(saga) == {"reserved": 1, "charge": "charged",
                                              "net_charge_cents": 1999, "shipment": "created",
                                              "confirmed": True}

    for step in ("create_shipment", "charge_payment", "reserve_inventory"):
        first = invoke(world, step, "compensation", {**state, "results": results})
        second = invoke(world, step, "compensation", {**state, "results": results})
        assert first == second
        assert first["undone"] is True
    assert participants.stock(SKU_IDEM) == stock0
    assert participants.books()["balances"][CUSTOMER_IDEM] == balance0
    assert participants.saga_effects(saga)["shipment"] == "cancelled"
    assert participants.saga_effects(saga)["charge"] == "refunded"


def test_concurrent_duplicates_charge_once(world: dict[str, Any]) -> None:
    participants: OrderParticipants = world["participants"]
    state = fresh_state()
    balance0 = participants.books()["balances"][CUSTOMER_IDEM]
    answers: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: answers.append(
        invoke(world, "charge_payment", "action", state))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # A duplicate that overlaps the first fails as transient (Step Functions retries it and then
    # gets the stored result); none of them charges a second time.
    ok = [a for a in answers if "error" not in a]
    assert ok and all(a == ok[0] for a in ok)
    assert all(a.get("error") in (None, "TransientStepError") for a in answers)
    assert participants.books()["balances"][CUSTOMER_IDEM] == balance0 - 1999


def test_compensation_before_action_refuses_the_late_action(world: dict[str, Any]) -> None:
    participants: OrderParticipants = world["participants"]
    state = fresh_state()
    stock0 = participants.stock(SKU_IDEM)
    undo = invoke(world, "reserve_inventory", "compensation", state)
    assert undo == {"undone": False, "reason": "action never took effect"}
    late = invoke(world, "reserve_inventory", "action", state)
    assert late == {"error": "LateActionRefused"}
    assert participants.stock(SKU_IDEM) == stock0
    assert participants.saga_effects(state["saga_id"])["reserved"] == 0


def test_malformed_event_is_rejected_without_effect(world: dict[str, Any]) -> None:
    answer = world["lambda"].invoke(FunctionName=world["functions"][("charge_payment", "action")],
                                    Payload=json.dumps({"step": "charge_payment"}))
    assert answer.get("FunctionError")
    assert json.loads(answer["Payload"].read())["errorType"] == "MalformedStepEvent"


def test_saga_id_defaults_to_the_execution_name(world: dict[str, Any]) -> None:
    state = fresh_state()
    del state["saga_id"]
    execution_name = new_saga_id()
    event = {"saga_type": "order_fulfillment", "step": "reserve_inventory", "phase": "action",
             "execution_name": execution_name, "state": state}
    answer = world["lambda"].invoke(
        FunctionName=world["functions"][("reserve_inventory", "action")], Payload=json.dumps(event))
    assert json.loads(answer["Payload"].read())["reservation_id"] == execution_name
