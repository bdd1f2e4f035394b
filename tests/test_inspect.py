"""``saga inspect`` in the local cloud: the timeline, the records, the queues and the next action of
a completed, a compensated, a parked, a stuck, a failed and a travel saga.

Each saga really runs in the local cloud (``cloud`` and ``travel_cloud``, the session's stacks);
the inspection reads it back the way the command does, through boto3. A stuck saga is judged
with ``now`` an hour ahead rather than by waiting: the same inspection with the real time says
"wait", an hour later "investigate". Express sagas have no history on AWS, which moto does not
imitate (it runs them as Standard), so that test presents the local cloud as AWS would: the state
machine says EXPRESS, and the execution's events are in its log group, in Step Functions' log
format.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from demo.order_demo import OrderParticipants, OrderTables, order_input
from demo.travel_demo import TravelParticipants, trip_input
from saga_kit.cli.dlq import redrive
from saga_kit.cli.executions import history, start_saga, wait_for_execution
from saga_kit.cli.inspect import (
    Inspection,
    TimelineRow,
    _Event,
    _task_states,
    _timeline,
    inspect_saga,
    render,
)
from saga_kit.cli.main import app
from stacks.app_factory import ORDER_STACK_NAME
from stacks.order_fulfillment import ORDER_FULFILLMENT
from stacks.travel_booking import TRAVEL_BOOKING
from tests.polling import poll

SKU, CUSTOMER = "sku-inspect", "customer-inspect"
FLIGHT, HOTEL, CAR_CLASS, TRAVELLER = "FL-inspect", "hotel-inspect", "inspect-car", "traveller-inspect"
ORDER_STEPS = ["reserve_inventory", "charge_payment", "create_shipment", "send_confirmation"]
SHIPMENT_REFUSED = {"step": "create_shipment", "kind": "business_error"}
REFUND_FAILS = {"step": "charge_payment", "phase": "compensation", "kind": "transient_error"}
SETTLE_SECONDS = 30
#: How long the travel saga may wait for the car worker's reply before it counts as stuck.
CAR_STUCK_AFTER = TRAVEL_BOOKING.stuck_thresholds().for_state("book_car")


@pytest.fixture(scope="module")
def order(cloud: Any, participants: OrderParticipants) -> Any:
    participants.seed_stock(1000, sku=SKU)
    participants.open_account(CUSTOMER, 10_000_000)
    return cloud


@pytest.fixture(scope="module")
def travel(travel_cloud: Any, travel_participants: TravelParticipants) -> Any:
    travel_participants.seed_flight(100, flight=FLIGHT)
    travel_participants.seed_hotel(100, hotel=HOTEL)
    travel_participants.seed_cars(100, car_class=CAR_CLASS)
    travel_participants.open_account(TRAVELLER, 100_000_000)
    return travel_cloud


def run_order(cloud: Any, faults: list[dict[str, Any]], saga_id: str | None = None,
              **extra: Any) -> str:
    """Runs an order saga to its end; returns its id."""
    sfn = cloud.client("stepfunctions")
    body = {**order_input(faults=faults, sku=SKU, customer=CUSTOMER, saga_id=saga_id), **extra}
    saga_id, arn = start_saga(sfn, cloud.saga_outputs()["StateMachineArn"], body)
    wait_for_execution(sfn, arn, timeout=60)
    return saga_id


def start_trip(cloud: Any, faults: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    return start_saga(cloud.client("stepfunctions"), cloud.saga_outputs()["StateMachineArn"],
                      trip_input(faults=faults, flight=FLIGHT, hotel=HOTEL, car_class=CAR_CLASS,
                                 traveller=TRAVELLER))


def inspect(cloud: Any, saga_id: str, **options: Any) -> Inspection:
    saga = "travel_booking" if "Travel" in cloud.stack_name else "order_fulfillment"
    return inspect_saga(cloud, cloud.saga_outputs(), saga, saga_id, stack=cloud.stack_name,
                        **options)


def steps(found: Inspection) -> list[tuple[str, str, int, str]]:
    """The timeline's step rows: (step, phase, attempt, outcome), in order."""
    return [(r.step, r.phase, r.attempt, r.outcome) for r in found.timeline if r.phase != "saga"]


