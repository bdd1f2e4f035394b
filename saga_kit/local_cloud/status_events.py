"""Step Functions execution status events, and EventBridge rules that invoke Lambda, in moto.

moto's Step Functions emits no EventBridge events, and moto's EventBridge cannot deliver to a
Lambda target (``NotImplementedError``). The saga store learns how executions ended from exactly
that pair, so LocalCloud adds both:

* when an execution ends, an event "Step Functions Execution Status Change" (source
  ``aws.states``, the detail fields AWS sends) goes to the default event bus;
* a rule's Lambda target is invoked with the event, as EventBridge invokes it asynchronously:
  a failure is retried up to the target's ``RetryPolicy.MaximumRetryAttempts`` and then sent to
  its ``DeadLetterConfig`` queue.

Unlike AWS, where the event arrives a moment after the execution ends, the event is delivered
before the ending becomes visible through ``DescribeExecution``: a test that sees the execution
ended can read the store at once, without polling a second thing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from saga_kit.contract import STATUS_CHANGE_DETAIL_TYPE
from saga_kit.local_cloud._patching import patched

logger = logging.getLogger(__name__)

DETAIL_TYPE = STATUS_CHANGE_DETAIL_TYPE
#: AWS retries an asynchronous Lambda target up to 185 times; a test needs far fewer.
DEFAULT_RETRY_ATTEMPTS = 2


def _millis(moment: Any) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


def _detail(execution: Any) -> dict[str, Any]:
    """The event detail AWS sends for an execution, from moto's execution object."""
    output = execution.output
    return {
        "executionArn": execution.exec_arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": execution.exec_status.value,
        "startDate": _millis(execution.start_date),
        "stopDate": _millis(execution.stop_date),
        "input": execution.execution_input,
        "output": output if output is None or isinstance(output, str) else json.dumps(output),
        "error": execution.error,
        "cause": execution.cause,
    }


def _publish(execution: Any) -> None:
    from moto.events.models import events_backends

    detail = _detail(execution)
    events_backends[execution.account_id][execution.region_name].put_events([{
        "Source": "aws.states",
        "DetailType": DETAIL_TYPE,
        "Detail": json.dumps(detail, default=str),
        "Resources": [execution.exec_arn],
    }])


def _invoke_lambda_target(rule: Any, target: dict[str, Any], event: dict[str, Any]) -> None:
    from moto.awslambda.utils import get_backend
    from moto.sqs.models import sqs_backends
    from moto.utilities.arns import parse_arn

    arn = parse_arn(target["Arn"])
    # The backend moto answers Lambda calls from (the simple one, without Docker).
    function = get_backend(arn.account, arn.region).get_function(arn.resource_id)
    attempts = 1 + int(target.get("RetryPolicy", {}).get("MaximumRetryAttempts",
                                                          DEFAULT_RETRY_ATTEMPTS))
    body = json.dumps(event, default=str)
    for _ in range(attempts):
        _payload, errored, _logs = function._invoke_lambda(event=json.loads(body))
        if not errored:
            return
    dead_letter = target.get("DeadLetterConfig", {}).get("Arn")
    if not dead_letter:
        logger.warning("rule %s: event %s dropped after %d attempts (no DLQ)", rule.name,
                       event.get("id"), attempts)
        return
    queue = parse_arn(dead_letter)
    sqs_backends[queue.account][queue.region].send_message(queue_name=queue.resource_id,
                                                           message_body=body)


@contextmanager
def execution_status_events() -> Iterator[None]:
    """Publishes execution endings to EventBridge and lets rules invoke Lambda targets."""
    from moto.events.models import Rule
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
    from moto.utilities.arns import parse_arn

    original_terminated = BaseExecutionWorkerCommunication.terminated
    original_send = Rule.send_to_targets

    def terminated(self: Any) -> None:
        original_terminated(self)
        execution = self.execution
        ended = execution.exec_status
        # Recorded before the ending is visible (see the module docstring).
        execution.exec_status = ExecutionStatus.RUNNING
        try:
            _publish(_WithAttributes(execution, exec_status=ended))
        except Exception:
            logger.exception("could not publish the status event of %s", execution.exec_arn)
        finally:
            execution.exec_status = ended

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if getattr(self, "scheduled_expression", None):
            # A scheduled rule matches no event (its empty pattern would match all of them in
            # moto); the local cloud runs no schedules, a test invokes the target itself.
            return
        lambda_targets = [t for t in self.targets if parse_arn(t["Arn"]).service == "lambda"]
        if not lambda_targets:
            original_send(self, original_event, transform_input)
            return
        if not self.event_pattern.matches_event(original_event):
            return
        others = [t for t in self.targets if t not in lambda_targets]
        if others:
            original_send(_WithAttributes(self, targets=others), original_event, transform_input)
        for target in lambda_targets:
            _invoke_lambda_target(self, target, original_event)

    with ExitStack() as stack:
        stack.enter_context(patched(BaseExecutionWorkerCommunication, "terminated", terminated))
        stack.enter_context(patched(Rule, "send_to_targets", send_to_targets))
        yield


class _WithAttributes:
    """A view of a moto object with some attributes replaced, the object itself untouched."""

    def __init__(self, wrapped: Any, **attributes: Any) -> None:
        self._wrapped = wrapped
        self.__dict__.update(attributes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)
