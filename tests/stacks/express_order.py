"""The order participants' first two steps as an Express saga.

``reserve_inventory`` -> ``charge_payment``, both compensatable, with the order saga's own
timeouts and retries: every action and every compensation at its retry worst case still ends
within Express's five minutes, which the declaration checks. It has its own tables, so a test
that replays its handlers leaves the order saga's books alone.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from constructs import Construct

from saga_kit.cdk import Saga, SagaDefinition, WorkflowType
from stacks.order_fulfillment import LAMBDAS_DIR, ORDER_FULFILLMENT, lambda_code
from tests.stacks.reserve_and_charge import order_participant_tables

STACK_NAME = "SagaKitExpressOrder"
SAGA_NAME = "express_order"

EXPRESS_ORDER = SagaDefinition(
    name=SAGA_NAME,
    description="Reserve stock, then charge: short enough for an Express workflow.",
    workflow=WorkflowType.EXPRESS,
    steps=[ORDER_FULFILLMENT.step("reserve_inventory"), ORDER_FULFILLMENT.step("charge_payment")],
)


class ExpressOrderStack(Stack):
    """The Express saga with its own inventory, payments and fault tables (outputs named as the
    order stack's, so the order saga's test helpers read them)."""

    def __init__(self, scope: Construct, construct_id: str = STACK_NAME, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        tables = order_participant_tables(self)
        self.saga = Saga(self, "ExpressOrder", definition=EXPRESS_ORDER,
                         code=lambda_code(), handlers_dir=LAMBDAS_DIR,
                         environment={n: t.table_name for n, t in tables.items()},
                         removal_policy=RemovalPolicy.DESTROY)
        for step, table in (("reserve_inventory", "INVENTORY_TABLE"),
                            ("charge_payment", "PAYMENTS_TABLE")):
            self.saga.grant(step, tables[table].grant_read_write_data,
                            tables["FAULT_TABLE"].grant_read_write_data)
