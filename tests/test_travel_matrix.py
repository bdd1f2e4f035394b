"""The travel fault matrix, in the local cloud: every step x every kind of failure, plus the
callback step's own failures, on the participants' real state.

The sagas run together (each with its own saga id and faults: the ones that mostly wait on
wall-time callback timeouts start first, the others flow through a window of ``MAX_BUSY``), then
every cell checks the final status, the failed step the error names, the compensations that ran
(each exactly once: the chain's in reverse order, then the whole group's, whichever branch
failed) and the real effects left in the participants' tables, after any late action has
finished.

Local-cloud specifics (see the moto findings the kit's tests rely on):

* a missed heartbeat ends the task with ``States.Timeout`` in moto (``States.HeartbeatTimeout``
  on AWS): either is accepted;
* moto accepts a reply to a closed task silently instead of answering ``TaskTimedOut``: late
  and duplicate replies are judged by their effects, never by that error code;
* a stopped ``Parallel`` branch may append stray ``Task*`` events after the execution ended:
  the steps and compensations are read from the history up to the execution's end event, and
  checked against :func:`saga_kit.cli.executions.outcome` (no stray ``TaskStateEntered``);
* rarely, a sibling branch that moto's Parallel stops records a ``LambdaFunctionScheduled``
  event whose ``timeoutInSeconds`` is the state input (a race on moto's evaluation stack), and
  ``GetExecutionHistory`` then fails in moto's serializer for that execution. Such a cell is
  checked on everything but the history (status and error from ``DescribeExecution``, effects,
  counters, barriers), then marked xfail with the error.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from demo.travel_demo import AGENCY, TRIP_PRICE_CENTS, TravelParticipants, trip_input
from saga_kit.cli.executions import (
    STATUS_BY_ERROR,
    SagaOutcome,
    history,
    outcome,
    start_saga,
    wait_for_execution,
)
from stacks.travel_booking import TRAVEL_BOOKING

STEPS = [s.name for s in TRAVEL_BOOKING.steps]
PIVOT = TRAVEL_BOOKING.pivot_index
assert PIVOT is not None
GROUP = [s.name for s in TRAVEL_BOOKING.groups[0].steps]
#: The main chain's steps that have a compensation, in declaration order.
CHAIN_COMPENSATED = [s.name for s in TRAVEL_BOOKING.steps
                     if s.compensation and s.name not in GROUP]
CALLBACK_STEP = "book_car"
KINDS = ["business_error", "transient_recovers", "transient_exhausts", "timeout",
         "crash_after_effect"]
#: The callback step's own failures (its failure reply is the business_error cell above).
CALLBACK_KINDS = ["no_reply", "missed_heartbeat", "late_reply", "duplicate_reply",
                  "duplicate_delivery"]
#: The kinds whose action outlives its task: it must land after its compensation, refused.
LATE_KINDS = ("timeout", "missed_heartbeat", "late_reply", "no_reply")
#: Every timeout a missed heartbeat can end in: moto says States.Timeout, AWS
#: States.HeartbeatTimeout.
HEARTBEAT_ERRORS = {"States.Timeout", "States.HeartbeatTimeout"}

#: The cells whose sagas mostly wait on wall-time callback timeouts: started first, outside the
#: window below.
SLEEPERS = {(CALLBACK_STEP, kind) for kind in ("no_reply", "late_reply", "missed_heartbeat",
                                               "timeout")}
#: How many of the other sagas run at once. Callback waits are wall time in the local cloud (no
#: handler-time dilation): with every saga at once on a busy two-core machine, a worker could
#: take longer than book_car's 6 s heartbeat to answer, and a cell would compensate for that.
MAX_BUSY = 12
#: Sagas whose car worker answers twice (the matrix cell and more of the same).
DUPLICATE_REPLIES = 4

SEATS = ROOMS = CARS = 1000
BALANCE = 100_000_000
FLIGHT = "FL-matrix"
HOTEL = "hotel-matrix"
CAR_CLASS = "compact-matrix"
TRAVELLER = "traveller-matrix"

BOOKED = {"flight": True, "hotel": True, "car": True, "charge": "charged",
          "net_charge_cents": TRIP_PRICE_CENTS, "itinerary": "confirmed", "notified": True}


@dataclass
class Cell:
    step: str
    kind: str
    #: Extra fault rules (the sibling cell's slow flight).
    extra_faults: list[dict[str, Any]] = field(default_factory=list)
    saga_id: str = ""
    execution_arn: str = ""
    outcome: SagaOutcome | None = None
    #: TaskStateEntered names up to the execution's end event (actions, compensations), and
    #: the types of the events after it.
    steps_run: list[str] = field(default_factory=list)
    compensations_run: list[str] = field(default_factory=list)
    events_after_end: list[str] = field(default_factory=list)
    effects: dict[str, Any] = field(default_factory=dict)
    #: Compensation body runs (fault_injection.count_run) and barrier items, by step.
    runs: dict[str, int] = field(default_factory=dict)
    barriers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: LateActionRefused invocations of each step's action for this saga.
    late_refusals: dict[str, int] = field(default_factory=dict)
    #: Seconds between entering and leaving the book_car task (diagnostics for load flakes).
    car_wait: float | None = None
    #: What the saga recorded as book_car's result (the execution's output, if it succeeded).
    car_result: Any = None
    #: Why the execution's history could not be read (moto's serializer race), if it could not.
    history_error: str | None = None

    @property
    def index(self) -> int:
        return STEPS.index(self.step)

    @property
    def forward_only(self) -> bool:
        """Past the pivot: retried, never compensated."""
        return self.index > PIVOT

    def faults(self) -> list[dict[str, Any]]:
        rule: dict[str, Any] = {"step": self.step}
        if self.kind == "transient_recovers":
            rule.update(kind="transient_error", times=1)
        elif self.kind == "transient_exhausts":
            rule.update(kind="transient_error")
        else:
            rule["kind"] = self.kind
            if self.forward_only and self.kind in ("timeout", "crash_after_effect"):
                rule["times"] = 1  # forward steps retry every error; the next attempt succeeds
            if self.step == CALLBACK_STEP and self.kind == "timeout":
                # The silent worker sleeps past the task timeout (20 s + 3 s), which outlives its
                # own Lambda timeout (18 s): SQS delivers the command again, and without this
                # each delivery would sleep 23 s more until the command reached the DLQ.
                rule["times"] = 1
        return [rule, *self.extra_faults]

    def expected_status(self) -> str:
        if self.kind in ("transient_recovers", "duplicate_reply", "duplicate_delivery"):
            return "completed"
        if self.forward_only:
            return "failed" if self.kind in ("business_error", "transient_exhausts") else "completed"
        return "compensated"

    def expected_errors(self) -> set[str]:
        """The error the failure record names for a compensated cell."""
        if self.kind == "business_error":
            return {"InjectedBusinessError"}
        if self.kind == "transient_exhausts":
            return {"TransientStepError"}
        if self.kind == "crash_after_effect":
            return {"InjectedCrash"}
        if self.kind in ("no_reply", "late_reply"):
            return {"States.Timeout"}  # the task's TimeoutSeconds: the worker heartbeats
        if self.kind == "missed_heartbeat" or (self.kind == "timeout" and self.step == CALLBACK_STEP):
            return HEARTBEAT_ERRORS  # the silent worker misses its 6 s heartbeat first
        assert self.kind == "timeout", self.kind
        return {"States.Timeout"}


def _cells() -> list[Cell]:
    cells = [Cell(step, kind) for step in STEPS for kind in KINDS]
    cells += [Cell(CALLBACK_STEP, kind) for kind in CALLBACK_KINDS]
    return cells


def _ids(cells: list[Cell]) -> list[str]:
    return [f"{c.step}-{c.kind}" for c in cells]


def _barrier(cloud: Any, saga_id: str, step: str) -> dict[str, Any]:
    item: dict[str, Any] = cloud.client("dynamodb").get_item(
        TableName=cloud.saga_outputs()["BarrierTableName"], ConsistentRead=True,
        Key={"saga": {"S": f"travel_booking#{saga_id}"}, "step": {"S": step}}).get("Item", {})
    return item


def _action_functions(cloud: Any) -> dict[str, str]:
    """The travel stack's action function names by step (only this stack's: the order stack
    in the same moto has steps of the same names)."""
    own = {r.physical_id for r in cloud.resources.values()
           if r.resource_type == "AWS::Lambda::Function"}
    functions = {}
    for page in cloud.client("lambda").get_paginator("list_functions").paginate():
        for fn in page["Functions"]:
            env = fn.get("Environment", {}).get("Variables", {})
            if env.get("SAGA_PHASE") == "action" and fn["FunctionName"] in own:
                functions[env["SAGA_STEP"]] = fn["FunctionName"]
    assert set(functions) == set(STEPS)
    return functions


def _read_history(sfn: Any, cell: Cell) -> None:
    """The task states the execution entered up to its end event, and what came after it."""
    ended = False
    car_entered = None
    for event in history(sfn, cell.execution_arn):
        details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
        if details is not None and details["name"] == CALLBACK_STEP:
            if event["type"] == "TaskStateEntered":
                car_entered = event["timestamp"]
            elif car_entered is not None and cell.car_wait is None:
                cell.car_wait = round((event["timestamp"] - car_entered).total_seconds(), 2)
        if ended:
            cell.events_after_end.append(event["type"])
            continue
        if event["type"] in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted",
                             "ExecutionTimedOut"):
            ended = True
        elif event["type"] == "TaskStateEntered":
            name = event["stateEnteredEventDetails"]["name"]
            if name.startswith("compensate_"):
                cell.compensations_run.append(name.removeprefix("compensate_"))
            else:
                cell.steps_run.append(name)


def _described_outcome(sfn: Any, cell: Cell) -> SagaOutcome:
    """The outcome without the history: status, error and cause from ``DescribeExecution``."""
    described = sfn.describe_execution(executionArn=cell.execution_arn)
    result = SagaOutcome(saga_id=cell.saga_id, execution_arn=cell.execution_arn,
                         status={"SUCCEEDED": "completed", "RUNNING": "running"}.get(
                             described["status"], "failed"))
    if described["status"] == "FAILED":
        result.error = described.get("error")
        result.status = STATUS_BY_ERROR.get((result.error or "").split(".", 1)[0], "failed")
        result.cause = json.loads(described["cause"]) if described.get("cause") else None
    return result


def _read_outcome(sfn: Any, cell: Cell) -> None:
    try:
        cell.outcome = outcome(sfn, cell.execution_arn)
        _read_history(sfn, cell)
    except TypeError as error:  # moto could not serialize an event of this history
        cell.history_error = f"{type(error).__name__}: {error}"
        cell.steps_run, cell.compensations_run, cell.events_after_end = [], [], []
        cell.outcome = _described_outcome(sfn, cell)


def _trip(faults: list[dict[str, Any]]) -> dict[str, Any]:
    return trip_input(faults=faults, flight=FLIGHT, hotel=HOTEL, car_class=CAR_CLASS,
                      traveller=TRAVELLER)


@dataclass
class Matrix:
    cells: dict[tuple[str, str], Cell]
    before: dict[str, Any]
    after: dict[str, Any]


@pytest.fixture(scope="module")
def matrix(travel_cloud: Any, travel_participants: TravelParticipants) -> Matrix:
    cloud, participants = travel_cloud, travel_participants
    sfn = cloud.client("stepfunctions")
    machine = cloud.saga_outputs()["StateMachineArn"]
    participants.seed_flight(SEATS, flight=FLIGHT)
    participants.seed_hotel(ROOMS, hotel=HOTEL)
    participants.seed_cars(CARS, car_class=CAR_CLASS)
    participants.open_account(TRAVELLER, BALANCE)
    # One trip through every handler first: imports and first clients are paid here, not
    # inside the matrix's task timeouts.
    _, warm_up = start_saga(sfn, machine, _trip([]))
    assert wait_for_execution(sfn, warm_up, timeout=60)["status"] == "SUCCEEDED"
    cloud.wait_lambdas_idle(timeout=30)

    before = participants.books()
    journal_start = len(cloud.invocations)
    cells = {(c.step, c.kind): c for c in _cells()}
    cells[("none", "happy")] = Cell("notify_traveller", "happy")
    # More duplicate replies: whether the saga keeps the first answer is a race in moto.
    for n in range(1, DUPLICATE_REPLIES):
        cells[("duplicate_reply", str(n))] = Cell(CALLBACK_STEP, "duplicate_reply")
    # A sibling's slow action: the hotel says no at once, the flight outlives its task.
    cells[("sibling", "late_flight")] = Cell(
        "book_hotel", "business_error",
        extra_faults=[{"step": "book_flight", "kind": "timeout"}])
    running: list[Cell] = []
    for key in sorted(cells, key=lambda k: k not in SLEEPERS):  # the sleepers first
        cell = cells[key]
        while key not in SLEEPERS and len(running) >= MAX_BUSY:
            running = [c for c in running if sfn.describe_execution(
                executionArn=c.execution_arn)["status"] == "RUNNING"]
            if len(running) >= MAX_BUSY:
                time.sleep(0.05)
        faults = [] if key == ("none", "happy") else cell.faults()
        cell.saga_id, cell.execution_arn = start_saga(sfn, machine, _trip(faults))
        if key not in SLEEPERS:
            running.append(cell)
    for cell in cells.values():
        wait_for_execution(sfn, cell.execution_arn, timeout=120)
    # Timed-out actions and late workers are still running: let them finish first.
    cloud.wait_lambdas_idle(timeout=90)

    functions = _action_functions(cloud)
    journal = cloud.invocations[journal_start:]
    for cell in cells.values():
        _read_outcome(sfn, cell)
        output = json.loads(sfn.describe_execution(executionArn=cell.execution_arn)
                            .get("output") or "{}")
        cell.car_result = (output.get("results") or {}).get(CALLBACK_STEP)
        cell.effects = participants.saga_effects(cell.saga_id)
        for step in STEPS:
            cell.runs[step] = participants.runs(cell.saga_id, step, "compensation")
            cell.barriers[step] = _barrier(cloud, cell.saga_id, step)
            cell.late_refusals[step] = sum(
                1 for r in journal
                if r.function_name == functions[step] and r.error_type == "LateActionRefused"
                and cell.saga_id in (r.error_message or ""))
    return Matrix(cells, before, participants.books())


def _history_read(cell: Cell) -> bool:
    """Whether the history could be read; if so, the CLI's reading of it agrees with the
    history up to the execution's end (no stray task state entered after it)."""
    if cell.history_error is not None:
        return False
    result = cell.outcome
    assert result is not None
    assert "TaskStateEntered" not in cell.events_after_end, cell.events_after_end
    assert result.steps_run == cell.steps_run
    assert result.compensations_run == cell.compensations_run
    return True


