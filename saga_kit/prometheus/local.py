"""The kit's metrics for Prometheus, locally: EMF documents in, ``/metrics`` out.

The kit's handlers print their metrics as CloudWatch EMF lines (Powertools). In the local cloud
nothing ships them to CloudWatch, so :class:`EmfCollector` reads those documents and exposes the
same counts with Prometheus naming:

========================================  ======================  ================================
Prometheus family (type)                  labels                  from the kit's metric
========================================  ======================  ================================
``saga_sagas_total`` (counter)            saga_type, outcome      SagaStarted (outcome
                                                                  ``started``), SagaCompleted,
                                                                  SagaCompensated, SagaParked,
                                                                  SagaFailedUnexpectedly
                                                                  (``failed_unexpectedly``)
``saga_steps_total`` (counter)            saga_type, step,        StepSucceeded, StepFailed
                                          outcome                 (``succeeded`` / ``failed``)
``saga_compensations_total`` (counter)    saga_type, step,        CompensationSucceeded,
                                          outcome                 CompensationFailed
``saga_step_duration_seconds``            saga_type, step         StepDuration (ms, as seconds)
(histogram)
``saga_compensation_duration_seconds``    saga_type, step         CompensationDuration
(histogram)
``saga_duration_seconds`` (histogram)     saga_type               SagaDuration
``saga_stuck`` (gauge)                    saga_type               SagasStuck (the detector's
                                                                  last count)
``saga_parked_past_deadline_total``       saga_type               ParkedPastDeadline
(counter)
========================================  ======================  ================================

Why these names: one ``saga_`` prefix for everything the kit counts; counters end in ``_total``
and durations are histograms in seconds, as Prometheus' naming guide asks; an outcome is a label
of one family rather than a family of its own, so ``sum by (outcome)`` and ratios need no name
juggling. Every label comes from a bounded set (the app's saga types and step names, and fixed
outcomes): a saga id or any other per-execution value never becomes a label, because each value
would be a series of its own for as long as the process runs.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from saga_kit.contract import Dimension
from saga_kit.contract import Metric as KitMetric

__all__ = [
    "DURATION_BUCKETS",
    "LOCAL_FAMILIES",
    "SAGA_DURATION_BUCKETS",
    "EmfCollector",
    "LocalFamily",
]

#: Buckets (seconds) of step and compensation durations: a Lambda invocation, 5 ms to its
#: 15-minute limit.
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                           60.0, 300.0, 900.0)
#: Buckets (seconds) of whole sagas: from a fast happy path to a callback that waits for days
#: or a parked saga redriven within its 90-day deadline.
SAGA_DURATION_BUCKETS: Final = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                                21600.0, 86400.0, 604800.0, 2592000.0, 7776000.0)

#: Seconds per unit of an EMF duration (the kit emits milliseconds).
_SECONDS_PER_UNIT: Final = {"Milliseconds": 0.001, "Seconds": 1.0, "Microseconds": 0.000001}


@dataclass(frozen=True)
class LocalFamily:
    """One Prometheus family of :class:`EmfCollector`: its name as exposed (counters with their
    ``_total``), its type, its labels and what it says."""

    name: str
    kind: str
    labels: tuple[str, ...]
    documentation: str


_SAGAS = LocalFamily("saga_sagas_total", "counter", ("saga_type", "outcome"),
                     "Sagas that started, and sagas that ended, by outcome.")
_STEPS = LocalFamily("saga_steps_total", "counter", ("saga_type", "step", "outcome"),
                     "Step action invocations that ran, by outcome.")
_COMPENSATIONS = LocalFamily("saga_compensations_total", "counter",
                             ("saga_type", "step", "outcome"),
                             "Compensation invocations that ran, by outcome.")
_STEP_DURATION = LocalFamily("saga_step_duration_seconds", "histogram", ("saga_type", "step"),
                             "Duration of step action invocations.")
_COMPENSATION_DURATION = LocalFamily("saga_compensation_duration_seconds", "histogram",
                                     ("saga_type", "step"),
                                     "Duration of compensation invocations.")
_SAGA_DURATION = LocalFamily("saga_duration_seconds", "histogram", ("saga_type",),
                             "Time from a saga's first status to its terminal one.")
_STUCK = LocalFamily("saga_stuck", "gauge", ("saga_type",),
                     "Sagas past their stuck threshold at the stuck detector's last run.")
_PAST_DEADLINE = LocalFamily("saga_parked_past_deadline_total", "counter", ("saga_type",),
                             "Parked sagas whose redrive was refused, past their deadline.")

#: Every family the collector exposes, in exposition order.
LOCAL_FAMILIES: Final = (_SAGAS, _STEPS, _COMPENSATIONS, _STEP_DURATION, _COMPENSATION_DURATION,
                         _SAGA_DURATION, _STUCK, _PAST_DEADLINE)

# Kit metric -> (family, outcome label value or None).
_COUNTED: Final[Mapping[str, tuple[LocalFamily, str | None]]] = {
    KitMetric.SAGA_STARTED: (_SAGAS, "started"),
    KitMetric.SAGA_COMPLETED: (_SAGAS, "completed"),
    KitMetric.SAGA_COMPENSATED: (_SAGAS, "compensated"),
    KitMetric.SAGA_PARKED: (_SAGAS, "parked"),
    KitMetric.SAGA_FAILED_UNEXPECTEDLY: (_SAGAS, "failed_unexpectedly"),
    KitMetric.STEP_SUCCEEDED: (_STEPS, "succeeded"),
    KitMetric.STEP_FAILED: (_STEPS, "failed"),
    KitMetric.COMPENSATION_SUCCEEDED: (_COMPENSATIONS, "succeeded"),
    KitMetric.COMPENSATION_FAILED: (_COMPENSATIONS, "failed"),
    KitMetric.PARKED_PAST_DEADLINE: (_PAST_DEADLINE, None),
}
_TIMED: Final[Mapping[str, tuple[LocalFamily, tuple[float, ...]]]] = {
    KitMetric.STEP_DURATION: (_STEP_DURATION, DURATION_BUCKETS),
    KitMetric.COMPENSATION_DURATION: (_COMPENSATION_DURATION, DURATION_BUCKETS),
    KitMetric.SAGA_DURATION: (_SAGA_DURATION, SAGA_DURATION_BUCKETS),
}
_GAUGES: Final[Mapping[str, LocalFamily]] = {KitMetric.SAGAS_STUCK: _STUCK}


class _Histogram:
    """Cumulative bucket counts, sum and count of one label set."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        pairs = [(_bound_text(bound), float(n)) for bound, n in zip(self.bounds, self.counts,
                                                                    strict=True)]
        return [*pairs, ("+Inf", float(self.count))]


