"""Measures one variant of a saga in the local cloud and prints the figures as JSON.

Run by ``bench/run.py`` in a fresh process per variant, so they never share imported handler
modules. The order saga (``--saga order``) has three variants:

* ``kit``: the shipped app, real handlers with Powertools and the simulated participants;
* ``runtime``: the same state machine, handlers that echo inside the full ``@saga_step`` runtime;
* ``baseline``: the same state machine, bare echo handlers, no Powertools, no DynamoDB.

The travel saga (``--saga travel``: a parallel group of three bookings, one of them a callback
step answered by a worker through SQS, then three steps) is measured as shipped (``kit``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

from aws_cdk import App, Environment, Stack  # noqa: E402
from aws_cdk import aws_lambda as lambda_  # noqa: E402

from demo.order_demo import CUSTOMER, OrderParticipants, OrderTables, order_input  # noqa: E402
from demo.travel_demo import TRAVELLER, TravelParticipants, TravelTables, trip_input  # noqa: E402
from saga_kit.cdk import Saga  # noqa: E402
from saga_kit.cli.executions import outcome, start_saga, wait_for_execution  # noqa: E402
from saga_kit.local_cloud import LocalCloud  # noqa: E402
from stacks.app_factory import ORDER_STACK_NAME, TRAVEL_STACK_NAME, build_app  # noqa: E402
from stacks.order_fulfillment import ORDER_FULFILLMENT  # noqa: E402

BASELINE_STACK = "SagaKitBaseline"
FAIL_AT = "create_shipment"  # compensated path: the longest one, three compensations
#: The travel saga's compensated path: a branch of the parallel group fails, its siblings (the
#: flight and the car, booked through the worker) are undone.
TRAVEL_FAIL_AT = "book_hotel"


def _code_dir(variant: str) -> Path:
    if variant == "baseline":
        return ROOT / "bench" / "baseline_lambdas"
    # runtime: echo handlers on the real saga_kit.runtime, which the construct adds as a layer.
    return ROOT / "bench" / "runtime_echo_lambdas"


def synthesize(saga: str, variant: str, outdir: Path) -> tuple[Path, str]:
    """The assembly to deploy: the real app (``kit``) or the same saga around other handlers."""
    if variant == "kit":
        build_app(outdir).synth()
        return outdir, TRAVEL_STACK_NAME if saga == "travel" else ORDER_STACK_NAME
    app = App(outdir=str(outdir))
    stack = Stack(app, BASELINE_STACK, env=Environment())
    Saga(stack, "OrderFulfillment", definition=ORDER_FULFILLMENT,
         code=lambda_.Code.from_asset(str(_code_dir(variant))))
    app.synth()
    return outdir, BASELINE_STACK


def seed(saga: str, cloud: LocalCloud) -> None:
    """Enough stock and money for every saga the measurement runs."""
    dynamodb = cloud.client("dynamodb")
    if saga == "travel":
        travel = TravelParticipants(dynamodb, TravelTables.from_outputs(cloud.outputs))
        travel.seed_flight(1_000_000)
        travel.seed_hotel(1_000_000)
        travel.seed_cars(1_000_000)
        travel.open_account(TRAVELLER, 10**12)
        return
    order = OrderParticipants(dynamodb, OrderTables.from_outputs(cloud.outputs))
    order.seed_stock(1_000_000)
    order.open_account(CUSTOMER, 10**12)


def run_one(sfn, machine: str, faults: list, saga: str = "order") -> dict:
    body = trip_input(faults=faults) if saga == "travel" else order_input(faults=faults)
    _, arn = start_saga(sfn, machine, body)
    wait_for_execution(sfn, arn, timeout=120)
    result = outcome(sfn, arn)
    # The execution's own start/stop timestamps: no polling interval in the figure.
    return {"ms": result.duration_ms, "status": result.status,
            "transitions": result.state_transitions}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saga", choices=["order", "travel"], default="order")
    parser.add_argument("--variant", choices=["kit", "runtime", "baseline"], required=True)
    parser.add_argument("--sagas", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if args.saga == "travel" and args.variant != "kit":
        parser.error("the travel saga is measured as shipped: --variant kit")
    saga = args.saga

    with tempfile.TemporaryDirectory() as tmp:
        assembly, stack_name = synthesize(saga, args.variant, Path(tmp) / "cdk.out")
        with LocalCloud(assembly, stack_name) as cloud:
            sfn = cloud.client("stepfunctions")
            machine = cloud.saga_outputs()["StateMachineArn"]
            if args.variant == "kit":
                seed(saga, cloud)
            fail = [{"step": TRAVEL_FAIL_AT if saga == "travel" else FAIL_AT,
                     "kind": "business_error"}]
            for faults in ([], fail):  # warm-up: imports, first clients, ASL parser
                run_one(sfn, machine, faults, saga)
            figures = {}
            for label, faults in (("happy", []), ("compensated", fail)):
                sequential = [run_one(sfn, machine, faults, saga) for _ in range(args.sagas)]
                expected = "completed" if label == "happy" else "compensated"
                started = time.perf_counter()
                with ThreadPoolExecutor(args.concurrency) as pool:
                    batch = list(pool.map(lambda _i, f=faults: run_one(sfn, machine, f, saga),
                                          range(args.sagas)))
                concurrent_seconds = time.perf_counter() - started
                for runs in (sequential, batch):
                    assert all(r["status"] == expected for r in runs), runs
                ms = [r["ms"] for r in sequential]
                figures[label] = {
                    "ms_per_saga_mean": round(statistics.mean(ms), 1),
                    "ms_per_saga_p50": round(statistics.median(ms), 1),
                    "transitions_per_saga": sorted({r["transitions"] for r in sequential}),
                    "sagas_per_second": round(args.sagas / concurrent_seconds, 1),
                }
            # A worker may still be answering a command when its saga has ended.
            cloud.wait_lambdas_idle()
    print(json.dumps({"saga": saga, "variant": args.variant, "sagas": args.sagas, **figures}))


if __name__ == "__main__":
    main()