def _xfail_if_history_unreadable(cell: Cell) -> None:
    """Everything else was checked; the history could not be (moto, see the module doc)."""
    if cell.history_error is not None:
        pytest.xfail(f"moto could not serialize the history of {cell.execution_arn}: "
                     f"{cell.history_error}")


def test_happy_path_completes_every_step(matrix: Matrix) -> None:
    happy = matrix.cells[("none", "happy")]
    assert happy.outcome is not None
    assert happy.outcome.status == "completed"
    _check_completed(happy)
    _xfail_if_history_unreadable(happy)


def _check_completed(cell: Cell) -> None:
    if _history_read(cell):
        assert Counter(cell.steps_run[:len(GROUP)]) == Counter(GROUP)
        assert cell.steps_run[len(GROUP):] == STEPS[len(GROUP):]
        assert cell.compensations_run == []
    assert cell.effects == BOOKED
    assert all(n == 0 for n in cell.runs.values()), cell.runs
    for step in GROUP + CHAIN_COMPENSATED:
        # Each effect once, however often the command or its reply was repeated.
        assert cell.barriers[step].get("action_attempts", {}).get("N") == "1", (step, cell.barriers)
        assert "compensated_at" not in cell.barriers[step]


def _check_failed(cell: Cell) -> None:
    """Past the pivot: forward only, nothing undone."""
    result = cell.outcome
    assert result is not None
    assert result.error == f"ForwardRecoveryFailed.{cell.step}"
    assert result.cause["step"] == cell.step
    if _history_read(cell):
        assert Counter(cell.steps_run[:len(GROUP)]) == Counter(GROUP)
        assert cell.steps_run[len(GROUP):] == STEPS[len(GROUP):]
        assert cell.compensations_run == []
    assert cell.effects == {**BOOKED, "notified": False}
    assert all(n == 0 for n in cell.runs.values()), cell.runs


