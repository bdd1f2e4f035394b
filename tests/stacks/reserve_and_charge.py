"""A two-step saga whose last step is compensatable, on the order participants' own handlers.

The reference saga ends in a retriable step, so no test there can show what happens when the
*last* compensatable action times out after its handler succeeded. This one can: the execution
then compensates both steps, and the saga store must say so. It has its own tables and queues,
so tests that move its clock or drain its queues leave the order saga's alone.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from constructs import Construct

from stacks.order_fulfillment import LAMBDAS_DIR, ORDER_FULFILLMENT, lambda_code
from stacks.saga import Saga, SagaApi, SagaDefinition
from stacks.saga.tables import durable_table

STACK_NAME = "SagaKitTestReserveAndCharge"

RESERVE_AND_CHARGE = SagaDefinition(
    name="reserve_and_charge",
    description="Reserve stock, then charge: the last step can be undone.",
    steps=[ORDER_FULFILLMENT.step("reserve_inventory"), ORDER_FULFILLMENT.step("charge_payment")],
)


class ReserveAndChargeStack(Stack):
    """The saga with its own inventory, payments and fault tables, and the outputs the order
    saga's test helpers read."""

    def __init__(self, scope: Construct, construct_id: str = STACK_NAME, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        tables = {name: durable_table(self, name.title().replace("_", ""), partition_key="pk",
                                      removal_policy=RemovalPolicy.DESTROY)
                  for name in ("INVENTORY_TABLE", "PAYMENTS_TABLE", "SHIPMENTS_TABLE",
                               "CONFIRMATIONS_TABLE", "FAULT_TABLE")}
        self.saga = Saga(self, "ReserveAndCharge", definition=RESERVE_AND_CHARGE,
                         code=lambda_code(), handlers_dir=LAMBDAS_DIR,
                         environment={n: t.table_name for n, t in tables.items()},
                         removal_policy=RemovalPolicy.DESTROY)
        for step, table in (("reserve_inventory", "INVENTORY_TABLE"),
                            ("charge_payment", "PAYMENTS_TABLE")):
            for function in self.saga.step_functions(step):
                tables[table].grant_read_write_data(function)
                tables["FAULT_TABLE"].grant_read_write_data(function)
        self.api = SagaApi(self, "Api", sagas=[self.saga], code=lambda_code(),
                           handlers_dir=LAMBDAS_DIR)
        for name, table in tables.items():
            CfnOutput(self, f"{name.title().replace('_', '')}Name", value=table.table_name)
        parking = self.saga.parking
        outputs = {
            "StateMachineArn": self.saga.state_machine.state_machine_arn,
            "SagaStoreTableName": self.saga.store.table.table_name,
            "BarrierTableName": self.saga.barrier_table.table_name,
            "IdempotencyTableName": self.saga.idempotency_table.table_name,
            "CompensationQueueUrl": parking.queue.queue_url,
            "CompensationDeadLetterQueueUrl": parking.dead_letter_queue.queue_url,
            "CompensationDeadLetterQueueArn": parking.dead_letter_queue.queue_arn,
        }
        for key, value in outputs.items():
            CfnOutput(self, key, value=value)
