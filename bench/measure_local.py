"""Measures one variant of the order saga in the local cloud and prints the figures as JSON.

Run by ``bench/run.py`` in a fresh process per variant, so they never share imported handler
modules:

* ``kit``: the shipped app, real handlers with Powertools and the simulated participants;
* ``runtime``: the same state machine, handlers that echo inside the full ``@saga_step`` runtime;
* ``baseline``: the same state machine, bare echo handlers, no Powertools, no DynamoDB.
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
from saga_kit.cdk import Saga  # noqa: E402
from saga_kit.cli.executions import outcome, start_saga, wait_for_execution  # noqa: E402
from saga_kit.local_cloud import LocalCloud  # noqa: E402
from stacks.app_factory import ORDER_STACK_NAME, build_app  # noqa: E402
from stacks.order_fulfillment import ORDER_FULFILLMENT  # noqa: E402

BASELINE_STACK = "SagaKitBaseline"
FAIL_AT = "create_shipment"  # compensated path: the longest one, three compensations


def _code_dir(variant: str) -> Path:
    if variant == "baseline":
        return ROOT / "bench" / "baseline_lambdas"
    # runtime: echo handlers on the real saga_kit.runtime, which the construct adds as a layer.
    return ROOT / "bench" / "runtime_echo_lambdas"


def synthesize(variant: str, outdir: Path) -> tuple[Path, str]:
    """The assembly to deploy: the real app (``kit``) or the same saga around other handlers."""
    if variant == "kit":
        build_app(outdir).synth()
        return outdir, ORDER_STACK_NAME
    app = App(outdir=str(outdir))
    stack = Stack(app, BASELINE_STACK, env=Environment())
    Saga(stack, "OrderFulfillment", definition=ORDER_FULFILLMENT,
         code=lambda_.Code.from_asset(str(_code_dir(variant))))
    app.synth()
    return outdir, BASELINE_STACK


def run_one(sfn, machine: str, faults: list) -> dict:
    _, arn = start_saga(sfn, machine, order_input(faults=faults))
    wait_for_execution(sfn, arn, timeout=120)
    result = outcome(sfn, arn)
    # The execution's own start/stop timestamps: no polling interval in the figure.
    return {"ms": result.duration_ms, "status": result.status,
            "transitions": result.state_transitions}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", choices=["kit", "runtime", "baseline"], required=True)
    parser.add_argument("--sagas", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        assembly, stack_name = synthesize(args.variant, Path(tmp) / "cdk.out")
        with LocalCloud(assembly, stack_name) as cloud:
            sfn = cloud.client("stepfunctions")
            machine = cloud.saga_outputs()["StateMachineArn"]
            if args.variant == "kit":
                participants = OrderParticipants(cloud.client("dynamodb"),
                                                 OrderTables.from_outputs(cloud.outputs))
                participants.seed_stock(1_000_000)
                participants.open_account(CUSTOMER, 10**12)
            fail = [{"step": FAIL_AT, "kind": "business_error"}]
            for faults in ([], fail):  # warm-up: imports, first clients, ASL parser
                run_one(sfn, machine, faults)
            figures = {}
            for label, faults in (("happy", []), ("compensated", fail)):
                runs = [run_one(sfn, machine, faults) for _ in range(args.sagas)]
                expected = "completed" if label == "happy" else "compensated"
                assert all(r["status"] == expected for r in runs), runs
                ms = [r["ms"] for r in runs]
                figures[label] = {
                    "ms_per_saga_mean": round(statistics.mean(ms), 1),
                    "ms_per_saga_p50": round(statistics.median(ms), 1),
                    "transitions_per_saga": sorted({r["transitions"] for r in runs}),
                }
                started = time.perf_counter()
                with ThreadPoolExecutor(args.concurrency) as pool:
                    batch = list(pool.map(lambda _i, f=faults: run_one(sfn, machine, f),
                                          range(args.sagas)))
                assert all(r["status"] == expected for r in batch), batch
                figures[label]["sagas_per_second"] = round(
                    args.sagas / (time.perf_counter() - started), 1)
    print(json.dumps({"variant": args.variant, "sagas": args.sagas, **figures}))


if __name__ == "__main__":
    main()