def row(found: Inspection, step: str, phase: str, attempt: int = 1) -> TimelineRow:
    return next(r for r in found.timeline
                if (r.step, r.phase, r.attempt) == (step, phase, attempt))


def records(found: Inspection) -> dict[tuple[str, str], str]:
    return {(r.step, r.phase): r.status for r in found.idempotency}


def printed(found: Inspection) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    render(found, console)
    return console.export_text()


# -- order sagas ------------------------------------------------------------------------------


def test_a_completed_saga_shows_each_attempt_and_nothing_to_do(order: Any) -> None:
    saga_id = run_order(order, [{"step": "charge_payment", "kind": "transient_error", "times": 1}])
    found = inspect(order, saga_id)

    assert found.status == "completed" and found.execution.status == "SUCCEEDED"
    assert steps(found) == [
        ("reserve_inventory", "action", 1, "succeeded"),
        ("charge_payment", "action", 1, "failed"),
        ("charge_payment", "action", 2, "succeeded"),
        ("create_shipment", "action", 1, "succeeded"),
        ("send_confirmation", "action", 1, "succeeded"),
    ]
    retried = row(found, "charge_payment", "action")
    assert retried.attempts == 2 and retried.error == "TransientStepError"
    assert retried.cause == "injected transient error at charge_payment action"
    assert all(r.source == "history" and r.duration_ms is not None and r.duration_ms >= 0
               for r in found.timeline)
    # What the step runtime recorded joins the attempt that ran it.
    assert row(found, "charge_payment", "action", 2).handler_outcome == "succeeded"
    assert records(found) == {(step, "action"): "COMPLETED" for step in ORDER_STEPS}
    assert found.parked == [] and found.open_tasks == [] and found.callbacks == []
    assert found.thresholds["saga_seconds"] == ORDER_FULFILLMENT.stuck_after_seconds
    assert found.thresholds["source"].startswith("stuck detector ")
    assert found.next_action.kind == "nothing"
    assert found.next_action.summary == "nothing to do"


def test_a_compensated_saga_shows_the_failure_then_the_compensations_in_reverse(
        order: Any) -> None:
    saga_id = run_order(order, [SHIPMENT_REFUSED])
    found = inspect(order, saga_id)

    assert found.status == "compensated"
    assert found.execution.error == "SagaCompensated.create_shipment"
    assert steps(found) == [
        ("reserve_inventory", "action", 1, "succeeded"),
        ("charge_payment", "action", 1, "succeeded"),
        ("create_shipment", "action", 1, "failed"),
        ("create_shipment", "compensation", 1, "succeeded"),
        ("charge_payment", "compensation", 1, "succeeded"),
        ("reserve_inventory", "compensation", 1, "succeeded"),
    ]
    failed = row(found, "create_shipment", "action")
    assert failed.error == "InjectedBusinessError"
    assert failed.cause == "injected business error at create_shipment action"
    # The fault struck before the step runtime: no record was ever taken for that action.
    assert records(found) == {
        ("reserve_inventory", "action"): "COMPLETED", ("charge_payment", "action"): "COMPLETED",
        ("create_shipment", "action"): "absent",
        ("create_shipment", "compensation"): "COMPLETED",
        ("charge_payment", "compensation"): "COMPLETED",
        ("reserve_inventory", "compensation"): "COMPLETED",
    }
    assert found.next_action.kind == "nothing"


