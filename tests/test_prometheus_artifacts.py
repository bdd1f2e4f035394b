"""The Prometheus artifacts of the reference app, checked with the real Prometheus tools.

Generated from the suite's synthesized assembly (the reference app's two stacks and the suite's
own), then: ``promtool check rules`` and ``promtool test rules`` on the alert rules; the exporter
configuration covers every saga; every series the rules and the dashboard read is one the
exporter exports, named as its source code names it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from saga_kit.contract import SAGA_TAG, Metric
from saga_kit.prometheus import (
    ALERT_NAMES,
    CONFIG_FILE,
    DASHBOARD_FILE,
    PANEL_TITLES,
    RULES_FILE,
    TEST_FILE,
    MonitoredSaga,
    dimension_label,
    exported_series,
    job_label,
    sagas_from_assembly,
    series_name,
    tag_label,
    write_artifacts,
)
from saga_kit.prometheus.exporter import KIT_METRICS
from stacks.app_factory import ORDER_STACK_NAME, TRAVEL_STACK_NAME

#: Series the exporter exports whatever its rules: tag-select info and its own scrape error.
EXPORTER_OWN = {"aws_resource_info", "cloudwatch_exporter_scrape_error"}
#: The keys CloudWatchCollector.loadConfig reads: globally, per metric, under aws_tag_select.
EXPORTER_KEYS = {"region", "role_arn", "period_seconds", "range_seconds", "delay_seconds",
                 "set_timestamp", "use_get_metric_data", "list_metrics_cache_ttl",
                 "warn_on_empty_list_dimensions", "metrics"}
RULE_KEYS = {"aws_namespace", "aws_metric_name", "help", "aws_dimensions",
             "aws_dimension_select", "aws_dimension_select_regex", "aws_statistics",
             "aws_extended_statistics", "period_seconds", "range_seconds", "delay_seconds",
             "set_timestamp", "use_get_metric_data", "warn_on_empty_list_dimensions",
             "aws_tag_select", "list_metrics_cache_ttl"}
TAG_SELECT_KEYS = {"resource_type_selection", "resource_id_dimension", "tag_selections",
                   "arn_resource_id_regexp"}
STATISTICS = {"Sum", "SampleCount", "Minimum", "Maximum", "Average"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run make test, which installs Debian's "
                    "prometheus package, or install prometheus (docs/prometheus.md)")
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def sagas(assembly_dir: Path) -> list[MonitoredSaga]:
    return sagas_from_assembly(assembly_dir)


@pytest.fixture(scope="module")
def artifacts(sagas: list[MonitoredSaga], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prometheus")
    written = write_artifacts(sagas, out)
    assert [p.name for p in written] == [CONFIG_FILE, RULES_FILE, TEST_FILE, DASHBOARD_FILE]
    return out


def by_name(sagas: list[MonitoredSaga]) -> dict[str, MonitoredSaga]:
    return {s.name: s for s in sagas}


def test_reads_the_reference_sagas_from_the_assembly(sagas: list[MonitoredSaga]) -> None:
    found = by_name(sagas)
    order, travel = found["order_fulfillment"], found["travel_booking"]
    assert order.stack == ORDER_STACK_NAME and travel.stack == TRAVEL_STACK_NAME
    assert order.namespace == travel.namespace == "SagaKit"
    assert order.steps == ("reserve_inventory", "charge_payment", "create_shipment",
                           "send_confirmation")
    # The step after the pivot has no compensation.
    assert order.compensated_steps == ("reserve_inventory", "charge_payment", "create_shipment")
    assert "notify_traveller" in travel.steps and "notify_traveller" not in travel.compensated_steps
    roles = {q.role: q.name for q in order.queues if q.name}
    assert roles == {"compensation": f"{ORDER_STACK_NAME}-order_fulfillment-compensations",
                     "compensation_dlq": f"{ORDER_STACK_NAME}-order_fulfillment-compensations-dlq"}
    # The status-event and outcome-metric DLQs get their names from CloudFormation.
    assert sum(1 for q in order.queues if q.role == "dead_letter" and q.name is None) == 2
    # The callback step's command queue is consumed; its DLQ is a dead-letter queue.
    commands = [q for q in travel.queues if q.role == "commands"]
    assert [q.name for q in commands] == [f"{TRAVEL_STACK_NAME}-travel_booking-book_car-action"]
    assert f"{TRAVEL_STACK_NAME}-travel_booking-book_car-action-dlq" in {
        q.name for q in travel.queues if q.role == "dead_letter"}
    assert order.backlog_seconds == 900


def test_promtool_checks_and_unit_tests_the_alert_rules(artifacts: Path) -> None:
    checked = run_promtool("check", "rules", RULES_FILE, cwd=artifacts)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = run_promtool("test", "rules", TEST_FILE, cwd=artifacts)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_rule_tests_catch_a_broken_rule(artifacts: Path, tmp_path: Path) -> None:
    """The unit tests are not vacuous: a stuck-saga rule that needs more than one stuck saga,
    or a DLQ rule that takes every tagged queue for the saga's, fails them."""
    rules = yaml.safe_load((artifacts / RULES_FILE).read_text())
    for alert, old, new in (("SagaStuck", "> 0", "> 5"),
                            ("SagaDLQNotEmpty", f'{tag_label(SAGA_TAG)}="', f'{tag_label(SAGA_TAG)}!="')):
        broken = json.loads(json.dumps(rules))
        changed = 0
        for group in broken["groups"]:
            for rule in group["rules"]:
                if rule["alert"] == alert and old in rule["expr"]:
                    rule["expr"] = rule["expr"].replace(old, new)
                    changed += 1
        assert changed
        (tmp_path / RULES_FILE).write_text(yaml.safe_dump(broken))
        shutil.copy(artifacts / TEST_FILE, tmp_path / TEST_FILE)
        tested = run_promtool("test", "rules", TEST_FILE, cwd=tmp_path)
        assert tested.returncode != 0, f"a broken {alert} passed its tests"
        assert f"alertname: {alert}" in tested.stdout + tested.stderr


