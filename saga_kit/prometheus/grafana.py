"""A Grafana dashboard of an app's sagas, on the CloudWatch exporter's series.

Import it in Grafana (Dashboards, New, Import) and pick the Prometheus data source that scrapes
the exporter. The series carry CloudWatch's timestamps, about ten minutes behind: the last ten
minutes of every panel are empty by design, not missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from saga_kit.contract import SAGA_TAG, Metric
from saga_kit.prometheus.assembly import COMMANDS, COMPENSATION, MonitoredSaga
from saga_kit.prometheus.naming import RESOURCE_INFO, promql_regex, series_name, tag_label

__all__ = ["DASHBOARD_FILE", "DASHBOARD_UID", "PANEL_TITLES", "dashboard"]

DASHBOARD_FILE: Final = "grafana-dashboard.json"
DASHBOARD_UID: Final = "saga-kit"
_DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
_SAGA: Final = 'saga_type=~"$saga_type"'
#: Counts are shown per 5 minutes: CloudWatch's one-minute sums, added up.
_BUCKET: Final = "5m"

#: The panels, in order.
PANEL_TITLES: Final = (
    "Sagas started, completed, compensated, parked",
    "Unexpected endings",
    "Stuck sagas",
    "Step latency p50 and p99",
    "Compensation latency p50 and p99",
    "Step and compensation failures",
    "Dead-letter queue depth",
    "Compensation queue: oldest parked compensation",
)


def _any_of(names: Sequence[str]) -> str:
    """A selector head matching any of ``names`` (one name as itself)."""
    unique = sorted(set(names))
    if len(unique) == 1:
        return unique[0] + "{"
    return '{__name__=~"' + "|".join(unique) + '", '


def _kit(sagas: Sequence[MonitoredSaga], metric: str, statistic: str, extra: str = "") -> str:
    """The selector of one kit metric across the sagas' namespaces, limited to $saga_type."""
    head = _any_of([series_name(s.namespace, metric, statistic) for s in sagas])
    return f"{head}{_SAGA}{extra}}}"


def _target(ref: str, expr: str, legend: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": _DATASOURCE, "expr": expr, "legendFormat": legend,
            "range": True}


def _panel(panel_id: int, title: str, description: str, targets: list[dict[str, Any]],
           unit: str, x: int, y: int, *, width: int = 12, stack: bool = False) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": _DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                           "spanNulls": False,
                           "stacking": {"mode": "normal" if stack else "none", "group": "A"}},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                               "calcs": ["max", "lastNotNull"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": targets,
    }


