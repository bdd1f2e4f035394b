"""``saga demo``: the order saga in the local cloud, on the happy path and failing at each step,
then the travel saga (``demo/travel_scenarios.py``), whose sagas run beside the order ones.

Everything runs from the synthesized template deployed into moto, with the real handlers, so what
the demo shows is what the state machine and the participants really did.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.order_demo import (
    CUSTOMER,
    MERCHANT,
    PRICE_CENTS,
    SKU,
    OrderParticipants,
    OrderTables,
    order_input,
)
from demo.travel_scenarios import (
    TRAVEL_SCENARIOS,
    TravelReport,
    TravelScenario,
    finish_travel,
    start_travel,
)
from saga_kit.cli import (
    SagaOutcome,
    list_parked,
    outcome,
    redrive,
    start_saga,
    stored_status,
    wait_for_execution,
)

INITIAL_STOCK = 100
INITIAL_BALANCE_CENTS = 1_000_000
BROKE_CUSTOMER = "customer-broke"


@dataclass(frozen=True)
class Scenario:
    """One saga the demo runs: what goes wrong and what the saga must end as."""

    label: str
    expected_status: str
    faults: list[dict[str, Any]] = field(default_factory=list)
    customer: str = CUSTOMER
    #: Fault rules put in the fault table until an operator "fixes the cause" and redrives.
    until_fixed: list[dict[str, Any]] = field(default_factory=list)


SCENARIOS: list[Scenario] = [
    Scenario("happy path", "completed"),
    Scenario("reserve_inventory: business error", "compensated",
             [{"step": "reserve_inventory", "kind": "business_error"}]),
    Scenario("charge_payment: card declined (no funds)", "compensated", customer=BROKE_CUSTOMER),
    Scenario("charge_payment: times out, late charge refused", "compensated",
             [{"step": "charge_payment", "kind": "timeout"}]),
    Scenario("create_shipment (pivot): crash after effect", "compensated",
             [{"step": "create_shipment", "kind": "crash_after_effect"}]),
    Scenario("send_confirmation: transient error x2, retried", "completed",
             [{"step": "send_confirmation", "kind": "transient_error", "times": 2}]),
    Scenario("refund keeps failing: parked, DLQ, fixed, redriven", "compensated",
             [{"step": "create_shipment", "kind": "business_error"}],
             until_fixed=[{"step": "charge_payment", "phase": "compensation",
                           "kind": "transient_error"}]),
]


@dataclass
class DemoRun:
    """One scenario's result: the execution's outcome and what it left in the participants."""

    scenario: Scenario
    outcome: SagaOutcome
    effects: dict[str, Any]
    #: For a parked saga: what happened after the execution ended, in order.
    afterwards: list[str] = field(default_factory=list)
    #: The saga store's status once everything settled (``None``: never written).
    stored_status: str | None = None

    @property
    def final_status(self) -> str:
        """The execution's status, or the store's for a saga finished by the redrive Lambda."""
        if self.outcome.status == "parked" and self.stored_status:
            return self.stored_status
        return self.outcome.status

    @property
    def as_expected(self) -> bool:
        """Whether the saga ended the way the scenario says it must."""
        return self.final_status == self.scenario.expected_status

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {"scenario": self.scenario.label, "expected_status": self.scenario.expected_status,
                **self.outcome.to_dict(), "final_status": self.final_status,
                "afterwards": self.afterwards, "effects": self.effects}


@dataclass
class DemoReport:
    """All runs plus the participants' books, checked against what the outcomes imply.

    ``runs``, ``books`` and ``expected_books`` are the order saga's; ``travel`` is the travel
    saga's part (``None`` when only the order scenarios ran).
    """

    runs: list[DemoRun]
    books: dict[str, Any]
    expected_books: dict[str, Any]
    seconds: float
    travel: TravelReport | None = None

    @property
    def order_consistent(self) -> bool:
        """Every order saga ended as expected and the order books are what the completed imply."""
        actual = {key: self.books[key] for key in self.expected_books}
        return all(r.as_expected for r in self.runs) and actual == self.expected_books

    @property
    def consistent(self) -> bool:
        """Every saga (order and travel) ended as expected and nothing leaked anywhere."""
        return self.order_consistent and (self.travel is None or self.travel.consistent)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json``."""
        return {"runs": [r.to_dict() for r in self.runs], "books": self.books,
                "expected_books": self.expected_books,
                "travel": self.travel.to_dict() if self.travel else None,
                "consistent": self.consistent, "seconds": round(self.seconds, 2)}


