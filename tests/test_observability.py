"""Handlers log with the saga id as correlation id and emit EMF metrics per outcome and duration
(EMF, which Lambda's CloudWatch Logs turns into metrics)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from demo.order_demo import order_input
from tests.emf import json_lines, settled_mark


def test_business_error_is_logged_and_counted(
    cloud: Any, participants: Any, saga_functions: dict[tuple[str, str], str],
) -> None:
    participants.seed_stock(0, sku="sku-sold-out")
    function = saga_functions[("reserve_inventory", "action")]
    warm_up = order_input()
    cloud.client("lambda").invoke(FunctionName=function, Payload=json.dumps(
        {"saga_type": "order_fulfillment", "step": "reserve_inventory", "phase": "action",
         "execution_name": warm_up["saga_id"], "state": warm_up}))
    # The Powertools logger's handler keeps the stdout it found at import (an earlier test's
    # capture); point it at a buffer for this test. EMF metrics are print()ed to sys.stdout.
    mark = settled_mark(cloud)
    log_buffer = io.StringIO()
    # The runtime's logger, whatever service name it took from the first function (or test)
    # that imported it: every in-process function shares the module.
    import saga_kit.runtime.step

    handlers = logging.getLogger(saga_kit.runtime.step.logger.name).handlers
    assert handlers, "the handlers' Powertools logger is not set up"
    previous = [h.setStream(log_buffer) for h in handlers]  # type: ignore[attr-defined]
    state = order_input(sku="sku-sold-out")
    event = {"saga_type": "order_fulfillment", "step": "reserve_inventory", "phase": "action",
             "execution_name": state["saga_id"], "state": state}
    answer = cloud.client("lambda").invoke(FunctionName=function, Payload=json.dumps(event))
    assert json.loads(answer["Payload"].read())["errorType"] == "OutOfStock"

    for handler, stream in zip(handlers, previous, strict=True):
        handler.setStream(stream)  # type: ignore[attr-defined]
    [log] = [line for line in json_lines(log_buffer.getvalue())
             if line.get("message", "").startswith("action failed")]
    assert log["level"] == "WARNING"
    assert log["correlation_id"] == state["saga_id"]
    assert (log["saga_type"], log["step"], log["phase"]) == (
        "order_fulfillment", "reserve_inventory", "action")

    # The local cloud keeps what CloudWatch would get from the function's stdout.
    [emf] = [d for d in cloud.metrics.documents()[mark:] if d.get("Step") == "reserve_inventory"]
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "SagaKit"
    # The saga type and the step, and nothing else: Powertools' default "service" dimension
    # would only repeat the saga type.
    assert directive["Dimensions"] == [["SagaType", "Step"]]
    names = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert names == {"StepFailed": "Count", "StepDuration": "Milliseconds"}
    assert (emf["SagaType"], emf["Step"]) == ("order_fulfillment", "reserve_inventory")
    assert "service" not in emf
    assert emf["StepFailed"] == [1.0]
    assert emf["StepDuration"][0] > 0
