"""The local /metrics: the kit's EMF lines, as Powertools prints them, in Prometheus naming."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from saga_kit.contract import Metric
from saga_kit.prometheus import LOCAL_FAMILIES, EmfCollector
from saga_kit.runtime.metrics import MetricUnit, saga_metrics

BOUNDED_LABELS = {"saga_type", "step", "outcome", "le"}


def emitted(monkeypatch: pytest.MonkeyPatch,
            saga_type: str, step: str | None, metrics: list[tuple[str, str, float]]) -> str:
    """What the kit's own metric helper prints for ``metrics`` (name, unit, value), as the
    lines Lambda would log. Taken as the local cloud takes them (a session cloud of this
    process may already hold the print), not from stdout."""
    from saga_kit.local_cloud.metrics import EmfSink, captured_emf

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", saga_type)
    emf = saga_metrics(saga_type, step)
    for name, unit, value in metrics:
        emf.add_metric(name=name, unit=getattr(MetricUnit, unit), value=value)
    sink = EmfSink()
    with captured_emf(sink):
        emf.flush_metrics()
    return "\n".join(json.dumps(document) for document in sink.documents())


def scrape(collector: EmfCollector) -> dict[str, Any]:
    """The collector's exposition, parsed back: families by name, as Prometheus reads them."""
    text = generate_latest(collector.registry()).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels``."""
    samples = [s for family in families.values() for s in family.samples]
    for s in samples:
        if s.name == name and s.labels == labels:
            return s.value
    raise AssertionError(f"no sample {name}{labels} among "
                         f"{[(s.name, s.labels) for s in samples if s.name == name]}")


def test_counts_what_the_step_runtime_emits(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = EmfCollector()
    for duration in (12.5, 30.0, 2000.0):
        out = emitted(monkeypatch, "order_fulfillment", "reserve_inventory", [
            (Metric.STEP_SUCCEEDED, "Count", 1), (Metric.STEP_DURATION, "Milliseconds", duration)])
        assert collector.add_text(out) == 2
    out = emitted(monkeypatch, "order_fulfillment", "charge_payment", [
        (Metric.STEP_FAILED, "Count", 1), (Metric.STEP_DURATION, "Milliseconds", 40.0)])
    collector.add_text(out)
    out = emitted(monkeypatch, "order_fulfillment", "reserve_inventory", [
        (Metric.COMPENSATION_SUCCEEDED, "Count", 1),
        (Metric.COMPENSATION_DURATION, "Milliseconds", 7.0)])
    collector.add_text(out)

    families = scrape(collector)
    steps = {"saga_type": "order_fulfillment", "step": "reserve_inventory"}
    assert sample(families, "saga_steps_total", **steps, outcome="succeeded") == 3
    assert sample(families, "saga_steps_total", saga_type="order_fulfillment",
                  step="charge_payment", outcome="failed") == 1
    assert sample(families, "saga_compensations_total", **steps, outcome="succeeded") == 1
    # Milliseconds become seconds; the histogram counts every invocation.
    assert sample(families, "saga_step_duration_seconds_count", **steps) == 3
    assert sample(families, "saga_step_duration_seconds_sum", **steps) == pytest.approx(2.0425)
    assert sample(families, "saga_step_duration_seconds_bucket", **steps, le="0.025") == 1
    assert sample(families, "saga_step_duration_seconds_bucket", **steps, le="0.05") == 2
    assert sample(families, "saga_step_duration_seconds_bucket", **steps, le="2.5") == 3
    assert sample(families, "saga_step_duration_seconds_bucket", **steps, le="+Inf") == 3
    assert sample(families, "saga_compensation_duration_seconds_sum",
                  **steps) == pytest.approx(0.007)


def test_counts_saga_outcomes_stuck_sagas_and_past_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    collector = EmfCollector()
    for name in (Metric.SAGA_STARTED, Metric.SAGA_STARTED, Metric.SAGA_COMPLETED,
                 Metric.SAGA_COMPENSATED, Metric.SAGA_PARKED, Metric.SAGA_FAILED_UNEXPECTEDLY):
        collector.add_text(emitted(monkeypatch, "travel_booking", None,
                                   [(name, "Count", 1)]))
    collector.add_text(emitted(monkeypatch, "travel_booking", None,
                               [(Metric.SAGA_DURATION, "Milliseconds", 90_000.0)]))
    for stuck in (3, 0, 2):  # a gauge: the detector's last count is what counts
        collector.add_text(emitted(monkeypatch, "travel_booking", None,
                                   [(Metric.SAGAS_STUCK, "Count", stuck)]))
    collector.add_text(emitted(monkeypatch, "travel_booking", None,
                               [(Metric.PARKED_PAST_DEADLINE, "Count", 1)]))

    families = scrape(collector)
    saga = {"saga_type": "travel_booking"}
    for outcome, count in (("started", 2), ("completed", 1), ("compensated", 1), ("parked", 1),
                           ("failed_unexpectedly", 1)):
        assert sample(families, "saga_sagas_total", **saga, outcome=outcome) == count
    assert sample(families, "saga_duration_seconds_sum", **saga) == 90.0
    assert sample(families, "saga_duration_seconds_bucket", **saga, le="300.0") == 1
    assert sample(families, "saga_duration_seconds_bucket", **saga, le="60.0") == 0
    assert sample(families, "saga_stuck", **saga) == 2
    assert families["saga_stuck"].type == "gauge"
    assert sample(families, "saga_parked_past_deadline_total", **saga) == 1


def test_prometheus_naming_and_only_bounded_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = EmfCollector()
    collector.add_text(emitted(monkeypatch, "order_fulfillment", "reserve_inventory", [
        (Metric.STEP_SUCCEEDED, "Count", 1), (Metric.STEP_DURATION, "Milliseconds", 5.0)]))
    # A document carrying a saga id, a service dimension and a request id as properties: none
    # of them may become a label.
    collector.add({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{
        "Namespace": "SagaKit", "Dimensions": [["SagaType", "service"]],
        "Metrics": [{"Name": "SagaStarted", "Unit": "Count"}]}]},
        "SagaType": "order_fulfillment", "service": "order_fulfillment",
        "saga_id": "0b5c3f1e-1111-4a4a-9c9c-123456789abc", "request_id": "r-1", "SagaStarted": 1})

    text = generate_latest(collector.registry()).decode()
    families = list(text_string_to_metric_families(text))
    assert {f.name for f in families} == {f.name.removesuffix("_total") for f in LOCAL_FAMILIES}
    for family in families:
        assert family.name.startswith("saga_")
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith("_seconds")
        for s in family.samples:
            assert set(s.labels) <= BOUNDED_LABELS, (s.name, s.labels)
    assert "0b5c3f1e" not in text and "r-1" not in text


def test_takes_documents_as_emf_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value may be one number or a list; several directives count once; other metrics,
    other namespaces (when filtered) and documents without a saga type are skipped."""
    collector = EmfCollector(namespaces={"SagaKit", "Orders/Sagas"})

    def document(namespace: str, values: dict[str, Any], **dims: str) -> dict[str, Any]:
        return {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
            {"Namespace": namespace, "Dimensions": [list(dims)],
             "Metrics": [{"Name": n, "Unit": "Count"} for n in values]}]}, **dims, **values}

    steps = {"SagaType": "checkout", "Step": "reserve"}
    assert collector.add(document("SagaKit", {"StepSucceeded": [1.0, 1.0, 1.0]}, **steps)) == 3
    assert collector.add(document("Orders/Sagas", {"StepSucceeded": 2}, **steps)) == 1
    assert collector.add(document("SomeoneElse", {"StepSucceeded": 5}, **steps)) == 0
    assert collector.add(document("SagaKit", {"Latency": 5}, **steps)) == 0
    assert collector.add(document("SagaKit", {"StepSucceeded": 1}, SagaType="checkout")) == 0
    assert collector.add(document("SagaKit", {"SagaStarted": 1}, Step="reserve")) == 0
    two_directives = document("SagaKit", {"StepFailed": 1}, **steps)
    two_directives["_aws"]["CloudWatchMetrics"].append(
        {"Namespace": "SagaKit", "Dimensions": [["SagaType"]],
         "Metrics": [{"Name": "StepFailed", "Unit": "Count"}]})
    assert collector.add(two_directives) == 1
    assert collector.add_text("START RequestId: 1\nnot json {\n" + json.dumps(
        document("SagaKit", {"StepFailed": 1}, **steps)) + "\n") == 1

    families = scrape(collector)
    labels = {"saga_type": "checkout", "step": "reserve"}
    assert sample(families, "saga_steps_total", **labels, outcome="succeeded") == 5
    assert sample(families, "saga_steps_total", **labels, outcome="failed") == 2


