"""Saga Kit's handler runtime: what every saga action and compensation Lambda is built on.

It needs only Powertools and boto3 (both present in Lambda with the Powertools layer) and never
imports the CDK. The ``Saga`` construct ships it to every function as a layer, at the version
that synthesized the state machine; it refuses to run under another (:class:`RuntimeVersionMismatch`).

Usage::

    from saga_kit.runtime import BusinessError, StepContext, saga_step

    @saga_step
    def reserve_inventory(ctx: StepContext) -> dict:
        ...

The handler API (``StepContext``, ``transact_write``, the errors, what a compensation receives)
is described in the README's "Handler API reference".
"""

from saga_kit.runtime.barrier import StepBarrier
from saga_kit.runtime.errors import (
    BusinessError,
    CallbackTaskClosed,
    LateActionRefused,
    MalformedCommand,
    MalformedStepEvent,
    RuntimeVersionMismatch,
    StepError,
    TransientStepError,
)
from saga_kit.runtime.step import (
    InputTooLarge,
    ResultTooLarge,
    StepContext,
    TransactionConditionFailed,
    aws_client,
    dynamodb_client,
    saga_step,
)
from saga_kit.runtime.version import check_kit_version

# Cold start: a function stamped by another Saga Kit version fails its init, loudly.
check_kit_version()

__all__ = [
    "BusinessError",
    "CallbackTaskClosed",
    "InputTooLarge",
    "LateActionRefused",
    "MalformedCommand",
    "MalformedStepEvent",
    "ResultTooLarge",
    "RuntimeVersionMismatch",
    "StepBarrier",
    "StepContext",
    "StepError",
    "TransactionConditionFailed",
    "TransientStepError",
    "aws_client",
    "check_kit_version",
    "dynamodb_client",
    "saga_step",
]
