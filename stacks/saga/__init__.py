"""Saga Kit's CDK side: the saga declaration API, the ``Saga`` construct and ``SagaApi``."""

from stacks.saga.api import ApiAuthorization, SagaApi
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
    "ApiAuthorization",
    "RetryPolicy",
    "Saga",
    "SagaApi",
    "SagaDeclarationError",
    "SagaDefinition",
    "Step",
    "StepKind",
]
