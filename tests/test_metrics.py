"""The EMF metrics a saga leaves, read from the local cloud's sink (what CloudWatch would get).

Saga outcomes are counted from the saga store's stream, once per status change; step and
compensation metrics once per invocation the runtime ran. Each test waits until every handler
and every stream record of the previous ones is done, then looks only at what came after.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from demo.order_demo import OrderParticipants, order_input
from saga_kit.cli.dlq import redrive
from saga_kit.cli.executions import outcome, start_saga, wait_for_execution
from saga_kit.contract import Metric
from tests.emf import settled_mark

SAGA = "order_fulfillment"
SKU, RICH, BROKE = "sku-metrics", "customer-metrics-rich", "customer-metrics-broke"
SAGA_METRICS = {Metric.SAGA_STARTED, Metric.SAGA_COMPLETED, Metric.SAGA_COMPENSATED,
                Metric.SAGA_PARKED, Metric.SAGA_FAILED_UNEXPECTEDLY, Metric.SAGA_DURATION}
#: The metric each store log entry (phase, succeeded?) stands for.
BY_LOG_ENTRY = {("action", True): Metric.STEP_SUCCEEDED, ("action", False): Metric.STEP_FAILED,
                ("compensation", True): Metric.COMPENSATION_SUCCEEDED,
                ("compensation", False): Metric.COMPENSATION_FAILED}


@pytest.fixture(scope="module")
def env(cloud: Any, participants: OrderParticipants) -> dict[str, Any]:
    participants.seed_stock(1000, sku=SKU)
    participants.open_account(RICH, 10_000_000)
    participants.open_account(BROKE, 0)
    outputs = cloud.saga_outputs()
    return {"cloud": cloud, "p": participants, "sfn": cloud.client("stepfunctions"),
            "db": cloud.client("dynamodb"), "outputs": outputs}


def since(cloud: Any, mark: int) -> list[tuple[str, str | None, float, list[list[str]]]]:
    """(metric, step, value, dimension sets) for every metric value emitted after ``mark``."""
    cloud.wait_lambdas_idle()
    cloud.wait_for_stream_delivery()
    found = []
    for document in cloud.metrics.documents()[mark:]:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "SagaKit"
        for metric in directive["Metrics"]:
            values = document[metric["Name"]]
            for value in values if isinstance(values, list) else [values]:
                found.append((metric["Name"], document.get("Step"), value,
                              directive["Dimensions"]))
        assert document["SagaType"] == SAGA
        assert "service" not in document  # the saga type is the one bounded dimension
    return found


def run(env: dict[str, Any], body: dict[str, Any]) -> Any:
    _, arn = start_saga(env["sfn"], env["outputs"]["StateMachineArn"], body)
    wait_for_execution(env["sfn"], arn, timeout=60)
    return outcome(env["sfn"], arn)


def store_log(env: dict[str, Any], saga_id: str) -> list[dict[str, Any]]:
    from saga_kit.runtime.store import item_to_json

    item = env["db"].get_item(TableName=env["outputs"]["StoreTableName"], ConsistentRead=True,
                              Key={"saga_type": {"S": SAGA}, "saga_id": {"S": saga_id}})["Item"]
    return item_to_json(item)["log"]


def step_counts(found: list[Any]) -> Counter[tuple[str, str | None]]:
    return Counter((name, step) for name, step, _, _ in found
                   if name not in SAGA_METRICS and not name.endswith("Duration"))


def expected_from_log(log: list[dict[str, Any]]) -> Counter[tuple[str, str | None]]:
    return Counter((BY_LOG_ENTRY[(entry["phase"], entry["outcome"] == "succeeded")], entry["step"])
                   for entry in log if not entry.get("duplicate"))


def test_a_compensated_saga_counts_each_metric_once_with_its_dimensions(env: dict[str, Any]) -> None:
    mark = settled_mark(env["cloud"])
    result = run(env, order_input(sku=SKU, customer=BROKE))  # the payment is declined
    assert result.status == "compensated"
    found = since(env["cloud"], mark)

    saga_level = Counter(name for name, _, _, _ in found if name in SAGA_METRICS)
    assert saga_level == {Metric.SAGA_STARTED: 1, Metric.SAGA_COMPENSATED: 1,
                          Metric.SAGA_DURATION: 1}
    assert step_counts(found) == {
        (Metric.STEP_SUCCEEDED, "reserve_inventory"): 1,
        (Metric.STEP_FAILED, "charge_payment"): 1,
        # The chain enters at the failed step: its compensation runs (and finds nothing to undo).
        (Metric.COMPENSATION_SUCCEEDED, "charge_payment"): 1,
        (Metric.COMPENSATION_SUCCEEDED, "reserve_inventory"): 1,
    }
    assert step_counts(found) == expected_from_log(store_log(env, result.saga_id))
    for name, step, value, dimensions in found:
        if name in SAGA_METRICS:
            assert (step, dimensions) == (None, [["SagaType"]]), name
        else:
            assert step is not None and dimensions == [["SagaType", "Step"]], name
        if name.endswith("Duration"):
            assert value > 0, name
        else:
            assert value == 1, name
    durations = Counter(name for name, _, _, _ in found if name.endswith("Duration"))
    assert durations == {Metric.STEP_DURATION: 2, Metric.COMPENSATION_DURATION: 2,
                         Metric.SAGA_DURATION: 1}


def test_a_parked_then_redriven_saga_is_started_parked_and_compensated_once(
    env: dict[str, Any],
) -> None:
    cloud, p = env["cloud"], env["p"]
    mark = settled_mark(cloud)
    body = {**order_input(sku=SKU, customer=RICH,
                          faults=[{"step": "create_shipment", "kind": "business_error"}]),
            "fault_table": True}
    p.set_fault_rules(body["saga_id"], [{"step": "charge_payment", "phase": "compensation",
                                         "kind": "transient_error"}])
    assert run(env, body).status == "parked"
    cloud.pump_event_sources()  # the redrive Lambda keeps failing: the message reaches the DLQ
    parked = since(cloud, mark)
    assert Counter(n for n, _, _, _ in parked if n in SAGA_METRICS) == {
        Metric.SAGA_STARTED: 1, Metric.SAGA_PARKED: 1}

    p.set_fault_rules(body["saga_id"], None)  # the operator fixes the participant...
    redrive(cloud.client("sqs"), env["outputs"]["CompensationDeadLetterQueueArn"])  # ...and redrives
    cloud.pump_event_sources()
    found = since(cloud, mark)
    assert Counter(n for n, _, _, _ in found if n in SAGA_METRICS) == {
        Metric.SAGA_STARTED: 1, Metric.SAGA_PARKED: 1, Metric.SAGA_COMPENSATED: 1,
        Metric.SAGA_DURATION: 1}
    # Every invocation the runtime ran is counted once: the redrive's compensations included.
    assert step_counts(found) == expected_from_log(store_log(env, body["saga_id"]))
    assert step_counts(found)[(Metric.COMPENSATION_SUCCEEDED, "charge_payment")] == 1
    assert step_counts(found)[(Metric.COMPENSATION_SUCCEEDED, "reserve_inventory")] == 1


def test_an_ending_delivered_twice_is_counted_once(env: dict[str, Any]) -> None:
    cloud = env["cloud"]
    result = run(env, order_input(sku=SKU, customer=RICH))
    assert result.status == "completed"
    mark = settled_mark(cloud)
    # EventBridge delivers at least once: the same ending arrives again.
    function = cloud.physical_id("OrderFulfillmentStatusEventsFunction")
    answer = cloud.client("lambda").invoke(FunctionName=function, Payload=json.dumps({
        "version": "0", "id": "again", "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states", "account": cloud.account_id, "time": "2026-01-01T00:00:00Z",
        "region": cloud.region, "resources": [result.execution_arn],
        "detail": {"executionArn": result.execution_arn, "name": result.saga_id,
                   "status": "SUCCEEDED", "stateMachineArn": env["outputs"]["StateMachineArn"]},
    }))
    assert "FunctionError" not in answer
    assert [n for n, _, _, _ in since(cloud, mark)] == []


def test_a_duplicate_delivery_of_a_step_counts_nothing_more(env: dict[str, Any],
                                                            saga_functions: dict[Any, str]) -> None:
    cloud = env["cloud"]
    state = order_input(sku=SKU, customer=RICH)
    event = {"saga_type": SAGA, "step": "reserve_inventory", "phase": "action",
             "execution_name": state["saga_id"], "state": state}
    function = saga_functions[("reserve_inventory", "action")]
    mark = settled_mark(cloud)
    for _ in range(2):
        answer = cloud.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event))
        assert "FunctionError" not in answer
    found = since(cloud, mark)
    assert step_counts(found) == {(Metric.STEP_SUCCEEDED, "reserve_inventory"): 1}
    # The store item this direct call created is a start like any other, counted once.
    assert Counter(n for n, _, _, _ in found if n in SAGA_METRICS) == {Metric.SAGA_STARTED: 1}