def _check_compensated(cell: Cell) -> None:
    result = cell.outcome
    assert result is not None
    step = cell.step
    assert result.error == f"SagaCompensated.{step}"
    assert result.cause["step"] == step
    assert result.cause["error"] in cell.expected_errors(), result.cause

    chain_undone = ([] if step in GROUP else
                    [s for s in reversed(STEPS[len(GROUP):cell.index + 1])
                     if s in CHAIN_COMPENSATED])
    if _history_read(cell):
        # The actions entered: for a failure inside the group, the group's branches (each
        # once: a stopped sibling may not have entered yet); else the whole group, then the
        # chain up to the failed step.
        if step in GROUP:
            assert step in cell.steps_run
            assert len(cell.steps_run) == len(set(cell.steps_run))
            assert set(cell.steps_run) <= set(GROUP), cell.steps_run
        else:
            assert Counter(cell.steps_run[:len(GROUP)]) == Counter(GROUP)
            assert cell.steps_run[len(GROUP):] == STEPS[len(GROUP):cell.index + 1]
        # The chain's compensations, nearest first, then every group step's, once each (in
        # parallel: any order), whichever branch failed.
        assert cell.compensations_run[:len(chain_undone)] == chain_undone
        assert Counter(cell.compensations_run[len(chain_undone):]) == Counter(GROUP)

    # Every compensated step's barrier is closed, and its compensation's body ran exactly once
    # if its action took effect, never otherwise (nothing to undo).
    for undone in [*chain_undone, *GROUP]:
        barrier = cell.barriers[undone]
        assert "compensated_at" in barrier, (undone, barrier)
        took_effect = "action_started_at" in barrier
        assert cell.runs[undone] == int(took_effect), (undone, cell.runs, barrier)
    # The steps before the failed one in the chain all took effect, so all were undone.
    if step not in GROUP:
        for undone in [*GROUP, *chain_undone[1:]]:
            assert cell.runs[undone] == 1, (undone, cell.runs)

    # Nothing left booked, charged or confirmed.
    assert cell.effects["flight"] is False
    assert cell.effects["hotel"] is False
    assert cell.effects["car"] is False
    assert cell.effects["net_charge_cents"] == 0
    assert cell.effects["charge"] in (None, "refunded")
    assert cell.effects["itinerary"] in (None, "cancelled")
    assert cell.effects["notified"] is False
    if step in GROUP or (step == "charge_payment" and cell.kind != "crash_after_effect"):
        assert cell.effects["charge"] is None
    if step == "confirm_itinerary":
        assert cell.effects["charge"] == "refunded"

    barrier = cell.barriers[step]
    if cell.kind == "crash_after_effect":
        # The effect did happen (the barrier recorded it with the effect) and was undone.
        assert "action_started_at" in barrier
        assert cell.runs[step] == 1
        if step == "charge_payment":
            assert cell.effects["charge"] == "refunded"
        if step == "confirm_itinerary":
            assert cell.effects["itinerary"] == "cancelled"
    elif cell.kind in ("business_error", "transient_exhausts") or cell.kind in LATE_KINDS:
        # Refused at the entry, or too late: the failed step never took effect.
        assert "action_started_at" not in barrier, barrier
        assert cell.runs[step] == 0
    if cell.kind in LATE_KINDS and step != CALLBACK_STEP:
        # The slow action ran after its compensation and was refused: no effect at all.
        assert cell.late_refusals[step] == 1, cell.late_refusals


