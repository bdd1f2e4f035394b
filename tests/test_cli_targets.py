"""How the CLI finds a saga among a stack's outputs, whatever the stack holds (no cloud needed)."""

from __future__ import annotations

import pytest

from saga_kit.cli.targets import StackSagas, TargetError
from saga_kit.contract import OUTPUT_KEYS, output_key


def outputs_of(*sagas: str, **extra: str) -> dict[str, str]:
    return {**{output_key(saga, name): f"{saga}-{name}" for saga in sagas for name in OUTPUT_KEYS},
            **extra}


def test_names_come_from_the_output_descriptions_first() -> None:
    outputs = outputs_of("saga_2")  # PascalCase "Saga2" alone cannot tell saga_2 from saga2
    descriptions = {key: f"Saga saga_2: {key.removeprefix('Saga2')}" for key in outputs}
    assert StackSagas.from_outputs("S", outputs, descriptions).sagas == {"saga_2": "Saga2"}
    routed = outputs_of("saga_2", ApiRoutes='["saga_2"]')
    assert StackSagas.from_outputs("S", routed).sagas == {"saga_2": "Saga2"}
    assert StackSagas.from_outputs("S", outputs_of("order_fulfillment")).sagas == {
        "order_fulfillment": "OrderFulfillment"}


def test_one_saga_needs_no_name_and_answers_to_either_spelling() -> None:
    stack = StackSagas.from_outputs("S", outputs_of("order_fulfillment"))
    name, outputs = stack.saga_outputs(None)
    assert name == "order_fulfillment"
    assert outputs["StoreTableName"] == "order_fulfillment-StoreTableName"
    assert set(outputs) == set(OUTPUT_KEYS)
    assert stack.resolve("OrderFulfillment") == "order_fulfillment"


def test_each_saga_gets_its_own_outputs_even_when_one_name_prefixes_another() -> None:
    stack = StackSagas.from_outputs("S", outputs_of("order", "order_fulfillment"))
    assert stack.saga_outputs("order")[1]["StateMachineArn"] == "order-StateMachineArn"
    assert stack.saga_outputs("order_fulfillment")[1]["StateMachineArn"] == (
        "order_fulfillment-StateMachineArn")


@pytest.mark.parametrize(("outputs", "saga", "message"), [
    (outputs_of("checkout", "reservation"), None,
     "stack S holds 2 sagas (checkout, reservation): name one with --saga"),
    (outputs_of("checkout", "reservation"), "refund",
     "stack S has no saga 'refund'; its sagas: checkout, reservation"),
    ({"QueueUrl": "u"}, None, "stack S has no saga outputs"),
    ({"StateMachineArn": "arn", "SagaStoreTableName": "t"}, None, "older Saga Kit; redeploy"),
])
def test_what_cannot_be_found_is_refused_naming_what_exists(
        outputs: dict[str, str], saga: str | None, message: str) -> None:
    with pytest.raises(TargetError) as raised:
        StackSagas.from_outputs("S", outputs).saga_outputs(saga)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_api_and_its_routes() -> None:
    stack = StackSagas.from_outputs("S", outputs_of("a", ApiUrl="https://x/prod/",
                                                    ApiRoutes='["a"]'))
    assert stack.api_url == "https://x/prod/" and stack.api_routes == ["a"]
    bare = StackSagas.from_outputs("S", outputs_of("a"))
    assert bare.api_url is None and bare.api_routes is None
