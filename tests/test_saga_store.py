"""The saga store in the local cloud: kept current by the handlers and the status events, never
moved back, matching the execution history step for step, and queryable for stuck sagas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from demo.order_demo import order_input
from saga_kit.cli.executions import history, start_saga
from saga_kit.contract import StuckThresholds
from saga_kit.runtime import store
from saga_kit.runtime.stuck import find_stuck
from tests.emf import settled_mark

BROKE = "customer-store-broke"


@pytest.fixture(scope="module")
def store_table(cloud: Any, participants: Any) -> str:
    participants.seed_stock(1000, sku="sku-store")
    participants.open_account("customer-store", 10**9)
    participants.open_account(BROKE, 0)
    return cloud.saga_outputs()["StoreTableName"]


def _run(cloud: Any, **kwargs: Any) -> tuple[str, str, dict[str, Any]]:
    sfn = cloud.client("stepfunctions")
    saga_id, arn = start_saga(sfn, cloud.saga_outputs()["StateMachineArn"],
                              order_input(sku="sku-store", **kwargs))
    return saga_id, arn, cloud.wait_for_execution(arn)


def _item(cloud: Any, table: str, saga_id: str) -> dict[str, Any]:
    raw = cloud.client("dynamodb").get_item(TableName=table, ConsistentRead=True,
                                            Key=store.key("order_fulfillment", saga_id))["Item"]
    return store.item_to_json(raw)


def _lambda_attempts(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(state name, succeeded|failed) for every Lambda invocation Step Functions made."""
    attempts, state = [], None
    for event in events:
        if event["type"] == "TaskStateEntered":
            state = event["stateEnteredEventDetails"]["name"]
        elif event["type"] == "LambdaFunctionSucceeded":
            attempts.append((state, "succeeded"))
        elif event["type"] in ("LambdaFunctionFailed", "LambdaFunctionTimedOut"):
            attempts.append((state, "failed"))
    return attempts


def test_compensated_saga_store_log_matches_the_execution_history(cloud: Any,
                                                                  store_table: str) -> None:
    saga_id, arn, described = _run(cloud, customer=BROKE)  # the card is declined: a real
    assert described["error"] == "SagaCompensated.charge_payment"  # BusinessError in the handler
    item = _item(cloud, store_table, saga_id)

    from_store = [(e["step"] if e["phase"] == "action" else f"compensate_{e['step']}",
                   "succeeded" if e["outcome"] == "succeeded" else "failed")
                  for e in item["log"] if not e.get("duplicate")]
    from_history = _lambda_attempts(history(cloud.client("stepfunctions"), arn))
    assert from_store == from_history == [
        ("reserve_inventory", "succeeded"), ("charge_payment", "failed"),
        ("compensate_charge_payment", "succeeded"), ("compensate_reserve_inventory", "succeeded"),
    ]
    assert item["status"] == "compensated"
    assert item["execution_arn"] == arn
    assert item["failure"]["step"] == "charge_payment"
    assert item["expires_at"] > datetime.now(UTC).timestamp() + 80 * 24 * 3600
    view = store.describe(item)
    assert [(s["step"], s["phase"], s["status"]) for s in view["steps"]] == [
        ("reserve_inventory", "action", "succeeded"), ("charge_payment", "action", "failed"),
        ("charge_payment", "compensation", "succeeded"),
        ("reserve_inventory", "compensation", "succeeded"),
    ]
    charge = view["steps"][1]
    assert charge["outcome"] == "business_error" and "declined" in charge["error"].lower()
    assert all(s["started_at"] <= s["ended_at"] for s in view["steps"])


def test_completed_saga_is_completed_with_every_step(cloud: Any, store_table: str) -> None:
    saga_id, _, described = _run(cloud, customer="customer-store")
    assert described["status"] == "SUCCEEDED"
    item = _item(cloud, store_table, saga_id)
    assert item["status"] == "completed" and item["current_step"] == "send_confirmation"
    assert [e["step"] for e in item["log"]] == [
        "reserve_inventory", "charge_payment", "create_shipment", "send_confirmation"]
    assert item["created_at"] <= item["updated_at"]