def _bound_text(bound: float) -> str:
    # prometheus_client's own histograms print bucket bounds as Python floats ("0.005", "1.0").
    return repr(float(bound))


class EmfCollector(Collector):
    """A prometheus_client collector fed the kit's EMF documents.

    Call :meth:`add` with each parsed EMF document (or :meth:`add_text` with what handlers
    printed); register the collector in a ``CollectorRegistry`` (:meth:`registry` makes one)
    and serve it. Safe to feed from several threads while it is being scraped.

    Args:
        namespaces: Only documents of these CloudWatch namespaces count. By default every
            namespace counts, since a saga may set its own (``Saga(metrics_namespace=...)``):
            what makes a metric the kit's is its name and its ``SagaType`` dimension.
    """

    def __init__(self, namespaces: Collection[str] | None = None) -> None:
        self._namespaces = frozenset(namespaces) if namespaces is not None else None
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[str, ...]], float] = {}
        self._histograms: dict[tuple[str, tuple[str, ...]], _Histogram] = {}
        self._gauges: dict[tuple[str, tuple[str, ...]], float] = {}
        self._registry: CollectorRegistry | None = None

    def registry(self) -> CollectorRegistry:
        """A registry holding this collector alone (the same one at every call), for
        ``generate_latest`` or ``make_wsgi_app``."""
        with self._lock:
            if self._registry is None:
                self._registry = CollectorRegistry()
                self._registry.register(self)
            return self._registry

    def add_text(self, text: str) -> int:
        """Feeds every EMF document among ``text``'s lines (other lines are skipped, so a
        handler's whole output can be passed). Returns how many kit metric values counted."""
        counted = 0
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("{") or '"_aws"' not in line:
                continue
            try:
                document = json.loads(line)
            except ValueError:
                continue
            if isinstance(document, dict):
                counted += self.add(document)
        return counted

    def add(self, document: Mapping[str, Any]) -> int:
        """Counts the kit's metrics in one EMF document. Returns how many values counted.

        A document with several metric directives or dimension sets counts each metric once:
        CloudWatch would file it under each dimension set, but here the labels are the same.
        Metrics that are not the kit's, and kit metrics without the dimensions they need, are
        skipped.
        """
        aws = document.get("_aws")
        if not isinstance(aws, Mapping):
            return 0
        saga_type = document.get(Dimension.SAGA_TYPE)
        if not isinstance(saga_type, str) or not saga_type:
            return 0
        step = document.get(Dimension.STEP)
        step = step if isinstance(step, str) and step else None
        units: dict[str, str] = {}
        for directive in aws.get("CloudWatchMetrics") or ():
            if not isinstance(directive, Mapping):
                continue
            if self._namespaces is not None and directive.get("Namespace") not in self._namespaces:
                continue
            for metric in directive.get("Metrics") or ():
                if isinstance(metric, Mapping) and isinstance(metric.get("Name"), str):
                    units.setdefault(metric["Name"], str(metric.get("Unit", "")))
        counted = 0
        with self._lock:
            for name, unit in units.items():
                values = _values(document.get(name))
                if values:
                    counted += self._record(name, unit, values, saga_type, step)
        return counted

    def _record(self, name: str, unit: str, values: list[float], saga_type: str,
                step: str | None) -> int:
        if name in _COUNTED:
            family, outcome = _COUNTED[name]
            labels = _labels(family, saga_type, step, outcome)
            if labels is None:
                return 0
            key = (family.name, labels)
            self._counters[key] = self._counters.get(key, 0.0) + sum(values)
            return len(values)
        if name in _TIMED:
            family, bounds = _TIMED[name]
            labels = _labels(family, saga_type, step, None)
            if labels is None:
                return 0
            histogram = self._histograms.setdefault((family.name, labels), _Histogram(bounds))
            scale = _SECONDS_PER_UNIT.get(unit, 0.001)
            for value in values:
                histogram.observe(value * scale)
            return len(values)
        if name in _GAUGES:
            family = _GAUGES[name]
            labels = _labels(family, saga_type, step, None)
            if labels is None:
                return 0
            # A gauge: the detector's latest count replaces the previous one.
            self._gauges[(family.name, labels)] = values[-1]
            return len(values)
        return 0

    def describe(self) -> Iterable[Metric]:
        """The families, without samples: lets a registry check names at registration."""
        return [self._family(family) for family in LOCAL_FAMILIES]

    def collect(self) -> Iterable[Metric]:
        """Every family with its current samples (families without samples are exposed too,
        so the names can be found before the first saga ran)."""
        with self._lock:
            counters = dict(self._counters)
            gauges = dict(self._gauges)
            histograms = {key: (h.buckets(), h.total) for key, h in self._histograms.items()}
        families = []
        for family in LOCAL_FAMILIES:
            metric = self._family(family)
            for (name, labels), value in sorted(counters.items()):
                if name == family.name:
                    metric.add_metric(list(labels), value)
            for (name, labels), value in sorted(gauges.items()):
                if name == family.name:
                    metric.add_metric(list(labels), value)
            for (name, labels), (buckets, total) in sorted(histograms.items()):
                if name == family.name:
                    metric.add_metric(list(labels), buckets, total)
            families.append(metric)
        return families

    @staticmethod
    def _family(family: LocalFamily) -> Metric:
        labels = list(family.labels)
        if family.kind == "counter":
            # CounterMetricFamily takes the name without _total and exposes it with it.
            return CounterMetricFamily(family.name.removesuffix("_total"), family.documentation,
                                       labels=labels)
        if family.kind == "gauge":
            return GaugeMetricFamily(family.name, family.documentation, labels=labels)
        return HistogramMetricFamily(family.name, family.documentation, labels=labels)


def _labels(family: LocalFamily, saga_type: str, step: str | None,
            outcome: str | None) -> tuple[str, ...] | None:
    """The label values of ``family`` in its label order, or None when one is missing."""
    known = {"saga_type": saga_type, "step": step, "outcome": outcome}
    values = tuple(known.get(label) for label in family.labels)
    if any(value is None for value in values):
        return None
    return values  # type: ignore[return-value]


def _values(raw: Any) -> list[float]:
    """An EMF metric value as a list of finite numbers (EMF allows one number or a list)."""
    items: Iterator[Any] = iter(raw) if isinstance(raw, list) else iter([raw])
    values = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float):
            continue
        if math.isfinite(item):
            values.append(float(item))
    return values