def dashboard(sagas: Sequence[MonitoredSaga]) -> dict[str, Any]:
    """The dashboard (Grafana's JSON model, schema version 39) for ``sagas``."""
    if not sagas:
        raise ValueError("no sagas to draw a dashboard for")
    saga_tag = tag_label(SAGA_TAG)
    visible = series_name("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum")
    age = series_name("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum")
    # Queues a handler consumes are not dead-letter queues; the others of the saga tag are.
    consumed = sorted(q.name for s in sagas for q in s.queues
                      if q.role in (COMMANDS, COMPENSATION) and q.name)
    not_consumed = f', queue_name!~"{promql_regex(consumed)}"' if consumed else ""
    compensation_queues = sorted(q.name for s in sagas for q in s.queues
                                 if q.role == COMPENSATION and q.name)

    def per_bucket(metric: str) -> str:
        return f"sum by (saga_type) (sum_over_time({_kit(sagas, metric, 'Sum')}[{_BUCKET}]))"

    def tagged(vector: str, label: str) -> str:
        # The saga tag of each queue or state machine, from the exporter's aws_resource_info:
        # it limits the AWS series to the sagas chosen, and names the saga in the legend.
        return (f"max by ({label}, {saga_tag}) ({vector} * on ({label}) "
                f"group_left ({saga_tag}) max by ({label}, {saga_tag}) "
                f'({RESOURCE_INFO}{{{saga_tag}=~"$saga_type", {label}!=""}}))')

    outcomes = [
        _target("A", per_bucket(Metric.SAGA_STARTED), "{{saga_type}} started"),
        _target("B", per_bucket(Metric.SAGA_COMPLETED), "{{saga_type}} completed"),
        _target("C", per_bucket(Metric.SAGA_COMPENSATED), "{{saga_type}} compensated"),
        _target("D", per_bucket(Metric.SAGA_PARKED), "{{saga_type}} parked"),
    ]
    unexpected = [
        _target("A", per_bucket(Metric.SAGA_FAILED_UNEXPECTEDLY),
                "{{saga_type}} ended unexpectedly"),
    ]
    for ref, metric, what in (("B", "ExecutionsTimedOut", "timed out"),
                              ("C", "ExecutionsAborted", "aborted")):
        series = series_name("AWS/States", metric, "Sum")
        vector = f"sum_over_time({series}[{_BUCKET}])"
        unexpected.append(_target(
            ref, f"sum by ({saga_tag}) ({tagged(vector, 'state_machine_arn')})",
            f"{{{{{saga_tag}}}}} executions {what}"))
    stuck = [_target("A", f"max by (saga_type) (last_over_time("
                          f"{_kit(sagas, Metric.SAGAS_STUCK, 'Maximum')}[10m]))",
                     "{{saga_type}}")]

    def latency(metric: str) -> list[dict[str, Any]]:
        return [_target(ref, f"max by (saga_type, step) ({_kit(sagas, metric, p)})",
                        f"{{{{saga_type}}}} {{{{step}}}} {p}")
                for ref, p in (("A", "p50"), ("B", "p99"))]

    failures = [
        _target("A", f"sum by (saga_type, step) (sum_over_time("
                     f"{_kit(sagas, Metric.STEP_FAILED, 'Sum')}[{_BUCKET}]))",
                "{{saga_type}} {{step}} step failed"),
        _target("B", f"sum by (saga_type, step) (sum_over_time("
                     f"{_kit(sagas, Metric.COMPENSATION_FAILED, 'Sum')}[{_BUCKET}]))",
                "{{saga_type}} {{step}} compensation failed"),
    ]
    dlq = [_target("A", tagged(f'{visible}{{queue_name!=""{not_consumed}}}', "queue_name"),
                   "{{queue_name}}")]
    backlog_selector = (f'queue_name=~"{promql_regex(compensation_queues)}"' if compensation_queues
                        else 'queue_name!=""')
    backlog = [_target("A", tagged(f"{age}{{{backlog_selector}}}", "queue_name"),
                       "{{queue_name}}")]

    panels = [
        _panel(1, PANEL_TITLES[0], "Per 5 minutes, from the saga store's status changes.",
               outcomes, "short", 0, 0),
        _panel(2, PANEL_TITLES[1], "Per 5 minutes: the kit's SagaFailedUnexpectedly, and Step "
               "Functions' timed-out and aborted executions of the saga's state machine. Each "
               "may leave effects nobody undoes.", unexpected, "short", 12, 0),
        _panel(3, PANEL_TITLES[2], "Sagas past their stuck threshold at the stuck detector's "
               "last run (every 5 minutes).", stuck, "short", 0, 8),
        _panel(4, PANEL_TITLES[3], "Step action invocations, per minute: CloudWatch's p50 and "
               "p99.", latency(Metric.STEP_DURATION), "ms", 12, 8),
        _panel(5, PANEL_TITLES[4], "Compensation invocations, per minute: CloudWatch's p50 and "
               "p99.", latency(Metric.COMPENSATION_DURATION), "ms", 0, 16),
        _panel(6, PANEL_TITLES[5], "Per 5 minutes. A failed compensation is retried, then "
               "parked.", failures, "short", 12, 16),
        _panel(7, PANEL_TITLES[6], "Messages waiting in the saga's dead-letter queues: the "
               "compensation DLQ (saga dlq list / saga dlq redrive) and the kit's other DLQs.",
               dlq, "short", 0, 24),
        _panel(8, PANEL_TITLES[7], "Age of the oldest message in the compensation queue: "
               "growing means the redrive Lambda is not finishing parked compensations.",
               backlog, "s", 12, 24),
    ]
    names = sorted({s.name for s in sagas})
    return {
        "uid": DASHBOARD_UID,
        "title": "Saga Kit",
        "description": "Sagas of " + ", ".join(names) + " (generated by saga prometheus).",
        "tags": ["saga-kit"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "timezone": "",
        "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0, "refresh": 1},
            {"name": "saga_type", "label": "Saga", "type": "custom",
             "query": ",".join(names), "multi": True, "includeAll": True,
             "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
             "options": [], "hide": 0},
        ]},
        "panels": panels,
    }
