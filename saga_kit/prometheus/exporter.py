"""The prometheus/cloudwatch_exporter configuration of an app's sagas.

Why this exporter rather than yet-another-cloudwatch-exporter (YACE): it is the Prometheus
project's own, and its configuration is an explicit list of rules, one per CloudWatch metric, each
naming its statistics and dimensions. The kit knows exactly which metrics it emits, with which
dimensions, so it can generate that list and know in advance every series name the exporter will
export (see :mod:`saga_kit.prometheus.naming`): the alert rules are written against those names
and unit-tested with promtool. Its labels are the snake-cased dimensions (``saga_type``,
``step``), the same label names as the local ``/metrics``, and ``aws_tag_select`` finds the saga's
state machines and queues by the ``saga-kit:saga`` tag the construct puts on them. YACE discovers
resources by tag too, but names a custom namespace's series ``aws_<namespace>_...``, labels them
``dimension_SagaType`` and is configured by discovery jobs rather than by the exact metric list.

What the configuration asks for, per CloudWatch metric (the exporter allows one rule per metric
name: a second rule would repeat the HELP line and Prometheus would refuse the scrape):

* the kit's namespace(s): counts as ``Sum``, ``SagasStuck`` as ``Maximum`` (a gauge the stuck
  detector writes every 5 minutes), durations as the ``p50`` and ``p99`` extended statistics
  (GetMetricStatistics takes statistics or extended statistics, never both in one request);
* ``AWS/States``: the executions' outcomes and ``ExecutionTime``, of the state machines tagged
  ``saga-kit:saga`` with one of the app's sagas;
* ``AWS/SQS``: the depth and oldest-message age of every queue so tagged (compensation queues,
  their DLQs, callback command queues and the kit's other DLQs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from saga_kit.contract import SAGA_TAG, Dimension, Metric
from saga_kit.prometheus.assembly import MonitoredSaga
from saga_kit.prometheus.naming import series_name

__all__ = [
    "AWS_SQS_METRICS",
    "AWS_STATES_METRICS",
    "CONFIG_FILE",
    "DELAY_SECONDS",
    "KIT_METRICS",
    "PERCENTILES",
    "ExporterMetric",
    "exported_series",
    "exporter_config",
    "exporter_config_yaml",
]

#: The file :func:`saga_kit.prometheus.write_artifacts` writes the configuration to.
CONFIG_FILE: Final = "cloudwatch-exporter.yml"
#: The percentiles asked of every duration.
PERCENTILES: Final = ("p50", "p99")
#: How old the newest data the exporter asks for is (its default, written out): CloudWatch
#: values converge for minutes after the fact. Alert windows are wider than this.
DELAY_SECONDS: Final = 600
#: Period of the kit's metrics and the AWS ones: one minute.
PERIOD_SECONDS: Final = 60
#: SagasStuck is written once per stuck-detector run, every 5 minutes.
STUCK_PERIOD_SECONDS: Final = 300
#: How far back (before the delay) the exporter looks for the newest data point.
RANGE_SECONDS: Final = 600

_STEP_DIMENSIONS: Final = (Dimension.SAGA_TYPE, Dimension.STEP)
_SAGA_DIMENSIONS: Final = (Dimension.SAGA_TYPE,)


@dataclass(frozen=True)
class ExporterMetric:
    """One CloudWatch metric the configuration asks for, and how."""

    name: str
    dimensions: tuple[str, ...]
    statistics: tuple[str, ...] = ()
    extended_statistics: tuple[str, ...] = ()
    period_seconds: int = PERIOD_SECONDS
    #: Only for sagas with compensations.
    compensations_only: bool = False


#: The kit's metrics, with the dimensions the runtime emits them with
#: (``saga_kit.runtime.metrics``: no ``service`` dimension).
KIT_METRICS: Final = (
    ExporterMetric(Metric.SAGA_STARTED, _SAGA_DIMENSIONS, ("Sum",)),
    ExporterMetric(Metric.SAGA_COMPLETED, _SAGA_DIMENSIONS, ("Sum",)),
    ExporterMetric(Metric.SAGA_COMPENSATED, _SAGA_DIMENSIONS, ("Sum",)),
    ExporterMetric(Metric.SAGA_PARKED, _SAGA_DIMENSIONS, ("Sum",)),
    ExporterMetric(Metric.SAGA_FAILED_UNEXPECTEDLY, _SAGA_DIMENSIONS, ("Sum",)),
    ExporterMetric(Metric.SAGA_DURATION, _SAGA_DIMENSIONS, extended_statistics=PERCENTILES),
    ExporterMetric(Metric.SAGAS_STUCK, _SAGA_DIMENSIONS, ("Maximum",),
                   period_seconds=STUCK_PERIOD_SECONDS),
    ExporterMetric(Metric.PARKED_PAST_DEADLINE, _SAGA_DIMENSIONS, ("Sum",)),
    ExporterMetric(Metric.STEP_SUCCEEDED, _STEP_DIMENSIONS, ("Sum",)),
    ExporterMetric(Metric.STEP_FAILED, _STEP_DIMENSIONS, ("Sum",)),
    ExporterMetric(Metric.STEP_DURATION, _STEP_DIMENSIONS, extended_statistics=PERCENTILES),
    ExporterMetric(Metric.COMPENSATION_SUCCEEDED, _STEP_DIMENSIONS, ("Sum",),
                   compensations_only=True),
    ExporterMetric(Metric.COMPENSATION_FAILED, _STEP_DIMENSIONS, ("Sum",),
                   compensations_only=True),
    ExporterMetric(Metric.COMPENSATION_DURATION, _STEP_DIMENSIONS,
                   extended_statistics=PERCENTILES, compensations_only=True),
)

#: Step Functions' execution metrics (dimension StateMachineArn).
AWS_STATES_METRICS: Final = (
    ExporterMetric("ExecutionsStarted", ("StateMachineArn",), ("Sum",)),
    ExporterMetric("ExecutionsSucceeded", ("StateMachineArn",), ("Sum",)),
    ExporterMetric("ExecutionsFailed", ("StateMachineArn",), ("Sum",)),
    ExporterMetric("ExecutionsTimedOut", ("StateMachineArn",), ("Sum",)),
    ExporterMetric("ExecutionsAborted", ("StateMachineArn",), ("Sum",)),
    ExporterMetric("ExecutionTime", ("StateMachineArn",), extended_statistics=PERCENTILES),
)

#: SQS's queue metrics (dimension QueueName).
AWS_SQS_METRICS: Final = (
    ExporterMetric("ApproximateNumberOfMessagesVisible", ("QueueName",), ("Maximum",)),
    ExporterMetric("ApproximateAgeOfOldestMessage", ("QueueName",), ("Maximum",)),
)

_STATES_TAG_SELECT: Final = {
    # The Resource Groups Tagging API's service filter for Step Functions.
    "resource_type_selection": "states",
    "resource_id_dimension": "StateMachineArn",
    # The dimension holds the whole ARN; the exporter's default pattern would keep only the
    # part after the last colon (the state machine's name) and match no metric.
    "arn_resource_id_regexp": "(.*)",
}
_SQS_TAG_SELECT: Final = {
    # SQS ARNs have no resource type (arn:aws:sqs:region:account:name): the default pattern
    # takes the name after the last colon, which is the QueueName dimension.
    "resource_type_selection": "sqs",
    "resource_id_dimension": "QueueName",
}


def _namespaces(sagas: Sequence[MonitoredSaga]) -> dict[str, list[MonitoredSaga]]:
    by_namespace: dict[str, list[MonitoredSaga]] = {}
    for saga in sagas:
        by_namespace.setdefault(saga.namespace, []).append(saga)
    return dict(sorted(by_namespace.items()))


def _names(sagas: Sequence[MonitoredSaga]) -> list[str]:
    return sorted({saga.name for saga in sagas})


def _rule(namespace: str, metric: ExporterMetric, **selection: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "aws_namespace": namespace,
        "aws_metric_name": metric.name,
        "aws_dimensions": list(metric.dimensions),
        **selection,
    }
    if metric.statistics:
        rule["aws_statistics"] = list(metric.statistics)
    if metric.extended_statistics:
        rule["aws_extended_statistics"] = list(metric.extended_statistics)
    if metric.period_seconds != PERIOD_SECONDS:
        rule["period_seconds"] = metric.period_seconds
    return rule


def exporter_config(sagas: Sequence[MonitoredSaga], *, region: str | None = None) -> dict[str, Any]:
    """The exporter's configuration (as a mapping) for ``sagas``.

    ``region`` is written when given; without it the exporter takes the region from the AWS
    SDK's default chain (``AWS_REGION``...).
    """
    if not sagas:
        raise ValueError("no sagas to configure the exporter for")
    config: dict[str, Any] = {}
    if region:
        config["region"] = region
    config.update({
        "delay_seconds": DELAY_SECONDS,
        "range_seconds": RANGE_SECONDS,
        "period_seconds": PERIOD_SECONDS,
        # The samples keep CloudWatch's timestamps (the exporter's default, written out): the
        # alert rules read them with *_over_time windows wider than the delay.
        "set_timestamp": True,
    })
    rules: list[dict[str, Any]] = []
    for namespace, members in _namespaces(sagas).items():
        with_compensations = [s for s in members if s.compensated_steps]
        for metric in KIT_METRICS:
            selected = with_compensations if metric.compensations_only else members
            if not selected:
                continue
            # Only SagaType is selected: for step metrics the exporter then lists the
            # (SagaType, Step) pairs that exist instead of asking for every combination.
            rules.append(_rule(namespace, metric,
                               aws_dimension_select={Dimension.SAGA_TYPE: _names(selected)}))
    tag_selections = {SAGA_TAG: _names(sagas)}
    for metric in AWS_STATES_METRICS:
        rules.append(_rule("AWS/States", metric, aws_tag_select={
            "tag_selections": tag_selections, **_STATES_TAG_SELECT}))
    for metric in AWS_SQS_METRICS:
        rules.append(_rule("AWS/SQS", metric, aws_tag_select={
            "tag_selections": tag_selections, **_SQS_TAG_SELECT}))
    config["metrics"] = rules
    return config


def dump_yaml(data: Any, header: str = "") -> str:
    """``data`` as block-style YAML after ``header`` (comment lines), keys in their order and
    without anchors: a value used twice is written twice, as a reader expects."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return header + yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False,
                              width=100, allow_unicode=True)