def test_endings_no_handler_sees_come_from_the_status_events(cloud: Any, store_table: str) -> None:
    # The confirmation keeps failing after the pivot: forward recovery gives up, and only Step
    # Functions knows. Its status event makes the saga failed.
    mark = settled_mark(cloud)
    saga_id, _, described = _run(cloud, customer="customer-store",
                                 faults=[{"step": "send_confirmation", "kind": "business_error"}])
    assert described["error"] == "ForwardRecoveryFailed.send_confirmation"
    item = _item(cloud, store_table, saga_id)
    assert item["status"] == "failed"
    assert item["execution_error"] == "ForwardRecoveryFailed.send_confirmation"
    assert item["execution_cause"]["step"] == "send_confirmation"
    # Not one of the saga's own endings: recorded with its reason, and counted once for the
    # SagaFailedUnexpectedly alarm, from the store's change (dimensions as the alarm has them).
    assert item["unexpected_ending"] == "FAILED: ForwardRecoveryFailed.send_confirmation"
    assert store.describe(item)["unexpected_ending"] == item["unexpected_ending"]
    cloud.wait_for_stream_delivery()
    metrics = cloud.metrics.documents()[mark:]
    unexpected = [m for m in metrics if "SagaFailedUnexpectedly" in m]
    assert len(unexpected) == 1
    assert unexpected[0]["SagaType"] == "order_fulfillment" and "service" not in unexpected[0]
    assert unexpected[0]["_aws"]["CloudWatchMetrics"][0] == {
        "Namespace": "SagaKit", "Dimensions": [["SagaType"]],
        "Metrics": [{"Name": "SagaFailedUnexpectedly", "Unit": "Count"},
                    {"Name": "SagaDuration", "Unit": "Milliseconds"}]}


def test_a_completed_saga_has_no_unexpected_ending(cloud: Any, store_table: str) -> None:
    saga_id, _, _ = _run(cloud, customer="customer-store")
    assert "unexpected_ending" not in _item(cloud, store_table, saga_id)


def test_a_terminal_status_never_moves(cloud: Any, store_table: str) -> None:
    saga_id, _, _ = _run(cloud, customer="customer-store")
    dynamodb = cloud.client("dynamodb")
    for late in (store.RUNNING, store.COMPENSATING, store.PARKED, store.FAILED):
        assert store.move(dynamodb, store_table, "order_fulfillment", saga_id, late) is False
    assert _item(cloud, store_table, saga_id)["status"] == "completed"
    # A late compensation invocation is still logged, without moving the status.
    store.record_invocation(dynamodb, saga_type="order_fulfillment", saga_id=saga_id,
                            execution_arn="", step="charge_payment", phase="compensation",
                            outcome="succeeded", started=datetime.now(UTC),
                            ended=datetime.now(UTC), table=store_table)
    item = _item(cloud, store_table, saga_id)
    assert item["status"] == "completed"
    assert item["log"][-1]["phase"] == "compensation"


def test_stuck_compensating_sagas_are_one_query(cloud: Any, store_table: str) -> None:
    dynamodb = cloud.client("dynamodb")
    now = datetime.now(UTC)
    store.move(dynamodb, store_table, "order_fulfillment", "stuck-old", store.COMPENSATING,
               extra_set={"current_step": "charge_payment"}, now=now - timedelta(minutes=20))
    store.move(dynamodb, store_table, "order_fulfillment", "stuck-fresh", store.COMPENSATING,
               now=now - timedelta(minutes=2))
    stuck = find_stuck(dynamodb, None, store_table, StuckThresholds(saga_seconds=15 * 60),
                       statuses=("compensating",), now=now)
    assert [s.saga_id for s in stuck] == ["stuck-old"]
    assert stuck[0].step == "charge_payment"
    assert stuck[0].status == "compensating" and round(stuck[0].idle_seconds) == 20 * 60


def test_log_is_bounded_and_counts_what_it_drops(cloud: Any, store_table: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "MAX_LOG_ENTRIES", 3)
    dynamodb = cloud.client("dynamodb")
    for _ in range(5):
        store.move(dynamodb, store_table, "order_fulfillment", "chatty", store.COMPENSATING,
                   log_entry={"step": "charge_payment", "phase": "compensation",
                              "outcome": "transient_error", "started_at": "t", "ended_at": "t"})
    item = _item(cloud, store_table, "chatty")
    assert len(item["log"]) == 3 and item["log_entries_dropped"] == 2
    assert item["status"] == "compensating"


def test_saga_stuck_command_lists_them(cloud: Any, store_table: str) -> None:
    from typer.testing import CliRunner

    from saga_kit.cli.main import app

    store.move(cloud.client("dynamodb"), store_table, "order_fulfillment", "stuck-for-cli",
               store.PARKED, now=datetime.now(UTC) - timedelta(hours=2))
    shown = CliRunner().invoke(app, ["stuck", "--status", "parked", "--older-than", "1h",
                                     "--stack", cloud.stack_name, "--region", cloud.region,
                                     "--json"])
    assert shown.exit_code == 0, shown.output
    assert "stuck-for-cli" in [s["saga_id"] for s in json.loads(shown.stdout)]