def test_a_parked_saga_waits_for_the_redrive_then_needs_a_fix_and_a_dlq_redrive(
        order: Any, participants: OrderParticipants) -> None:
    saga_id = f"inspect-parked-{uuid.uuid4().hex[:8]}"
    participants.set_fault_rules(saga_id, [REFUND_FAILS])  # until the operator fixes it
    run_order(order, [SHIPMENT_REFUSED], saga_id=saga_id, fault_table=True)

    # Just parked: the message is in the compensation queue, which the redrive Lambda drains.
    found = inspect(order, saga_id, peek_live_queues=True)
    assert found.status == "parked" and found.execution.error == "CompensationFailed"
    refund = [r for r in found.timeline if (r.step, r.phase) == ("charge_payment", "compensation")]
    assert [r.outcome for r in refund] == ["failed"] * 6  # 1 + 5 retries
    assert {r.error for r in refund} == {"TransientStepError"}
    assert refund[0].cause == "injected transient error at charge_payment compensation"
    assert [r.state for r in found.timeline if r.phase == "saga"] == [
        "park_compensation", "record_parked"]
    assert [(p.queue, p.message.failed_compensation, p.message.pending_compensations)
            for p in found.parked] == [
        ("compensation_queue", "charge_payment", ["reserve_inventory"])]
    assert found.next_action.kind == "wait"
    assert records(found)[("charge_payment", "compensation")] == "absent"

    # The redrive Lambda fails it max_receive_count times: SQS moves it to the DLQ.
    order.pump_event_sources()
    found = inspect(order, saga_id)
    assert [(p.queue, p.message.failed_compensation) for p in found.parked] == [
        ("dead_letter_queue", "charge_payment")]
    action = found.next_action
    assert (action.kind, action.summary) == ("redrive_dlq",
                                             "fix the participant, then redrive the DLQ")
    assert action.commands[0] == (f"saga dlq redrive --stack {ORDER_STACK_NAME} "
                                  "--saga order_fulfillment")
    assert "charge_payment → reserve_inventory still to undo" in action.reason
    assert any("TransientStepError" in check for check in action.checks)
    assert any("/aws/lambda/" in check and "ChargePaymentCompensation" in check
               for check in action.checks)
    assert "fix the participant, then redrive the DLQ" in printed(found)

    # The operator fixes the cause and redrives: the redrive Lambda finishes the saga, which
    # the store shows after the execution's own attempts.
    participants.set_fault_rules(saga_id, None)
    outputs = order.saga_outputs()
    redrive(order.client("sqs"), outputs["CompensationDeadLetterQueueArn"])
    order.pump_event_sources()
    found = poll(lambda: (lambda f: f if f.status == "compensated" else None)(
        inspect(order, saga_id)), "compensated (the parked saga)", SETTLE_SECONDS)
    finished = [r for r in found.timeline if r.source == "store"]
    assert [(r.step, r.phase, r.outcome) for r in finished] == [
        ("charge_payment", "compensation", "succeeded"),
        ("reserve_inventory", "compensation", "succeeded")]
    assert {r.note for r in finished} == {"after the execution ended: the redrive Lambda"}
    assert finished[0].attempt == 7  # after the execution's six
    assert found.parked == [] and found.next_action.kind == "nothing"


def test_a_saga_failed_past_the_pivot_is_redriven_on_aws(order: Any) -> None:
    # send_confirmation is retriable: it retries every error (instantly here) and then gives up.
    saga_id = run_order(order, [{"step": "send_confirmation", "kind": "business_error"}])
    found = inspect(order, saga_id)

    assert found.status == "failed"
    assert found.execution.error == "ForwardRecoveryFailed.send_confirmation"
    confirmations = [r for r in found.timeline if r.step == "send_confirmation"]
    assert len(confirmations) == 101 and {r.outcome for r in confirmations} == {"failed"}
    assert confirmations[-1].attempts == 101
    action = found.next_action
    assert (action.kind, action.summary) == ("redrive_execution", "redrive the execution on AWS")
    assert action.commands == [
        f"aws stepfunctions redrive-execution --execution-arn {found.execution.arn}"]
    assert "step send_confirmation is past the pivot" in action.checks[0]
    # A long run of failed attempts is folded on screen, kept whole in the data.
    assert "97 more failed" in printed(found)


# -- travel sagas: a parallel group and a callback --------------------------------------------


