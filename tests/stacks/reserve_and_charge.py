"""A two-step saga whose last step is compensatable, on the order participants' own handlers.

The reference saga ends in a retriable step, so no test there can show what happens when the
*last* compensatable action times out after its handler succeeded. This one can: the execution
then compensates both steps, and the saga store must say so. It has its own tables and queues,
so tests that move its clock or drain its queues leave the order saga's alone.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from saga_kit.cdk import Saga, SagaApi, SagaDefinition, durable_table
from stacks.order_fulfillment import LAMBDAS_DIR, ORDER_FULFILLMENT, lambda_code

STACK_NAME = "SagaKitTestReserveAndCharge"

RESERVE_AND_CHARGE = SagaDefinition(
    name="reserve_and_charge",
    description="Reserve stock, then charge: the last step can be undone.",
    steps=[ORDER_FULFILLMENT.step("reserve_inventory"), ORDER_FULFILLMENT.step("charge_payment")],
)


def order_participant_tables(stack: Stack) -> dict[str, dynamodb.Table]:
    """The order participants' tables by environment variable name, each with a stack output
    named as the order stack's (``InventoryTableName``...), which the order test helpers read."""
    tables = {name: durable_table(stack, name.title().replace("_", ""), partition_key="pk",
                                  removal_policy=RemovalPolicy.DESTROY)
              for name in ("INVENTORY_TABLE", "PAYMENTS_TABLE", "SHIPMENTS_TABLE",
                           "CONFIRMATIONS_TABLE", "FAULT_TABLE")}
    for name, table in tables.items():
        CfnOutput(stack, f"{name.title().replace('_', '')}Name", value=table.table_name)
    return tables


class ReserveAndChargeStack(Stack):
    """The saga with its own inventory, payments and fault tables (table outputs named as the
    order stack's, so the order saga's test helpers read them)."""

    def __init__(self, scope: Construct, construct_id: str = STACK_NAME, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        tables = order_participant_tables(self)
        self.saga = Saga(self, "ReserveAndCharge", definition=RESERVE_AND_CHARGE,
                         code=lambda_code(), handlers_dir=LAMBDAS_DIR,
                         environment={n: t.table_name for n, t in tables.items()},
                         removal_policy=RemovalPolicy.DESTROY)
        for step, table in (("reserve_inventory", "INVENTORY_TABLE"),
                            ("charge_payment", "PAYMENTS_TABLE")):
            self.saga.grant(step, tables[table].grant_read_write_data,
                            tables["FAULT_TABLE"].grant_read_write_data)
        self.api = SagaApi(self, "Api", sagas=[self.saga], code=lambda_code(),
                           handlers_dir=LAMBDAS_DIR)
