"""Prometheus alert rules on the exporter's series, and the promtool unit tests that prove them.

One rule group per saga (its series names depend on its namespace, and each alert's description
names the saga's stack in the CLI commands to run), plus one group watching the exporter itself.

CloudWatch data reaches Prometheus late and sparse: the exporter asks for data at least
:data:`~saga_kit.prometheus.exporter.DELAY_SECONDS` old and keeps CloudWatch's timestamps, and a
count that is zero is usually no data point at all. So every expression reads a window
(``last_over_time`` for levels, ``sum_over_time`` for counts) wider than the delay, and compares
with ``> 0`` or a threshold: an absent series gives an empty result, and an empty result never
fires. A count alert (parked, unexpected ending...) fires while the event is inside its window
and then resolves by itself; the levels that persist (stuck sagas, DLQ depth) keep it firing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from saga_kit.contract import SAGA_TAG, Metric
from saga_kit.prometheus.assembly import (
    COMMANDS,
    COMPENSATION,
    COMPENSATION_DLQ,
    MonitoredSaga,
)
from saga_kit.prometheus.naming import (
    RESOURCE_INFO,
    job_label,
    promql_regex,
    series_name,
    tag_label,
)

__all__ = [
    "ALERT_NAMES",
    "EVENT_WINDOW",
    "LEVEL_WINDOW",
    "RULES_FILE",
    "TEST_FILE",
    "Alert",
    "alert_rules",
    "rules_test",
    "saga_alerts",
]

RULES_FILE: Final = "saga-alerts.rules.yml"
TEST_FILE: Final = "saga-alerts.test.yml"
#: Window of level series (gauges, queue depths): the exporter's 10-minute delay, the stuck
#: detector's 5-minute period, and slack for a late scrape.
LEVEL_WINDOW: Final = "20m"
#: Window of event counts: how long a count alert fires after the event.
EVENT_WINDOW: Final = "30m"

_SQS_VISIBLE: Final = series_name("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum")
_SQS_AGE: Final = series_name("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum")
_TIMED_OUT: Final = series_name("AWS/States", "ExecutionsTimedOut", "Sum")
_ABORTED: Final = series_name("AWS/States", "ExecutionsAborted", "Sum")
_SAGA_TAG_LABEL: Final = tag_label(SAGA_TAG)
_SCRAPE_ERROR: Final = "cloudwatch_exporter_scrape_error"

#: Every alert the rules can hold, in the order of each group.
ALERT_NAMES: Final = (
    "SagaStuck",
    "SagaParked",
    "SagaCompensationQueueNotDraining",
    "SagaCompensationDLQNotEmpty",
    "SagaDLQNotEmpty",
    "SagaUnexpectedEnding",
    "SagaExecutionsTimedOut",
    "SagaExecutionsAborted",
    "SagaParkedPastDeadline",
    "CloudWatchExporterScrapeFailing",
)


@dataclass(frozen=True)
class Alert:
    """One alerting rule. ``summary`` and ``description`` are Prometheus templates; they use
    only ``{{ $labels.<name> }}`` and ``{{ $value }}``, which :func:`rules_test` renders."""

    name: str
    expr: str
    severity: str
    summary: str
    description: str
    labels: Mapping[str, str] = field(default_factory=dict)
    for_: str | None = None

    def to_rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_:
            rule["for"] = self.for_
        rule["labels"] = {"severity": self.severity, **self.labels}
        rule["annotations"] = {"summary": self.summary, "description": self.description}
        return rule


def _kit(saga: MonitoredSaga, metric: str, statistic: str) -> str:
    return series_name(saga.namespace, metric, statistic)


def _stack(saga: MonitoredSaga) -> str:
    return saga.stack or "<stack>"


def saga_alerts(saga: MonitoredSaga) -> list[Alert]:
    """The alerts of one saga."""
    name, stack = saga.name, _stack(saga)
    selector = f'{{saga_type="{name}"}}'
    target = f"--stack {stack} --saga {name}"
    labels = {"saga_type": name}
    alerts = [
        Alert(
            "SagaStuck",
            f"max by (saga_type) (last_over_time("
            f"{_kit(saga, Metric.SAGAS_STUCK, 'Maximum')}{selector}[{LEVEL_WINDOW}])) > 0",
            "warning",
            f"{{{{ $value }}}} {name} saga(s) stuck",
            f"The stuck detector of saga {name} (stack {stack}) counts {{{{ $value }}}} saga(s) "
            "with no progress past their stuck threshold. List them, with where each one "
            f"waits and since when, with `saga stuck {target}`, then run `saga inspect {name} "
            f"<saga id> --stack {stack}` for each: its timeline and the next action to take.",
            labels),
        Alert(
            "SagaParked",
            f"sum by (saga_type) (sum_over_time("
            f"{_kit(saga, Metric.SAGA_PARKED, 'Sum')}{selector}[{EVENT_WINDOW}])) > 0",
            "warning",
            f"{{{{ $value }}}} {name} saga(s) parked in the last {EVENT_WINDOW}",
            f"A compensation of saga {name} gave up after its retries: the saga is parked in "
            "the compensation queue, whose redrive Lambda keeps retrying it. Nothing to undo by "
            f"hand yet: `saga stuck {target} --status parked` lists parked sagas and `saga "
            f"inspect {name} <saga id> --stack {stack}` shows one; if it reaches the DLQ, "
            "SagaCompensationDLQNotEmpty fires.",
            labels),
    ]
    compensation = saga.queue(COMPENSATION)
    if compensation is not None and compensation.name:
        alerts.append(Alert(
            "SagaCompensationQueueNotDraining",
            f'max by (queue_name) (last_over_time({_SQS_AGE}{{queue_name="{compensation.name}"}}'
            f"[{LEVEL_WINDOW}])) > {saga.backlog_seconds:g}",
            "warning",
            f"The compensation queue of {name} is not draining",
            f"The oldest parked compensation in {{{{ $labels.queue_name }}}} is {{{{ $value }}}} "
            f"seconds old: the redrive Lambda of saga {name} (stack {stack}) is not finishing "
            "parked compensations. Read its errors in the redrive function's log group, fix the "
            f"cause, and follow the sagas with `saga stuck {target} --status parked`.",
            labels))
    compensation_dlq = saga.queue(COMPENSATION_DLQ)
    if compensation_dlq is not None and compensation_dlq.name:
        alerts.append(Alert(
            "SagaCompensationDLQNotEmpty",
            f"max by (queue_name) (last_over_time("
            f'{_SQS_VISIBLE}{{queue_name="{compensation_dlq.name}"}}[{LEVEL_WINDOW}])) > 0',
            "critical",
            f"{{{{ $value }}}} parked compensation(s) of {name} need an operator",
            f"{{{{ $value }}}} parked compensation(s) of saga {name} are in the DLQ "
            "{{ $labels.queue_name }}: the redrive Lambda gave up on them. "
            f"`saga dlq list {target}` shows each saga, the failed compensation and its error; "
            f"fix the cause, then `saga dlq redrive {target}` moves them back to the "
            "compensation queue.",
            labels))
    alerts.extend(_other_dlq_alerts(saga, target, labels))
    alerts.append(Alert(
        "SagaUnexpectedEnding",
        f"sum by (saga_type) (sum_over_time("
        f"{_kit(saga, Metric.SAGA_FAILED_UNEXPECTEDLY, 'Sum')}{selector}[{EVENT_WINDOW}])) > 0",
        "critical",
        f"{{{{ $value }}}} {name} saga(s) ended unexpectedly",
        f"{{{{ $value }}}} saga(s) of {name} (stack {stack}) ended in a way the saga does not "
        "expect (ForwardRecoveryFailed, ParkingFailed, States.Runtime, TIMED_OUT, ABORTED...): "
        "their participants may hold effects nobody will undo. The status-event function's log "
        "line 'saga ended unexpectedly' names each saga (its store item has status failed); "
        f"`saga inspect {name} <saga id> --stack {stack}` shows what its steps did and what "
        "to undo by hand.",
        labels))
    for alert_name, series, status in (("SagaExecutionsTimedOut", _TIMED_OUT, "TIMED_OUT"),
                                       ("SagaExecutionsAborted", _ABORTED, "ABORTED")):
        alerts.append(Alert(
            alert_name,
            f"sum by (state_machine_arn) (sum_over_time({series}[{EVENT_WINDOW}]) "
            f"* on (state_machine_arn) group_left () max by (state_machine_arn) (last_over_time("
            f'{RESOURCE_INFO}{{{_SAGA_TAG_LABEL}="{name}", state_machine_arn!=""}}'
            f"[{LEVEL_WINDOW}]))) > 0",
            "critical",
            f"{{{{ $value }}}} {name} execution(s) ended {status}",
            f"Step Functions reports {{{{ $value }}}} execution(s) of saga {name} (stack "
            f"{stack}) ended {status}: no compensation ran. List them with `aws stepfunctions "
            "list-executions --state-machine-arn {{ $labels.state_machine_arn }} "
            f"--status-filter {status}` (the execution name is the saga id), then `saga "
            f"inspect {name} <saga id> --stack {stack}` shows what its steps did and what to "
            "undo by hand.",
            labels))
    alerts.append(Alert(
        "SagaParkedPastDeadline",
        f"sum by (saga_type) (sum_over_time("
        f"{_kit(saga, Metric.PARKED_PAST_DEADLINE, 'Sum')}{selector}[{EVENT_WINDOW}])) > 0",
        "critical",
        f"A parked {name} saga is past its deadline",
        f"The redrive of saga {name} (stack {stack}) refused {{{{ $value }}}} parked saga(s) "
        "past their parked deadline: they stay parked and the kit undoes nothing more. "
        f"`saga dlq list {target}` shows them and what is still to undo; finish those "
        "compensations by hand, then delete the message from the DLQ.",
        labels))
    return alerts


def _other_dlq_alerts(saga: MonitoredSaga, target: str,
                      labels: Mapping[str, str]) -> list[Alert]:
    """Messages in the saga's other DLQs (callback commands, status events, outcome metrics).

    Queues the template names are selected by name. Those CloudFormation names are found
    through the exporter's ``aws_resource_info``, which carries the ``saga-kit:saga`` tag: every
    tagged queue that is not one of the saga's named queues is one of them.
    """
    named_dlqs = [q.name for q in saga.queues
                  if q.is_dead_letter and q.role != COMPENSATION_DLQ and q.name]
    named = [q.name for q in saga.queues if q.name]
    unnamed_dlqs = [q for q in saga.queues if q.is_dead_letter and not q.name]
    # An unnamed queue that is consumed would be taken for a DLQ by the tag join: say so
    # rather than alert on a working queue.
    if any(q.role in (COMMANDS, COMPENSATION) and not q.name for q in saga.queues):
        unnamed_dlqs = []
    parts = []
    if named_dlqs:
        parts.append(f'max by (queue_name) (last_over_time({_SQS_VISIBLE}{{queue_name=~"'
                     f'{promql_regex(named_dlqs)}"}}[{LEVEL_WINDOW}])) > 0')
    if unnamed_dlqs:
        exclude = f', queue_name!~"{promql_regex(named)}"' if named else ""
        parts.append(
            f"max by (queue_name) (last_over_time({_SQS_VISIBLE}{{queue_name!=\"\"{exclude}}}"
            f"[{LEVEL_WINDOW}]) * on (queue_name) group_left () max by (queue_name) "
            f'(last_over_time({RESOURCE_INFO}{{{_SAGA_TAG_LABEL}="{saga.name}", '
            f'queue_name!=""}}[{LEVEL_WINDOW}]))) > 0')
    if not parts:
        return []
    name, stack = saga.name, _stack(saga)
    return [Alert(
        "SagaDLQNotEmpty",
        "\nor\n".join(parts),
        "warning",
        f"{{{{ $value }}}} message(s) in a dead-letter queue of {name}",
        f"{{{{ $value }}}} message(s) wait in {{{{ $labels.queue_name }}}}, a dead-letter queue "
        f"of saga {name} (stack {stack}): a callback command no worker handled, an execution "
        "ending the saga store did not record, or an outcome not counted. The queue's "
        "CloudWatch alarm says which. Read the messages (SQS console, Poll for messages), fix "
        "the cause, then redrive them (Start DLQ redrive).",
        labels)]


def _exporter_alerts() -> list[Alert]:
    return [Alert(
        "CloudWatchExporterScrapeFailing",
        f"max by (job, instance) ({_SCRAPE_ERROR}) > 0",
        "warning",
        "The CloudWatch exporter cannot read CloudWatch",
        "The exporter {{ $labels.instance }} has failed its CloudWatch requests for 15 minutes, "
        "so every saga alert is blind (their series are absent, and absent series stay silent). "
        "Its log names the failing request: usually credentials, or a missing "
        "cloudwatch:GetMetricStatistics, cloudwatch:ListMetrics or tag:GetResources permission.",
        for_="15m")]


def alert_rules(sagas: Sequence[MonitoredSaga]) -> dict[str, Any]:
    """The rules file (``groups:``): one group per saga, one for the exporter."""
    groups = [{"name": f"saga-kit:{saga.stack or 'app'}:{saga.name}",
               "rules": [alert.to_rule() for alert in saga_alerts(saga)]}
              for saga in sorted(sagas, key=lambda s: (s.stack, s.name))]
    groups.append({"name": "saga-kit:cloudwatch-exporter",
                   "rules": [alert.to_rule() for alert in _exporter_alerts()]})
    return {"groups": groups}


# -- promtool test rules ------------------------------------------------------------------------

#: Labels a scrape adds to every series: the scrape job's, and the exporter's own ``job``
#: renamed ``exported_job`` (the exporter's empty ``instance`` is no label at all).
_SCRAPE_LABELS: Final = {"job": "cloudwatch", "instance": "cloudwatch-exporter:9106"}
_TEST_ARN: Final = "arn:aws:states:eu-west-1:123456789012:stateMachine:{}StateMachine-Ab12Cd34"
_TEST_CFN_QUEUE: Final = "{}-{}-Ab12Cd34Ef56"


def _series(name: str, job: str | None, **labels: str) -> str:
    """A series as Prometheus stores it after scraping the exporter (``job`` is the exporter's
    own job label, absent from the exporter's self-metrics)."""
    merged = {**_SCRAPE_LABELS, **({"exported_job": job} if job else {}), **labels}
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in merged.items()) + "}"


