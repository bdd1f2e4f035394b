"""``saga demo``'s scenarios end as they must and leave the books consistent; the CLI renders them."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from typer.testing import CliRunner

from demo import scenarios as demo_module
from demo.scenarios import SCENARIOS, DemoReport, run_scenarios
from saga_kit.cli import main as cli_main


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