def test_a_travel_saga_shows_its_group_and_its_callback(travel: Any) -> None:
    saga_id, arn = start_trip(travel)
    wait_for_execution(travel.client("stepfunctions"), arn, timeout=60)
    found = inspect(travel, saga_id)

    assert found.status == "completed" and found.next_action.kind == "nothing"
    rows = steps(found)
    assert {r[0] for r in rows[:3]} == {"book_flight", "book_hotel", "book_car"}
    assert rows[3:] == [("charge_payment", "action", 1, "succeeded"),
                        ("confirm_itinerary", "action", 1, "succeeded"),
                        ("notify_traveller", "action", 1, "succeeded")]
    assert {r[3] for r in rows} == {"succeeded"}
    grouped = {r.step: r for r in found.timeline if r.group == "book_trip"}
    assert set(grouped) == {"book_flight", "book_hotel", "book_car"}
    assert [r.step for r in found.timeline if r.callback] == ["book_car"]
    # The worker's run of the callback step joins the task that waited for it.
    assert grouped["book_car"].handler_outcome == "succeeded"
    assert records(found)[("book_car", "action")] == "COMPLETED"


def test_a_saga_held_by_its_callback_worker_is_waited_for_then_flagged_stuck(
        travel: Any) -> None:
    # The car worker takes the command and sits on it for three seconds, its record INPROGRESS.
    saga_id, arn = start_trip(travel, [{"step": "book_car", "kind": "timeout_after_effect",
                                        "seconds": 3}])

    def held() -> Inspection | None:
        found = inspect(travel, saga_id)
        return found if records(found).get(("book_car", "action")) == "INPROGRESS" else None

    now = poll(held, "holding the command (the car worker)", 10)
    assert now.status == "running"
    car = next(t for t in now.open_tasks if t.state == "book_car")
    assert car.callback and not car.stuck and car.threshold_seconds == CAR_STUCK_AFTER
    assert now.next_action.kind == "wait"
    assert [w.state for w in now.callbacks] == ["book_car"]
    assert now.callbacks[0].timeout_seconds == 20 and now.callbacks[0].heartbeat_seconds == 6
    assert now.callbacks[0].command == "taken"  # nothing waits in its queue
    assert not next(r for r in now.idempotency if r.step == "book_car").stale

    # The same saga as it would look an hour later, if nothing moved.
    later = inspect(travel, saga_id, now=datetime.now(UTC) + timedelta(hours=1),
                    peek_live_queues=True)
    car = next(t for t in later.open_tasks if t.state == "book_car")
    assert car.stuck and car.idle_seconds > 3500
    wait = later.callbacks[0]
    assert wait.command == "taken" and "BookCarAction" in (wait.worker or "")
    record = next(r for r in later.idempotency if r.step == "book_car")
    assert record.status == "INPROGRESS" and record.stale
    assert record.function_timeout_seconds == 18
    action = later.next_action
    assert action.kind == "investigate"
    assert action.summary.startswith("investigate: stuck at ") and "book_car (action)" in (
        action.summary)
    assert action.checks[0].startswith("callback book_car has waited")
    assert "was taken by the worker" in action.checks[0]
    assert any("INPROGRESS past its function's timeout" in check for check in action.checks)
    assert any(command.startswith("aws logs tail /aws/lambda/") and "BookCarAction" in command
               for command in action.commands)

    # The worker replies in the end, and the saga completes.
    assert wait_for_execution(travel.client("stepfunctions"), arn, timeout=60)[
        "status"] == "SUCCEEDED"
    assert inspect(travel, saga_id).next_action.kind == "nothing"


