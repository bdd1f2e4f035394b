"""Saga Kit's CDK side: the saga declaration API and the ``Saga`` construct."""

from stacks.saga.construct import Saga
from stacks.saga.declaration import (
    DEFAULT_COMPENSATION_RETRY,
    DEFAULT_FORWARD_RETRY,
    RetryPolicy,
    SagaDeclarationError,
    SagaDefinition,
    Step,
    StepKind,
)

__all__ = [
    "DEFAULT_COMPENSATION_RETRY",
    "DEFAULT_FORWARD_RETRY",
    "RetryPolicy",
    "Saga",
    "SagaDeclarationError",
    "SagaDefinition",
    "Step",
    "StepKind",
]
