"""``saga serve``'s ``/metrics``, scraped by a real Prometheus server after a run of sagas.

The local server exposes every EMF document the handlers emitted as Prometheus families; a
Prometheus 2 server (Debian's ``prometheus`` package, which ``make test`` installs) scrapes it
every second, and its query API must count exactly the sagas this test ran.
"""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from demo.order_demo import OrderParticipants, order_input
from saga_kit.cli.executions import outcome, start_saga, wait_for_execution
from saga_kit.local_cloud.server import LocalSagaServer
from tests.polling import poll as poll_quickly

SAGA = "order_fulfillment"
SKU, RICH, BROKE = "sku-prometheus", "customer-prometheus", "customer-prometheus-broke"
COMPLETED, COMPENSATED = 4, 3
#: Prometheus scrapes every second: wait for it a minute, asking every 0.2 s.
poll = functools.partial(poll_quickly, deadline_seconds=60, interval_seconds=0.2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus_client, by (name, labels)."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def sagas(parsed: dict[Any, float], outcome_label: str) -> float:
    return parsed.get(("saga_sagas_total", (("outcome", outcome_label), ("saga_type", SAGA))), 0.0)


@pytest.fixture(scope="module")
def server(cloud: Any) -> Iterator[LocalSagaServer]:
    with LocalSagaServer(cloud, api_port=0, aws_port=None) as served:
        yield served


@pytest.fixture(scope="module")
def prometheus(server: LocalSagaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus server is missing: run make test, which installs Debian's "
                    "prometheus package, or install Prometheus 2 (docs/prometheus.md)")
    workdir: Path = tmp_path_factory.mktemp("prometheus")
    target = server.api_url.removeprefix("http://")
    (workdir / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: saga_serve\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['{target}']\n", encoding="utf-8")
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address={address}"],
        stdout=subprocess.DEVNULL, stderr=(workdir / "prometheus.log").open("w"))
    url = f"http://{address}"
    try:
        poll(lambda: _ready(url), "ready")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def _ready(url: str) -> bool:
    try:
        return "Ready" in get(f"{url}/-/ready")
    except OSError:
        return False


def query(prometheus: str, expression: str) -> float | None:
    """The value of an instant query that returns one series (``None`` when it returns none)."""
    import json

    answer = json.loads(get(f"{prometheus}/api/v1/query?"
                            + urllib.parse.urlencode({"query": expression})))
    assert answer["status"] == "success", answer
    result = answer["data"]["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def test_prometheus_counts_the_sagas_run(cloud: Any, participants: OrderParticipants,
                                         server: LocalSagaServer, prometheus: str) -> None:
    participants.seed_stock(100, sku=SKU)
    participants.open_account(RICH, 10_000_000)
    participants.open_account(BROKE, 0)
    cloud.wait_lambdas_idle()
    cloud.wait_for_stream_delivery()
    before = samples(get(server.metrics_url))
    # Prometheus has scraped the state before the run (a series may not exist yet: 0).
    poll(lambda: (query(prometheus, f'saga_sagas_total{{outcome="started",saga_type="{SAGA}"}}')
                  or 0.0) == sagas(before, "started"), "scraped before the run")

    sfn, machine = cloud.client("stepfunctions"), cloud.saga_outputs()["StateMachineArn"]
    runs = [start_saga(sfn, machine, order_input(sku=SKU, customer=RICH))[1]
            for _ in range(COMPLETED)]
    runs += [start_saga(sfn, machine, order_input(sku=SKU, customer=BROKE))[1]
             for _ in range(COMPENSATED)]
    for arn in runs:
        wait_for_execution(sfn, arn, timeout=60)
    assert sorted(outcome(sfn, arn).status for arn in runs) == (
        ["compensated"] * COMPENSATED + ["completed"] * COMPLETED)
    cloud.wait_lambdas_idle()
    cloud.wait_for_stream_delivery()

    # /metrics, read by prometheus_client's own parser, counts the run exactly.
    after = samples(get(server.metrics_url))
    expected = {"started": COMPLETED + COMPENSATED, "completed": COMPLETED,
                "compensated": COMPENSATED, "parked": 0, "failed_unexpectedly": 0}
    for label, count in expected.items():
        assert sagas(after, label) - sagas(before, label) == count, label
    steps = {key: value - before.get(key, 0.0) for key, value in after.items()
             if key[0] == "saga_steps_total"}
    assert steps[("saga_steps_total", (("outcome", "succeeded"), ("saga_type", SAGA),
                                       ("step", "charge_payment")))] == COMPLETED
    assert steps[("saga_steps_total", (("outcome", "failed"), ("saga_type", SAGA),
                                       ("step", "charge_payment")))] == COMPENSATED
    duration_count = ("saga_duration_seconds_count", (("saga_type", SAGA),))
    assert after[duration_count] - before.get(duration_count, 0.0) == COMPLETED + COMPENSATED
    for name, labels in after:
        assert {label for label, _ in labels} <= {"saga_type", "step", "outcome", "le"}, name

    # And so does the real Prometheus server, through its query API.
    for label, count in expected.items():
        if count:
            want = sagas(before, label) + count
            poll(lambda label=label, want=want: query(
                prometheus, f'saga_sagas_total{{outcome="{label}",saga_type="{SAGA}"}}') == want,
                f"{label} = {want} in Prometheus")
    charges = sum(v for (n, labels), v in after.items() if n == "saga_steps_total"
                  and {("step", "charge_payment"), ("saga_type", SAGA)} <= set(labels))
    poll(lambda: query(prometheus, f'sum(saga_steps_total{{saga_type="{SAGA}",'
                                   f'step="charge_payment"}})') == charges,
         f"{charges} charge_payment invocations in Prometheus")