#: The history of a trip whose hotel refused while the flight and the car were under way, as
#: the local cloud records it: the stopped branches' tasks get no exit event (AWS records
#: TaskStateAborted), and the flight's answer and the car's timeout arrive after the group ended.
#: (id, previous id, type, state name)
STOPPED_BRANCH_HISTORY = [
    (1, 0, "ExecutionStarted", None), (2, 0, "ParallelStateEntered", "book_trip"),
    (3, 2, "ParallelStateStarted", None), (4, 3, "TaskStateEntered", "book_flight"),
    (5, 4, "LambdaFunctionScheduled", None), (6, 5, "LambdaFunctionStarted", None),
    (7, 3, "TaskStateEntered", "book_hotel"), (8, 7, "LambdaFunctionScheduled", None),
    (9, 8, "LambdaFunctionStarted", None), (10, 3, "TaskStateEntered", "book_car"),
    (11, 10, "TaskScheduled", None), (12, 11, "TaskStarted", None),
    (13, 9, "LambdaFunctionFailed", None), (14, 13, "TaskStateExited", "book_hotel"),
    (15, 14, "PassStateEntered", "book_hotel_failed"),
    (16, 15, "PassStateExited", "book_hotel_failed"),
    (17, 16, "FailStateEntered", "book_hotel_abandoned"), (18, 17, "ParallelStateFailed", None),
    (19, 18, "ParallelStateExited", "book_trip"),
    (20, 19, "ParallelStateEntered", "compensate_book_trip"),
    (21, 12, "TaskSubmitted", None), (22, 21, "TaskTimedOut", None),
    (23, 20, "ParallelStateStarted", None),
    (24, 23, "TaskStateEntered", "compensate_book_flight"),
    (25, 23, "TaskStateEntered", "compensate_book_hotel"),
    (26, 24, "LambdaFunctionScheduled", None), (27, 25, "LambdaFunctionScheduled", None),
    (28, 6, "LambdaFunctionSucceeded", None),
]


def test_a_stopped_branch_is_left_when_its_group_ends(travel: Any) -> None:
    definition = travel.client("stepfunctions").describe_state_machine(
        stateMachineArn=travel.saga_outputs()["StateMachineArn"])["definition"]
    states = _task_states(json.loads(definition))
    start = datetime(2030, 1, 1, tzinfo=UTC)
    events = [_Event(id, previous, kind, start + timedelta(milliseconds=10 * id),
                     {"name": name} if name else ({"error": "InjectedBusinessError"}
                                                  if kind == "LambdaFunctionFailed" else {}))
              for id, previous, kind, name in STOPPED_BRANCH_HISTORY]

    rows, open_states = _timeline(events, states, running=True, source="history")
    # The saga waits in the group's compensations only, not in the tasks its branches left.
    assert open_states == {"compensate_book_flight", "compensate_book_hotel"}
    outcome = {r.state: (r.outcome, r.group, r.note) for r in rows}
    assert outcome["book_hotel"] == ("failed", "book_trip", None)
    # Answers that came after the group stopped are kept, and said to be late.
    assert outcome["book_flight"] == ("succeeded", "book_trip",
                                      "answered after its branch was stopped")
    assert outcome["book_car"] == ("timed_out", "book_trip",
                                   "answered after its branch was stopped")
    assert outcome["compensate_book_flight"] == ("running", "compensate_book_trip", None)


# -- Express: the logs, or the store ------------------------------------------------------------


class _AsAws:
    """The local cloud as AWS answers for an Express saga: the state machine is EXPRESS, and
    Step Functions keeps no history of its executions (only the logs do)."""

    def __init__(self, cloud: Any) -> None:
        self._cloud = cloud

    def client(self, service: str) -> Any:
        client = self._cloud.client(service)
        return _ExpressMachine(client) if service == "stepfunctions" else client


class _ExpressMachine:
    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name in ("describe_execution", "get_execution_history"):
            raise AssertionError(f"{name} is not supported for Express executions")
        return getattr(self._client, name)

    def describe_state_machine(self, **kwargs: Any) -> dict[str, Any]:
        return {**self._client.describe_state_machine(**kwargs), "type": "EXPRESS"}


