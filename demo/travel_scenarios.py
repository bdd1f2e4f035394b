"""``saga demo``'s travel part: the travel saga in the local cloud (a parallel group and a callback
step), on the happy path, with a branch failing and with the car-rental worker answering late.

The three sagas start together and run beside the order sagas, so the late car reply (the worker
misses its 6 s heartbeat) adds little to the demo's wall time. Each saga's status is what Step
Functions decided; what the participants hold, what the compensations undid and what became of
the late reply are read from the participants, the barrier table and the saga store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from demo.travel_demo import (
    AGENCY,
    CAR_CLASS,
    FLIGHT,
    HOTEL,
    TRAVELLER,
    TRIP_PRICE_CENTS,
    TravelParticipants,
    TravelTables,
    trip_input,
)
from saga_kit.cli import SagaOutcome, history, outcome, start_saga, wait_for_execution

SAGA_TYPE = "travel_booking"
INITIAL_SEATS = 50
INITIAL_ROOMS = 50
INITIAL_CARS = 50
INITIAL_BALANCE_CENTS = 10_000_000
#: The steps of the parallel group, in declaration order (each one a branch).
GROUP_STEPS = ("book_flight", "book_hotel", "book_car")
#: Every step with a compensation: the bodies the simulation counts.
COMPENSATABLE_STEPS = (*GROUP_STEPS, "charge_payment", "confirm_itinerary")
#: The callback worker's heartbeat (see stacks/travel_booking.py).
CAR_HEARTBEAT_SECONDS = 6
#: How long the demo waits for a travel saga: the late car reply takes about 7 s.
SAGA_TIMEOUT_SECONDS = 90.0
#: A hotel with no room left; it takes :data:`SOLD_OUT_AFTER_SECONDS` to say so, by when the
#: flight and the car (through its worker) are booked, so their compensations have work to do.
SOLD_OUT_HOTEL = "hotel-full"
SOLD_OUT_AFTER_SECONDS = 2


@dataclass(frozen=True)
class TravelScenario:
    """One travel saga the demo runs: what goes wrong and what the saga must end as."""

    label: str
    expected_status: str
    faults: list[dict[str, Any]] = field(default_factory=list)
    hotel: str = HOTEL
    #: The callback step whose late reply the demo follows after the saga ended.
    late_step: str | None = None


TRAVEL_SCENARIOS: list[TravelScenario] = [
    TravelScenario("happy path: flight, hotel, car in parallel", "completed"),
    # The hotel's own business error (NoRoomsLeft), after a slow answer: a branch fails once
    # its siblings have taken effect.
    TravelScenario(f"book_hotel: sold out (after {SOLD_OUT_AFTER_SECONDS} s), flight and car "
                   "undone", "compensated",
                   [{"step": "book_hotel", "kind": "timeout", "seconds": SOLD_OUT_AFTER_SECONDS}],
                   hotel=SOLD_OUT_HOTEL),
    TravelScenario("book_car: heartbeat missed, late reply refused", "compensated",
                   [{"step": "book_car", "kind": "missed_heartbeat"}], late_step="book_car"),
]


@dataclass
class LateReply:
    """What became of a callback worker's reply that came after the saga stopped waiting.

    Times are seconds after the execution started.
    """

    step: str
    #: When Step Functions closed the step's task (its timeout or heartbeat expired).
    stopped_waiting_s: float | None
    #: When the step's compensation started.
    compensated_s: float | None
    #: When the worker's invocation for this command ended (``None``: not seen).
    worker_back_s: float | None
    #: The step's barrier: marked compensated, and whether any action of the step ever entered.
    barrier_compensated: bool
    action_entered: bool
    #: How the saga store logged the step's action (the runtime logs every step it runs;
    #: ``None``: the action never ran, ``"refused"``: the barrier refused it).
    action_outcome: str | None

    @property
    def refused(self) -> bool:
        """The worker came back after the task closed and nothing of its action took effect."""
        return (self.worker_back_s is not None and self.stopped_waiting_s is not None
                and self.worker_back_s > self.stopped_waiting_s and self.barrier_compensated
                and not self.action_entered)

    def lines(self, cars_left: int) -> list[str]:
        """The story, one line per fact, for the terminal."""
        def at(seconds: float | None) -> str:
            return "?" if seconds is None else f"+{seconds:.1f} s"

        worker = ("the car worker was not seen again" if self.worker_back_s is None else
                  f"the car worker came back at {at(self.worker_back_s)}, after Step Functions "
                  "had closed its task")
        if self.action_outcome is None:
            dropped = ("Step Functions refused it (task closed) and the command was dropped "
                       "unanswered; the car action never ran")
        elif self.action_outcome == "refused":
            dropped = "the barrier refused its car action (LateActionRefused)"
        else:
            dropped = f"its car action ended {self.action_outcome}"
        barrier = ("no booking entered it" if not self.action_entered
                   else "a booking entered it")
        return [
            f"Step Functions stopped waiting for {self.step} at {at(self.stopped_waiting_s)} "
            f"(no heartbeat for {CAR_HEARTBEAT_SECONDS} s) and compensated the trip "
            f"from {at(self.compensated_s)}",
            f"{worker}: {dropped}",
            f"{self.step} barrier: {'compensated' if self.barrier_compensated else 'open'}, "
            f"{barrier}; cars of the class available: {cars_left}",
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {"step": self.step, "stopped_waiting_s": self.stopped_waiting_s,
                "compensated_s": self.compensated_s, "worker_back_s": self.worker_back_s,
                "barrier_compensated": self.barrier_compensated,
                "action_entered": self.action_entered, "action_outcome": self.action_outcome,
                "refused": self.refused}


@dataclass
class TravelRun:
    """One travel scenario's result."""

    scenario: TravelScenario
    outcome: SagaOutcome
    effects: dict[str, Any]
    #: Compensations whose body ran, i.e. that had something to undo (the others found that
    #: their action never took effect).
    undone: list[str] = field(default_factory=list)
    late_reply: LateReply | None = None

    def shortened(self) -> tuple[str, str, str]:
        """Actions run, compensations run and compensations that undid something, for a table
        (see :func:`short_steps`)."""
        return (short_steps(self.outcome.steps_run), short_steps(self.outcome.compensations_run),
                short_steps(self.undone))

    @property
    def as_expected(self) -> bool:
        """Whether the saga ended the way the scenario says, and a late reply was refused."""
        late_ok = self.late_reply is None or self.late_reply.refused
        return self.outcome.status == self.scenario.expected_status and late_ok

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {"scenario": self.scenario.label, "expected_status": self.scenario.expected_status,
                **self.outcome.to_dict(), "undone": self.undone, "effects": self.effects,
                "late_reply": self.late_reply.to_dict() if self.late_reply else None}


