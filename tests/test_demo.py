"""``saga demo``'s scenarios end as they must and leave the books consistent; the CLI renders them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import demo as demo_module
from cli import main as cli_main
from cli.demo import SCENARIOS, DemoReport, run_scenarios


@pytest.fixture(scope="module")
def report(cloud: Any) -> DemoReport:
    return run_scenarios(cloud, SCENARIOS, lambda _message: None)


def test_every_scenario_ends_as_expected_and_nothing_leaks(report: DemoReport) -> None:
    assert [r.final_status for r in report.runs] == [s.expected_status for s in SCENARIOS]
    assert report.consistent, (report.books, report.expected_books)
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


def test_cli_prints_json_and_tables(report: DemoReport, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_module, "run_demo", lambda on_progress=None: report)
    # The demo quiets handler logs process-wide; keep this test session's environment as it is.
    monkeypatch.setattr(cli_main, "_quiet_handlers", lambda: None)
    runner = CliRunner()
    as_json = runner.invoke(cli_main.app, ["demo", "--json"])
    assert as_json.exit_code == 0, as_json.output
    printed = json.loads(as_json.stdout)
    assert printed["consistent"] is True
    assert [r["final_status"] for r in printed["runs"]] == [s.expected_status for s in SCENARIOS]
    assert {"saga_id", "steps_run", "compensations_run", "duration_ms", "effects"} <= set(
        printed["runs"][0])

    as_tables = runner.invoke(cli_main.app, ["demo"])
    assert as_tables.exit_code == 0, as_tables.output
    assert "consistent: every saga ended as expected and nothing leaked" in as_tables.output
    assert "compensated" in as_tables.output


def test_cli_exits_non_zero_when_inconsistent(report: DemoReport,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    broken = DemoReport(report.runs, {**report.books, "money_total": -1},
                        report.expected_books, report.seconds)
    monkeypatch.setattr(demo_module, "run_demo", lambda on_progress=None: broken)
    monkeypatch.setattr(cli_main, "_quiet_handlers", lambda: None)
    result = CliRunner().invoke(cli_main.app, ["demo"])
    assert result.exit_code == 1
    assert "INCONSISTENT" in result.output
