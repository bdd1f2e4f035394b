"""Express sagas: what the declaration refuses, what the construct synthesizes, and what a
duplicate run (Express is at-least-once when started asynchronously) does to the participants.

The Express stack (``tests/stacks/express_order.py``) deploys into the local cloud like any
other; moto runs it as a Standard machine (``/tmp/spec/moto_findings.md``, item 5), so the
template is where its type and logging are checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from demo.order_demo import PRICE_CENTS, OrderParticipants, OrderTables, order_input
from saga_kit.cdk import (
    Callback,
    ParallelGroup,
    RetryPolicy,
    SagaDeclarationError,
    SagaDefinition,
    Step,
    StepKind,
    WorkflowType,
)
from saga_kit.cdk.declaration import EXPRESS_MAX_SECONDS
from saga_kit.cli.executions import history, outcome, start_saga, wait_for_execution
from saga_kit.runtime.store import item_to_json
from tests.stacks.express_order import EXPRESS_ORDER, SAGA_NAME, STACK_NAME


def step(name: str, **options: Any) -> Step:
    return Step(name, action=f"shop.{name}.do", compensation=f"shop.{name}.undo", **options)


def refusal(**declaration: Any) -> str:
    """The message of the error a declaration is refused with."""
    with pytest.raises(SagaDeclarationError) as refused:
        SagaDefinition(**declaration)
    return str(refused.value)


# -- (a) refused at synth --------------------------------------------------------------------


def test_express_refuses_a_callback_step_naming_it() -> None:
    message = refusal(name="quick_trip", workflow=WorkflowType.EXPRESS, steps=[
        step("book_hotel", timeout_seconds=4),
        step("book_car", timeout_seconds=6, callback=Callback(heartbeat_seconds=3)),
    ])
    assert message.startswith("saga 'quick_trip' is not valid:")
    assert ("step 'book_car': Express workflows cannot wait for a callback (there is no "
            "'.waitForTaskToken' integration in Express)") in message
    assert "make the step synchronous or deploy the saga as workflow=WorkflowType.STANDARD" in message
    assert "book_hotel" not in message
    # The same saga is fine as a Standard workflow.
    SagaDefinition(name="quick_trip", steps=[
        step("book_hotel", timeout_seconds=4),
        step("book_car", timeout_seconds=6, callback=Callback(heartbeat_seconds=3))])


def test_express_refuses_a_worst_case_over_five_minutes_naming_the_largest_steps() -> None:
    small = step("reserve", timeout_seconds=4)
    large = step("charge", timeout_seconds=30)
    medium = step("ship", timeout_seconds=10)
    worst = {s.name: s.action_worst_case() + s.compensation_worst_case()
             for s in (small, large, medium)}
    assert sum(worst.values()) > EXPRESS_MAX_SECONDS
    message = refusal(name="slow_order", workflow="express", steps=[small, large, medium])
    assert message.startswith("saga 'slow_order' is not valid:")
    assert (f"worst case is {sum(worst.values()):.0f}s (every action, then every compensation, "
            f"at its retry worst case), over Express's limit of {EXPRESS_MAX_SECONDS}s") in message
    # Largest first, each with its share.
    assert (f"the largest are step 'charge' ({worst['charge']:.0f}s), step 'ship' "
            f"({worst['ship']:.0f}s), step 'reserve' ({worst['reserve']:.0f}s)") in message
    assert ("lower their timeout_seconds or retry max_attempts / max_delay_seconds, or deploy "
            "the saga as workflow=WorkflowType.STANDARD") in message
    # Standard has no such limit.
    SagaDefinition(name="slow_order", steps=[small, large, medium])


def test_express_counts_a_group_by_its_slowest_branch_and_names_the_group() -> None:
    group = ParallelGroup("book_all", branches=[
        [step("book_flight", timeout_seconds=20), step("book_seat", timeout_seconds=20)],
        step("book_hotel", timeout_seconds=4)])
    cost = group.worst_case_seconds() + group.compensation_worst_case_seconds()
    assert cost > EXPRESS_MAX_SECONDS
    message = refusal(name="group_trip", workflow=WorkflowType.EXPRESS, steps=[group])
    assert f"the largest are group 'book_all' ({cost:.0f}s)" in message


def test_a_pivot_inside_a_parallel_group_is_refused() -> None:
    message = refusal(name="trip", steps=[ParallelGroup("book_trip", branches=[
        step("book_flight", timeout_seconds=4),
        step("confirm", kind=StepKind.PIVOT, timeout_seconds=4)])])
    assert message.startswith("saga 'trip' is not valid:")
    assert ("group 'book_trip', step 'confirm': a pivot step cannot run in a parallel group (a "
            "sibling may fail after it, and a pivot or retriable step is never undone); move it "
            "after the group") in message


def test_a_group_over_its_budget_is_refused_naming_the_slowest_branch() -> None:
    slow = RetryPolicy(max_attempts=3, interval_seconds=1, max_delay_seconds=8)
    group = ParallelGroup("book_trip", budget_seconds=60, branches=[
        [step("book_flight", timeout_seconds=10, retry=slow),
         step("book_seat", timeout_seconds=10, retry=slow)],
        step("book_hotel", timeout_seconds=4)])
    worst = group.worst_case_seconds()
    assert worst == 2 * (4 * 10 + 1 + 2 + 4) > 60
    message = refusal(name="trip", steps=[group])
    assert message.startswith("saga 'trip' is not valid:")
    assert (f"group 'book_trip': worst case is {worst:.0f}s (branch book_flight -> book_seat), "
            "over the group budget of 60s; lower those steps' timeouts or retries, or raise "
            "budget_seconds") in message


def test_a_group_whose_state_names_collide_with_a_step_is_refused() -> None:
    message = refusal(name="trip", steps=[
        step("book_trip_error", timeout_seconds=4),
        ParallelGroup("book_trip", branches=[step("book_flight", timeout_seconds=4),
                                             step("book_hotel", timeout_seconds=4)])])
    assert message.startswith("saga 'trip' is not valid:")
    assert ("group 'book_trip': its name collides with step 'book_trip_error' in the generated "
            "state names or construct ids (book_trip_error); rename one") in message


def test_a_group_named_like_one_of_the_steps_is_refused() -> None:
    message = refusal(name="trip", steps=[
        step("flight", timeout_seconds=4),
        ParallelGroup("flight", branches=[step("book_flight", timeout_seconds=4),
                                          step("book_hotel", timeout_seconds=4)])])
    assert ("group 'flight': its name collides with step 'flight' in the generated state names "
            "or construct ids (flight); rename one") in message


def test_one_step_in_two_branches_is_refused() -> None:
    message = refusal(name="trip", steps=[ParallelGroup("book_trip", branches=[
        step("book_flight", timeout_seconds=4), step("book_flight", timeout_seconds=4)])])
    assert "step 'book_flight': duplicate step name; give each step a unique name" in message


# -- (b) what the construct synthesizes -------------------------------------------------------


@pytest.fixture(scope="module")
def express_template(assembly_dir: Path) -> dict[str, Any]:
    return json.loads((assembly_dir / f"{STACK_NAME}.template.json").read_text())


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_the_express_saga_fits_five_minutes() -> None:
    assert EXPRESS_ORDER.workflow is WorkflowType.EXPRESS
    assert EXPRESS_ORDER.worst_case_seconds() <= EXPRESS_MAX_SECONDS


def test_express_template_has_the_type_and_full_logging_with_retention(
    express_template: dict[str, Any],
) -> None:
    [machine] = _resources(express_template, "AWS::StepFunctions::StateMachine").values()
    properties = machine["Properties"]
    assert properties["StateMachineType"] == "EXPRESS"
    logging = properties["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is True
    [destination] = logging["Destinations"]
    log_group_id, attribute = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"]
    assert attribute == "Arn"
    log_group = express_template["Resources"][log_group_id]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] > 0
    # No callback task could have slipped through: every task invokes a Lambda function.
    definition = json.dumps(properties["DefinitionString"])
    assert "waitForTaskToken" not in definition


# -- (c) a duplicate run has one effect -------------------------------------------------------


SKU = "sku-express"
CUSTOMER = "customer-express"


@pytest.fixture(scope="module")
def express(express_cloud: Any) -> dict[str, Any]:
    participants = OrderParticipants(express_cloud.client("dynamodb"),
                                     OrderTables.from_outputs(express_cloud.outputs))
    participants.seed_stock(100, sku=SKU)
    participants.open_account(CUSTOMER, 100_000)
    return {"cloud": express_cloud, "p": participants,
            "sfn": express_cloud.client("stepfunctions"),
            "lambda": express_cloud.client("lambda"), "db": express_cloud.client("dynamodb"),
            "outputs": express_cloud.saga_outputs()}


def _lambda_tasks(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(function, payload, answer) of every Lambda task of a history, in the order scheduled."""
    by_id = {e["id"]: e for e in events}
    answers = {}
    for event in events:
        if event["type"] == "LambdaFunctionSucceeded":
            started = by_id[event["previousEventId"]]
            answers[started["previousEventId"]] = (
                event["lambdaFunctionSucceededEventDetails"]["output"])
    return [(e["lambdaFunctionScheduledEventDetails"]["resource"],
             e["lambdaFunctionScheduledEventDetails"]["input"], answers[e["id"]])
            for e in events if e["type"] == "LambdaFunctionScheduled"]


