"""Session fixtures: synthesize the app once, deploy it once into the local cloud."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# Handler logs and EMF lines go to stdout; keep test output readable unless asked for.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

from stacks.app_factory import ORDER_STACK_NAME, TRAVEL_STACK_NAME, build_app


@pytest.fixture(scope="session")
def assembly_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cloud assembly of the real app plus the suite's own stacks, synthesized once, cdk-nag
    included (findings would raise here)."""
    from tests.stacks.express_order import ExpressOrderStack
    from tests.stacks.grant_mistake import GrantMistakeStack
    from tests.stacks.group_chains import GroupChainsStack
    from tests.stacks.reserve_and_charge import ReserveAndChargeStack

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(outdir)
    ReserveAndChargeStack(app)
    GrantMistakeStack(app)
    GroupChainsStack(app)
    ExpressOrderStack(app)
    app.synth()
    return outdir


@pytest.fixture(scope="session")
def template(assembly_dir: Path) -> dict[str, Any]:
    """The order-fulfillment stack's CloudFormation template."""
    return json.loads((assembly_dir / f"{ORDER_STACK_NAME}.template.json").read_text())


@pytest.fixture(scope="session")
def cloud(assembly_dir: Path) -> Iterator[Any]:
    """The order-fulfillment stack deployed into the local cloud, for the whole session."""
    from saga_kit.local_cloud import LocalCloud

    with LocalCloud(assembly_dir, ORDER_STACK_NAME) as running:
        _warm_up(running)
        yield running


def _warm_up(cloud: Any) -> None:
    """One saga through every handler before the tests: imports, first boto3 clients and the
    ASL parser are paid once here, not inside the first test's task timeouts."""
    from demo.order_demo import OrderParticipants, OrderTables, order_input
    from saga_kit.cli.executions import start_saga, wait_for_execution

    participants = OrderParticipants(cloud.client("dynamodb"),
                                     OrderTables.from_outputs(cloud.outputs))
    participants.seed_stock(10, sku="sku-warm-up")
    participants.open_account("customer-warm-up", 100_000)
    sfn = cloud.client("stepfunctions")
    for faults in ([], [{"step": "create_shipment", "kind": "business_error"}]):
        _, arn = start_saga(sfn, cloud.saga_outputs()["StateMachineArn"],
                            order_input(faults=faults, sku="sku-warm-up",
                                        customer="customer-warm-up"))
        wait_for_execution(sfn, arn, timeout=60)


@pytest.fixture(scope="session")
def participants(cloud: Any) -> Any:
    """The order saga's simulated participants in the local cloud."""
    from demo.order_demo import OrderParticipants, OrderTables

    return OrderParticipants(cloud.client("dynamodb"), OrderTables.from_outputs(cloud.outputs))


@pytest.fixture(scope="session")
def saga_functions(cloud: Any) -> dict[tuple[str, str], str]:
    """The order stack's handler function names by (step, phase).

    Only this stack's: the suite deploys another saga with steps of the same names into the
    same moto, and which one a listing returns last must not decide what a test looks at.
    """
    own = {r.physical_id for r in cloud.resources.values()
           if r.resource_type == "AWS::Lambda::Function"}
    functions = {}
    for page in cloud.client("lambda").get_paginator("list_functions").paginate():
        for fn in page["Functions"]:
            env = fn.get("Environment", {}).get("Variables", {})
            if "SAGA_STEP" in env and fn["FunctionName"] in own:
                functions[(env["SAGA_STEP"], env["SAGA_PHASE"])] = fn["FunctionName"]
    return functions


@pytest.fixture(scope="session")
def reserve_and_charge(assembly_dir: Path, cloud: Any) -> Iterator[Any]:
    """The two-step saga whose last step is compensatable, in the same local cloud."""
    from saga_kit.local_cloud import LocalCloud
    from tests.stacks.reserve_and_charge import STACK_NAME

    with LocalCloud(assembly_dir, STACK_NAME) as running:
        yield running


@pytest.fixture(scope="session")
def group_chains_cloud(assembly_dir: Path, cloud: Any) -> Iterator[Any]:
    """The saga whose parallel group has chains of two steps, in the same local cloud."""
    from saga_kit.local_cloud import LocalCloud
    from tests.stacks.group_chains import STACK_NAME

    with LocalCloud(assembly_dir, STACK_NAME) as running:
        yield running


@pytest.fixture(scope="session")
def express_cloud(assembly_dir: Path, cloud: Any) -> Iterator[Any]:
    """The Express saga (reserve, then charge), in the same local cloud."""
    from saga_kit.local_cloud import LocalCloud
    from tests.stacks.express_order import STACK_NAME

    with LocalCloud(assembly_dir, STACK_NAME) as running:
        yield running


@pytest.fixture(scope="session")
def travel_cloud(assembly_dir: Path, cloud: Any) -> Iterator[Any]:
    """The travel-booking stack (parallel group, callback step) in the same local cloud."""
    from saga_kit.local_cloud import LocalCloud

    with LocalCloud(assembly_dir, TRAVEL_STACK_NAME) as running:
        yield running


@pytest.fixture(scope="session")
def travel_participants(travel_cloud: Any) -> Any:
    """The travel saga's simulated participants in the local cloud."""
    from demo.travel_demo import TravelParticipants, TravelTables

    return TravelParticipants(travel_cloud.client("dynamodb"),
                              TravelTables.from_outputs(travel_cloud.outputs))
