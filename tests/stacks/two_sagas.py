"""A stack with two sagas over the same participants, behind one API: what the CLI must tell apart.

``checkout`` runs the whole order (reserve, charge, ship, confirm); ``reservation`` only reserves
and charges. Both run the order participants' own handlers, share the participants' tables (two
business processes over the same services) and are served by one ``SagaApi``; each has its own
saga store, compensation queue and DLQ, published as its own stack outputs.

Runnable as a CDK app (``python tests/stacks/two_sagas.py`` with ``CDK_OUTDIR`` set), so the
tests synthesize it the way ``saga serve --app`` does.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aws_cdk import App, CfnOutput, Environment, RemovalPolicy, Stack
from constructs import Construct

if __name__ == "__main__":
    # Run as a script, only the script's own directory is on the path; the app imports the
    # reference stack's declarations from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from saga_kit.cdk import Saga, SagaApi, SagaDefinition, durable_table, enable_cdk_nag
from stacks.order_fulfillment import LAMBDAS_DIR, ORDER_FULFILLMENT, lambda_code

STACK_NAME = "SagaKitTestTwoSagas"

CHECKOUT = SagaDefinition(
    name="checkout",
    description="The whole order: reserve, charge, ship, confirm.",
    input_model=ORDER_FULFILLMENT.input_model,
    steps=list(ORDER_FULFILLMENT.steps),
)
RESERVATION = SagaDefinition(
    name="reservation",
    description="Hold the stock and the money: reserve, then charge.",
    input_model=ORDER_FULFILLMENT.input_model,
    steps=[ORDER_FULFILLMENT.step("reserve_inventory"), ORDER_FULFILLMENT.step("charge_payment")],
)
#: Which participant table each step's action and compensation use.
PARTICIPANTS = {
    "reserve_inventory": "INVENTORY_TABLE",
    "charge_payment": "PAYMENTS_TABLE",
    "create_shipment": "SHIPMENTS_TABLE",
    "send_confirmation": "CONFIRMATIONS_TABLE",
}


class TwoSagasStack(Stack):
    """Two sagas, one set of participant tables (outputs named as the order stack's, so the
    order saga's test helpers read them) and one API serving both."""

    def __init__(self, scope: Construct, construct_id: str = STACK_NAME, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        tables = {name: durable_table(self, name.title().replace("_", ""), partition_key="pk",
                                      removal_policy=RemovalPolicy.DESTROY)
                  for name in (*PARTICIPANTS.values(), "FAULT_TABLE")}
        self.sagas = []
        for construct_id_, definition in (("Checkout", CHECKOUT), ("Reservation", RESERVATION)):
            saga = Saga(self, construct_id_, definition=definition, code=lambda_code(),
                        handlers_dir=LAMBDAS_DIR,
                        environment={n: t.table_name for n, t in tables.items()},
                        removal_policy=RemovalPolicy.DESTROY)
            for step in definition.steps:
                saga.grant(step.name, tables[PARTICIPANTS[step.name]].grant_read_write_data,
                           tables["FAULT_TABLE"].grant_read_write_data)
            self.sagas.append(saga)
        self.api = SagaApi(self, "Api", sagas=self.sagas, code=lambda_code(),
                           handlers_dir=LAMBDAS_DIR)
        for name, table in tables.items():
            CfnOutput(self, f"{name.title().replace('_', '')}Name", value=table.table_name)


def build_app(outdir: str | Path | None = None) -> App:
    """An app holding only this stack, cdk-nag attached as in the reference app."""
    app = App(outdir=str(outdir) if outdir else None)
    TwoSagasStack(app, env=Environment())
    enable_cdk_nag(app)
    return app


if __name__ == "__main__":
    build_app().synth()
