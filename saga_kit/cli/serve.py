"""``saga serve``: synthesize the app, deploy it into the local cloud, and serve it over HTTP."""

from __future__ import annotations

import json
import signal
import tempfile
import threading
from collections.abc import Callable
from typing import Any

#: What the demo participants start with, so sagas started through the API can succeed.
SEED_STOCK = 1_000_000
SEED_BALANCE_CENTS = 10_000_000_000


def seed_participants(cloud: Any) -> dict[str, Any]:
    """Stock for the demo SKU and money for the demo customer; returns what was seeded."""
    from demo.order_demo import CUSTOMER, SKU, OrderParticipants, OrderTables

    participants = OrderParticipants(cloud.client("dynamodb"), OrderTables.from_outputs(cloud.outputs))
    participants.seed_stock(SEED_STOCK)
    participants.open_account(CUSTOMER, SEED_BALANCE_CENTS)
    return {"sku": SKU, "stock": SEED_STOCK, "customer_id": CUSTOMER,
            "balance_cents": SEED_BALANCE_CENTS}


def serve(*, host: str, api_port: int, aws_port: int | None, instant_retries: bool, seed: bool,
          announce: Callable[[dict[str, Any]], None],
          stop_event: threading.Event | None = None) -> None:
    """Runs until SIGINT/SIGTERM (or ``stop_event``); calls ``announce`` once ready."""
    from saga_kit.local_cloud import LocalCloud
    from saga_kit.local_cloud.server import LocalSagaServer
    from stacks.app_factory import ORDER_STACK_NAME, build_app

    stop = stop_event or threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="saga-serve-") as outdir:
        build_app(outdir).synth()
        with LocalCloud(outdir, ORDER_STACK_NAME, instant_retries=instant_retries) as cloud, \
                LocalSagaServer(cloud, host=host, api_port=api_port, aws_port=aws_port) as server:
            seeded = seed_participants(cloud) if seed else None
            announce({
                "ready": True,
                "api_url": server.api_url,
                "endpoint_url": server.endpoint_url,
                "region": cloud.region,
                "stack": cloud.stack_name,
                "outputs": cloud.outputs,
                "seeded": seeded,
            })
            stop.wait()


def announce_json(info: dict[str, Any]) -> None:
    """The ready line: one JSON object on stdout, flushed (scripts and tests wait for it)."""
    print(json.dumps(info), flush=True)
