"""Stuck-saga detection in the local cloud: the deployed detector, run as its schedule would.

The detector compares how long a saga has gone without progress with its thresholds (the
saga's 15 minutes, the travel car's own 10 s for a reply). Nobody waits 15 minutes: the wall
clock the detector reads is moved forward (``ShiftedWallClock``) for the one invocation.
"""

from __future__ import annotations

import json
from typing import Any

from demo.order_demo import OrderParticipants, order_input
from demo.travel_demo import trip_input
from saga_kit.cli.executions import outcome, start_saga, wait_for_execution
from saga_kit.local_cloud.wall_clock import ShiftedWallClock
from saga_kit.runtime.stuck import where_is
from tests.polling import poll

SKU, CUSTOMER = "sku-stuck", "customer-stuck"


def detect(cloud: Any, logical_id: str, **later: float) -> dict[str, Any]:
    """Runs the saga's deployed detector once, with its clock moved forward by ``later``."""
    function = cloud.physical_id(logical_id)
    mark = len(cloud.metrics.documents())
    clock = ShiftedWallClock()
    clock.advance(**later)
    with clock.installed():
        answer = cloud.client("lambda").invoke(FunctionName=function, Payload=b"{}")
    assert "FunctionError" not in answer, answer["Payload"].read()
    report = json.loads(answer["Payload"].read())
    [emitted] = [d for d in cloud.metrics.documents()[mark:] if "SagasStuck" in d]
    assert emitted["SagasStuck"] == [float(report["stuck"])]  # the count the alarm watches
    return {s["saga_id"]: s for s in report["sagas"]}


def test_a_saga_held_by_a_participant_is_reported_and_a_finished_one_is_not(
    cloud: Any, participants: OrderParticipants,
) -> None:
    participants.seed_stock(10, sku=SKU)
    participants.open_account(CUSTOMER, 1_000_000)
    sfn = cloud.client("stepfunctions")
    machine = cloud.saga_outputs()["StateMachineArn"]
    detect(cloud, "OrderFulfillmentStuckDetectorFunction")  # warm it up
    # The shipping service holds the saga for 1.5 s (within its Lambda's 2 s): it is in flight.
    saga_id, arn = start_saga(sfn, machine, order_input(sku=SKU, customer=CUSTOMER, faults=[
        {"step": "create_shipment", "kind": "timeout", "seconds": 1.5}]))
    poll(lambda: [s for s in where_is(sfn, arn) or [] if s.name == "create_shipment"],
         "in create_shipment")

    stuck = detect(cloud, "OrderFulfillmentStuckDetectorFunction", minutes=16)[saga_id]
    assert (stuck["status"], stuck["step"], stuck["execution_arn"]) == (
        "running", "create_shipment", arn)
    assert stuck["threshold_seconds"] == 900 and stuck["idle_seconds"] > 900
    assert stuck["waiting_for_callback"] is False
    # Nothing is stuck at the saga's own pace: it only waits for the shipping service.
    assert saga_id not in detect(cloud, "OrderFulfillmentStuckDetectorFunction")

    wait_for_execution(sfn, arn, timeout=60)
    assert outcome(sfn, arn).status == "completed"
    assert saga_id not in detect(cloud, "OrderFulfillmentStuckDetectorFunction", minutes=16)


def test_a_callback_step_waiting_past_its_own_threshold_is_reported(
    travel_cloud: Any, travel_participants: Any,
) -> None:
    sfn = travel_cloud.client("stepfunctions")
    machine = travel_cloud.saga_outputs()["StateMachineArn"]
    trip = {"flight": "FL-stuck", "hotel": "hotel-stuck", "car_class": "compact-stuck",
            "traveller": "traveller-stuck"}
    travel_participants.seed_flight(5, flight=trip["flight"])
    travel_participants.seed_hotel(5, hotel=trip["hotel"])
    travel_participants.seed_cars(5, car_class=trip["car_class"])
    travel_participants.open_account(trip["traveller"], 10_000_000)
    # The car rental's worker takes the command and never answers (heartbeats keep it open).
    saga_id, arn = start_saga(sfn, machine, trip_input(**trip, faults=[
        {"step": "book_car", "kind": "no_reply"}]))
    # Only the car left: the flight and hotel are booked (and the saga is in the store).
    poll(lambda: [(s.name, s.callback) for s in where_is(sfn, arn) or []] == [("book_car", True)],
         "waiting for the car's reply alone")

    # A minute later: past the car's own 10 s, far below the saga's 15 minutes.
    stuck = detect(travel_cloud, "TravelBookingStuckDetectorFunction", minutes=1)[saga_id]
    assert (stuck["status"], stuck["step"], stuck["waiting_for_callback"]) == (
        "running", "book_car", True)
    assert stuck["threshold_seconds"] == 10

    wait_for_execution(sfn, arn, timeout=120)  # the trip compensates at the car's timeout
    assert outcome(sfn, arn).status == "compensated"
    assert saga_id not in detect(travel_cloud, "TravelBookingStuckDetectorFunction", minutes=1)


class _History:
    """A Step Functions client that answers one execution history."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def get_execution_history(self, **_: Any) -> dict[str, Any]:
        return {"events": self.events}


def _event(kind: str, second: int, name: str | None = None, **details: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "timestamp": f"2026-01-01T00:00:{second:02d}Z"}
    if kind.endswith("Entered"):
        event["stateEnteredEventDetails"] = {"name": name}
    elif kind.endswith("Exited"):
        event["stateExitedEventDetails"] = {"name": name}
    event.update(details)
    return event


def test_a_stopped_branch_no_longer_waits_once_its_group_ended() -> None:
    # The flight fails while the car waits for its reply; the group ends and compensates. moto
    # writes nothing for the stopped car task: the group's end closes it.
    arn = "arn:aws:states:us-east-1:123456789012:execution:Trips:trip-1"
    history = [
        _event("ParallelStateEntered", 1, "book_trip"),
        _event("TaskStateEntered", 1, "book_flight"),
        _event("TaskStateEntered", 1, "book_car"),
        _event("TaskScheduled", 1, taskScheduledEventDetails={
            "resource": "sendMessage.waitForTaskToken"}),
        _event("TaskStateExited", 2, "book_flight"),
        _event("ParallelStateFailed", 3),
        _event("ParallelStateExited", 3, "book_trip"),
        _event("ParallelStateEntered", 3, "compensate_book_trip"),
        _event("TaskStateEntered", 4, "compensate_book_flight"),
    ]
    [state] = where_is(_History(history), arn) or []
    assert (state.name, state.callback) == ("compensate_book_flight", False)
    # While the group still runs, the car is open and waits for a callback.
    open_states = where_is(_History(history[:4]), arn) or []
    assert [(s.name, s.callback) for s in open_states] == [
        ("book_flight", False), ("book_car", True)]