def _kit_series(saga: MonitoredSaga, metric: str, statistic: str, **labels: str) -> str:
    return _series(_kit(saga, metric, statistic), job_label(saga.namespace),
                   saga_type=saga.name, **labels)


def _points(*runs: tuple[str, int]) -> str:
    """promtool values from (value, count) runs; ``_`` is a missing sample (no data point)."""
    return " ".join(" ".join([value] * count) for value, count in runs)


def _render(template: str, labels: Mapping[str, str], value: float) -> str:
    """A template as Prometheus renders it, for the two placeholders the rules use."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)
    # Go prints a float64 with %v: whole numbers below 1e21 without a decimal point.
    shown = str(int(value)) if float(value).is_integer() and abs(value) < 1e21 else repr(value)
    return text.replace("{{ $value }}", shown)


def _expect(alert: Alert, value: float, **labels: str) -> dict[str, Any]:
    all_labels = {"severity": alert.severity, **alert.labels, **labels}
    return {"exp_labels": all_labels,
            "exp_annotations": {"summary": _render(alert.summary, all_labels, value),
                                "description": _render(alert.description, all_labels, value)}}


def _silent(names: Sequence[str], *times: str) -> list[dict[str, Any]]:
    return [{"eval_time": t, "alertname": n, "exp_alerts": []} for t in times for n in names]


def _healthy_series(saga: MonitoredSaga, minutes: int) -> list[dict[str, str]]:
    """What a healthy saga looks like through the exporter: sagas start and complete, nothing
    is stuck, the queues are empty; the counts that are zero have no data points at all."""
    series = [
        {"series": _kit_series(saga, Metric.SAGAS_STUCK, "Maximum"),
         "values": f"0x{minutes}"},
        {"series": _kit_series(saga, Metric.SAGA_STARTED, "Sum"), "values": f"3x{minutes}"},
        {"series": _kit_series(saga, Metric.SAGA_COMPLETED, "Sum"), "values": f"3x{minutes}"},
    ]
    # The counts that are zero usually have no data point at all; a zero one is silent too.
    for metric in (Metric.SAGA_PARKED, Metric.SAGA_FAILED_UNEXPECTEDLY,
                   Metric.PARKED_PAST_DEADLINE):
        series.append({"series": _kit_series(saga, metric, "Sum"),
                       "values": _points(("_", 20), ("0", 1), ("_", minutes - 20))})
    arn = _TEST_ARN.format(saga.name)
    series += [
        {"series": _series(series_name("AWS/States", "ExecutionsSucceeded", "Sum"),
                           job_label("AWS/States"), state_machine_arn=arn),
         "values": f"3x{minutes}"},
        {"series": _resource_info("AWS/States", saga, arn=arn, state_machine_arn=arn),
         "values": f"1x{minutes}"},
    ]
    for metric in ("ExecutionsTimedOut", "ExecutionsAborted"):
        series.append({"series": _series(series_name("AWS/States", metric, "Sum"),
                                         job_label("AWS/States"), state_machine_arn=arn),
                       "values": _points(("_", 20), ("0", 1), ("_", minutes - 20))})
    for queue in saga.queues:
        queue_name = queue.name or _TEST_CFN_QUEUE.format(saga.stack, queue.logical_id[:20])
        series += [
            {"series": _series(_SQS_VISIBLE, job_label("AWS/SQS"), queue_name=queue_name),
             "values": f"0x{minutes}"},
            {"series": _series(_SQS_AGE, job_label("AWS/SQS"), queue_name=queue_name),
             "values": f"0x{minutes}"},
            {"series": _resource_info("AWS/SQS", saga, queue_name=queue_name,
                                      arn=f"arn:aws:sqs:eu-west-1:123456789012:{queue_name}"),
             "values": f"1x{minutes}"},
        ]
    return series


def _resource_info(namespace: str, saga: MonitoredSaga, **labels: str) -> str:
    return _series(RESOURCE_INFO, job_label(namespace), **labels,
                   **{_SAGA_TAG_LABEL: saga.name})


def rules_test(sagas: Sequence[MonitoredSaga], rules_file: str = RULES_FILE) -> dict[str, Any]:
    """A ``promtool test rules`` file for :func:`alert_rules`: a healthy system and a system
    with no data stay silent; a stuck saga fires (for every saga) and resolves; every other
    alert fires on its own input, named as the exporter names it."""
    if not sagas:
        raise ValueError("no sagas to test alert rules for")
    sagas = sorted(sagas, key=lambda s: (s.stack, s.name))
    saga_alert_names = sorted({a.name for s in sagas for a in saga_alerts(s)})
    every_alert = [*saga_alert_names, "CloudWatchExporterScrapeFailing"]
    healthy = [series for saga in sagas for series in _healthy_series(saga, 60)]
    healthy.append({"series": _series(_SCRAPE_ERROR, None), "values": "0x60"})
    tests: list[dict[str, Any]] = [
        {"name": "a healthy system stays silent", "interval": "1m", "input_series": healthy,
         "alert_rule_test": _silent(every_alert, "5m", "30m", "59m")},
        {"name": "an exporter that has no data yet stays silent", "interval": "1m",
         "input_series": [{"series": _series(_SCRAPE_ERROR, None), "values": "0x60"}],
         "alert_rule_test": _silent(every_alert, "30m")},
    ]
    for saga in sagas:
        tests.append(_stuck_test(saga))
    first = sagas[0]
    by_name = {a.name: a for a in saga_alerts(first)}
    tests += _count_tests(first, by_name)
    tests += _queue_tests(sagas)
    tests += _execution_tests(first, by_name)
    exporter_alert = _exporter_alerts()[0]
    tests.append({
        "name": "a failing exporter fires after 15 minutes", "interval": "1m",
        "input_series": [{"series": _series(_SCRAPE_ERROR, None), "values": "1x40"}],
        "alert_rule_test": [
            {"eval_time": "10m", "alertname": exporter_alert.name, "exp_alerts": []},
            {"eval_time": "20m", "alertname": exporter_alert.name,
             "exp_alerts": [_expect(exporter_alert, 1, **_SCRAPE_LABELS)]},
        ]})
    return {"rule_files": [rules_file], "evaluation_interval": "1m", "tests": tests}


def _stuck_test(saga: MonitoredSaga) -> dict[str, Any]:
    alert = next(a for a in saga_alerts(saga) if a.name == "SagaStuck")
    return {
        "name": f"a stuck {saga.name} saga fires, and resolves once the detector counts none",
        "interval": "1m",
        "input_series": [{"series": _kit_series(saga, Metric.SAGAS_STUCK, "Maximum"),
                          "values": _points(("0", 10), ("2", 20), ("0", 30))}],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "SagaStuck", "exp_alerts": []},
            {"eval_time": "15m", "alertname": "SagaStuck", "exp_alerts": [_expect(alert, 2)]},
            {"eval_time": "45m", "alertname": "SagaStuck", "exp_alerts": []},
        ]}


def _count_tests(saga: MonitoredSaga, alerts: Mapping[str, Alert]) -> list[dict[str, Any]]:
    """Parked, unexpected ending and past deadline: two data points (1 at minute 10, 2 at
    minute 12) fire with their sum for the whole window, then the alert resolves."""
    tests = []
    window = int(EVENT_WINDOW.removesuffix("m"))
    for alert_name, metric in (("SagaParked", Metric.SAGA_PARKED),
                               ("SagaUnexpectedEnding", Metric.SAGA_FAILED_UNEXPECTEDLY),
                               ("SagaParkedPastDeadline", Metric.PARKED_PAST_DEADLINE)):
        alert = alerts[alert_name]
        tests.append({
            "name": f"{alert_name} fires on {metric} data points for {EVENT_WINDOW}, then "
                    "resolves",
            "interval": "1m",
            "input_series": [{"series": _kit_series(saga, metric, "Sum"),
                              "values": _points(("_", 10), ("1", 1), ("_", 1), ("2", 1),
                                                ("_", window + 30))}],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": alert_name, "exp_alerts": []},
                {"eval_time": "11m", "alertname": alert_name, "exp_alerts": [_expect(alert, 1)]},
                {"eval_time": "14m", "alertname": alert_name, "exp_alerts": [_expect(alert, 3)]},
                {"eval_time": f"{10 + window - 1}m", "alertname": alert_name,
                 "exp_alerts": [_expect(alert, 3)]},
                {"eval_time": f"{12 + window + 1}m", "alertname": alert_name, "exp_alerts": []},
            ]})
    return tests


def _queue_tests(sagas: Sequence[MonitoredSaga]) -> list[dict[str, Any]]:
    """The compensation queue's backlog, the compensation DLQ, and the other DLQs (named, and
    named by CloudFormation, so found through the saga tag)."""
    tests = []

    def one(saga: MonitoredSaga, alert_name: str, series: list[dict[str, str]], value: float,
            **labels: str) -> dict[str, Any]:
        alert = next(a for a in saga_alerts(saga) if a.name == alert_name)
        return {"name": f"{alert_name} fires for saga {saga.name} "
                        f"({labels.get('queue_name', '')})",
                "interval": "1m", "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": alert_name, "exp_alerts": []},
                    {"eval_time": "10m", "alertname": alert_name,
                     "exp_alerts": [_expect(alert, value, **labels)]}]}

    saga = next((s for s in sagas if s.queue(COMPENSATION) and s.queue(COMPENSATION).name), None)
    if saga is not None:
        queue = saga.queue(COMPENSATION).name  # type: ignore[union-attr]
        age = int(saga.backlog_seconds) + 300
        tests.append(one(saga, "SagaCompensationQueueNotDraining", [
            {"series": _series(_SQS_AGE, job_label("AWS/SQS"), queue_name=queue),
             "values": _points(("0", 5), (str(age), 30))}], age, queue_name=queue))
    saga = next((s for s in sagas
                 if s.queue(COMPENSATION_DLQ) and s.queue(COMPENSATION_DLQ).name), None)
    if saga is not None:
        queue = saga.queue(COMPENSATION_DLQ).name  # type: ignore[union-attr]
        tests.append(one(saga, "SagaCompensationDLQNotEmpty", [
            {"series": _series(_SQS_VISIBLE, job_label("AWS/SQS"), queue_name=queue),
             "values": _points(("0", 5), ("3", 30))}], 3, queue_name=queue))
    for want_name in (True, False):
        for saga in sagas:
            alerts = {a.name for a in saga_alerts(saga)}
            queue = next((q for q in saga.queues if q.is_dead_letter
                          and q.role != COMPENSATION_DLQ and bool(q.name) == want_name), None)
            if queue is None or "SagaDLQNotEmpty" not in alerts:
                continue
            queue_name = queue.name or _TEST_CFN_QUEUE.format(saga.stack, queue.logical_id[:20])
            series = [{"series": _series(_SQS_VISIBLE, job_label("AWS/SQS"),
                                         queue_name=queue_name),
                       "values": _points(("0", 5), ("1", 30))}]
            if not want_name:
                series.append({"series": _resource_info(
                    "AWS/SQS", saga, queue_name=queue_name,
                    arn=f"arn:aws:sqs:eu-west-1:123456789012:{queue_name}"),
                    "values": "1x40"})
                # A queue of another saga, with messages: the tag keeps it out of this alert.
                other = replace(saga, name=f"not_{saga.name}")
                series += [
                    {"series": _series(_SQS_VISIBLE, job_label("AWS/SQS"),
                                       queue_name="SomeoneElsesQueue-Ab12"),
                     "values": _points(("0", 5), ("7", 30))},
                    {"series": _resource_info(
                        "AWS/SQS", other, queue_name="SomeoneElsesQueue-Ab12",
                        arn="arn:aws:sqs:eu-west-1:123456789012:SomeoneElsesQueue-Ab12"),
                     "values": "1x40"},
                ]
            tests.append(one(saga, "SagaDLQNotEmpty", series, 1, queue_name=queue_name))
            break
    return tests


def _execution_tests(saga: MonitoredSaga, alerts: Mapping[str, Alert]) -> list[dict[str, Any]]:
    """Timed-out and aborted executions, tied to the saga by its state machine's tag; another
    app's state machine (no saga tag) stays silent."""
    arn = _TEST_ARN.format(saga.name)
    other = _TEST_ARN.format("SomeoneElses")
    tests = []
    for alert_name, metric in (("SagaExecutionsTimedOut", "ExecutionsTimedOut"),
                               ("SagaExecutionsAborted", "ExecutionsAborted")):
        name = series_name("AWS/States", metric, "Sum")
        tests.append({
            "name": f"{alert_name} fires for the saga's state machine only",
            "interval": "1m",
            "input_series": [
                {"series": _series(name, job_label("AWS/States"), state_machine_arn=arn),
                 "values": _points(("_", 5), ("1", 1), ("_", 40))},
                {"series": _series(name, job_label("AWS/States"), state_machine_arn=other),
                 "values": _points(("_", 5), ("4", 1), ("_", 40))},
                {"series": _resource_info("AWS/States", saga, arn=arn, state_machine_arn=arn),
                 "values": "1x45"},
                # The saga's queues are tagged too: their info has no state_machine_arn.
                *({"series": _resource_info("AWS/SQS", saga, queue_name=f"queue-{n}",
                                            arn=f"arn:aws:sqs:eu-west-1:123456789012:queue-{n}"),
                   "values": "1x45"} for n in (1, 2)),
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": alert_name, "exp_alerts": []},
                {"eval_time": "8m", "alertname": alert_name,
                 "exp_alerts": [_expect(alerts[alert_name], 1, state_machine_arn=arn)]},
            ]})
    return tests