def test_running_the_same_input_twice_has_one_effect(express: dict[str, Any]) -> None:
    """A duplicate Express run is its Lambda tasks delivered again with the same payloads, in order."""
    p: OrderParticipants = express["p"]
    stock0, balance0 = p.stock(SKU), p.balance(CUSTOMER)
    saga_id, arn = start_saga(express["sfn"], express["outputs"]["StateMachineArn"],
                              order_input(sku=SKU, customer=CUSTOMER))
    wait_for_execution(express["sfn"], arn, timeout=60)
    assert outcome(express["sfn"], arn).status == "completed"
    once = {"stock": p.stock(SKU), "balance": p.balance(CUSTOMER),
            "effects": p.saga_effects(saga_id)}
    assert once == {"stock": stock0 - 1, "balance": balance0 - PRICE_CENTS,
                    "effects": {"reserved": 1, "charge": "charged",
                                "net_charge_cents": PRICE_CENTS, "shipment": None,
                                "confirmed": False}}

    tasks = _lambda_tasks(history(express["sfn"], arn))
    assert [json.loads(payload)["step"] for _, payload, _ in tasks] == [
        "reserve_inventory", "charge_payment"]
    for function, payload, answer in tasks:
        replayed = express["lambda"].invoke(FunctionName=function, Payload=payload.encode())
        assert "FunctionError" not in replayed
        assert json.loads(replayed["Payload"].read()) == json.loads(answer)

    # One run's effects: stock taken once, charged once.
    assert {"stock": p.stock(SKU), "balance": p.balance(CUSTOMER),
            "effects": p.saga_effects(saga_id)} == once
    # Each handler answered the duplicate from its stored result, and the saga stays completed.
    store = item_to_json(express["db"].get_item(
        TableName=express["outputs"]["StoreTableName"], ConsistentRead=True,
        Key={"saga_type": {"S": SAGA_NAME}, "saga_id": {"S": saga_id}})["Item"])
    assert store["status"] == "completed"
    assert [(e["step"], e["outcome"], e.get("duplicate", False)) for e in store["log"]] == [
        ("reserve_inventory", "succeeded", False), ("charge_payment", "succeeded", False),
        ("reserve_inventory", "succeeded", True), ("charge_payment", "succeeded", True)]