@dataclass
class TravelReport:
    """The travel runs plus the travel participants' books, checked like the order ones."""

    runs: list[TravelRun]
    books: dict[str, Any]
    expected_books: dict[str, Any]

    @property
    def consistent(self) -> bool:
        """Every saga ended as expected and the books are what the completed sagas imply."""
        actual = {key: self.books[key] for key in self.expected_books}
        return all(r.as_expected for r in self.runs) and actual == self.expected_books

    def late_reply_lines(self, run: TravelRun) -> list[str]:
        """A run's late reply, one line per fact (none for a run without one)."""
        if run.late_reply is None:
            return []
        return run.late_reply.lines(self.books["cars"].get(CAR_CLASS, 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {"runs": [r.to_dict() for r in self.runs], "books": self.books,
                "expected_books": self.expected_books, "consistent": self.consistent}


@dataclass
class TravelStarted:
    """Travel sagas under way: what :func:`finish_travel` needs to read their results."""

    cloud: Any
    participants: TravelParticipants
    before: dict[str, Any]
    started: list[tuple[TravelScenario, str, str]]


def short_steps(steps: list[str]) -> str:
    """Step names shortened, the parallel group's branches together in declaration order:
    ``{flight ‖ hotel ‖ car} → charge → confirm → notify``."""
    def short(step: str) -> str:
        return step.removeprefix("book_") if step in GROUP_STEPS else step.split("_")[0]

    parts: list[str] = []
    group = [short(step) for step in GROUP_STEPS if step in steps]
    for step in steps:
        if step in GROUP_STEPS:
            if group:
                parts.append(f"{{{' ‖ '.join(group)}}}")
                group = []
        else:
            parts.append(short(step))
    return " → ".join(parts) or "-"


def start_travel(cloud: Any, scenarios: list[TravelScenario]) -> TravelStarted:
    """Seeds the travel participants and starts every scenario's saga at once."""
    sfn = cloud.client("stepfunctions")
    participants = TravelParticipants(cloud.client("dynamodb"),
                                      TravelTables.from_outputs(cloud.outputs))
    participants.seed_flight(INITIAL_SEATS)
    participants.seed_hotel(INITIAL_ROOMS)
    participants.seed_hotel(0, SOLD_OUT_HOTEL)
    participants.seed_cars(INITIAL_CARS)
    participants.open_account(TRAVELLER, INITIAL_BALANCE_CENTS)
    before = participants.books()
    machine = cloud.saga_outputs()["StateMachineArn"]
    started = []
    for scenario in scenarios:
        saga_id, arn = start_saga(sfn, machine, trip_input(faults=scenario.faults,
                                                           hotel=scenario.hotel))
        started.append((scenario, saga_id, arn))
    return TravelStarted(cloud, participants, before, started)


def finish_travel(pending: TravelStarted, notify: Callable[[str], None]) -> TravelReport:
    """Waits for the travel sagas, lets late workers finish and reads what they left.

    The expected books are the books before the run plus what the completed sagas imply, so
    the check holds in a cloud that already ran other sagas.
    """
    cloud, participants = pending.cloud, pending.participants
    sfn = cloud.client("stepfunctions")
    runs = []
    for scenario, _saga_id, arn in pending.started:
        wait_for_execution(sfn, arn, timeout=SAGA_TIMEOUT_SECONDS)
        notify(f"finished: trip, {scenario.label}")
        runs.append(TravelRun(scenario, outcome(sfn, arn), {}))
    # A late worker is still running when its saga ends; the books are read once it is done.
    cloud.wait_lambdas_idle(timeout=SAGA_TIMEOUT_SECONDS)
    for run, (scenario, saga_id, arn) in zip(runs, pending.started, strict=True):
        run.effects = participants.saga_effects(saga_id)
        run.undone = [step for step in COMPENSATABLE_STEPS
                      if participants.runs(saga_id, step, "compensation")]
        if scenario.late_step:
            run.late_reply = _late_reply(cloud, sfn, arn, saga_id, scenario.late_step)
    return TravelReport(runs, participants.books(), _expected_books(pending.before, runs))


def run_travel_scenarios(cloud: Any, scenarios: list[TravelScenario],
                         notify: Callable[[str], None]) -> TravelReport:
    """Seeds the participants, runs the travel scenarios together and reads the books."""
    return finish_travel(start_travel(cloud, scenarios), notify)


def _expected_books(before: dict[str, Any], runs: list[TravelRun]) -> dict[str, Any]:
    completed = sum(1 for r in runs if r.outcome.status == "completed")
    return {
        "seats": {**before["seats"], FLIGHT: INITIAL_SEATS - completed},
        "rooms": {**before["rooms"], HOTEL: INITIAL_ROOMS - completed},
        "cars": {**before["cars"], CAR_CLASS: INITIAL_CARS - completed},
        "flight_bookings": before["flight_bookings"] + completed,
        "hotel_bookings": before["hotel_bookings"] + completed,
        "car_rentals": before["car_rentals"] + completed,
        "money_total": before["money_total"],
        "charges_open": before["charges_open"] + completed,
        "itineraries_confirmed": before["itineraries_confirmed"] + completed,
        "notifications": before["notifications"] + completed,
        "balances": {**before["balances"],
                     TRAVELLER: INITIAL_BALANCE_CENTS - completed * TRIP_PRICE_CENTS,
                     AGENCY: before["balances"].get(AGENCY, 0) + completed * TRIP_PRICE_CENTS},
    }


def _late_reply(cloud: Any, sfn: Any, arn: str, saga_id: str, step: str) -> LateReply:
    """Reads, from Step Functions, the Lambda journal, the barrier and the saga store, what
    became of the worker's reply for ``step`` after the saga stopped waiting for it."""
    start = sfn.describe_execution(executionArn=arn)["startDate"].timestamp()

    def since_start(moment: datetime | float | None) -> float | None:
        if moment is None:
            return None
        seconds = moment.timestamp() if isinstance(moment, datetime) else moment
        return round(seconds - start, 2)

    events = history(sfn, arn)
    timed_out = next((e["timestamp"] for e in events if e["type"] == "TaskTimedOut"), None)
    compensated = next((e["timestamp"] for e in events if e["type"] == "TaskStateEntered"
                        and e["stateEnteredEventDetails"]["name"] == f"compensate_{step}"), None)
    worker = _function_of(cloud, step, "action")
    finished = [i.finished_at for i in cloud.invocations
                if i.function_name == worker and i.started_at >= start]
    outputs = cloud.saga_outputs()
    dynamodb = cloud.client("dynamodb")
    barrier = dynamodb.get_item(
        TableName=outputs["BarrierTableName"], ConsistentRead=True,
        Key={"saga": {"S": f"{SAGA_TYPE}#{saga_id}"}, "step": {"S": step}}).get("Item") or {}
    stored = dynamodb.get_item(
        TableName=outputs["StoreTableName"], ConsistentRead=True,
        Key={"saga_type": {"S": SAGA_TYPE}, "saga_id": {"S": saga_id}}).get("Item") or {}
    logged = [entry["M"]["outcome"]["S"] for entry in stored.get("log", {}).get("L", [])
              if entry["M"]["step"]["S"] == step and entry["M"]["phase"]["S"] == "action"]
    return LateReply(
        step=step,
        stopped_waiting_s=since_start(timed_out),
        compensated_s=since_start(compensated),
        worker_back_s=since_start(max(finished)) if finished else None,
        barrier_compensated="compensated_at" in barrier,
        action_entered="action_started_at" in barrier,
        action_outcome=logged[-1] if logged else None,
    )


def _function_of(cloud: Any, step: str, phase: str) -> str | None:
    """The name of this stack's function for (step, phase)."""
    own = {r.physical_id for r in cloud.resources.values()
           if r.resource_type == "AWS::Lambda::Function"}
    for page in cloud.client("lambda").get_paginator("list_functions").paginate():
        for fn in page["Functions"]:
            env = fn.get("Environment", {}).get("Variables", {})
            if (fn["FunctionName"] in own and env.get("SAGA_STEP") == step
                    and env.get("SAGA_PHASE") == phase):
                return str(fn["FunctionName"])
    return None
