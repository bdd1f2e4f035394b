"""Builds the CDK app: one place shared by ``app.py``, the local cloud and the tests.

cdk-nag's AwsSolutions checks run as a validation plugin, so any unacknowledged finding makes
synthesis fail; the findings a construct accepts are acknowledged, with their reason, where the
construct is (see ``saga_kit/cdk/construct.py``).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import App, Environment

from saga_kit.cdk import enable_cdk_nag
from stacks.order_fulfillment import OrderFulfillmentStack
from stacks.travel_booking import TravelBookingStack

ORDER_STACK_NAME = "SagaKitOrderFulfillment"
TRAVEL_STACK_NAME = "SagaKitTravelBooking"


def build_app(outdir: str | Path | None = None, *, context: dict[str, object] | None = None) -> App:
    """The app with every stack the kit deploys, cdk-nag attached."""
    app = App(outdir=str(outdir) if outdir else None, context=context)
    OrderFulfillmentStack(app, ORDER_STACK_NAME, env=Environment())
    TravelBookingStack(app, TRAVEL_STACK_NAME, env=Environment())
    enable_cdk_nag(app)
    return app

