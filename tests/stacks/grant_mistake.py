"""The grant mistake the README once showed: a participant table granted to a step's action only.

``saga.step_functions(step)[0]`` is the action; the compensation gets nothing, so synth and deploy
pass and the first compensation of that step is denied. The stack is the order saga's first
three steps on their own tables, with ``charge_payment``'s payments table granted that way.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from constructs import Construct

from saga_kit.cdk import Saga, SagaDefinition
from stacks.order_fulfillment import LAMBDAS_DIR, ORDER_FULFILLMENT, lambda_code
from tests.stacks.reserve_and_charge import order_participant_tables

STACK_NAME = "SagaKitTestGrantMistake"
STEPS = ("reserve_inventory", "charge_payment", "create_shipment")

RESERVE_CHARGE_SHIP = SagaDefinition(
    name="reserve_charge_ship",
    description="The order saga's first three steps, one of them granted to its action only.",
    steps=[ORDER_FULFILLMENT.step(name) for name in STEPS],
)


class GrantMistakeStack(Stack):
    """``charge_payment``'s payments table is granted to its action, not its compensation."""

    def __init__(self, scope: Construct, construct_id: str = STACK_NAME, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        tables = order_participant_tables(self)
        self.saga = Saga(self, "ReserveChargeShip", definition=RESERVE_CHARGE_SHIP,
                         code=lambda_code(), handlers_dir=LAMBDAS_DIR,
                         environment={n: t.table_name for n, t in tables.items()},
                         removal_policy=RemovalPolicy.DESTROY)
        for step, table in (("reserve_inventory", "INVENTORY_TABLE"),
                            ("create_shipment", "SHIPMENTS_TABLE")):
            self.saga.grant(step, tables[table].grant_read_write_data)
        for step in STEPS:
            self.saga.grant(step, tables["FAULT_TABLE"].grant_read_write_data)
        # The mistake: the action only.
        tables["PAYMENTS_TABLE"].grant_read_write_data(self.saga.step_functions("charge_payment")[0])
