"""A saga whose parallel group has chains of two steps, on the order participants' own handlers.

The reference travel saga's group has one step per branch, so nothing there shows a branch that
fails halfway, or a compensation of a chain's second step that keeps failing. This saga does::

    prepare_order (parallel group)
      branch 1: reserve_inventory -> reserve_packaging
      branch 2: charge_payment -> charge_shipping
    create_shipment (pivot) -> send_confirmation (retriable)

The order participants key every effect by the saga id (``reservation#<saga id>``,
``charge#<saga id>``), so one handler cannot serve two steps of a saga on the same table: the
second step would find the first one's effect and take it for its own earlier attempt.
``reserve_packaging`` and ``charge_shipping`` therefore run the inventory and payments handlers
on tables of their own (boxes on a packaging shelf, a shipping-fees ledger), named by each
step's function environment. Fault rules match on the step name, so each step can fail alone.

Each handler serves its two steps within one branch, one after the other: in the local cloud
(every function in one process) two steps running one handler at the same time mix up their
idempotency records (see ``tests/test_parallel_groups.py``,
``test_one_handler_serving_two_steps_at_once_keeps_their_idempotency_records_apart``).
"""

from __future__ import annotations

from dataclasses import replace

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from saga_kit.cdk import ParallelGroup, Saga, SagaDefinition, Step, durable_table
from stacks.order_fulfillment import LAMBDAS_DIR, ORDER_FULFILLMENT, lambda_code
from tests.stacks.reserve_and_charge import order_participant_tables

STACK_NAME = "SagaKitGroupChains"
SAGA_NAME = "group_chains"
GROUP_NAME = "prepare_order"
#: Results are ids and amounts; six steps at the default 16 KiB would not fit the state limit.
RESULT_BYTES = 4096


def _order_step(handler_step: str, name: str | None = None) -> Step:
    """An order step's declaration (handlers, timeouts, retries) under ``name``."""
    return replace(ORDER_FULFILLMENT.step(handler_step), name=name or handler_step,
                   max_result_bytes=RESULT_BYTES)


#: The branches, each a chain of two steps, in order.
BRANCHES = (
    ("reserve_inventory", "reserve_packaging"),
    ("charge_payment", "charge_shipping"),
)

GROUP_CHAINS = SagaDefinition(
    name=SAGA_NAME,
    description="Reserve goods and a box while charging the order and its shipping; then ship.",
    steps=[
        ParallelGroup(GROUP_NAME, branches=[
            [_order_step("reserve_inventory"), _order_step("reserve_inventory", "reserve_packaging")],
            [_order_step("charge_payment"), _order_step("charge_payment", "charge_shipping")],
        ]),
        _order_step("create_shipment"),
        _order_step("send_confirmation"),
    ],
)

#: Each step's participant table: (the handler's environment variable, the table's key below).
PARTICIPANTS = {
    "reserve_inventory": ("INVENTORY_TABLE", "INVENTORY_TABLE"),
    "charge_payment": ("PAYMENTS_TABLE", "PAYMENTS_TABLE"),
    "reserve_packaging": ("INVENTORY_TABLE", "PACKAGING_TABLE"),
    "charge_shipping": ("PAYMENTS_TABLE", "SHIPPING_FEES_TABLE"),
    "create_shipment": ("SHIPMENTS_TABLE", "SHIPMENTS_TABLE"),
    "send_confirmation": ("CONFIRMATIONS_TABLE", "CONFIRMATIONS_TABLE"),
}


class GroupChainsStack(Stack):
    """The saga with the order participants' tables (outputs named as the order stack's) plus a
    packaging shelf and a shipping-fees ledger (outputs ``PackagingTableName``,
    ``ShippingFeesTableName``)."""

    def __init__(self, scope: Construct, construct_id: str = STACK_NAME, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        tables: dict[str, dynamodb.Table] = order_participant_tables(self)
        for name in ("PACKAGING_TABLE", "SHIPPING_FEES_TABLE"):
            logical = name.title().replace("_", "")
            tables[name] = durable_table(self, logical, partition_key="pk",
                                         removal_policy=RemovalPolicy.DESTROY)
            CfnOutput(self, f"{logical}Name", value=tables[name].table_name)
        self.saga = Saga(self, "GroupChains", definition=GROUP_CHAINS,
                         code=lambda_code(), handlers_dir=LAMBDAS_DIR,
                         environment={"FAULT_TABLE": tables["FAULT_TABLE"].table_name},
                         removal_policy=RemovalPolicy.DESTROY)
        for step, (variable, table) in PARTICIPANTS.items():
            for function in self.saga.step_functions(step):
                function.add_environment(variable, tables[table].table_name)
            self.saga.grant(step, tables[table].grant_read_write_data,
                            tables["FAULT_TABLE"].grant_read_write_data)