def synthesize(outdir: Path) -> Path:
    """Synthesizes the kit's CDK app (cdk-nag included) into ``outdir``."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from stacks.app_factory import build_app

    build_app(outdir).synth()
    return outdir


def run_demo(on_progress: Callable[[str], None] | None = None) -> DemoReport:
    """Synthesizes the app, deploys both stacks into the local cloud and runs every scenario."""
    from saga_kit.local_cloud import LocalCloud
    from stacks.app_factory import ORDER_STACK_NAME, TRAVEL_STACK_NAME

    notify = on_progress or (lambda _message: None)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="saga-demo-") as workdir:
        notify("synthesizing the CDK app")
        assembly = synthesize(Path(workdir) / "cdk.out")
        notify("deploying the templates into the local cloud")
        with LocalCloud(assembly, ORDER_STACK_NAME) as cloud, \
                LocalCloud(assembly, TRAVEL_STACK_NAME) as travel_cloud:
            report = run_all(cloud, travel_cloud, notify)
    report.seconds = time.perf_counter() - started
    return report


def run_all(order_cloud: Any, travel_cloud: Any, notify: Callable[[str], None],
            scenarios: list[Scenario] | None = None,
            travel_scenarios: list[TravelScenario] | None = None) -> DemoReport:
    """The order scenarios and the travel scenarios, the travel sagas started first.

    The late car reply waits out the car worker's heartbeat (6 s) and the order scenarios wait
    out a task timeout and a redrive: running them side by side costs the wall time of the
    longer one, not of both.
    """
    pending = start_travel(travel_cloud, TRAVEL_SCENARIOS if travel_scenarios is None
                           else travel_scenarios)
    report = run_scenarios(order_cloud, SCENARIOS if scenarios is None else scenarios, notify)
    report.travel = finish_travel(pending, notify)
    return report


def _operate_parked(cloud: Any, participants: OrderParticipants, runs: list[DemoRun],
                    started: list[tuple[Scenario, str, str]],
                    notify: Callable[[str], None]) -> None:
    """What an operator does with a parked saga: let the queue try, fix the cause, redrive."""
    parked = [(run, saga_id) for run, (_, saga_id, _) in zip(runs, started, strict=True)
              if run.outcome.status == "parked"]
    if not parked:
        return
    sqs = cloud.client("sqs")
    notify("redrive Lambda: retrying parked compensations")
    cloud.pump_event_sources()  # the cause is not fixed: the message ends in the DLQ
    in_dlq = {p.saga_id for p in list_parked(sqs, cloud.saga_outputs()["CompensationDeadLetterQueueUrl"])}
    for run, saga_id in parked:
        run.afterwards.append("parked on the compensation queue")
        if saga_id in in_dlq:
            run.afterwards.append("redrive Lambda failed it 3 times → DLQ (alarm)")
        participants.set_fault_rules(saga_id, None)
        run.afterwards.append("operator fixed the cause")
    notify("operator: Start DLQ redrive")
    task = redrive(sqs, cloud.saga_outputs()["CompensationDeadLetterQueueArn"])
    cloud.pump_event_sources()
    for run, _saga_id in parked:
        run.afterwards.append(f"DLQ redrive moved {task.get('ApproximateNumberOfMessagesMoved')}"
                              " → redrive Lambda finished the compensations")


def run_scenarios(cloud: Any, scenarios: list[Scenario],
                  notify: Callable[[str], None]) -> DemoReport:
    """Seeds the participants, runs the scenarios concurrently and reads the books.

    The expected books are the books before the run plus what the completed sagas imply, so
    the check holds in a cloud that already ran other sagas.
    """
    sfn, dynamodb = cloud.client("stepfunctions"), cloud.client("dynamodb")
    participants = OrderParticipants(dynamodb, OrderTables.from_outputs(cloud.outputs))
    participants.seed_stock(INITIAL_STOCK)
    participants.open_account(CUSTOMER, INITIAL_BALANCE_CENTS)
    participants.open_account(BROKE_CUSTOMER, 0)
    before = participants.books()
    machine = cloud.saga_outputs()["StateMachineArn"]

    started: list[tuple[Scenario, str, str]] = []
    for scenario in scenarios:
        body = order_input(faults=scenario.faults, customer=scenario.customer)
        if scenario.until_fixed:
            body["fault_table"] = True
            participants.set_fault_rules(body["saga_id"], scenario.until_fixed)
        saga_id, arn = start_saga(sfn, machine, body)
        started.append((scenario, saga_id, arn))
    runs = []
    for scenario, _saga_id, arn in started:
        wait_for_execution(sfn, arn)
        notify(f"finished: {scenario.label}")
        runs.append(DemoRun(scenario, outcome(sfn, arn), {}))
    # A timed-out action may still be running; the books are read once it has finished.
    cloud.wait_lambdas_idle()
    _operate_parked(cloud, participants, runs, started, notify)
    for run, (_, saga_id, _) in zip(runs, started, strict=True):
        run.effects = participants.saga_effects(saga_id)
        run.stored_status = stored_status(dynamodb, cloud.saga_outputs()["StoreTableName"],
                                          "order_fulfillment", saga_id)
    completed = sum(1 for r in runs if r.final_status == "completed")
    merchant_before = before["balances"].get(MERCHANT, 0)
    expected = {
        "stock": {**before["stock"], SKU: INITIAL_STOCK - completed},
        "reserved_units": before["reserved_units"] + completed,
        "money_total": before["money_total"],
        "charges_open": before["charges_open"] + completed,
        "shipments_created": before["shipments_created"] + completed,
        "confirmations": before["confirmations"] + completed,
        "balances": {**before["balances"],
                     CUSTOMER: INITIAL_BALANCE_CENTS - completed * PRICE_CENTS,
                     BROKE_CUSTOMER: 0, MERCHANT: merchant_before + completed * PRICE_CENTS},
    }
    return DemoReport(runs, participants.books(), expected, 0.0)
