"""Builds the CDK app: one place shared by ``app.py``, the local cloud and the tests.

cdk-nag's AwsSolutions checks run as a validation plugin, so any unacknowledged finding makes
synthesis fail; the findings a construct accepts are acknowledged, with their reason, where the
construct is (see ``stacks/saga/construct.py``).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from stacks.order_fulfillment import OrderFulfillmentStack

ORDER_STACK_NAME = "SagaKitOrderFulfillment"


def build_app(outdir: str | Path | None = None, *, context: dict[str, object] | None = None) -> App:
    """The app with every stack the kit deploys, cdk-nag attached."""
    app = App(outdir=str(outdir) if outdir else None, context=context)
    OrderFulfillmentStack(app, ORDER_STACK_NAME, env=Environment())
    attach_nag(app)
    return app


def attach_nag(app: App) -> None:
    """Runs cdk-nag's AwsSolutions rules at synth; findings fail the synthesis."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))

