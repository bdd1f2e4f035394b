"""Saga Kit's CDK side: declare a saga, deploy it with the ``Saga`` construct, serve it with
``SagaApi``, check it with cdk-nag.

Example::

    from saga_kit.cdk import Saga, SagaDefinition, Step, StepKind, enable_cdk_nag

    LOAN = SagaDefinition(name="loan_disbursement", steps=[
        Step("reserve_funds", action="loans.funds.reserve", compensation="loans.funds.release"),
        Step("disburse", kind=StepKind.PIVOT, action="loans.payout.disburse",
             compensation="loans.payout.claw_back"),
    ])
    saga = Saga(stack, "Loan", definition=LOAN, code=lambda_.Code.from_asset("lambdas"))
    saga.grant("reserve_funds", funds_table.grant_read_write_data)
"""

from saga_kit.cdk.api import ApiAuthorization, SagaApi
from saga_kit.cdk.construct import Saga
from saga_kit.cdk.declaration import (
    DEFAULT_COMPENSATION_RETRY,
    DEFAULT_FORWARD_RETRY,
    Callback,
    ParallelGroup,
    RetryPolicy,
    SagaDeclarationError,
    SagaDefinition,
    Step,
    StepKind,
    WorkflowType,
)
from saga_kit.cdk.functions import SagaKitRuntime
from saga_kit.cdk.nag import acknowledge, enable_cdk_nag
from saga_kit.cdk.tables import durable_table

__all__ = [
    "DEFAULT_COMPENSATION_RETRY",
    "DEFAULT_FORWARD_RETRY",
    "ApiAuthorization",
    "Callback",
    "ParallelGroup",
    "RetryPolicy",
    "Saga",
    "SagaApi",
    "SagaDeclarationError",
    "SagaDefinition",
    "SagaKitRuntime",
    "Step",
    "StepKind",
    "WorkflowType",
    "acknowledge",
    "durable_table",
    "enable_cdk_nag",
]
