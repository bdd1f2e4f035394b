"""Start sagas and read what happened to them, from Step Functions itself.

Works with any boto3 Step Functions client: a real account or the local cloud. The outcome of a
saga is read from its execution history, so it reports what the state machine actually did
(which actions ran, which compensations ran and in what order), not what we expected it to do.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

#: Terminal error names of the saga state machine (see saga_kit/cdk/construct.py).
STATUS_BY_ERROR = {
    "SagaCompensated": "compensated",
    "CompensationFailed": "parked",
    "ForwardRecoveryFailed": "failed",
}


def new_saga_id() -> str:
    """A fresh saga id; also usable as an execution name (at most 80 characters)."""
    return uuid.uuid4().hex


def start_saga(
    sfn: Any, state_machine_arn: str, saga_input: dict[str, Any], saga_id: str | None = None
) -> tuple[str, str]:
    """Starts one saga; returns (saga id, execution ARN).

    The saga id doubles as the execution name, so starting the same saga id twice can never run
    two executions: Step Functions refuses the second with ``ExecutionAlreadyExists``.
    """
    saga_id = saga_id or str(saga_input.get("saga_id") or new_saga_id())
    body = {**saga_input, "saga_id": saga_id}
    answer = sfn.start_execution(
        stateMachineArn=state_machine_arn, name=saga_id, input=json.dumps(body)
    )
    return saga_id, answer["executionArn"]


@dataclass
class SagaOutcome:
    """What one saga execution did, read from its history."""

    saga_id: str
    execution_arn: str
    status: str
    steps_run: list[str] = field(default_factory=list)
    compensations_run: list[str] = field(default_factory=list)
    error: str | None = None
    cause: Any = None
    duration_ms: float = 0.0
    state_transitions: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form."""
        return asdict(self)


def wait_for_execution(sfn: Any, execution_arn: str, timeout: float = 60.0) -> dict[str, Any]:
    """Polls until the execution leaves RUNNING; raises ``TimeoutError`` past the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() > deadline:
            raise TimeoutError(f"{execution_arn} still RUNNING after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every event of the execution, oldest first."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def outcome(sfn: Any, execution_arn: str) -> SagaOutcome:
    """Summarises a finished (or running) execution into a :class:`SagaOutcome`."""
    described = sfn.describe_execution(executionArn=execution_arn)
    saga_input = json.loads(described.get("input") or "{}")
    result = SagaOutcome(
        saga_id=str(saga_input.get("saga_id") or described["name"]),
        execution_arn=execution_arn,
        status=_status(described),
    )
    for event in history(sfn, execution_arn):
        entered = event.get("stateEnteredEventDetails")
        if entered is not None:
            result.state_transitions += 1
            if event["type"] == "TaskStateEntered":
                name = entered["name"]
                if name.startswith("compensate_"):
                    result.compensations_run.append(name.removeprefix("compensate_"))
                else:
                    result.steps_run.append(name)
    if described["status"] == "FAILED":
        result.error = described.get("error")
        raw = described.get("cause")
        try:
            result.cause = json.loads(raw) if raw else None
        except ValueError:
            result.cause = raw
    stop = described.get("stopDate")
    if stop is not None:
        result.duration_ms = round((stop - described["startDate"]).total_seconds() * 1000, 1)
    return result


def _status(described: dict[str, Any]) -> str:
    status = described["status"]
    if status == "SUCCEEDED":
        return "completed"
    if status == "RUNNING":
        return "running"
    if status == "FAILED":
        # "SagaCompensated.<step>" and "ForwardRecoveryFailed.<step>" name the failed step.
        error = (described.get("error") or "").split(".", 1)[0]
        return STATUS_BY_ERROR.get(error, "failed")
    return status.lower()


def stored_status(dynamodb: Any, table: str, saga_type: str, saga_id: str) -> str | None:
    """The saga store's status for a saga (``None`` if the store never heard of it)."""
    item = dynamodb.get_item(TableName=table, ConsistentRead=True, Key={
        "saga_type": {"S": saga_type}, "saga_id": {"S": saga_id}}).get("Item")
    return item["status"]["S"] if item and "status" in item else None