def test_every_alert_says_what_to_do(artifacts: Path, sagas: list[MonitoredSaga]) -> None:
    rules = yaml.safe_load((artifacts / RULES_FILE).read_text())
    groups = {g["name"]: g["rules"] for g in rules["groups"]}
    assert len(groups) == len(sagas) + 1
    order = groups[f"saga-kit:{ORDER_STACK_NAME}:order_fulfillment"]
    assert [r["alert"] for r in order] == [n for n in ALERT_NAMES if n != "CloudWatchExporterScrapeFailing"]
    target = f"--stack {ORDER_STACK_NAME} --saga order_fulfillment"
    descriptions = {r["alert"]: r["annotations"]["description"] for r in order}
    assert f"`saga stuck {target}`" in descriptions["SagaStuck"]
    assert (f"saga inspect order_fulfillment <saga id> --stack {ORDER_STACK_NAME}"
            in descriptions["SagaStuck"])
    assert f"saga dlq list {target}" in descriptions["SagaCompensationDLQNotEmpty"]
    assert f"saga dlq redrive {target}" in descriptions["SagaCompensationDLQNotEmpty"]
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            assert rule["labels"]["severity"] in ("warning", "critical")


def test_the_exporter_config_covers_every_saga(artifacts: Path,
                                               sagas: list[MonitoredSaga]) -> None:
    config = yaml.safe_load((artifacts / CONFIG_FILE).read_text())
    rules = config["metrics"]
    assert set(config) <= EXPORTER_KEYS
    for rule in rules:
        assert set(rule) <= RULE_KEYS, rule
        assert set(rule.get("aws_tag_select", {})) <= TAG_SELECT_KEYS, rule
        assert set(rule.get("aws_statistics", [])) <= STATISTICS, rule
    keys = [(r["aws_namespace"], r["aws_metric_name"]) for r in rules]
    # The exporter takes each metric once: a second rule would repeat its HELP line.
    assert len(keys) == len(set(keys))
    by_key = {(r["aws_namespace"], r["aws_metric_name"]): r for r in rules}
    for saga in sagas:
        for metric in KIT_METRICS:
            if metric.compensations_only and not saga.compensated_steps:
                continue
            rule = by_key[(saga.namespace, metric.name)]
            assert saga.name in rule["aws_dimension_select"]["SagaType"]
            assert rule["aws_dimensions"] == list(metric.dimensions)
    assert by_key[("SagaKit", Metric.SAGAS_STUCK)]["aws_statistics"] == ["Maximum"]
    assert by_key[("SagaKit", Metric.STEP_DURATION)]["aws_extended_statistics"] == ["p50", "p99"]
    names = sorted({s.name for s in sagas})
    for metric in ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed",
                   "ExecutionsTimedOut", "ExecutionsAborted", "ExecutionTime"):
        select = by_key[("AWS/States", metric)]["aws_tag_select"]
        assert select["tag_selections"] == {SAGA_TAG: names}
        assert select["resource_id_dimension"] == "StateMachineArn"
        # The dimension is the whole ARN: the default pattern would keep only the name.
        assert re.search(select["arn_resource_id_regexp"],
                         "arn:aws:states:eu-west-1:1:stateMachine:X").group(1).startswith("arn:")
    for metric in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
        assert by_key[("AWS/SQS", metric)]["aws_tag_select"]["tag_selections"] == {SAGA_TAG: names}
    for rule in rules:
        # GetMetricStatistics takes statistics or extended statistics, never both.
        assert not ("aws_statistics" in rule and "aws_extended_statistics" in rule), rule