@pytest.mark.parametrize(("step", "kind"), [(c.step, c.kind) for c in _cells()],
                         ids=_ids(_cells()))
def test_fault_cell(matrix: Matrix, step: str, kind: str) -> None:
    cell = matrix.cells[(step, kind)]
    result = cell.outcome
    assert result is not None
    assert result.status == cell.expected_status(), (result.error, result.cause, cell.car_wait)
    if result.status == "completed":
        _check_completed(cell)
    elif result.status == "failed":
        _check_failed(cell)
    else:
        _check_compensated(cell)
    _xfail_if_history_unreadable(cell)


def test_sibling_action_lands_after_its_compensation(matrix: Matrix) -> None:
    """The hotel says no at once; the flight's action outlives its task (and, by construction,
    waits for its compensation): the group's compensation finds nothing to undo for the flight,
    and the late action is refused by the barrier, so the seat stays on sale."""
    cell = matrix.cells[("sibling", "late_flight")]
    assert cell.outcome is not None
    assert cell.outcome.status == "compensated"
    _check_compensated(cell)
    flight = cell.barriers["book_flight"]
    assert "compensated_at" in flight
    assert "action_started_at" not in flight
    assert cell.runs["book_flight"] == 0
    assert cell.late_refusals["book_flight"] == 1
    assert cell.effects["flight"] is False
    _xfail_if_history_unreadable(cell)


