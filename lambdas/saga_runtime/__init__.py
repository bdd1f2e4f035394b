"""Saga Kit's handler runtime: what every saga action and compensation Lambda is built on.

Usage::

    from saga_runtime import BusinessError, StepContext, saga_step

    @saga_step
    def reserve_inventory(ctx: StepContext) -> dict:
        ...
"""

from saga_runtime.errors import (
    BusinessError,
    LateActionRefused,
    MalformedStepEvent,
    StepError,
    TransientStepError,
)
from saga_runtime.step import (
    InputTooLarge,
    ResultTooLarge,
    StepContext,
    TransactionConditionFailed,
    saga_step,
)

__all__ = [
    "BusinessError",
    "InputTooLarge",
    "LateActionRefused",
    "MalformedStepEvent",
    "ResultTooLarge",
    "StepContext",
    "StepError",
    "TransactionConditionFailed",
    "TransientStepError",
    "saga_step",
]