def _write_execution_logs(cloud: Any, arn: str) -> None:
    """The execution's events in its log group, as Step Functions logs them at level ALL."""
    logs = cloud.client("logs")
    group = cloud.saga_outputs("express_order")["ExecutionLogGroupName"]
    stream = f"states/inspect/{uuid.uuid4().hex}"
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    events = []
    for event in history(cloud.client("stepfunctions"), arn):
        details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
        millis = int(event["timestamp"].timestamp() * 1000)
        events.append({"timestamp": millis, "message": json.dumps({
            "id": str(event["id"]), "type": event["type"], "details": details,
            "previous_event_id": str(event.get("previousEventId", 0)),
            "event_timestamp": str(millis), "execution_arn": arn})})
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def test_an_express_saga_is_read_from_its_logs_or_else_from_the_store(express_cloud: Any) -> None:
    participants = OrderParticipants(express_cloud.client("dynamodb"),
                                     OrderTables.from_outputs(express_cloud.outputs))
    participants.seed_stock(100, sku=SKU)
    participants.open_account(CUSTOMER, 1_000_000)
    sfn = express_cloud.client("stepfunctions")
    machine = express_cloud.saga_outputs("express_order")["StateMachineArn"]
    ids = []
    for _ in range(2):
        saga_id, arn = start_saga(sfn, machine, order_input(
            faults=[{"step": "charge_payment", "kind": "business_error"}], sku=SKU,
            customer=CUSTOMER))
        wait_for_execution(sfn, arn, timeout=60)
        ids.append((saga_id, arn))
    _write_execution_logs(express_cloud, ids[0][1])

    def look(saga_id: str) -> Inspection:
        return inspect_saga(_AsAws(express_cloud), express_cloud.saga_outputs("express_order"),
                            "express_order", saga_id, stack=express_cloud.stack_name)

    logged = look(ids[0][0])
    assert logged.execution.workflow == "EXPRESS" and logged.execution.status == "FAILED"
    assert logged.execution.error == "SagaCompensated.charge_payment"
    assert logged.status == "compensated" and logged.next_action.kind == "nothing"
    assert steps(logged) == [("reserve_inventory", "action", 1, "succeeded"),
                             ("charge_payment", "action", 1, "failed"),
                             ("charge_payment", "compensation", 1, "succeeded"),
                             ("reserve_inventory", "compensation", 1, "succeeded")]
    assert {r.source for r in logged.timeline} == {"logs"}
    assert row(logged, "charge_payment", "action").error == "InjectedBusinessError"

    # Without logs, the store's log is the timeline; the failure the handler never reported
    # (the fault struck before it) comes from what Step Functions recorded in the store.
    stored = look(ids[1][0])
    assert stored.status == "compensated" and stored.next_action.kind == "nothing"
    assert [(r.step, r.phase, r.outcome, r.source) for r in stored.timeline] == [
        ("reserve_inventory", "action", "succeeded", "store"),
        ("charge_payment", "action", "failed", "store"),
        ("charge_payment", "compensation", "succeeded", "store"),
        ("reserve_inventory", "compensation", "succeeded", "store")]
    assert row(stored, "charge_payment", "action").error == "InjectedBusinessError"
    assert any("no log events found" in note for note in stored.notes)


# -- the command ----------------------------------------------------------------------------


def saga_command(cloud: Any, *args: str) -> Result:
    return CliRunner().invoke(app, ["inspect", *args, "--region", cloud.region],
                              env={"SAGA_STACK": None})


def json_of(result: Result) -> Any:
    """The command's JSON document; the in-process handlers may print their own lines around
    it (EMF metrics, logs) to the same stdout."""
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = lines.index("{")
    return json.JSONDecoder().raw_decode("\n".join(lines[start:]))[0]


def test_the_command_prints_json_or_a_screen(order: Any) -> None:
    saga_id = run_order(order, [SHIPMENT_REFUSED])

    shown = json_of(saga_command(order, saga_id, "--stack", ORDER_STACK_NAME, "--json"))
    assert (shown["saga_type"], shown["saga_id"], shown["status"]) == (
        "order_fulfillment", saga_id, "compensated")
    assert [(r["step"], r["phase"], r["outcome"]) for r in shown["timeline"]][2:4] == [
        ("create_shipment", "action", "failed"), ("create_shipment", "compensation", "succeeded")]
    assert shown["next_action"]["kind"] == "nothing" and shown["stuck"] is False

    screen = saga_command(order, "order_fulfillment", saga_id, "--stack", ORDER_STACK_NAME)
    assert screen.exit_code == 0, screen.output
    for text in ("Timeline", "create_shipment", "InjectedBusinessError", "Idempotency records",
                 "Next action", "nothing to do"):
        assert text in screen.stdout

    unknown = saga_command(order, "no-such-saga", "--stack", ORDER_STACK_NAME)
    assert unknown.exit_code == 2
    assert "has no saga no-such-saga" in unknown.stderr