def _duplicate_replies(matrix: Matrix) -> list[Cell]:
    return [matrix.cells[(CALLBACK_STEP, "duplicate_reply")],
            *(matrix.cells[("duplicate_reply", str(n))] for n in range(1, DUPLICATE_REPLIES))]


def test_duplicate_replies_complete_with_one_effect(matrix: Matrix) -> None:
    for cell in _duplicate_replies(matrix):
        assert cell.outcome is not None
        assert cell.outcome.status == "completed", (cell.outcome.error, cell.car_wait)
        _check_completed(cell)
    for cell in _duplicate_replies(matrix):
        _xfail_if_history_unreadable(cell)


def test_duplicate_reply_keeps_the_first_answer(matrix: Matrix) -> None:
    """What the saga records for book_car is the worker's answer, not the duplicate's ``{}``
    (the local cloud refuses a reply to an answered task, as Step Functions does)."""
    results = [cell.car_result for cell in _duplicate_replies(matrix)]
    assert all(result == {"rental_id": cell.saga_id, "car_class": CAR_CLASS}
               for cell, result in zip(_duplicate_replies(matrix), results, strict=True)), results


def test_books_balance_after_the_whole_matrix(matrix: Matrix) -> None:
    before, after = matrix.before, matrix.after
    outcomes = [c.outcome for c in matrix.cells.values()]
    assert all(o is not None for o in outcomes)
    forward = [o for o in outcomes if o is not None and o.status in ("completed", "failed")]
    completed = [o for o in forward if o.status == "completed"]
    expected = [c for c in matrix.cells.values() if c.expected_status() != "compensated"]
    assert len(forward) == len(expected)
    # Only the sagas that went past the pivot keep their seat, room and car.
    assert after["seats"][FLIGHT] == before["seats"][FLIGHT] - len(forward)
    assert after["rooms"][HOTEL] == before["rooms"][HOTEL] - len(forward)
    assert after["cars"][CAR_CLASS] == before["cars"][CAR_CLASS] - len(forward)
    for held in ("flight_bookings", "hotel_bookings", "car_rentals", "charges_open",
                 "itineraries_confirmed"):
        assert after[held] - before[held] == len(forward), held
    assert after["notifications"] - before["notifications"] == len(completed)
    charged = TRIP_PRICE_CENTS * len(forward)
    assert after["balances"][TRAVELLER] == before["balances"][TRAVELLER] - charged
    assert after["balances"][AGENCY] - before["balances"].get(AGENCY, 0) == charged
    # Money is only ever moved, never created or lost.
    assert after["money_total"] == before["money_total"]