def test_every_namespace_counts_by_default() -> None:
    collector = EmfCollector()
    collector.add({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
        {"Namespace": "Acme/Payments", "Dimensions": [["SagaType"]],
         "Metrics": [{"Name": "SagaCompleted", "Unit": "Count"}]}]},
        "SagaType": "refund", "SagaCompleted": [1.0]})
    assert sample(scrape(collector), "saga_sagas_total", saga_type="refund",
                  outcome="completed") == 1


def test_is_fed_and_scraped_from_many_threads_at_once() -> None:
    collector = EmfCollector()
    document = {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
        {"Namespace": "SagaKit", "Dimensions": [["SagaType", "Step"]],
         "Metrics": [{"Name": "StepSucceeded", "Unit": "Count"},
                     {"Name": "StepDuration", "Unit": "Milliseconds"}]}]},
        "SagaType": "order_fulfillment", "Step": "reserve_inventory",
        "StepSucceeded": [1.0], "StepDuration": [3.0]}
    stop = threading.Event()

    def feed() -> None:
        for _ in range(500):
            collector.add(document)

    def keep_scraping() -> None:
        while not stop.is_set():
            scrape(collector)

    scraper = threading.Thread(target=keep_scraping)
    scraper.start()
    feeders = [threading.Thread(target=feed) for _ in range(8)]
    for thread in feeders:
        thread.start()
    for thread in feeders:
        thread.join()
    stop.set()
    scraper.join()

    families = scrape(collector)
    labels = {"saga_type": "order_fulfillment", "step": "reserve_inventory"}
    assert sample(families, "saga_steps_total", **labels, outcome="succeeded") == 4000
    assert sample(families, "saga_step_duration_seconds_count", **labels) == 4000
    assert sample(families, "saga_step_duration_seconds_bucket", **labels, le="0.005") == 4000


def test_a_fresh_collector_exposes_every_family_without_samples() -> None:
    collector = EmfCollector()
    assert collector.registry() is collector.registry()
    families = scrape(collector)
    assert set(families) == {f.name.removesuffix("_total") for f in LOCAL_FAMILIES}
    assert all(not f.samples for f in families.values())