def test_names_follow_the_exporter_source() -> None:
    """CloudWatchCollector.java: lower-cased namespace, snake_case metric, statistic suffix;
    snake_case dimension labels; tag keys sanitized, not snake-cased."""
    assert series_name("SagaKit", "StepSucceeded", "Sum") == "sagakit_step_succeeded_sum"
    assert series_name("SagaKit", "SagasStuck", "Maximum") == "sagakit_sagas_stuck_maximum"
    assert series_name("SagaKit", "StepDuration", "p99") == "sagakit_step_duration_p99"
    assert series_name("AWS/States", "ExecutionsTimedOut", "Sum") == \
        "aws_states_executions_timed_out_sum"
    assert series_name("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum") == \
        "aws_sqs_approximate_age_of_oldest_message_maximum"
    assert series_name("Acme/Sagas", "SagaParked", "SampleCount") == \
        "acme_sagas_saga_parked_sample_count"
    # The exporter's own tests and README examples.
    assert series_name("AWS/ELB", "RequestCount", "Sum") == "aws_elb_request_count_sum"
    assert series_name("AWS/ELB", "Latency", "p99.99") == "aws_elb_latency_p99_99"
    # A digit before a capital gets an underscore too (CloudWatchCollectorTest asserts
    # aws_elb_httpcode_backend_2_xx_average).
    assert series_name("AWS/ELB", "HTTPCode_Backend_2XX", "Average") == \
        "aws_elb_httpcode_backend_2_xx_average"
    assert dimension_label("SagaType") == "saga_type"
    assert dimension_label("StateMachineArn") == "state_machine_arn"
    assert dimension_label("QueueName") == "queue_name"
    assert job_label("AWS/States") == "aws_states" and job_label("SagaKit") == "sagakit"
    assert tag_label(SAGA_TAG) == "tag_saga_kit_saga"
    with pytest.raises(ValueError):
        series_name("SagaKit", "StepDuration", "Median")


def expressions(artifacts: Path) -> list[str]:
    rules = yaml.safe_load((artifacts / RULES_FILE).read_text())
    board = json.loads((artifacts / DASHBOARD_FILE).read_text())
    return ([r["expr"] for g in rules["groups"] for r in g["rules"]]
            + [t["expr"] for p in board["panels"] for t in p["targets"]])


def series_in(expr: str) -> set[str]:
    # A series name is followed by its matchers or a range; functions by "(", labels by "=".
    names = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*[{\[]", expr))
    for alternatives in re.findall(r'__name__=~"([^"]+)"', expr):
        names.update(alternatives.split("|"))
    return names


def test_rules_and_dashboard_read_only_series_the_exporter_exports(
        artifacts: Path, sagas: list[MonitoredSaga]) -> None:
    exported = exported_series(sagas)
    used: set[str] = set()
    for expr in expressions(artifacts):
        used |= series_in(expr)
    assert used - set(exported) - EXPORTER_OWN == set()
    assert {"sagakit_sagas_stuck_maximum", "aws_states_executions_timed_out_sum",
            "aws_sqs_approximate_number_of_messages_visible_maximum"} <= used
    assert exported["sagakit_step_duration_p99"] == ("saga_type", "step")
    assert exported["aws_states_executions_aborted_sum"] == ("state_machine_arn",)


def test_the_dashboard_has_its_panels_and_valid_queries(artifacts: Path, tmp_path: Path) -> None:
    board: dict[str, Any] = json.loads((artifacts / DASHBOARD_FILE).read_text())
    assert board["schemaVersion"] == 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"order_fulfillment", "travel_booking"} <= set(
        variables["saga_type"]["query"].split(","))
    titles = [p["title"] for p in board["panels"]]
    assert titles == list(PANEL_TITLES)
    for wanted in ("started", "completed", "compensated", "parked", "Step latency p50 and p99",
                   "Compensation latency p50 and p99", "compensation failures",
                   "Dead-letter queue depth", "Stuck sagas", "Unexpected endings"):
        assert any(wanted.lower() in t.lower() for t in titles), wanted
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
    # promtool parses each query: as a recording rule, with the variable replaced by a regex.
    recording = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": expr.replace("$saga_type", ".*")}
        for n, expr in enumerate(t["expr"] for p in board["panels"] for t in p["targets"])]}]}
    (tmp_path / "dashboard.rules.yml").write_text(yaml.safe_dump(recording))
    checked = run_promtool("check", "rules", "dashboard.rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_saga_prometheus_writes_the_files(assembly_dir: Path, tmp_path: Path) -> None:
    from saga_kit.cli.main import app

    result = CliRunner().invoke(app, ["prometheus", "--assembly", str(assembly_dir),
                                      "--out", str(tmp_path / "out"), "--region", "eu-west-1"])
    assert result.exit_code == 0, result.output
    for name in (CONFIG_FILE, RULES_FILE, TEST_FILE, DASHBOARD_FILE):
        assert f"wrote {tmp_path / 'out' / name}" in result.output
    config = yaml.safe_load((tmp_path / "out" / CONFIG_FILE).read_text())
    assert config["region"] == "eu-west-1"

    missing = CliRunner().invoke(app, ["prometheus", "--assembly", str(tmp_path / "nothing"),
                                       "--out", str(tmp_path / "out")])
    assert missing.exit_code == 2
    assert "not a cloud assembly" in missing.output