def exporter_config_yaml(sagas: Sequence[MonitoredSaga], *, region: str | None = None) -> str:
    """:func:`exporter_config` as the YAML file the exporter reads, with a header saying what
    it is and how to regenerate it."""
    names = ", ".join(_names(sagas))
    header = (
        "# prometheus/cloudwatch_exporter configuration of the sagas " + names + ".\n"
        "# Generated by `saga prometheus` from the app's cloud assembly: regenerate it rather\n"
        "# than edit it. Series are named <namespace lower-cased>_<metric snake_case>_<statistic>\n"
        "# (sagakit_saga_started_sum, aws_states_executions_timed_out_sum); see\n"
        "# docs/prometheus.md for every name and label.\n"
    )
    return dump_yaml(exporter_config(sagas, region=region), header)


def exported_series(sagas: Sequence[MonitoredSaga]) -> dict[str, tuple[str, ...]]:
    """Every series name the configuration makes the exporter export, with its labels (the
    exporter's ``job`` and ``instance`` left out)."""
    from saga_kit.prometheus.naming import dimension_label

    series: dict[str, tuple[str, ...]] = {}
    for rule in exporter_config(sagas)["metrics"]:
        labels = tuple(dimension_label(d) for d in rule["aws_dimensions"])
        for statistic in rule.get("aws_statistics", []) + rule.get("aws_extended_statistics", []):
            name = series_name(rule["aws_namespace"], rule["aws_metric_name"], statistic,
                               rule["aws_dimensions"])
            series[name] = labels
    return series
