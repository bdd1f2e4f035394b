"""The flagship saga: order fulfillment, declared once, deployed with its participants.

``reserve_inventory`` -> ``charge_payment`` -> ``create_shipment`` (pivot) ->
``send_confirmation`` (retriable). The participants are simulated on DynamoDB tables with real
state (see ``lambdas/order_fulfillment``), which is what the local cloud tests check.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from saga_kit.cdk import (
    RetryPolicy,
    Saga,
    SagaApi,
    SagaDefinition,
    Step,
    StepKind,
    durable_table,
)

LAMBDAS_DIR = Path(__file__).resolve().parent.parent / "lambdas"

ORDER_FULFILLMENT = SagaDefinition(
    name="order_fulfillment",
    description="Reserve stock, charge the customer, ship, confirm.",
    input_model="order_fulfillment.schema.OrderRequest",
    steps=[
        Step(
            "reserve_inventory",
            action="order_fulfillment.inventory.reserve_inventory",
            compensation="order_fulfillment.inventory.release_inventory",
            timeout_seconds=4,
        ),
        Step(
            "charge_payment",
            action="order_fulfillment.payments.charge_payment",
            compensation="order_fulfillment.payments.refund_payment",
            timeout_seconds=4,
            retry=RetryPolicy(max_attempts=3, interval_seconds=1, max_delay_seconds=8),
        ),
        Step(
            "create_shipment",
            kind=StepKind.PIVOT,
            action="order_fulfillment.shipping.create_shipment",
            compensation="order_fulfillment.shipping.cancel_shipment",
            timeout_seconds=4,
        ),
        Step(
            "send_confirmation",
            kind=StepKind.RETRIABLE,
            action="order_fulfillment.notifications.send_confirmation",
            timeout_seconds=4,
        ),
    ],
)


def lambda_code() -> lambda_.Code:
    """The one code asset every handler runs from: the participants only (the ``Saga``
    construct brings ``saga_kit.runtime`` as a layer)."""
    return lambda_.Code.from_asset(
        str(LAMBDAS_DIR), exclude=["**/__pycache__", "**/*.pyc", "**/tests"]
    )


def participant_table(scope: Construct, construct_id: str) -> dynamodb.Table:
    """A simulated participant's table: demo data only, removed with the stack."""
    return durable_table(scope, construct_id, partition_key="pk",
                         removal_policy=RemovalPolicy.DESTROY)


class OrderFulfillmentStack(Stack):
    """The order-fulfillment saga with its simulated participant services."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.tables = {
            "INVENTORY_TABLE": participant_table(self, "InventoryTable"),
            "PAYMENTS_TABLE": participant_table(self, "PaymentsTable"),
            "SHIPMENTS_TABLE": participant_table(self, "ShipmentsTable"),
            "CONFIRMATIONS_TABLE": participant_table(self, "ConfirmationsTable"),
            "FAULT_TABLE": participant_table(self, "FaultTable"),
        }
        self.saga = Saga(
            self,
            "OrderFulfillment",
            definition=ORDER_FULFILLMENT,
            code=lambda_code(),
            handlers_dir=LAMBDAS_DIR,
            environment={name: table.table_name for name, table in self.tables.items()},
        )
        # Each step's action and compensation get its participant's table and the fault table.
        participants = {
            "reserve_inventory": "INVENTORY_TABLE",
            "charge_payment": "PAYMENTS_TABLE",
            "create_shipment": "SHIPMENTS_TABLE",
            "send_confirmation": "CONFIRMATIONS_TABLE",
        }
        for step, table_key in participants.items():
            self.saga.grant(step, self.tables[table_key].grant_read_write_data,
                            self.tables["FAULT_TABLE"].grant_read_write_data)
        self.api = SagaApi(self, "Api", sagas=[self.saga], code=lambda_code(),
                           handlers_dir=LAMBDAS_DIR)
        for name, table in self.tables.items():
            CfnOutput(self, f"{name.title().replace('_', '')}Name", value=table.table_name)
