"""Compensations retry on their own; one that exhausts its retries ends in CompensationFailed,
naming the failed compensation, its error and the compensations still pending, in order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from demo.order_demo import OrderParticipants, order_input
from saga_kit.cli.executions import outcome, start_saga, wait_for_execution

SKU_COMP = "sku-compensation"
CUSTOMER_COMP = "customer-compensation"


@pytest.fixture(scope="module")
def setup(cloud: Any, participants: OrderParticipants) -> dict[str, Any]:
    participants.seed_stock(100, sku=SKU_COMP)
    participants.open_account(CUSTOMER_COMP, 100_000)
    return {"participants": participants, "sfn": cloud.client("stepfunctions"),
            "machine": cloud.saga_outputs()["StateMachineArn"]}


def run(setup: dict[str, Any], faults: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    saga_id, arn = start_saga(setup["sfn"], setup["machine"],
                              order_input(faults=faults, sku=SKU_COMP, customer=CUSTOMER_COMP))
    wait_for_execution(setup["sfn"], arn, timeout=60)
    return outcome(setup["sfn"], arn), setup["participants"].saga_effects(saga_id)


def test_compensation_that_keeps_failing_is_parked(
    setup: dict[str, Any],
) -> None:
    result, effects = run(setup, [
        {"step": "create_shipment", "kind": "business_error"},
        {"step": "charge_payment", "phase": "compensation", "kind": "transient_error"},
    ])
    assert result.status == "parked"
    assert result.error == "CompensationFailed"
    assert result.compensations_run == ["create_shipment", "charge_payment"]
    cause = result.cause
    assert cause["failed_compensation"] == "charge_payment"
    assert cause["error"] == "TransientStepError"
    assert "injected transient error" in cause["cause"]
    assert cause["pending_compensations"] == ["reserve_inventory"]
    assert cause["failure"]["step"] == "create_shipment"
    assert cause["saga_type"] == "order_fulfillment"
    # Exactly what the cause says: the shipment was undone, the charge and reservation were not.
    assert effects == {"reserved": 1, "charge": "charged", "net_charge_cents": 1999,
                       "shipment": None, "confirmed": False}


def test_compensation_that_recovers_within_its_retries_completes_the_rollback(
    setup: dict[str, Any],
) -> None:
    result, effects = run(setup, [
        {"step": "create_shipment", "kind": "business_error"},
        {"step": "charge_payment", "phase": "compensation", "kind": "transient_error", "times": 3},
    ])
    assert result.status == "compensated"
    assert result.compensations_run == ["create_shipment", "charge_payment", "reserve_inventory"]
    assert effects == {"reserved": 0, "charge": "refunded", "net_charge_cents": 0,
                       "shipment": None, "confirmed": False}


def test_saga_without_saga_id_uses_the_execution_name(setup: dict[str, Any]) -> None:
    body = order_input(sku=SKU_COMP, customer=CUSTOMER_COMP)
    del body["saga_id"]
    answer = setup["sfn"].start_execution(stateMachineArn=setup["machine"], name="order-without-id",
                                          input=json.dumps(body))
    wait_for_execution(setup["sfn"], answer["executionArn"], timeout=60)
    assert outcome(setup["sfn"], answer["executionArn"]).status == "completed"
    assert setup["participants"].saga_effects("order-without-id")["shipment"] == "created"


def test_an_oversized_input_is_refused_before_any_effect(setup: dict[str, Any]) -> None:
    # Started directly (no API in front): the first action refuses it, nothing is reserved,
    # nothing charged, and the execution ends compensated with the reason in its cause.
    body = {**order_input(sku=SKU_COMP, customer=CUSTOMER_COMP), "note": "x" * (40 * 1024)}
    stock = setup["participants"].stock(SKU_COMP)
    saga_id, arn = start_saga(setup["sfn"], setup["machine"], body)
    wait_for_execution(setup["sfn"], arn, timeout=60)
    result = outcome(setup["sfn"], arn)
    assert result.error == "SagaCompensated.reserve_inventory"
    assert result.cause["error"] == "InputTooLarge"
    assert "max_input_bytes of 32768" in result.cause["cause"]
    assert setup["participants"].stock(SKU_COMP) == stock
    assert setup["participants"].saga_effects(saga_id) == {
        "reserved": 0, "charge": None, "net_charge_cents": 0, "shipment": None,
        "confirmed": False}
    # The compensation found nothing to undo and did not run its body.
    assert setup["participants"].compensation_runs(saga_id) == {}
