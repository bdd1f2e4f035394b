"""``saga demo``'s scenarios (order and travel) end as they must and leave the books consistent;
the CLI renders them."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

import pytest
from typer.testing import CliRunner

from demo import scenarios as demo_module
from demo.scenarios import SCENARIOS, DemoReport, run_all
from demo.travel_scenarios import (
    CAR_CLASS,
    GROUP_STEPS,
    INITIAL_CARS,
    TRAVEL_SCENARIOS,
    short_steps,
)
from saga_kit.cli import main as cli_main

TRAVEL_STEPS = [*GROUP_STEPS, "charge_payment", "confirm_itinerary", "notify_traveller"]


@pytest.fixture(scope="module")
def report(cloud: Any, travel_cloud: Any) -> DemoReport:
    # What `saga demo` runs: the travel sagas beside the order sagas.
    return run_all(cloud, travel_cloud, lambda _message: None)


def test_every_scenario_ends_as_expected_and_nothing_leaks(report: DemoReport) -> None:
    assert [r.final_status for r in report.runs] == [s.expected_status for s in SCENARIOS]
    assert report.order_consistent, (report.books, report.expected_books)
    timeout_run = next(r for r in report.runs if "times out" in r.scenario.label)
    assert timeout_run.effects["charge"] is None  # the late charge was refused
    crash_run = next(r for r in report.runs if "crash after effect" in r.scenario.label)
    assert crash_run.effects["shipment"] == "cancelled"
    assert crash_run.outcome.compensations_run == [
        "create_shipment", "charge_payment", "reserve_inventory"]
    parked_run = next(r for r in report.runs if r.scenario.until_fixed)
    assert parked_run.outcome.status == "parked"
    assert parked_run.stored_status == "compensated"
    assert parked_run.afterwards[0] == "parked on the compensation queue"
    assert "DLQ" in parked_run.afterwards[1]
    assert parked_run.effects == {"reserved": 0, "charge": "refunded", "net_charge_cents": 0,
                                  "shipment": None, "confirmed": False}


def test_travel_scenarios_end_as_expected_and_nothing_leaks(report: DemoReport) -> None:
    travel = report.travel
    assert travel is not None
    assert [r.outcome.status for r in travel.runs] == [
        s.expected_status for s in TRAVEL_SCENARIOS], [r.to_dict() for r in travel.runs]
    assert travel.consistent, (travel.books, travel.expected_books)
    happy, hotel_failed, late_car = travel.runs
    # The happy path: the three bookings in one Parallel state, then the three steps after it;
    # the Parallel state, six tasks and SagaSucceeded are the fewest transitions for its shape.
    assert sorted(happy.outcome.steps_run) == sorted(TRAVEL_STEPS)
    assert happy.outcome.state_transitions == 8
    assert happy.effects == {"flight": True, "hotel": True, "car": True, "charge": "charged",
                             "net_charge_cents": 84_900, "itinerary": "confirmed",
                             "notified": True}
    # A branch fails once its siblings took effect: every branch's compensation runs, the
    # flight's and the car's undo their bookings, the sold-out hotel's has nothing to undo.
    assert hotel_failed.outcome.error == "SagaCompensated.book_hotel"
    assert hotel_failed.outcome.cause["error"] == "NoRoomsLeft"
    assert sorted(hotel_failed.outcome.compensations_run) == sorted(GROUP_STEPS)
    assert hotel_failed.undone == ["book_flight", "book_car"], hotel_failed.to_dict()
    # The car worker misses its heartbeat and comes back after the saga stopped waiting: its
    # reply is refused, the action never runs, the barrier holds no booking, the car is back.
    late = late_car.late_reply
    assert late is not None and late.refused, late
    assert late.worker_back_s > late.stopped_waiting_s  # type: ignore[operator]
    assert not late.action_entered
    assert late.action_outcome in (None, "refused")  # dropped unanswered, or the barrier said no
    for run in (hotel_failed, late_car):
        assert run.effects == {"flight": False, "hotel": False, "car": False, "charge": None,
                               "net_charge_cents": 0, "itinerary": None, "notified": False}
    assert travel.books["cars"][CAR_CLASS] == INITIAL_CARS - 1  # the happy trip's car only


def test_travel_steps_are_shortened_with_the_parallel_group_together() -> None:
    assert short_steps(["book_car", "book_flight", "book_hotel", "charge_payment",
                        "confirm_itinerary", "notify_traveller"]) == (
        "{flight ‖ hotel ‖ car} → charge → confirm → notify")
    assert short_steps(["book_hotel", "book_flight"]) == "{flight ‖ hotel}"
    assert short_steps([]) == "-"


def test_cli_prints_json_and_tables(report: DemoReport, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_module, "run_demo", lambda on_progress=None: report)
    runner = CliRunner()
    as_json = runner.invoke(cli_main.app, ["demo", "--json"])
    assert as_json.exit_code == 0, as_json.output
    printed = json.loads(as_json.stdout)
    assert printed["consistent"] is True, printed["travel"]
    assert [r["final_status"] for r in printed["runs"]] == [s.expected_status for s in SCENARIOS]
    assert {"saga_id", "steps_run", "compensations_run", "duration_ms", "effects"} <= set(
        printed["runs"][0])
    assert printed["travel"]["consistent"] is True
    assert [r["status"] for r in printed["travel"]["runs"]] == [
        s.expected_status for s in TRAVEL_SCENARIOS]
    assert printed["travel"]["runs"][2]["late_reply"]["refused"] is True

    as_tables = runner.invoke(cli_main.app, ["demo"])
    assert as_tables.exit_code == 0, as_tables.output
    assert "consistent: every saga ended as expected and nothing leaked" in as_tables.output
    assert "compensated" in as_tables.output
    assert "Travel sagas in the local cloud" in as_tables.output
    assert "late car reply: refused" in as_tables.output
    # The demo quiets the handlers while it runs and gives the process its environment back.
    assert "POWERTOOLS_METRICS_DISABLED" not in os.environ
    assert os.environ.get("POWERTOOLS_LOG_LEVEL") == "WARNING"


def test_cli_exits_non_zero_when_inconsistent(report: DemoReport,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    broken = DemoReport(report.runs, {**report.books, "money_total": -1},
                        report.expected_books, report.seconds)
    monkeypatch.setattr(demo_module, "run_demo", lambda on_progress=None: broken)
    result = CliRunner().invoke(cli_main.app, ["demo"])
    assert result.exit_code == 1
    assert "INCONSISTENT" in result.output


def test_cli_exits_non_zero_when_the_travel_books_are_off(
        report: DemoReport, monkeypatch: pytest.MonkeyPatch) -> None:
    assert report.travel is not None
    travel = replace(report.travel, books={**report.travel.books, "car_rentals": -1})
    monkeypatch.setattr(demo_module, "run_demo", lambda on_progress=None: replace(
        report, travel=travel))
    result = CliRunner().invoke(cli_main.app, ["demo"])
    assert result.exit_code == 1
    assert "INCONSISTENT" in result.output


def test_emulator_warnings_go_to_a_log_and_one_summary_line(
    tmp_path: Any, capfd: pytest.CaptureFixture[str],
) -> None:
    import logging
    import warnings

    from saga_kit.cli.emulator_log import emulator_notes_to_log

    log = tmp_path / "emulator.log"
    with emulator_notes_to_log(log) as notes:
        for kind in ("AWS::CloudWatch::Alarm", "AWS::ApiGateway::Stage", "AWS::CloudWatch::Alarm"):
            logging.getLogger("moto.cloudformation.parsing").warning(
                "No Moto CloudFormation support for %s", kind)
            warnings.warn(f"Tried to parse {kind} but it's not supported", UserWarning,
                          stacklevel=1)
    out, err = capfd.readouterr()
    assert "Moto" not in out + err and "Tried to parse" not in out + err  # the first screen
    assert "No Moto CloudFormation support for AWS::ApiGateway::Stage" in log.read_text()
    assert "Tried to parse AWS::CloudWatch::Alarm" in log.read_text()
    assert notes.summary() == (
        f"local cloud: moto skipped 2 resource types it does not emulate (6 notes in {log}; "
        "saga_kit/local_cloud/README.md says why)")
    # Outside the block moto's logger is back to normal.
    assert logging.getLogger("moto").propagate is True
