"""The API handler's own checks, the ones a request meets after the gateway's."""

from __future__ import annotations

import json

import pytest

from saga_kit.runtime.api import ApiError, execution_arn, validated_input

ORDER = {"order_id": "o-1", "customer_id": "c-1", "sku": "s-1", "quantity": 1, "amount_cents": 5}
MODEL_ROUTE = {"saga_type": "order_fulfillment",
               "input_model": "order_fulfillment.schema.OrderRequest"}


def test_body_over_the_documented_limit_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGA_API_MAX_BODY_BYTES", "64")
    with pytest.raises(ApiError) as refused:
        validated_input({"saga_type": "free_form", "input_model": None},
                        json.dumps({"note": "x" * 100}))
    assert refused.value.status == 413 and "limit is 64 bytes" in refused.value.message


def test_schema_errors_name_every_field() -> None:
    with pytest.raises(ApiError) as refused:
        validated_input(MODEL_ROUTE, json.dumps({**ORDER, "quantity": 0, "sku": ""}))
    assert refused.value.status == 400
    assert {e["field"] for e in refused.value.errors} == {"quantity", "sku"}
    assert "quantity" in refused.value.message and "sku" in refused.value.message


@pytest.mark.parametrize("body", ['{"order_id": ', "[1, 2]", ""])
def test_not_a_json_object_is_400(body: str) -> None:
    with pytest.raises(ApiError) as refused:
        validated_input(MODEL_ROUTE, body)
    assert refused.value.status == 400


def test_keys_the_saga_owns_are_refused_even_without_a_model() -> None:
    with pytest.raises(ApiError) as refused:
        validated_input({"saga_type": "free_form", "input_model": None},
                        json.dumps({"saga_id": "x", "results": {}}))
    assert {e["field"] for e in refused.value.errors} == {"saga_id", "results"}


def test_valid_input_gets_the_model_defaults() -> None:
    saga_input = validated_input(MODEL_ROUTE, json.dumps(ORDER))
    assert saga_input == {**ORDER, "address": "", "faults": [], "fault_table": False}


def test_the_handler_is_as_strict_as_the_gateway_schema() -> None:
    # JSON Schema's "integer" refuses "2"; so does the model (strict mode), not coercing it.
    with pytest.raises(ApiError) as refused:
        validated_input(MODEL_ROUTE, json.dumps({**ORDER, "quantity": "2"}))
    assert [e["field"] for e in refused.value.errors] == ["quantity"]


def test_execution_arn_is_derived_from_the_state_machine() -> None:
    assert execution_arn("arn:aws:states:eu-west-1:1:stateMachine:Orders", "order-42") == (
        "arn:aws:states:eu-west-1:1:execution:Orders:order-42")


def test_step_context_gives_a_stable_idempotency_key_for_outside_services() -> None:
    from saga_kit.runtime import StepContext

    def context(phase: str) -> StepContext:
        return StepContext(saga_type="order_fulfillment", saga_id="order-42",
                           step="charge_payment", phase=phase, execution_arn="arn",
                           input={}, results={}, barrier=None)  # type: ignore[arg-type]

    # The same for every attempt and duplicate of one step and phase, different across them.
    assert context("action").idempotency_key == "order_fulfillment:order-42:charge_payment:action"
    assert context("action").idempotency_key != context("compensation").idempotency_key
