"""LocalCloud end to end on a tiny synthesized stack: deploy, run, retry, time out."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from selftest_app import TASK_TIMEOUT_SECONDS

from saga_kit.local_cloud import LocalCloud, ResourceLookupError


def _run(cloud: LocalCloud, payload: dict[str, Any]) -> dict[str, Any]:
    sfn = cloud.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=cloud.saga_outputs()["StateMachineArn"],
        name=f"selftest-{uuid.uuid4().hex[:12]}",
        input=json.dumps(payload),
    )["executionArn"]
    return cloud.wait_for_execution(arn, timeout=20)


def _item(cloud: LocalCloud, pk: str) -> dict[str, Any] | None:
    table = cloud.client("dynamodb")
    found = table.get_item(TableName=cloud.outputs["TableName"], Key={"pk": {"S": pk}})
    return found.get("Item")


def test_deploys_and_runs_the_real_handler(selftest_cloud: LocalCloud) -> None:
    cloud = selftest_cloud
    assert cloud.outputs["TableName"] == cloud.physical_id("Items")
    assert cloud.saga_outputs()["StateMachineArn"].startswith("arn:aws:states:us-east-1:123456789012:")
    function_name = cloud.physical_id("Worker")  # the function, not WorkerServiceRole...
    with pytest.raises(ResourceLookupError, match="2 resources"):
        cloud.physical_id("WorkerService")

    execution = _run(cloud, {"id": "happy", "note": "hello"})

    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["output"]) == {"id": "happy", "note": "hello"}
    item = _item(cloud, "happy")
    assert item is not None
    assert item["function_name"]["S"] == function_name
    assert item["env_function_name"]["S"] == function_name  # thread-local os.environ overlay
    assert 0 < int(item["remaining_ms"]["N"]) <= 10_000


def test_retry_on_custom_error_is_instant(selftest_cloud: LocalCloud) -> None:
    started = time.monotonic()
    execution = _run(selftest_cloud, {"id": "flaky", "fail_times": 2})
    elapsed = time.monotonic() - started

    assert execution["status"] == "SUCCEEDED", execution
    attempts = _item(selftest_cloud, "attempts#flaky")
    assert attempts is not None and attempts["attempts"]["N"] == "3"
    assert elapsed < 4, f"backoff of 5 s + 10 s was not skipped ({elapsed:.1f} s)"


def test_retries_exhausted_fail_with_the_error_type(selftest_cloud: LocalCloud) -> None:
    execution = _run(selftest_cloud, {"id": "broken", "fail_times": 99})

    assert execution["status"] == "FAILED"
    assert execution["error"] == "FlakyError"
    assert "fails on purpose" in execution["cause"]


def test_task_timeout_and_late_handler(selftest_cloud: LocalCloud) -> None:
    execution = _run(selftest_cloud, {"id": "slow", "sleep": TASK_TIMEOUT_SECONDS + 1})

    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.Timeout"
    assert _item(selftest_cloud, "slow") is None  # the handler is still sleeping
    selftest_cloud.wait_lambdas_idle(timeout=10)
    assert _item(selftest_cloud, "slow") is not None  # ...and finished its work afterwards


def test_task_answer_while_another_execution_starts(selftest_cloud: LocalCloud,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's heartbeat or reply is answered while another saga is still starting (moto
    lists that execution as running before it has an environment to look tokens up in)."""
    import threading

    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    held, release = threading.Event(), threading.Event()
    original = ExecutionWorker._get_evaluation_environment

    def held_environment(worker: Any) -> Any:
        held.set()
        release.wait(10)
        return original(worker)

    monkeypatch.setattr(ExecutionWorker, "_get_evaluation_environment", held_environment)
    sfn = selftest_cloud.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=selftest_cloud.saga_outputs()["StateMachineArn"],
                              name=f"selftest-{uuid.uuid4().hex[:12]}",
                              input=json.dumps({"id": "starting", "note": "held"}))["executionArn"]
    try:
        assert held.wait(10), "the execution never started"
        for answer in (lambda: sfn.send_task_heartbeat(taskToken="no-such-token"),
                       lambda: sfn.send_task_success(taskToken="no-such-token", output="{}")):
            with pytest.raises(ClientError) as refused:
                answer()
            assert refused.value.response["Error"]["Code"] == "InvalidToken"
    finally:
        release.set()
    assert selftest_cloud.wait_for_execution(arn, timeout=20)["status"] == "SUCCEEDED"
